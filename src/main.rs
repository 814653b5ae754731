//! The edge: argv → flags → rules, state and pipeline → exit code. anyhow lives here only.

use anyhow::{Context, Result};
use auditsentry::audit::exec::ExecLimits;
use auditsentry::audit::reassemble::ReassembleConfig;
use auditsentry::cli::{Cli, Command, ReplayArgs, RulesCommand, RunArgs};
use auditsentry::daemon::kernel::{self, SourceRequest};
use auditsentry::daemon::{self, RunOptions, StderrLog};
use auditsentry::event::Host;
use auditsentry::pipeline::{self, DetectOptions, Detector, Pipeline};
use auditsentry::proc::NoFallback;
use auditsentry::rule::extended::ExtendedDetector;
use auditsentry::rule::file as rules;
use auditsentry::rule::kql::EvalOptions;
use auditsentry::sink::json::JsonSink;
use auditsentry::source::netlink::{self, AuditSocket};
use auditsentry::state::SledStore;
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(args),
        Command::Run(args) => run(args),
        Command::Status => status(),
        Command::Rules {
            command: RulesCommand::Check { paths },
        } => rules_check(&paths),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("auditsentry: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let rules = if args.rules.is_empty() {
        vec![rules::builtin()]
    } else {
        rules::load_paths(&args.rules)?
    };
    let store = match &args.state_dir {
        Some(dir) => {
            let (store, report) = SledStore::open(dir)
                .with_context(|| format!("opening state directory {}", dir.display()))?;
            if report.quarantined.is_some() {
                eprintln!("auditsentry: {report}");
            }
            store
        }
        None => SledStore::temporary().context("creating temporary state")?,
    };
    let detected = Host::detect();
    let host = Host {
        id: args.host_id.clone().unwrap_or(detected.id),
        name: args.host_name.clone().unwrap_or(detected.name),
    };
    let opts = DetectOptions {
        reassemble: ReassembleConfig {
            timeout_ms: args.reassembly_timeout_ms,
            max_in_flight: args.max_in_flight,
            ..ReassembleConfig::default()
        },
        exec_limits: ExecLimits::default(),
        eval: EvalOptions {
            ignore_above: args.ignore_above,
        },
        all_matches: args.all_matches,
        host,
        proc_capacity: 65_536,
    };
    let mut detector = Detector::new(rules, store, Box::new(NoFallback), opts);
    if args.extended {
        detector.set_extended(Some(ExtendedDetector::new()?));
    }
    let mut pipe = Pipeline::new(detector);
    let mut sink = JsonSink::stdout();
    let stats = pipeline::replay(&args.inputs, args.format, &mut pipe, &mut sink);
    let stats = match stats {
        Ok(s) => s,
        Err(e) => {
            eprintln!("auditsentry: {}", pipe.stats());
            return Err(e.into());
        }
    };
    if !args.quiet {
        eprintln!("auditsentry: {stats}");
    }
    Ok(ExitCode::SUCCESS)
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
                match rule.kind {
                    rules::RuleKind::Query => "query",
                    rules::RuleKind::NewTerms { .. } => "new_terms",
                }
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

fn detect_options(all_matches: bool, ignore_above: Option<usize>, host: Host) -> DetectOptions {
    DetectOptions {
        reassemble: ReassembleConfig::default(),
        exec_limits: ExecLimits::default(),
        eval: EvalOptions { ignore_above },
        all_matches,
        host,
        proc_capacity: 65_536,
    }
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let mut sink: Box<dyn auditsentry::sink::Sink> = match args.json.as_deref() {
        None | Some("-") => Box::new(JsonSink::stdout()),
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {path}"))?;
            Box::new(JsonSink::new(Box::new(file), path))
        }
    };
    let opts = RunOptions {
        source: args.source,
        rules: args.rules,
        state_dir: args.state_dir,
        manage_rules: !args.no_manage_rules,
        keep_rules: args.keep_rules,
        record: args.record,
        detect: detect_options(false, None, Host::detect()),
        status_period: Duration::from_secs(args.status_period.max(1)),
    };
    daemon::run(opts, sink.as_mut(), &mut StderrLog)?;
    Ok(ExitCode::SUCCESS)
}

fn status() -> Result<ExitCode> {
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
    match kernel::choose(SourceRequest::Auto, version, &s) {
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
    Ok(ExitCode::SUCCESS)
}
