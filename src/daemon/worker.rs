//! The daemon's main loop: one worker takes audit batches, process events and fanotify reports
//! as they arrive, and between them handles SIGHUP (reload), the coverage watchdog, the health
//! line, the process table's expiry and the unicast-to-multicast hand-over.

use super::{choose, kernel, now, watchdog, Log, RunOptions, Signals};
use super::{EXPIRY_CHECKS, EXPIRY_PERIOD, STATUS_FILE};
use crate::audit::record::{parse_frame_owned, UNSTAMPED};
use crate::config::SourceKind;
use crate::pipeline::Pipeline;
use crate::procfs::ProcFs;
use crate::rule::file::{self as rules};
use crate::sink::Sink;
use crate::source::connector::{ConnectorReader, ProcEvent};
use crate::source::fanotify::{FanEvent, FanReader};
use crate::source::live::{self, Message, Reader};
use crate::source::netlink::{self, AuditSocket};
use anyhow::{bail, Context, Result};
use kernel::{Gaps, RuleGuard, Wanted};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use watchdog::{Losses, Watchdog};

/// Parses and pushes a batch of frames; malformed ones are counted by the pipeline. Returns
/// whether a CONFIG_CHANGE record was among them (its event may still be incomplete).
pub(super) fn feed<S: crate::rule::new_terms::TermStore>(
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
pub(super) struct LiveSource {
    pub(super) kind: SourceKind,
    /// The reader thread (`None` only while it is being replaced).
    pub(super) reader: Option<Reader>,
    /// Where a reader sends, for a replacement.
    pub(super) tx: crossbeam_channel::Sender<Message>,
    pub(super) version: (u32, u32, u32),
    /// auditd is known to be installed (or to want the unicast place): said once.
    pub(super) auditd_known: bool,
    /// AUDIT_REPLACE requests already acted on.
    pub(super) replace_seen: u64,
    /// Losses counted by readers that were replaced.
    pub(super) carried: Losses,
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
pub(super) struct Worker<'a, S: crate::rule::new_terms::TermStore> {
    pub(super) opts: &'a RunOptions,
    pub(super) pipe: &'a mut Pipeline<S>,
    pub(super) rx: &'a crossbeam_channel::Receiver<Message>,
    pub(super) fan_rx: crossbeam_channel::Receiver<FanEvent>,
    /// Process events (forks, execs, exits) from the proc connector, when it runs.
    pub(super) conn_rx: crossbeam_channel::Receiver<Vec<ProcEvent>>,
    pub(super) conn: Option<&'a ConnectorReader>,
    pub(super) source: LiveSource,
    pub(super) fan: Option<&'a FanReader>,
    pub(super) signals: &'a Signals,
    pub(super) sink: &'a mut dyn Sink,
    pub(super) log: &'a mut dyn Log,
    pub(super) ctl: &'a mut AuditSocket,
    pub(super) procfs: &'a ProcFs,
    /// What the agent changed in the kernel (the watchdog restores it).
    pub(super) guard: &'a mut RuleGuard,
    pub(super) watchdog: Watchdog,
}

impl<S: crate::rule::new_terms::TermStore> Worker<'_, S> {
    /// Runs until the input ends, a stop is requested (SIGTERM/SIGINT) or the source fails;
    /// SIGHUP reloads in between.
    pub(super) fn run(&mut self) -> Result<()> {
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
    pub(super) fn check_coverage(&mut self) {
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
    pub(super) fn write_status(&mut self) -> String {
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
pub(super) fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
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
pub(super) fn describe_events(wanted: Wanted) -> String {
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
pub(super) fn reload<S: crate::rule::new_terms::TermStore>(
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
pub(super) fn status_line<S: crate::rule::new_terms::TermStore>(
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
