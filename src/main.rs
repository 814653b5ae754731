//! The edge: argv → flags → rules, state and pipeline → exit code. anyhow lives here only.

use anyhow::{Context, Result};
use auditsentry::cli::{
    Cli, Command, ConfigCommand, OutputFormat, ReplayArgs, RulesCommand, RunArgs,
};
use auditsentry::config::{self, Overrides, Settings, SourceKind};
use auditsentry::daemon::kernel;
use auditsentry::daemon::{self, Log, RunOptions};
use auditsentry::event::Host;
use auditsentry::pipeline::{self, DetectOptions, Detector, Pipeline};
use auditsentry::proc::{NoFallback, ProcessTable};
use auditsentry::rule;
use auditsentry::rule::extended::ExtendedDetector;
use auditsentry::rule::file as rules;
use auditsentry::rule::kql::EvalOptions;
use auditsentry::rule::new_terms::{MemStore, TermStore};
use auditsentry::rule::ratecap::RateCap;
use auditsentry::sink::json::JsonSink;
use auditsentry::sink::syslog::{self, Facility, SyslogSink};
use auditsentry::sink::text::TextSink;
use auditsentry::sink::Fanout;
use auditsentry::source::netlink::{self, AuditSocket};
use auditsentry::state::SledStore;
use clap::Parser;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// jemalloc instead of glibc's malloc. A replay's threads each allocate and free hundreds of
/// thousands of small strings a second, some freed by the other thread; glibc spent a fifth of
/// the run on that (its bins fill, its arenas lock, its free lists consolidate), jemalloc about
/// half as much: 13 % off the wall time of a replay, and the live agent's RSS is lower too. Its build-time configuration
/// (`.cargo/config.toml`) hands freed pages back after 100 ms, which keeps a flood of megabyte
/// arguments near glibc's peak. `--no-default-features` builds with glibc's malloc.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    unblock_signals();
    // Whatever the caller's umask, what the agent creates (state, captures, status, journals)
    // is its owner's alone; outputs meant for a group (the JSON files, 0640) set their mode.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // Transparent huge pages off: where the kernel's mode is `always` (Debian's default), each
    // 2 MiB region the allocator touches at all became a resident huge page, and the idle agent
    // took 48 MiB instead of 9 (docs/memory.md). A kernel without the flag (before 3.15) refuses.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(*args),
        Command::Run(args) => run(*args),
        Command::Plugin { config } => plugin(config),
        Command::Status { state_dir } => status(state_dir),
        Command::Cleanup { state_dir, config } => cleanup(state_dir, config),
        Command::Rules {
            command: RulesCommand::Check { paths, coverage },
        } => {
            if coverage {
                rules_coverage(&paths)
            } else {
                rules_check(&paths)
            }
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(file.as_deref()),
        Command::Manpage => manpage(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("auditsentry: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Starts every mode from an empty signal mask, before any handler is installed or thread started
/// (threads inherit it). auditd starts and restarts its plugins with its dispatcher thread's mask,
/// which blocks HUP, TERM and others: inherited, it would make the agent deaf to stop and reload.
fn unblock_signals() {
    if let Err(e) = nix::sys::signal::SigSet::empty().thread_set_mask() {
        eprintln!("auditsentry: warning: cannot clear the inherited signal mask: {e}");
    }
}

/// Which mode the outputs are for: replay prints alerts on stdout unless told otherwise (and
/// sends them to syslog only with `--syslog`, see `ReplayArgs::overrides`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `replay`: alerts on stdout by default; notices on stderr.
    Replay,
    /// The daemon: the settings decide.
    Run,
}

/// The settings every mode runs with: the configuration file `path` (or the defaults), the
/// command line's `flags` over it, validated once (see [`config::resolve`]).
fn settings(path: Option<&Path>, flags: &Overrides) -> Result<Settings> {
    Ok(config::resolve(path, flags)?)
}

/// The configuration file a daemon or `status` reads when none is given:
/// /etc/auditsentry/auditsentry.toml when it exists.
fn default_config_path() -> Option<PathBuf> {
    Some(PathBuf::from(config::DEFAULT_PATH)).filter(|p| p.exists())
}

/// The detection knobs of `settings`, for replay and the daemon alike.
fn detect_options(settings: &Settings, host: Host, all_matches: bool) -> DetectOptions {
    DetectOptions {
        reassemble: settings.reassemble(),
        exec_limits: settings.exec_limits(),
        eval: EvalOptions {
            ignore_above: settings.ignore_above,
        },
        all_matches,
        host,
        proc_capacity: 65_536,
        proc_budget: settings.process_table_bytes(),
        max_terms_per_rule: settings.max_terms(),
    }
}

/// Every output `cfg` asks for, as one sink. In replay, alerts go to stdout when no JSON output is
/// configured (as they always have): JSON lines, or with `stdout_text` one readable line each.
/// Notices (rate-cap summaries; the daemon's coverage and loss warnings) also go to stderr, and in
/// the daemon to the JSON output.
fn outputs_from(cfg: &Settings, mode: Mode, stdout_text: bool) -> Result<Fanout> {
    let mut out = Fanout::new();
    match &cfg.json {
        // The daemon's coverage and loss warnings go to the JSON output too.
        Some(json) if mode == Mode::Run => out.push(Box::new(
            JsonSink::open(&json.path, json.fsync)?.with_notices(),
        )),
        Some(json) => out.push(Box::new(JsonSink::open(&json.path, json.fsync)?)),
        None if mode == Mode::Replay && stdout_text => out.push(Box::new(TextSink::stdout())),
        None if mode == Mode::Replay => out.push(Box::new(JsonSink::stdout())),
        None => {}
    }
    if cfg.syslog.enabled {
        out.push(Box::new(SyslogSink::new(
            cfg.syslog.facility,
            cfg.syslog.max_line,
        )));
    }
    if let Some(events) = &cfg.events {
        out.set_events(Box::new(
            JsonSink::open(&events.path, events.fsync)?.into_events(),
        ));
    }
    // Replay: the operator is at the terminal. The daemon: its stderr is the journal or the
    // init script's log, the one place every warning reaches whatever the outputs are.
    out.set_notices_to_stderr(true);
    Ok(out)
}

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let cfg = settings(args.output.config.as_deref(), &args.overrides())?;
    let rules = rules::load_configured(&cfg.rules)?;
    // Without a state directory (none given, none in the file) the history lives for this run
    // only: memory does that. Never the installed agent's directory by default.
    let store: Box<dyn TermStore> = match &cfg.state_dir {
        Some(dir) => {
            let (store, report) = SledStore::open(dir)
                .with_context(|| format!("opening state directory {}", dir.display()))?;
            if report.quarantined.is_some() {
                eprintln!("auditsentry: {report}");
            }
            Box::new(store)
        }
        None => Box::new(MemStore::new()),
    };
    let detected = Host::detect();
    let host = Host {
        id: args.host_id.clone().unwrap_or(detected.id),
        name: args.host_name.clone().unwrap_or(detected.name),
    };
    let opts = detect_options(&cfg, host, args.all_matches);
    let mut detector = Detector::new(rules, store, Box::new(NoFallback), opts)
        .with_rate_cap(RateCap::new(cfg.max_signals, cfg.rate_window_ms()));
    if cfg.extended {
        detector.set_extended(Some(ExtendedDetector::new()?));
    }
    let mut pipe = Pipeline::new(detector);
    // A person at a terminal reads lines; a pipe or a file gets JSON, as it always has.
    let text = match args.output_format {
        OutputFormat::Text => true,
        OutputFormat::Json => false,
        OutputFormat::Auto => std::io::stdout().is_terminal(),
    };
    let mut sink = outputs_from(&cfg, Mode::Replay, text)?;
    let stats = pipeline::replay(&args.inputs, args.format, &mut pipe, &mut sink);
    let stats = match stats {
        Ok(s) => s,
        Err(e) => {
            eprintln!("auditsentry: {}", pipe.stats());
            return Err(e.into());
        }
    };
    if !args.quiet && text {
        eprintln!("auditsentry: {}", stats.describe());
    } else if !args.quiet {
        eprintln!("auditsentry: {stats}");
    }
    // The process ends here: freeing the process table entry by entry (tens of thousands, after
    // every stage has stopped) would only delay the exit.
    let table = ProcessTable::new(1, Box::new(NoFallback));
    std::mem::forget(std::mem::replace(
        pipe.detector_mut().processes_mut(),
        table,
    ));
    Ok(ExitCode::SUCCESS)
}

/// `auditsentry manpage`: auditsentry(8) rendered from the command-line definitions.
fn manpage() -> Result<ExitCode> {
    use std::io::Write;
    let page = auditsentry::manpage::render()?;
    std::io::stdout()
        .write_all(page.as_bytes())
        .context("writing the man page to standard output")?;
    Ok(ExitCode::SUCCESS)
}

fn rules_coverage(paths: &[std::path::PathBuf]) -> Result<ExitCode> {
    let entries = rule::coverage::coverage(paths);
    for entry in &entries {
        println!("{}", entry.line());
    }
    print!("{}", rule::coverage::summary(&entries));
    let bad = entries
        .iter()
        .any(|e| matches!(e.outcome, rule::coverage::Outcome::Error(_)));
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn rules_check(paths: &[std::path::PathBuf]) -> Result<ExitCode> {
    let mut bad = 0;
    for result in rules::check(paths) {
        match result {
            Ok(rule) => println!(
                "ok: {} ({}) {} [{}]",
                rule.source,
                rule.id,
                rule.name,
                rule.type_name()
            ),
            Err(e) => {
                bad += 1;
                println!("error: {e}");
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Daemon log lines, each written once to the journal: to syslog when it is on (which on a
/// systemd host is the journal's socket too), and to stderr as well unless stderr is the
/// journal (`JOURNAL_STREAM`, set by systemd). When syslog is off or refuses the line, stderr.
struct DaemonLog {
    syslog: Option<Facility>,
    stderr_is_journal: bool,
}

impl Log for DaemonLog {
    fn line(&mut self, text: &str) {
        let sent = self
            .syslog
            .is_some_and(|facility| syslog::log_status(facility, text).is_ok());
        if !(sent && self.stderr_is_journal) {
            eprintln!("auditsentry: {text}");
        }
    }
}

/// Whether stderr is the journal: systemd names the stream it connected in `JOURNAL_STREAM`
/// (`DEVICE:INODE`), which a child's redirected stderr no longer matches.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    stream.to_str() == Some(format!("{}:{}", st.st_dev, st.st_ino).as_str())
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let config_path = args.output.config.clone().or_else(default_config_path);
    run_daemon(config_path, args.overrides(), args.record)
}

/// `auditsentry plugin [CONFIG]`: the daemon on auditd's plugin stream.
fn plugin(config_path: Option<PathBuf>) -> Result<ExitCode> {
    let flags = Overrides {
        source: Some(SourceKind::Plugin),
        ..Overrides::default()
    };
    run_daemon(config_path.or_else(default_config_path), flags, None)
}

fn run_daemon(
    config_path: Option<PathBuf>,
    flags: Overrides,
    record: Option<PathBuf>,
) -> Result<ExitCode> {
    let cfg = settings(config_path.as_deref(), &flags)?;
    let mut sink = outputs_from(&cfg, Mode::Run, false)?;
    let mut log = DaemonLog {
        syslog: cfg.syslog.enabled.then_some(cfg.syslog.facility),
        stderr_is_journal: stderr_is_journal(),
    };
    let opts = RunOptions {
        config_path,
        overrides: flags,
        detect: detect_options(&cfg, Host::detect(), false),
        settings: cfg,
        record,
    };
    daemon::run(opts, &mut sink, &mut log)?;
    Ok(ExitCode::SUCCESS)
}

/// Kernel audit status, what `auto` would pick, execve coverage, and the running agent's last status.
fn status(state_dir: Option<PathBuf>) -> Result<ExitCode> {
    let version = netlink::kernel_version()?;
    let mut ctl =
        AuditSocket::control().context("opening the audit control socket (are we root?)")?;
    let s = ctl
        .status()
        .context("asking the kernel for its audit status")?;
    println!(
        "kernel {}.{}.{}: audit multicast {}",
        version.0,
        version.1,
        version.2,
        if netlink::multicast_supported(version) {
            "supported"
        } else {
            "not supported (needs 3.16)"
        }
    );
    println!(
        "audit: enabled={} pid={} backlog={} backlog_limit={} lost={} failure={} rate_limit={}",
        s.enabled, s.pid, s.backlog, s.backlog_limit, s.lost, s.failure, s.rate_limit
    );
    match daemon::choose::choose(
        SourceKind::Auto,
        version,
        &s,
        daemon::choose::auditd_installed(),
    ) {
        Ok((kind, why)) => println!("source auto: {kind} ({why})"),
        Err(why) => println!("source auto: none ({why})"),
    }
    let rules = ctl.list_rules().context("listing audit rules")?;
    let missing = kernel::missing_exec_rules(&rules);
    if missing.is_empty() {
        println!("execve rules: present ({} rule(s) loaded)", rules.len());
    } else {
        let lines: Vec<String> = missing.into_iter().map(kernel::rule_line).collect();
        println!(
            "execve rules: missing: {} ({} rule(s) loaded)",
            lines.join(" ; "),
            rules.len()
        );
    }
    match auditsentry::source::connector::ProcConnector::open() {
        Ok(_) => println!(
            "process events: available (proc connector: parents that fork without exec are known)"
        ),
        Err(e) => println!(
            "process events: unavailable ({e}); parents that fork without exec are unknown once they exit"
        ),
    }
    match auditsentry::source::fanotify::available() {
        Ok(()) => println!("fanotify: available (extended mode watches new symlinks)"),
        Err(e) => println!("fanotify: unavailable ({e}); extended mode uses audit only"),
    }
    let flags = Overrides {
        state_dir,
        ..Overrides::default()
    };
    let state_dir = settings(default_config_path().as_deref(), &flags)?.agent_state_dir();
    match std::fs::read_to_string(state_dir.join(daemon::STATUS_FILE)) {
        Ok(line) => println!("agent: {}", line.trim_end()),
        Err(_) => println!(
            "agent: no status in {} (not running, or not yet reported)",
            state_dir.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `auditsentry cleanup`: what a stopped agent left in the kernel is undone (see
/// [`kernel::cleanup`]). Never fails on a missing or broken configuration: the package's scripts
/// call it while the package is half removed.
fn cleanup(state_dir: Option<PathBuf>, config_path: Option<PathBuf>) -> Result<ExitCode> {
    let path = config_path.or_else(default_config_path);
    let flags = Overrides {
        state_dir,
        ..Overrides::default()
    };
    let state_dir = match settings(path.as_deref(), &flags) {
        Ok(cfg) => cfg.agent_state_dir(),
        Err(e) => {
            let dir = flags
                .state_dir
                .unwrap_or_else(|| Settings::default().agent_state_dir());
            eprintln!("auditsentry: cleanup: {e:#}; using {}", dir.display());
            dir
        }
    };
    let mut ctl = match AuditSocket::control().and_then(|mut c| c.status().map(|_| c)) {
        Ok(ctl) => ctl,
        Err(e) => {
            println!("cleanup: kernel audit unavailable ({e}); nothing to undo");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let procfs = auditsentry::procfs::ProcFs::new();
    let me = kernel::AgentId {
        pid: std::process::id(),
        start_time: procfs.start_time(std::process::id()),
    };
    let journal = daemon::journal::Journal::in_dir(&state_dir);
    let running_agent = |a: kernel::AgentId| procfs.is_agent(a.pid, a.start_time);
    match kernel::cleanup(&mut ctl, journal, me, &running_agent) {
        Ok(notes) if notes.is_empty() => println!("cleanup: nothing to undo"),
        Ok(notes) => {
            for note in notes {
                println!("cleanup: {note}");
            }
        }
        Err(e) => {
            eprintln!("auditsentry: cleanup: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn config_check(file: Option<&std::path::Path>) -> Result<ExitCode> {
    let path = file.unwrap_or(std::path::Path::new(config::DEFAULT_PATH));
    // The rules it names must load too: the agent would refuse to start without them.
    let checked = config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|cfg| {
            rules::load_configured(&cfg.rules)
                .map_err(|e| format!("{}: rules.paths: {e}", path.display()))
        });
    match checked {
        Ok(_) => {
            println!("ok: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
