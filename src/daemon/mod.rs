//! The live agent: picks a source, makes sure execve is audited, runs the pipeline on a worker
//! thread fed by a reader thread, and handles signals, housekeeping and a clean exit. This is daemon
//! wiring, so errors are `anyhow` here.

pub mod choose;
pub mod journal;
pub mod kernel;
pub mod watchdog;
mod worker;

use crate::audit::record::AuditTime;
use crate::config::{self, ConfigError, Overrides, Settings, SourceKind};
use crate::names::Names;
use crate::pipeline::{DetectOptions, Detector, Pipeline};
use crate::procfs::ProcFs;
use crate::rule::extended::ExtendedDetector;
use crate::rule::file::{self as rules};
use crate::rule::ratecap::RateCap;
use crate::sink::Sink;
use crate::source::connector::{self, ProcConnector};
use crate::source::fanotify::{self, FanotifySensor};
use crate::source::live::{self, Message, Reader};
use crate::source::netlink::{self, AuditSocket};
use crate::state::SledStore;
use anyhow::{bail, Context, Result};
use journal::Journal;
use kernel::{AgentId, RuleGuard, Wanted};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use watchdog::{Losses, Watchdog};
use worker::{describe_events, feed, LiveSource, Worker};

/// Batches the channel between reader and worker holds before the reader starts dropping.
const CHANNEL_BATCHES: usize = 4096;
/// Process-table expiry: how often, and how many entries one pass checks. A dead process stays
/// resolvable for `proc::EXPIRY_GRACE_PASSES` passes, so its children's late events still name it.
const EXPIRY_PERIOD: Duration = Duration::from_secs(10);
const EXPIRY_CHECKS: usize = 512;
/// How long the exit path may spend draining and flushing.
const DRAIN_BUDGET: Duration = Duration::from_secs(4);

/// Everything `auditsentry run` needs, already validated.
pub struct RunOptions {
    /// The configuration file, re-read on SIGHUP with [`RunOptions::overrides`] over it again
    /// (its rules reload; a broken file is refused).
    pub config_path: Option<PathBuf>,
    /// The command line's flags, which win over the file at start and at every reload.
    pub overrides: Overrides,
    /// The settings resolved at start.
    pub settings: Settings,
    /// Write every received netlink frame here in capture format (for `replay`).
    pub record: Option<PathBuf>,
    /// Detection knobs (from `settings`).
    pub detect: DetectOptions,
}

impl RunOptions {
    /// The new-terms state directory.
    fn state_dir(&self) -> PathBuf {
        self.settings.agent_state_dir()
    }

    /// How often a status line is logged (and written to `STATE_DIR/status`); 0 is never.
    fn status_period(&self) -> Duration {
        match self.settings.status_period_secs {
            0 => Duration::from_secs(u64::MAX / 4),
            secs => Duration::from_secs(secs),
        }
    }

    /// The settings a SIGHUP runs with: the configuration file read again, the same flags over
    /// it (a `--rules` given at start stays in force).
    fn reread(&self) -> Result<Settings, ConfigError> {
        config::resolve(self.config_path.as_deref(), &self.overrides)
    }
}

/// File in the state directory holding the last status line, for `auditsentry status`.
pub const STATUS_FILE: &str = "status";

/// Where the daemon says what it is doing (stderr, and syslog when on).
pub trait Log {
    /// An operational line (start, stop, status, problems).
    fn line(&mut self, text: &str);
}

/// Logs to stderr only.
pub struct StderrLog;

impl Log for StderrLog {
    fn line(&mut self, text: &str) {
        eprintln!("auditsentry: {text}");
    }
}

/// Signals the daemon reacts to, set by handlers and read by the worker loop.
struct Signals {
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    fn register() -> Result<Signals> {
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, term.clone())
                .context("installing the SIGTERM/SIGINT handler")?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
            .context("installing the SIGHUP handler")?;
        Ok(Signals { term, hup })
    }
}

fn now() -> AuditTime {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    AuditTime {
        sec: d.as_secs(),
        msec: d.subsec_millis(),
    }
}

/// Runs the live agent until SIGTERM/SIGINT (or end of the plugin stream), then drains and flushes.
pub fn run(opts: RunOptions, sink: &mut dyn Sink, log: &mut dyn Log) -> Result<()> {
    let signals = Signals::register()?;
    // The rules first: a missing or empty rules path stops the agent before it touches the kernel.
    let rule_list = rules::load_configured(&opts.settings.rules)?;
    log.line(&format!(
        "rules: {}",
        rules::summary(&rule_list, &opts.settings.rules)
    ));
    let me = std::process::id();
    let version = netlink::kernel_version().context("reading the kernel version")?;
    let mut ctl =
        AuditSocket::control().context("opening the audit control socket (are we root?)")?;
    let status = ctl
        .status()
        .context("asking the kernel for its audit status")?;
    let auditd = choose::auditd_installed();
    let (kind, why) = choose::choose(opts.settings.source, version, &status, auditd)
        .map_err(anyhow::Error::msg)?;
    log.line(&format!("source {kind}: {why}"));
    if kind == SourceKind::Multicast && status.pid == 0 {
        // With no registered audit daemon the kernel also printk()s every record (rate-limited).
        log.line(
            "no audit daemon is registered: the kernel also writes audit records to its own log; \
             run auditd, or use --source unicast on hosts without it",
        );
    }

    let state_dir = opts.state_dir();
    let (store, report) = SledStore::open(&state_dir)
        .with_context(|| format!("opening state directory {}", state_dir.display()))?;
    if report.quarantined.is_some() {
        log.line(&report.to_string());
    }
    let procfs = ProcFs::new();
    let mut detector = Detector::new(
        rule_list,
        store,
        Box::new(procfs.clone()),
        opts.detect.clone(),
    )
    .with_rate_cap(RateCap::new(
        opts.settings.max_signals,
        opts.settings.rate_window_ms(),
    ));
    detector.exclude_pid(me);
    detector.watch_config_changes();
    detector.set_names(Some(Names::host()));
    if opts.settings.extended {
        detector.set_extended(Some(ExtendedDetector::new()?));
    }
    // The link watchers need the extended detector; fanotify a kernel with FAN_REPORT_DFID_NAME
    // (5.9), inotify covers what fanotify cannot mark.
    let (fan_sensor, fan_note) = if opts.settings.extended {
        match FanotifySensor::open(&fanotify::watch_dirs()) {
            Ok(sensor) => {
                let note = sensor.describe();
                (Some(sensor), note)
            }
            Err(e) => (None, format!("off ({e})")),
        }
    } else {
        (None, "off (extended detector not on)".to_string())
    };
    // Process events first, so the forks that happen while /proc is read are queued, not missed.
    let (connector, conn_note) = match ProcConnector::open() {
        Ok(c) => (
            Some(c),
            "on (proc connector: forks, execs and exits)".to_string(),
        ),
        Err(e) => (
            None,
            format!("off ({e}); a parent that forks without exec is unknown once it exits"),
        ),
    };
    let wanted = Wanted {
        link: opts.settings.extended,
        events: detector.needs(),
    };
    log.line(&format!(
        "sensors: exec (execve audit records){}{}; fanotify: {fan_note}; process events: {conn_note}",
        if opts.settings.extended {
            ", syscall (symlink/link audit records, extended detector)"
        } else {
            ""
        },
        describe_events(wanted)
    ));
    // Instances first known now are stamped with the time now (see `proc::Instance`).
    detector.processes_mut().note_audit_time(now().as_millis());
    let seeded = procfs.seed(detector.processes_mut());
    let mut pipe = Pipeline::new(detector);
    log.line(&format!("process table seeded with {seeded} processes"));

    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_BATCHES);
    let record: Option<Box<dyn std::io::Write + Send>> = match &opts.record {
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            create_private(path)
                .with_context(|| format!("creating capture file {}", path.display()))?,
        ))),
        None => None,
    };
    // Everything fallible that changes nothing in the kernel is done; now the kernel changes, and
    // from here on a failure must undo them. Each change is journaled first (see `journal`).
    let agent = AgentId {
        pid: me,
        start_time: procfs.start_time(me),
    };
    let guard = RuleGuard::new(agent, Some(Journal::in_dir(&state_dir)));
    let running_agent = |a: AgentId| procfs.is_agent(a.pid, a.start_time);
    let (mut guard, notes) = kernel::prepare(
        &mut ctl,
        guard,
        opts.settings.manage_rules,
        wanted,
        &running_agent,
    )?;
    guard.keep = opts.settings.keep_rules;
    for note in notes {
        log.line(&note);
    }
    let reader = match start_reader(kind, me, tx.clone(), record) {
        Ok(reader) => reader,
        Err(e) => {
            for problem in guard.release(&mut ctl) {
                log.line(&problem);
            }
            return Err(e);
        }
    };
    let (conn_tx, conn_rx) = crossbeam_channel::bounded(CHANNEL_BATCHES);
    let conn_reader = match connector.map(|c| connector::spawn(c, conn_tx)) {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            log.line(&format!("process events not started: {e}"));
            None
        }
        None => None,
    };
    let conn_rx = if conn_reader.is_some() {
        conn_rx
    } else {
        crossbeam_channel::never()
    };
    let (fan_tx, fan_rx) = crossbeam_channel::bounded(CHANNEL_BATCHES);
    let fan_reader = match fan_sensor.map(|s| fanotify::spawn(s, fan_tx, procfs.clone())) {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            log.line(&format!("fanotify sensor not started: {e}"));
            None
        }
        None => None,
    };
    log.line(&format!(
        "running: pid {me}, kernel {}.{}.{}, {} rule(s) added, state {}",
        version.0,
        version.1,
        version.2,
        guard.added(),
        state_dir.display()
    ));

    // Without a reader the sender is gone: never() keeps select! from spinning on it.
    let fan_rx = if fan_reader.is_some() {
        fan_rx
    } else {
        crossbeam_channel::never()
    };
    let mut worker = Worker {
        opts: &opts,
        pipe: &mut pipe,
        rx: &rx,
        fan_rx: fan_rx.clone(),
        conn_rx,
        conn: conn_reader.as_ref(),
        source: LiveSource {
            kind,
            reader: Some(reader),
            tx,
            version,
            auditd_known: auditd.is_some(),
            replace_seen: 0,
            carried: Losses::default(),
        },
        fan: fan_reader.as_ref(),
        signals: &signals,
        sink: &mut *sink,
        log: &mut *log,
        ctl: &mut ctl,
        procfs: &procfs,
        guard: &mut guard,
        watchdog: Watchdog::new(me, opts.settings.manage_rules, wanted),
    };
    // `auditsentry status` has something to show from the start, not after the first period.
    worker.check_coverage();
    worker.write_status();
    let result = worker.run();
    let source = worker.source;

    // Exit: stop receiving, drain what was received, complete what is in flight, flush.
    if let Some(reader) = source.reader {
        reader.stop();
    }
    if let Some(r) = fan_reader {
        r.stop();
    }
    if let Some(r) = conn_reader {
        r.stop();
    }
    while let Ok(ev) = fan_rx.try_recv() {
        let _ = pipe.detector_mut().on_fanotify(&ev, sink);
    }
    let deadline = Instant::now() + DRAIN_BUDGET;
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Message::Frames(mut frames) => {
                feed(&mut pipe, frames.take(), sink);
            }
            Message::Malformed(what) => pipe.malformed(&what),
            Message::End(_) => {}
        }
        if Instant::now() > deadline {
            log.line("drain budget exhausted; remaining queued records dropped");
            break;
        }
    }
    let _ = pipe.detector_mut().close_windows(sink);
    let stats = pipe.finish(sink);
    if source.kind == SourceKind::Unicast {
        if let Err(e) = ctl.set_pid(0) {
            log.line(&format!("releasing the audit daemon registration: {e}"));
        }
    }
    for problem in guard.release(&mut ctl) {
        log.line(&problem);
    }
    match stats {
        Ok(s) => log.line(&format!("stopped: {s}")),
        Err(e) => log.line(&format!("stopped with an output error: {e}")),
    }
    result
}

/// Creates (or truncates) `path` readable by its owner only, whatever the umask and whatever
/// mode an existing file had: a capture holds every user's command lines.
fn create_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Opens the source's socket (or stdin) and starts its reader thread.
fn start_reader(
    kind: SourceKind,
    me: u32,
    tx: crossbeam_channel::Sender<Message>,
    record: Option<Box<dyn std::io::Write + Send>>,
) -> Result<Reader> {
    Ok(match kind {
        SourceKind::Multicast => {
            let sock = AuditSocket::multicast().context("joining the audit multicast group")?;
            live::spawn_netlink(sock, tx, record)?
        }
        SourceKind::Unicast => {
            let mut sock = AuditSocket::control().context("opening the unicast audit socket")?;
            sock.set_pid(me)
                .context("registering as the audit daemon")?;
            live::spawn_netlink(sock, tx, record)?
        }
        SourceKind::Plugin => live::spawn_lines(std::io::stdin(), tx)?,
        SourceKind::Auto => bail!("the source `auto` was not resolved to one that runs"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::ProcessTable;
    use crate::source::fanotify;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    /// A fanotify report is handled `fanotify::GRACE` after the link was made; the creator and
    /// its parent must still be in the process table then, even if they exited at once.
    #[test]
    fn exited_processes_outlive_the_fanotify_delay() {
        let margin = Duration::from_millis(ProcessTable::EXIT_AUDIT_MARGIN_MS);
        assert!(margin >= fanotify::GRACE * 3, "{margin:?}");
    }

    #[test]
    fn a_capture_file_is_owner_only_even_over_an_open_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capture.bin");
        std::fs::write(&path, b"old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        drop(create_private(&path).expect("create"));
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!((meta.permissions().mode() & 0o777, meta.len()), (0o600, 0));
        let fresh = dir.path().join("new.bin");
        drop(create_private(&fresh).expect("create"));
        let mode = std::fs::metadata(&fresh)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}
