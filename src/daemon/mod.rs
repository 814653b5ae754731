//! The live agent: picks a source, makes sure execve is audited, runs the pipeline on a worker
//! thread fed by a reader thread, and handles signals, housekeeping and a clean exit. This is daemon
//! wiring, so errors are `anyhow` here.

pub mod choose;
pub mod journal;
pub mod kernel;
pub mod watchdog;

use crate::audit::record::{parse_frame_owned, AuditTime, UNSTAMPED};
use crate::config::{self, ConfigError, Overrides, Settings, SourceKind};
use crate::names::Names;
use crate::pipeline::{DetectOptions, Detector, Pipeline};
use crate::procfs::ProcFs;
use crate::rule::extended::ExtendedDetector;
use crate::rule::file::{self as rules};
use crate::rule::ratecap::RateCap;
use crate::sink::Sink;
use crate::source::connector::{self, ConnectorReader, ProcConnector, ProcEvent};
use crate::source::fanotify::{self, FanEvent, FanReader, FanotifySensor};
use crate::source::live::{self, Message, Reader};
use crate::source::netlink::{self, AuditSocket};
use crate::state::SledStore;
use anyhow::{bail, Context, Result};
use journal::Journal;
use kernel::{AgentId, Gaps, RuleGuard, Wanted};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use watchdog::{Losses, Watchdog};

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

/// Parses and pushes a batch of frames; malformed ones are counted by the pipeline. Returns
/// whether a CONFIG_CHANGE record was among them (its event may still be incomplete).
fn feed<S: crate::rule::new_terms::TermStore>(
    pipe: &mut Pipeline<S>,
    frames: Vec<crate::source::Frame>,
    sink: &mut dyn Sink,
) -> bool {
    let mut config_change = false;
    for frame in frames {
        match parse_frame_owned(frame) {
            Ok(rec) => {
                config_change |= rec.rtype == crate::audit::record::types::CONFIG_CHANGE;
                if let Err(e) = pipe.push(rec, sink) {
                    eprintln!("auditsentry: {e}");
                }
            }
            Err(e) if e.reason == UNSTAMPED => {}
            Err(e) => pipe.malformed(&e),
        }
    }
    config_change
}

/// The live source as it runs now: a unicast agent hands its place over to auditd by switching
/// to multicast.
struct LiveSource {
    kind: SourceKind,
    /// The reader thread (`None` only while it is being replaced).
    reader: Option<Reader>,
    /// Where a reader sends, for a replacement.
    tx: crossbeam_channel::Sender<Message>,
    version: (u32, u32, u32),
    /// auditd is known to be installed (or to want the unicast place): said once.
    auditd_known: bool,
    /// AUDIT_REPLACE requests already acted on.
    replace_seen: u64,
    /// Losses counted by readers that were replaced.
    carried: Losses,
}

impl LiveSource {
    /// Loss counters of this source since start, replaced readers included.
    fn losses(&self) -> Losses {
        let (enobufs, drops) = self.reader.as_ref().map_or((0, 0), |r| {
            (
                r.stats.overruns.load(Ordering::Relaxed),
                r.stats.channel_drops.load(Ordering::Relaxed),
            )
        });
        Losses {
            enobufs: self.carried.enobufs + enobufs,
            channel_drops: self.carried.channel_drops + drops,
            ..Losses::default()
        }
    }
}

/// What the daemon's main loop works with: the pipeline, its inputs and outputs, and the kernel
/// control socket for the health line.
struct Worker<'a, S: crate::rule::new_terms::TermStore> {
    opts: &'a RunOptions,
    pipe: &'a mut Pipeline<S>,
    rx: &'a crossbeam_channel::Receiver<Message>,
    fan_rx: crossbeam_channel::Receiver<FanEvent>,
    /// Process events (forks, execs, exits) from the proc connector, when it runs.
    conn_rx: crossbeam_channel::Receiver<Vec<ProcEvent>>,
    conn: Option<&'a ConnectorReader>,
    source: LiveSource,
    fan: Option<&'a FanReader>,
    signals: &'a Signals,
    sink: &'a mut dyn Sink,
    log: &'a mut dyn Log,
    ctl: &'a mut AuditSocket,
    procfs: &'a ProcFs,
    /// What the agent changed in the kernel (the watchdog restores it).
    guard: &'a mut RuleGuard,
    watchdog: Watchdog,
}

impl<S: crate::rule::new_terms::TermStore> Worker<'_, S> {
    /// Runs until the input ends, a stop is requested (SIGTERM/SIGINT) or the source fails;
    /// SIGHUP reloads in between.
    fn run(&mut self) -> Result<()> {
        let tick = crossbeam_channel::tick(Duration::from_millis(250));
        let mut next_status = Instant::now() + self.opts.status_period();
        let mut next_expiry = Instant::now() + EXPIRY_PERIOD;
        let mut next_check = Instant::now() + watchdog::CHECK_PERIOD;
        loop {
            crossbeam_channel::select! {
                recv(self.rx) -> msg => match msg {
                    // The batch's bytes go back to the reader's budget once it is fed.
                    Ok(Message::Frames(mut frames)) => {
                        // Process events are sent at once and audit records batched, so the
                        // forks that made these execs' parents are (nearly always) queued by now.
                        self.apply_process_events();
                        // A CONFIG_CHANGE record means a look at the kernel now, whether or not
                        // its event (which names who made the change) is complete yet.
                        let raw = feed(self.pipe, frames.take(), self.sink);
                        let changes = self.pipe.detector_mut().take_config_changes();
                        let foreign = self.watchdog.note_changes(changes, self.guard);
                        if raw || foreign {
                            self.check_coverage();
                            next_check = Instant::now() + watchdog::CHECK_PERIOD;
                        }
                    }
                    Ok(Message::Malformed(what)) => self.pipe.malformed(&what),
                    Ok(Message::End(None)) => {
                        self.log.line("input stream ended");
                        return Ok(());
                    }
                    Ok(Message::End(Some(reason))) => bail!("source failed: {reason}"),
                    Err(_) => return Ok(()),
                },
                recv(self.fan_rx) -> ev => match ev {
                    Ok(ev) => {
                        if let Err(e) = self.pipe.detector_mut().on_fanotify(&ev, self.sink) {
                            self.log.line(&format!("output error: {e}"));
                        }
                    }
                    Err(_) => {
                        self.log.line("fanotify reader ended; the other sensors go on");
                        self.fan_rx = crossbeam_channel::never();
                    }
                },
                recv(self.conn_rx) -> evs => match evs {
                    Ok(evs) => self.apply(&evs),
                    Err(_) => {
                        self.log.line("process events ended; exited processes expire by /proc checks");
                        self.conn_rx = crossbeam_channel::never();
                    }
                },
                recv(tick) -> _ => self.on_tick(),
            }
            if self.signals.term.load(Ordering::Relaxed) {
                self.log.line("stop requested; draining");
                return Ok(());
            }
            if self.signals.hup.swap(false, Ordering::Relaxed) {
                reload(self.opts, self.pipe, self.sink, self.log);
                self.sync_event_rules();
            }
            // With process events, exits remove entries; /proc checks only back them up when
            // events were lost.
            let exits_known = self.conn.is_some_and(|c| c.stats.lost() == 0);
            if Instant::now() >= next_expiry && !exits_known {
                next_expiry = Instant::now() + EXPIRY_PERIOD;
                let procfs = self.procfs;
                let alive = |pid| procfs.is_alive(pid);
                self.pipe
                    .detector_mut()
                    .processes_mut()
                    .expire(&alive, EXPIRY_CHECKS);
            }
            if Instant::now() >= next_check {
                next_check = Instant::now() + watchdog::CHECK_PERIOD;
                self.check_coverage();
                self.watch_for_auditd(true)?;
            } else {
                self.watch_for_auditd(false)?;
            }
            if Instant::now() >= next_status {
                next_status = Instant::now() + self.opts.status_period();
                let line = self.write_status();
                self.log.line(&line);
            }
        }
    }

    /// Lets the watchdog look at the kernel and the loss counters; its warnings go to every
    /// output (syslog at warning, the JSON output, stderr).
    fn check_coverage(&mut self) {
        let losses = Losses {
            lost_serials: self.pipe.stats().serials_lost,
            proc_events: self.conn.map_or(0, |c| c.stats.lost()),
            ..self.source.losses()
        };
        let lines = self
            .watchdog
            .check(self.ctl, self.guard, losses, Instant::now(), now());
        for line in lines {
            if let Err(e) = self.sink.notice(&line) {
                self.log.line(&format!("{line} (output error: {e})"));
            }
        }
    }

    /// After a rule reload: adds the file or network audit rules that the new rules need and
    /// removes those no rule needs any more, and tells the watchdog what must be there now.
    fn sync_event_rules(&mut self) {
        let wanted = Wanted {
            link: self.opts.settings.extended,
            events: self.pipe.detector_mut().needs(),
        };
        if wanted == self.watchdog.wanted() {
            return;
        }
        self.watchdog.set_wanted(wanted);
        self.log.line(&format!(
            "rules need events: exec{}",
            describe_events(wanted)
        ));
        if !self.opts.settings.manage_rules {
            return;
        }
        let ctl = &mut *self.ctl;
        let added = ctl
            .status()
            .and_then(|st| Ok((st, ctl.list_rules()?)))
            .map_err(kernel::KernelError::from)
            .and_then(|(st, rules)| self.guard.fill(ctl, &Gaps::of(&st, &rules, wanted)));
        let removed = self.guard.retire(ctl, wanted);
        for result in [added, removed] {
            match result {
                Ok(notes) => notes.iter().for_each(|n| self.log.line(n)),
                Err(e) => self
                    .log
                    .line(&format!("changing the event audit rules: {e}")),
            }
        }
    }

    /// Applies every process event queued now.
    fn apply_process_events(&mut self) {
        while let Ok(evs) = self.conn_rx.try_recv() {
            self.apply(&evs);
        }
    }

    /// Process events to the process table: a fork copies the parent's entry to the child, an
    /// exec marks the entry as about to change (its audit event brings the new image), an exit
    /// schedules the entry's removal once audit has caught up.
    fn apply(&mut self, events: &[ProcEvent]) {
        let table = self.pipe.detector_mut().processes_mut();
        let now_ms = now().as_millis();
        for ev in events {
            match *ev {
                ProcEvent::Fork {
                    parent_tgid,
                    child_tgid,
                    ..
                } if ev.is_process_fork() => table.fork(parent_tgid, child_tgid),
                ProcEvent::Exec { tgid, .. } => table.exec_started(tgid),
                ProcEvent::Exit { pid, tgid, .. } if pid == tgid => table.exited(tgid, now_ms),
                _ => {}
            }
        }
    }

    /// A unicast agent that learns auditd wants the unicast place (the kernel told us auditd's
    /// AUDIT_SET was refused, or auditd got installed) says so in one warning line and, where the
    /// kernel has multicast, hands the place over: it joins the multicast group, unregisters,
    /// and reads on from multicast. auditd's next start (systemd restarts a failed auditd) then
    /// registers. `installed` also looks for a newly installed auditd binary.
    fn watch_for_auditd(&mut self, installed: bool) -> Result<()> {
        let src = &mut self.source;
        if src.kind != SourceKind::Unicast {
            return Ok(());
        }
        let Some(stats) = src.reader.as_ref().map(|r| &r.stats) else {
            return Ok(());
        };
        let asked = stats.replace_requests.load(Ordering::Relaxed);
        let why = if asked > src.replace_seen {
            src.replace_seen = asked;
            let pid = stats.replace_pid.load(Ordering::Relaxed);
            format!(
                "auditd (pid {pid}) tried to register as the audit daemon and the kernel refused it: \
                 this agent held the unicast stream"
            )
        } else if installed && !src.auditd_known {
            match choose::auditd_installed() {
                Some(path) => format!(
                    "auditd was installed ({path}); it cannot register while this agent holds the unicast stream"
                ),
                None => return Ok(()),
            }
        } else {
            return Ok(());
        };
        let first = !std::mem::replace(&mut src.auditd_known, true);
        let line = if !netlink::multicast_supported(src.version) {
            if !first {
                return Ok(());
            }
            format!(
                "{why}; this kernel has no multicast to switch to: stop the agent and enable the auditd \
                 plugin ({})",
                choose::plugin_conf_path()
            )
        } else {
            self.switch_to_multicast()?;
            format!(
                "{why}; switched to multicast and unregistered, so auditd can register (systemd \
                 restarts a failed auditd; elsewhere run `service auditd start`)"
            )
        };
        if let Err(e) = self.sink.notice(&line) {
            self.log.line(&format!("{line} (output error: {e})"));
        }
        Ok(())
    }

    /// Moves from the unicast stream to the multicast group without a gap: join first (records
    /// now also queue there), unregister, then stop the unicast reader and start a multicast one
    /// with the same capture file. Records seen twice meanwhile are dropped by the reassembler.
    fn switch_to_multicast(&mut self) -> Result<()> {
        let sock = AuditSocket::multicast().context("joining the audit multicast group")?;
        self.ctl
            .set_pid(0)
            .context("unregistering as the audit daemon")?;
        let src = &mut self.source;
        let before = src.losses();
        let record = src.reader.take().and_then(Reader::stop);
        src.carried = before;
        src.kind = SourceKind::Multicast;
        src.reader = Some(
            live::spawn_netlink(sock, src.tx.clone(), record)
                .context("starting the multicast reader")?,
        );
        Ok(())
    }

    /// Writes the health line to `STATE_DIR/status` (owner-only) and returns it.
    fn write_status(&mut self) -> String {
        let line = status_line(
            self.pipe,
            &self.source,
            self.fan,
            self.conn,
            self.ctl,
            &mut self.watchdog,
        );
        let path = self.opts.state_dir().join(STATUS_FILE);
        if let Err(e) = write_private(&path, &format!("{line}\n")) {
            self.log.line(&format!("writing {}: {e}", path.display()));
        }
        line
    }

    /// Every 250 ms: audit time moves on (events without EOE complete, threshold runs and
    /// rate-cap windows close) and the outputs are flushed.
    fn on_tick(&mut self) {
        let t = now();
        // Exited processes leave the table once the audit stream is past their exit.
        self.pipe.detector_mut().processes_mut().reap(t.as_millis());
        let result = self
            .pipe
            .advance_clock(t, self.sink)
            .and_then(|()| {
                self.pipe
                    .detector_mut()
                    .advance_time(t.as_millis(), self.sink)
            })
            .and_then(|()| self.sink.flush());
        if let Err(e) = result {
            self.log.line(&format!("output error: {e}"));
        }
    }
}

/// Replaces `path` with `text` (temporary file and rename, mode 0600), so a reader never sees
/// half a line and nobody but the owner reads it.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// `, file (… audit records)` and `, network (…)` for the sensors line, as the rules need them.
fn describe_events(wanted: Wanted) -> String {
    let mut out = String::new();
    if wanted.events.file {
        out.push_str(", file (creat/open O_CREAT/rename/unlink/link/chmod/truncate audit records)");
    }
    if wanted.events.network {
        out.push_str(", network (socket/connect/accept/bind audit records)");
    }
    out
}

/// SIGHUP: reload the rules (a bad set keeps the old one) and reopen file outputs.
fn reload<S: crate::rule::new_terms::TermStore>(
    opts: &RunOptions,
    pipe: &mut Pipeline<S>,
    sink: &mut dyn Sink,
    log: &mut dyn Log,
) {
    // The configuration file first: a file that no longer validates changes nothing.
    let rule_paths = match opts.reread() {
        Ok(settings) => settings.rules,
        Err(e) => {
            log.line(&format!(
                "reload refused, keeping the running configuration: {e}"
            ));
            return;
        }
    };
    match rules::load_configured(&rule_paths) {
        Ok(list) => {
            log.line(&format!(
                "reloaded {}; source and output changes apply on restart",
                rules::summary(&list, &rule_paths)
            ));
            pipe.detector_mut().set_rules(list);
        }
        Err(e) => log.line(&format!("reload refused, keeping the running rules: {e}")),
    }
    if let Err(e) = sink.reopen() {
        log.line(&format!("reopening outputs: {e}"));
    }
}

/// One health line: pipeline counters, reader losses, kernel lost/backlog.
fn status_line<S: crate::rule::new_terms::TermStore>(
    pipe: &Pipeline<S>,
    source: &LiveSource,
    fan: Option<&FanReader>,
    conn: Option<&ConnectorReader>,
    ctl: &mut AuditSocket,
    watchdog: &mut Watchdog,
) -> String {
    let losses = source.losses();
    let (frames, bad) = source.reader.as_ref().map_or((0, 0), |r| {
        (
            r.stats.frames.load(Ordering::Relaxed),
            r.stats.bad_datagrams.load(Ordering::Relaxed),
        )
    });
    let kernel = match ctl.status() {
        Ok(s) => format!(
            "kernel_lost={} backlog={} backlog_limit={}",
            s.lost, s.backlog, s.backlog_limit
        ),
        Err(e) => format!("kernel_status_error={e:?}"),
    };
    let coverage = watchdog.status_fields();
    let procs = match conn {
        Some(c) => format!(
            " proc_forks={} proc_exits={} proc_lost={}",
            c.stats.forks.load(Ordering::Relaxed),
            c.stats.exits.load(Ordering::Relaxed),
            c.stats.lost(),
        ),
        None => String::new(),
    };
    let fan = match fan {
        Some(f) => format!(
            " fanotify_symlinks={} fanotify_lost={} fanotify_drops={}",
            f.stats.symlinks.load(Ordering::Relaxed),
            f.stats.lost.load(Ordering::Relaxed),
            f.stats.channel_drops.load(Ordering::Relaxed),
        ),
        None => String::new(),
    };
    format!(
        "status: {coverage} {} frames={} enobufs={} channel_drops={} bad_datagrams={} in_flight={} {kernel}{procs}{fan}",
        pipe.stats(),
        frames,
        losses.enobufs,
        losses.channel_drops,
        bad,
        pipe.in_flight(),
    )
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
