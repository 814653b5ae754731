//! The only module that knows every stage. It reads frames from the sources, parses them into
//! records, lets the reassembler group them, builds exec events and documents, asks the rules and
//! the new-terms gate and the rate cap, and hands alerts (and, when an events output wants them,
//! every exec document) to the sinks — counting everything on the way.

use crate::alert::Alert;
use crate::audit::config_change::ConfigChange;
use crate::audit::exec::{self, ExecEvent, ExecLimits};
use crate::audit::link;
use crate::audit::reassemble::{Event, ReassembleConfig, Reassembler};
use crate::audit::record::{parse_frame_owned, AuditTime, Record, UNSTAMPED};
use crate::audit::{fileop, netconn};
use crate::event::{self, ExecView, Host, Known};
use crate::names::Names;
use crate::proc::{Instance, ProcFallback, ProcessInfo, ProcessTable};
use crate::rule::extended::ExtendedDetector;
use crate::rule::file::{EventNeeds, Rule, RuleKind};
use crate::rule::index::RuleSet;
use crate::rule::kql::{Document, EvalOptions};
use crate::rule::new_terms::{NewTermsGate, TermStore, Verdict};
use crate::rule::ratecap::{CapRequest, CapSummary, Decision, RateCap};
use crate::rule::stateful::{self, Finding, Stateful};
use crate::sink::{Sink, SinkError};
use crate::source::fanotify::{FanEvent, Watcher};
use crate::source::file::{self, Format, SourceError};
use crate::stats::Stats;
use std::fmt;
use std::sync::Arc;

/// How many malformed records are described on stderr before only counting.
const MALFORMED_REPORTED: u64 = 10;
/// Most configuration changes kept for the live agent between two of its looks.
const CONFIG_CHANGES_KEPT: usize = 64;

/// A completed event after the stateless build step, ready for [`Detector::on_built`]. Building
/// needs no detector state, so a replay does it outside the detector's borrow, recycling the
/// event's record buffers on the way.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // Most events are execs: a Box would cost each an allocation.
enum Built {
    /// A successful exec.
    Exec(ExecEvent),
    /// Not an exec; the event itself when the extended detector's syscall sensor wants it.
    Other(Option<Event>),
    /// An exec that could not be built: counted as partial.
    Partial,
}

impl Built {
    /// What the argv of an exec is charged against its budget (0 for anything else).
    fn argv_cost(&self) -> usize {
        match self {
            Built::Exec(exec) => exec.argv_cost(),
            Built::Other(_) | Built::Partial => 0,
        }
    }

    /// Builds `ev`: an exec event, or the event kept whole (if `keep_other`) for the link sensor.
    /// The record buffers of an event not kept go to `spare`, if given, for the reader to reuse.
    fn new(
        ev: Event,
        limits: &ExecLimits,
        keep_other: bool,
        spare: Option<&mut Vec<Vec<u8>>>,
    ) -> Built {
        let built = match exec::build(&ev, limits) {
            Ok(Some(exec)) => Built::Exec(exec),
            Ok(None) if keep_other => return Built::Other(Some(ev)),
            Ok(None) => Built::Other(None),
            Err(_) => Built::Partial,
        };
        if let Some(spare) = spare {
            // Only buffers the reader keeps make the trip back (see `FrameReader::recycle`).
            let bodies = ev.records.into_iter().map(|r| r.body);
            spare.extend(bodies.filter(|b| b.capacity() <= file::SPARE_CAPACITY));
        }
        built
    }
}

/// Knobs of the detection stages (not of the sources or sinks).
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Grouping of records into events.
    pub reassemble: ReassembleConfig,
    /// Memory bounds for one exec event's argv.
    pub exec_limits: ExecLimits,
    /// KQL evaluation options (Defend's ignore_above).
    pub eval: EvalOptions,
    /// Turn the new-terms gate off: every query match alerts.
    pub all_matches: bool,
    /// `host.*` of every document.
    pub host: Host,
    /// Most processes the process table remembers.
    pub proc_capacity: usize,
    /// Most bytes the process table may hold (see [`crate::proc::ProcessInfo::cost`]).
    pub proc_budget: usize,
    /// Most new-terms tuples stored per rule (the least recently seen are evicted).
    pub max_terms_per_rule: usize,
}

/// A fatal pipeline failure: the input could not be read or the alerts could not be written.
#[derive(Debug)]
pub enum PipelineError {
    /// An input could not be opened or read.
    Source(SourceError),
    /// A sink failed.
    Sink(SinkError),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Source(e) => e.fmt(f),
            PipelineError::Sink(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PipelineError {}

/// Everything after the reassembler: exec events → documents → rules → gate → sink.
pub struct Detector<S: TermStore> {
    /// The rules that judge one event alone, indexed by what they require.
    rules: RuleSet,
    /// The rules that remember events (sequences, thresholds), with their state.
    stateful: Stateful,
    gate: NewTermsGate<S>,
    procs: ProcessTable,
    /// `opts.host`, shared so an exec's view can borrow it while the detector changes.
    host: Arc<Host>,
    opts: DetectOptions,
    cap: RateCap,
    stats: Stats,
    excluded_pid: Option<u32>,
    extended: Option<ExtendedDetector>,
    /// Audit configuration changes seen since the live agent last took them (`None`: not kept).
    config_changes: Option<Vec<ConfigChange>>,
    /// The events besides execs the rules need: file and network documents are made only then.
    needs: EventNeeds,
    /// Sockets seen made, for the transport of later connections.
    sockets: netconn::Sockets,
    /// The host's user and group names (live only).
    names: Option<Names>,
}

impl<S: TermStore> Detector<S> {
    /// A detector over `rules`, remembering new terms in `store`, asking `fallback` for parents the
    /// input never showed.
    pub fn new(
        rules: Vec<Rule>,
        store: S,
        fallback: Box<dyn ProcFallback + Send>,
        opts: DetectOptions,
    ) -> Self {
        let mut procs = ProcessTable::new(opts.proc_capacity, fallback);
        procs.set_budget(opts.proc_budget);
        let mut stateful = Stateful::new(event::host_object(&opts.host), stateful::DEFAULT_BUDGET);
        let needs = EventNeeds::of(&rules);
        let rules = RuleSet::new(stateful.load(rules));
        let mut gate = NewTermsGate::new(store).with_max_terms_per_rule(opts.max_terms_per_rule);
        gate.set_rules(rules.rules());
        Detector {
            rules,
            stateful,
            gate,
            procs,
            host: Arc::new(opts.host.clone()),
            opts,
            cap: RateCap::default(),
            stats: Stats::default(),
            excluded_pid: None,
            extended: None,
            config_changes: None,
            needs,
            sockets: netconn::Sockets::default(),
            names: None,
        }
    }

    /// Replaces the rate cap (default: each rule's `max_signals` per 5 minutes of audit time).
    pub fn with_rate_cap(mut self, cap: RateCap) -> Self {
        self.cap = cap;
        self
    }

    /// Counters so far, the process table's included.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.table_cut = self.procs.args_cut();
        s.table_evicted = self.procs.evicted();
        s.terms_stored = self.gate.store().len() as u64;
        s.terms_pruned = self.gate.pruned();
        s.terms_evicted = self.gate.evicted();
        s
    }

    /// Audit time has reached `now_ms`: the rate cap's windows that end close (their summaries
    /// join `closed`), and the new-terms history prunes what its windows no longer count.
    fn advance_clocks(&mut self, now_ms: u64, closed: &mut Vec<CapSummary>) {
        self.cap.advance(now_ms, closed);
        if let Err(e) = self.gate.advance(now_ms) {
            self.state_error(&e);
        }
    }

    /// Counts and reports a new-terms state failure (detection goes on).
    fn state_error(&mut self, e: &crate::state::StateError) {
        self.stats.state_errors += 1;
        eprintln!("auditsentry: new-terms state: {e}");
    }

    /// Handles one completed event: exec events are evaluated, everything else only counted.
    pub fn on_event(&mut self, ev: Event, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if let Some(changes) = &mut self.config_changes {
            if changes.len() < CONFIG_CHANGES_KEPT {
                changes.extend(ConfigChange::from_event(&ev));
            }
        }
        let built = Built::new(ev, &self.opts.exec_limits, self.keeps_other(), None);
        self.on_built(&built, sink)
    }

    /// What [`Built::new`] needs to know to build events for this detector outside its borrow:
    /// the exec limits, and whether non-exec events must be kept (the extended detector's
    /// syscall sensor reads them).
    fn build_options(&self) -> (ExecLimits, bool) {
        (self.opts.exec_limits, self.keeps_other())
    }

    /// Whether events that are no exec must reach [`Detector::on_built`]: for the extended
    /// detector's link sensor, or for the file and network rules.
    fn keeps_other(&self) -> bool {
        self.extended.is_some() || self.needs.any()
    }

    /// The events besides execs the loaded rules need (the live daemon audits their syscalls).
    pub fn needs(&self) -> EventNeeds {
        self.needs
    }

    /// Counts `n` completed events that a replay's reader found to be no exec and dropped.
    fn count_others(&mut self, n: u64) {
        self.stats.events_completed += n;
    }

    /// Handles one completed event after its build step ([`Detector::on_event`] = build + this).
    fn on_built(&mut self, built: &Built, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.stats.events_completed += 1;
        let exec = match built {
            Built::Exec(exec) => exec,
            Built::Other(Some(ev)) => return self.on_other_event(ev, sink),
            Built::Other(None) => return Ok(()),
            Built::Partial => {
                self.stats.events_partial += 1;
                return Ok(());
            }
        };
        if self.excluded_pid == Some(exec.task.pid) {
            return Ok(());
        }
        self.stats.events_exec += 1;
        if exec.argv_truncated {
            self.stats.events_truncated += 1;
        }
        // The process facts are copied out of the exec as text, packed into one string.
        let me = event::process_info(exec);
        let time_ms = exec.task.time.as_millis();
        self.procs.note_audit_time(time_ms);
        let parent = self.procs.lookup(exec.task.ppid);
        let instance = self.procs.instance_for_exec(exec.task.pid);
        let known = self.known(exec, instance, parent.as_ref().map(|(_, i)| *i), time_ms);
        let host = Arc::clone(&self.host);
        let view = ExecView {
            ev: exec,
            me: &me,
            parent: parent.as_ref().map(|(p, _)| &**p),
            host: &host,
            known: &known,
        };
        let detected = self.detect(&view, sink);
        self.procs.exec_as(instance, me);
        detected
    }

    /// The [`Known`] of an exec: its instances, and its user's and group's names from its
    /// records, else (live) from the host's user database.
    fn known(
        &mut self,
        exec: &ExecEvent,
        process: Instance,
        parent: Option<Instance>,
        time_ms: u64,
    ) -> Known {
        let mut user_name = exec.task.euid_name.as_deref().map(Arc::from);
        let mut group_name = exec.task.gid_name.as_deref().map(Arc::from);
        if let Some(names) = &mut self.names {
            if user_name.is_none() {
                user_name = exec.task.euid.and_then(|uid| names.user(uid, time_ms));
            }
            if group_name.is_none() {
                group_name = exec.task.gid.and_then(|gid| names.group(gid, time_ms));
            }
        }
        Known {
            process: Some(process),
            parent,
            user_name,
            group_name,
        }
    }

    /// Names users and groups from the host's user database where the records do not (the live
    /// agent); without this, documents carry only the names the records hold (replay).
    pub fn set_names(&mut self, names: Option<Names>) {
        self.names = names;
    }

    /// Runs the rules (and the extended detector) on one exec. The JSON document is built only
    /// for an alert or for an events output.
    fn detect(&mut self, view: &ExecView<'_>, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let time_ms = view.ev.task.time.as_millis();
        let mut closed = Vec::new();
        self.judge(view, &|| view.document(), time_ms, &mut closed, sink)?;
        if let Some(ext_doc) = self
            .extended
            .as_mut()
            .and_then(|e| e.on_exec(view, time_ms))
        {
            self.emit_extended(ext_doc, time_ms, &mut closed, sink)?;
        }
        notify(&closed, sink)
    }

    /// Writes `doc` to an events output that wants every document, and runs the rules (stateless
    /// and stateful) on it; `json` builds the document for an alert. Cap summaries go to `closed`.
    fn judge(
        &mut self,
        doc: &dyn Document,
        json: &dyn Fn() -> serde_json::Value,
        time_ms: u64,
        closed: &mut Vec<CapSummary>,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        if sink.wants_events() {
            sink.emit_event(&json())?;
            self.stats.events_written += 1;
        }
        self.advance_clocks(time_ms, closed);
        // The rules are lent out for the loop so each match can go through `deliver` (&mut self).
        let mut rules = std::mem::take(&mut self.rules);
        let mut delivered = Ok(());
        for rule in rules.candidates(doc) {
            if rule.query.matches_with(doc, &self.opts.eval) {
                delivered = self.deliver(rule, doc, json, time_ms, closed, sink);
                if delivered.is_err() {
                    break;
                }
            }
        }
        self.rules = rules;
        delivered?;
        if !self.stateful.is_empty() {
            let mut found = Vec::new();
            let opts = &self.opts.eval;
            self.stateful.on_event(doc, json, time_ms, opts, &mut found);
            self.deliver_found(found, closed, sink)?;
        }
        Ok(())
    }

    /// A file or network document by `build` from what the table knows of the acting process
    /// `pid` and its parent `ppid`, with both entity ids added.
    fn acting_document(
        &mut self,
        pid: u32,
        ppid: u32,
        build: impl FnOnce(Option<&ProcessInfo>, Option<&ProcessInfo>, &Host) -> serde_json::Value,
    ) -> serde_json::Value {
        let (me, parent) = (self.procs.lookup(pid), self.procs.lookup(ppid));
        let mut doc = build(
            me.as_ref().map(|(i, _)| &**i),
            parent.as_ref().map(|(i, _)| &**i),
            &self.host,
        );
        event::syscall::add_entity_ids(&mut doc, &self.host, me, parent);
        doc
    }

    /// An event that is no exec: the link sensor's, and a file or network event when a rule
    /// needs those.
    fn on_other_event(&mut self, ev: &Event, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if self.extended.is_some() {
            self.on_link_event(ev, sink)?;
        }
        let doc = if self.needs.file {
            fileop::build(ev).map(|f| {
                let doc = self.acting_document(f.task.pid, f.task.ppid, |me, parent, host| {
                    event::syscall::file_document(&f, me, parent, host)
                });
                (f.task.pid, f.task.time, doc)
            })
        } else {
            None
        };
        let doc = match doc {
            Some(d) => Some(d),
            None if self.needs.network => self.sockets.build(ev).map(|n| {
                let doc = self.acting_document(n.task.pid, n.task.ppid, |me, parent, host| {
                    event::syscall::network_document(&n, me, parent, host)
                });
                (n.task.pid, n.task.time, doc)
            }),
            None => None,
        };
        let Some((pid, time, doc)) = doc else {
            return Ok(());
        };
        if self.excluded_pid == Some(pid) {
            return Ok(());
        }
        self.stats.events_syscall += 1;
        let time_ms = time.as_millis();
        let mut closed = Vec::new();
        self.judge(&doc, &|| doc.clone(), time_ms, &mut closed, sink)?;
        notify(&closed, sink)
    }

    /// Audit time has reached `now_ms` without an event (a live source calls it when idle): the
    /// stateful rules' runs and windows that are due close (their alerts go to `sink`), and so do
    /// the rate-cap windows (their summaries too), so nothing waits for the next exec.
    pub fn advance_time(&mut self, now_ms: u64, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let mut closed = Vec::new();
        self.advance_clocks(now_ms, &mut closed);
        let mut found = Vec::new();
        self.stateful.advance(now_ms, &mut found);
        let delivered = self.deliver_found(found, &mut closed, sink);
        let notified = notify(&closed, sink);
        delivered.and(notified)
    }

    /// The end of the input for the stateful rules: their last runs and windows close now.
    pub fn finish_stateful(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let mut closed = Vec::new();
        let mut found = Vec::new();
        self.stateful.finish(&mut found);
        let delivered = self.deliver_found(found, &mut closed, sink);
        let notified = notify(&closed, sink);
        delivered.and(notified)
    }

    /// Delivers what the stateful rules found, in order; stops at the first sink failure.
    fn deliver_found(
        &mut self,
        found: Vec<Finding>,
        closed: &mut Vec<CapSummary>,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        let counts = self.stateful.stats();
        self.stats.sequences_evicted = counts.sequences_evicted;
        self.stats.threshold_dropped = counts.threshold_dropped;
        for f in found {
            let doc = &f.document;
            self.deliver(&f.rule, doc, &|| doc.clone(), f.time_ms, closed, sink)?;
        }
        Ok(())
    }

    /// Closes every rate-cap window (end of run) and sends the summary of each that capped alerts
    /// to `sink` as a notice.
    pub fn close_windows(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        notify(&self.cap.finish(), sink)
    }

    /// Flushes the new-terms state (end of run).
    pub fn finish(&mut self) {
        if let Err(e) = self
            .gate
            .commit()
            .and_then(|()| self.gate.store_mut().flush())
        {
            self.state_error(&e);
        }
    }
}

impl<S: TermStore> Detector<S> {
    /// Turns the path-aware extended detector on (`Some`) or off. Off by default; it adds alerts
    /// under its own rule id and never changes the other rules' verdicts.
    pub fn set_extended(&mut self, extended: Option<ExtendedDetector>) {
        self.extended = extended;
    }

    /// Syscall sensor of the extended detector: a non-exec event that is a successful link call.
    fn on_link_event(&mut self, ev: &Event, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let Some(ext) = &mut self.extended else {
            return Ok(());
        };
        let Ok(Some(made)) = link::build(ev) else {
            return Ok(());
        };
        if self.excluded_pid == Some(made.task.pid) {
            return Ok(());
        }
        let me = self.procs.get(made.task.pid);
        let parent = self.procs.get(made.task.ppid);
        let Some(doc) = ext.on_link(&made, me.as_deref(), parent.as_deref(), &self.host) else {
            return Ok(());
        };
        let time_ms = made.task.time.as_millis();
        let mut closed = Vec::new();
        self.advance_clocks(time_ms, &mut closed);
        self.emit_extended(doc, time_ms, &mut closed, sink)?;
        notify(&closed, sink)
    }

    /// Link watchers of the extended detector: a new symlink in a watched directory. Ignored
    /// when the extended detector is off or the link is the agent's own. A link inotify saw is
    /// attributed to the newest recent exec naming it ([`ExtendedDetector::creator_of`]).
    pub fn on_fanotify(&mut self, ev: &FanEvent, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let Some(ext) = &mut self.extended else {
            return Ok(());
        };
        if self.excluded_pid == Some(ev.pid) {
            return Ok(());
        }
        let mut ev = ev.clone();
        if ev.watcher == Watcher::Inotify && ev.pid == 0 {
            let procs = &mut self.procs;
            if let Some((pid, ppid)) = ext.creator_of(&ev.path, ev.time_ms, |pid| procs.get(pid)) {
                ev.pid = pid;
                ev.ppid = Some(ppid);
            }
        }
        let me = match ev.pid {
            0 => None,
            pid => self.procs.get(pid).or_else(|| ev.me.clone().map(Arc::new)),
        };
        ev.ppid = ev.ppid.or_else(|| ext.parent_of(ev.pid));
        let parent = ev.ppid.and_then(|p| self.procs.get(p));
        let Some(doc) = ext.on_fanotify(&ev, me.as_deref(), parent.as_deref(), &self.host) else {
            return Ok(());
        };
        let mut closed = Vec::new();
        self.advance_clocks(ev.time_ms, &mut closed);
        self.emit_extended(doc, ev.time_ms, &mut closed, sink)?;
        notify(&closed, sink)
    }

    /// An extended-detector document takes the same path as a query match of its rule.
    fn emit_extended(
        &mut self,
        doc: serde_json::Value,
        time_ms: u64,
        closed: &mut Vec<CapSummary>,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        let Some(ext) = self.extended.take() else {
            return Ok(());
        };
        let delivered = self.deliver(ext.rule(), &doc, &|| doc.clone(), time_ms, closed, sink);
        self.extended = Some(ext);
        delivered
    }

    /// The path every query match takes: new-terms gate, then the rate cap (after the gate, as
    /// Kibana), then the sink, then the gate's commit — which a capped alert skips: its tuple is
    /// not recorded as seen (unlike Kibana), so it cannot be hidden by flooding the cap.
    /// `doc` answers the gate's field lookups; `json` builds the alert's document if one leaves.
    fn deliver(
        &mut self,
        rule: &Rule,
        doc: &dyn Document,
        json: &dyn Fn() -> serde_json::Value,
        time_ms: u64,
        closed: &mut Vec<CapSummary>,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        self.stats.rules_matched += 1;
        let gated = !self.opts.all_matches && matches!(rule.kind, RuleKind::NewTerms { .. });
        let terms = if !gated {
            Vec::new()
        } else {
            match self.gate.check(rule, doc, time_ms) {
                Ok(Verdict::New(tuple)) => tuple,
                Ok(Verdict::Seen) => {
                    self.stats.terms_seen += 1;
                    return Ok(());
                }
                Ok(Verdict::MissingField(_)) => {
                    self.stats.terms_missing += 1;
                    return Ok(());
                }
                Err(e) => {
                    // Better a possible repeat than a miss: the alert still leaves.
                    self.state_error(&e);
                    Vec::new()
                }
            }
        };
        let decision = self.cap.check(
            &CapRequest {
                rule_id: &rule.id,
                rule_name: &rule.name,
                rule_max: rule.max_signals,
                terms: &terms,
            },
            time_ms,
            closed,
        );
        match decision {
            Decision::Pass => {
                // The alert leaves (flushed) before its tuple is recorded as seen: a crash in
                // between repeats the alert after restart instead of losing it. An alert that
                // could not leave does not record its tuple either.
                let sent = sink.emit(&Alert::new(rule, json(), terms));
                let sent = sent.and_then(|()| if gated { sink.flush() } else { Ok(()) });
                if let Err(e) = sent {
                    self.gate.discard();
                    return Err(e);
                }
                self.stats.alerts_emitted += 1;
                if let Err(e) = self.gate.commit() {
                    self.state_error(&e);
                }
            }
            Decision::Capped => {
                // Unlike Kibana, a capped tuple is not recorded as seen: a flood of throwaway
                // tuples must not make a later one silent for good. It alerts when it recurs
                // after the window (the cap summary names it meanwhile).
                self.gate.discard();
                self.stats.alerts_capped += 1;
            }
        }
        Ok(())
    }

    /// Ignores exec events of `pid` (the agent's own pid in live mode: it must never report itself).
    pub fn exclude_pid(&mut self, pid: u32) {
        self.excluded_pid = Some(pid);
    }

    /// Replaces the rules (SIGHUP reload); new-terms history is kept, keyed by rule id, and so is
    /// the state of every sequence and threshold rule that did not change.
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        self.needs = EventNeeds::of(&rules);
        self.rules = RuleSet::new(self.stateful.load(rules));
        self.gate.set_rules(self.rules.rules());
    }

    /// Keeps the audit configuration changes (CONFIG_CHANGE events) that pass, for
    /// [`Detector::take_config_changes`] (the live agent's coverage watchdog).
    pub fn watch_config_changes(&mut self) {
        self.config_changes.get_or_insert_with(Vec::new);
    }

    /// The configuration changes seen since the last call (at most 64 between two calls).
    pub fn take_config_changes(&mut self) -> Vec<ConfigChange> {
        self.config_changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The process table, for the live daemon's seeding and expiry.
    pub fn processes_mut(&mut self) -> &mut ProcessTable {
        &mut self.procs
    }
}

/// Sends each summary as one notice; tries all and returns the first failure.
fn notify(closed: &[CapSummary], sink: &mut dyn Sink) -> Result<(), SinkError> {
    let mut first = None;
    for summary in closed {
        if let Err(e) = sink.notice(&summary.to_string()) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Adds one to the malformed count, describing the first [`MALFORMED_REPORTED`] on stderr.
fn count_malformed(count: &mut u64, what: &dyn fmt::Display) {
    *count += 1;
    if *count <= MALFORMED_REPORTED {
        eprintln!("auditsentry: skipped malformed record: {what}");
    } else if *count == MALFORMED_REPORTED + 1 {
        eprintln!("auditsentry: more malformed records; only counting from now on");
    }
}

/// Frames → records → reassembler → detector, for any source of frames.
pub struct Pipeline<S: TermStore> {
    reassembler: Reassembler,
    detector: Detector<S>,
    malformed: u64,
    unstamped: u64,
    parsed: u64,
}

impl<S: TermStore> Pipeline<S> {
    /// A pipeline ending in `detector`.
    pub fn new(detector: Detector<S>) -> Self {
        let reassembler = Reassembler::new(detector.opts.reassemble.clone());
        Pipeline {
            reassembler,
            detector,
            malformed: 0,
            unstamped: 0,
            parsed: 0,
        }
    }

    /// Feeds one parsed record.
    pub fn push(&mut self, rec: Record, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.parsed += 1;
        self.reassemble(sink, |r, emit| r.push(rec, emit))
    }

    /// Runs one reassembler step, handing each event it completes to the detector. After a sink
    /// failure the remaining events of the step are dropped; the first failure is returned.
    fn reassemble(
        &mut self,
        sink: &mut dyn Sink,
        step: impl FnOnce(&mut Reassembler, &mut dyn FnMut(Event)),
    ) -> Result<(), SinkError> {
        let Pipeline {
            reassembler,
            detector,
            ..
        } = self;
        let mut failed = None;
        step(reassembler, &mut |ev: Event| {
            if failed.is_none() {
                failed = detector.on_event(ev, sink).err();
            }
        });
        failed.map_or(Ok(()), Err)
    }

    /// Counts a frame that was not a record, describing the first few on stderr.
    pub fn malformed(&mut self, what: &dyn fmt::Display) {
        count_malformed(&mut self.malformed, what);
    }

    /// Completes every event still in flight, flushes state and sink, and returns the counters.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Result<Stats, SinkError> {
        let flushed = self.reassemble(sink, |r, emit| r.flush(emit));
        let found = self.detector.finish_stateful(sink);
        self.detector.finish();
        let closed = self.detector.close_windows(sink);
        sink.flush()?;
        closed?;
        flushed?;
        found?;
        Ok(self.stats())
    }

    /// Counters so far, the reassembler's included.
    pub fn stats(&self) -> Stats {
        let mut s = self.detector.stats();
        let r = self.reassembler.stats();
        s.records_parsed = self.parsed;
        s.records_malformed = self.malformed;
        s.records_unstamped = self.unstamped;
        s.events_evicted = r.events_evicted;
        s.records_late = r.records_late;
        s.records_duplicate = r.records_duplicate;
        s.serials_lost = r.serial_gaps;
        s
    }
}

impl<S: TermStore> Pipeline<S> {
    /// Live sources: audit time has reached `now` even if no record says so, so events without EOE
    /// that are past the reassembly timeout complete now.
    pub fn advance_clock(&mut self, now: AuditTime, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.reassemble(sink, |r, emit| r.advance_clock(now, emit))
    }

    /// The detector, for the live daemon's process-table upkeep.
    pub fn detector_mut(&mut self) -> &mut Detector<S> {
        &mut self.detector
    }

    /// Events currently waiting in the reassembler.
    pub fn in_flight(&self) -> usize {
        self.reassembler.stats().in_flight
    }
}

/// Replays audit files (or `-` for stdin) in order through `pipeline` into `sink`.
///
/// Malformed records are counted and skipped. An input that cannot be opened or read ends the run
/// with an error naming it — after everything already read has been evaluated and flushed.
///
/// When every input is a regular file the work runs in two stages, each on its own thread — read,
/// parse and reassemble; build and detect — so a replay keeps both cores of a small machine busy
/// (three stages on two cores waited on each other more than they worked in parallel). Batches
/// between them are bounded in count, and the bytes in flight by a budget, so memory stays
/// bounded however long the lines; record buffers flow back to the reader, which copies new lines
/// into them. Order, counters and error messages are those of a single-threaded run. Stdin and
/// pipes are read on this thread, record by record: a batch would hold back the alerts of a
/// stream that pauses.
pub fn replay<S: TermStore>(
    inputs: &[String],
    format: Format,
    pipeline: &mut Pipeline<S>,
    sink: &mut dyn Sink,
) -> Result<Stats, PipelineError> {
    let all_files = inputs
        .iter()
        .all(|i| i != "-" && std::fs::metadata(i).is_ok_and(|m| m.is_file()));
    let ended = match all_files {
        true => replay_staged(inputs, format, pipeline, sink),
        false => None,
    };
    let (fatal, failed) = ended.unwrap_or_else(|| {
        let (mut fatal, mut failed) = (None, None);
        read_inputs(inputs, format, 1, None, &mut |batch| {
            match take_batch(batch, pipeline, sink) {
                Ok(None) => return true,
                Ok(Some(e)) => fatal = Some(e),
                Err(e) => failed = Some(e),
            }
            false
        });
        (fatal, failed)
    });
    if let Some(e) = failed {
        return Err(PipelineError::Sink(e));
    }
    let stats = pipeline.finish(sink).map_err(PipelineError::Sink)?;
    match fatal {
        Some(e) => Err(PipelineError::Source(e)),
        None => Ok(stats),
    }
}

/// How a replay's input ended early: a read failure, or a sink failure.
type Ended = (Option<SourceError>, Option<SinkError>);

/// The two-stage replay; `None` (nothing read) when its thread cannot be started.
fn replay_staged<S: TermStore>(
    inputs: &[String],
    format: Format,
    pipeline: &mut Pipeline<S>,
    sink: &mut dyn Sink,
) -> Option<Ended> {
    let (limits, keep_other) = pipeline.detector.build_options();
    let Pipeline {
        reassembler,
        detector,
        malformed,
        unstamped,
        parsed,
    } = pipeline;
    let intake = Intake {
        reassembler,
        parsed,
        unstamped,
        malformed,
    };
    std::thread::scope(|scope| {
        let (ev_tx, ev_rx) = crossbeam_channel::bounded::<Gathered>(BATCHES_IN_FLIGHT);
        // Record buffers flow back to the reader, which copies new lines into them.
        let (spare_tx, spare_rx) = crossbeam_channel::bounded(RETURNS_IN_FLIGHT);
        // The byte budget between the stages: a batch takes one token per BATCH_BYTES it holds
        // (all of them at most) and the detecting stage gives them back when it is done with it.
        let (token_tx, token_rx) = crossbeam_channel::bounded::<()>(TOKENS);
        for _ in 0..TOKENS {
            token_tx.try_send(()).ok()?;
        }
        std::thread::Builder::new()
            .name("replay-read".into())
            .spawn_scoped(scope, move || {
                let out = Gather {
                    events: &ev_tx,
                    tokens: &token_rx,
                };
                read_and_reassemble(inputs, format, intake, keep_other, &spare_rx, &out);
            })
            .ok()?;
        let (mut fatal, mut failed) = (None, None);
        let mut spare = Vec::with_capacity(2 * BATCH_RECORDS);
        let mut built = Vec::with_capacity(BATCH_RECORDS);
        'batches: for (batch, others, tokens, read_error) in ev_rx {
            detector.count_others(others);
            // Build the batch, then detect on it: each loop stays in its own code. Built
            // arguments can be far larger than their records (empty or skipped arguments), so
            // the batch is built in parts of at most BUILT_ARGV_BYTES of argv (or one event).
            let mut events = batch.into_iter().peekable();
            while events.peek().is_some() {
                built.clear();
                let mut argv_bytes = 0;
                while argv_bytes < BUILT_ARGV_BYTES {
                    let Some(ev) = events.next() else { break };
                    let one = Built::new(ev, &limits, keep_other, Some(&mut spare));
                    argv_bytes += one.argv_cost();
                    built.push(one);
                }
                for one in &built {
                    if let Err(e) = detector.on_built(one, sink) {
                        failed = Some(e);
                        break 'batches;
                    }
                }
            }
            built.clear();
            for _ in 0..tokens {
                let _ = token_tx.try_send(());
            }
            if spare.len() >= BATCH_RECORDS {
                // The reader may be full of spares already: then these are just freed.
                let fresh = Vec::with_capacity(2 * BATCH_RECORDS);
                let _ = spare_tx.try_send(std::mem::replace(&mut spare, fresh));
            }
            if read_error.is_some() {
                fatal = read_error;
                break;
            }
        }
        Some((fatal, failed))
    })
}

/// Most records in one batch of the reader, and most events in one batch to the detecting stage.
const BATCH_RECORDS: usize = 512;
/// Most argv bytes (charged as [`exec::arg_cost`]) the detecting stage builds before it detects
/// on them: one part of a batch, or one event alone if it is larger.
const BUILT_ARGV_BYTES: usize = 4 << 20;
/// Bytes of record bodies one token of the budget between the stages stands for.
const BATCH_BYTES: usize = 1 << 18;
/// Tokens of the budget: what a flood of megabyte arguments can hold between the stages (4 MiB,
/// or one event alone if it is larger).
const TOKENS: usize = 16;
/// Batches the reading stage may be ahead of the detecting one by.
const BATCHES_IN_FLIGHT: usize = 16;
/// Lists of spare record buffers on their way back to the reader, at most.
const RETURNS_IN_FLIGHT: usize = 4;

/// The front of a pipeline, lent to the reading stage of a replay.
struct Intake<'a> {
    reassembler: &'a mut Reassembler,
    parsed: &'a mut u64,
    unstamped: &'a mut u64,
    malformed: &'a mut u64,
}

/// What the reading stage hands to the detecting one: completed events, how many it dropped as no
/// exec since the last batch, the budget tokens they took, then, if the input could not be read,
/// why (the replay ends after what came before).
type Gathered = (Vec<Event>, u64, usize, Option<SourceError>);

/// Where the reading stage sends completed events, and the budget tokens it takes first.
struct Gather<'a> {
    events: &'a crossbeam_channel::Sender<Gathered>,
    tokens: &'a crossbeam_channel::Receiver<()>,
}

impl Gather<'_> {
    /// Sends `batch` (of `bytes` bytes) once the budget has room; false when the detecting stage
    /// is gone.
    fn send(
        &self,
        batch: Vec<Event>,
        others: u64,
        bytes: usize,
        read_error: Option<SourceError>,
    ) -> bool {
        let tokens = bytes.div_ceil(BATCH_BYTES).clamp(1, TOKENS);
        for _ in 0..tokens {
            if self.tokens.recv().is_err() {
                return false;
            }
        }
        let gathered = (batch, others, tokens, read_error);
        self.events.send(gathered).is_ok()
    }
}

/// The reading stage: frames → records → reassembler → completed events, in batches bounded in
/// count and bytes. Spare record buffers come back on `spare`.
fn read_and_reassemble(
    inputs: &[String],
    format: Format,
    intake: Intake<'_>,
    keep_other: bool,
    spare: &crossbeam_channel::Receiver<Vec<Vec<u8>>>,
    out: &Gather<'_>,
) {
    let mut stage = Gathering {
        intake,
        keep_other,
        out,
        batch: Vec::with_capacity(BATCH_RECORDS),
        bytes: 0,
        others: 0,
        open: true,
    };
    read_inputs(inputs, format, BATCH_RECORDS, Some(spare), &mut |batch| {
        stage.take(batch)
    });
    stage.finish();
}

/// The state of the reading stage between two record batches.
struct Gathering<'a, 'o> {
    intake: Intake<'a>,
    keep_other: bool,
    out: &'o Gather<'o>,
    /// Completed events not sent yet, and their bytes.
    batch: Vec<Event>,
    bytes: usize,
    /// Events dropped as no exec since the last batch went.
    others: u64,
    /// False once the input failed or the detecting stage is gone.
    open: bool,
}

impl Gathering<'_, '_> {
    /// Reassembles one batch of parsed records (emptying it); false when reading must stop.
    fn take(&mut self, parsed: &mut Vec<Parsed>) -> bool {
        for item in parsed.drain(..) {
            match item {
                Parsed::Record(rec) => {
                    *self.intake.parsed += 1;
                    let (batch, bytes, others) =
                        (&mut self.batch, &mut self.bytes, &mut self.others);
                    let keep_other = self.keep_other;
                    self.intake.reassembler.push(rec, &mut |ev| {
                        // Half of a busy host's events are certainly no exec: counted and
                        // dropped here, unless the link sensor reads them.
                        if !keep_other && exec::is_other(&ev) {
                            *others += 1;
                            return;
                        }
                        *bytes += ev.records.iter().map(|r| 64 + r.body.len()).sum::<usize>();
                        batch.push(ev);
                    });
                }
                Parsed::Unstamped => *self.intake.unstamped += 1,
                Parsed::Malformed(what) => count_malformed(self.intake.malformed, &what),
                Parsed::Fatal(e) => {
                    self.send(Some(e));
                    self.open = false;
                    return false;
                }
            }
            if (self.batch.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES) && !self.send(None)
            {
                self.open = false;
                return false;
            }
        }
        true
    }

    /// Sends what is gathered (and `read_error`); false when the detecting stage is gone.
    fn send(&mut self, read_error: Option<SourceError>) -> bool {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_RECORDS));
        let (others, bytes) = (
            std::mem::take(&mut self.others),
            std::mem::take(&mut self.bytes),
        );
        self.out.send(batch, others, bytes, read_error)
    }

    /// Sends the rest at the end of the input.
    fn finish(mut self) {
        if self.open && (!self.batch.is_empty() || self.others > 0) {
            self.send(None);
        }
    }
}

/// One frame of a replayed input, parsed.
enum Parsed {
    Record(Record),
    /// A `msg=?` record: counted apart from malformed ones.
    Unstamped,
    /// Not a record, described for the operator.
    Malformed(String),
    /// The input could not be read: the replay ends after what was read.
    Fatal(SourceError),
}

/// Reads and parses `inputs` in order, handing batches of up to `per_batch` records to `deliver`,
/// which empties each (the batch is reused), until it returns false or a read fails. Line buffers
/// coming back on `spare` are reused.
fn read_inputs(
    inputs: &[String],
    format: Format,
    per_batch: usize,
    spare: Option<&crossbeam_channel::Receiver<Vec<Vec<u8>>>>,
    deliver: &mut dyn FnMut(&mut Vec<Parsed>) -> bool,
) {
    let mut batch = Vec::with_capacity(per_batch);
    let mut bytes = 0;
    let mut push = |item: Parsed, size: usize, batch: &mut Vec<Parsed>| {
        batch.push(item);
        bytes += size;
        if batch.len() >= per_batch || bytes >= BATCH_BYTES {
            bytes = 0;
            let more = deliver(batch);
            batch.clear();
            return more;
        }
        true
    };
    for input in inputs {
        let mut reader = match file::open(input, format) {
            Ok(r) => r,
            Err(e) => {
                batch.push(Parsed::Fatal(e));
                break;
            }
        };
        let mut n = 0;
        while let Some(item) = reader.next() {
            n += 1;
            if n % 256 == 0 {
                while let Some(buffers) = spare.and_then(|r| r.try_recv().ok()) {
                    reader.recycle(buffers);
                }
            }
            let parsed = match item {
                Ok(frame) => match parse_frame_owned(frame) {
                    Ok(rec) => {
                        let size = rec.body.len();
                        if !push(Parsed::Record(rec), size, &mut batch) {
                            return;
                        }
                        continue;
                    }
                    Err(e) if e.reason == UNSTAMPED => Parsed::Unstamped,
                    Err(e) => Parsed::Malformed(format!("{input}: record {n}: {e}")),
                },
                Err(e @ SourceError::Io { .. }) => {
                    batch.push(Parsed::Fatal(e));
                    deliver(&mut batch);
                    return;
                }
                Err(e) => Parsed::Malformed(e.to_string()),
            };
            if !push(parsed, 0, &mut batch) {
                return;
            }
        }
    }
    if !batch.is_empty() {
        deliver(&mut batch);
    }
}

/// Feeds one batch to the pipeline (emptying it); `Some` when the batch ends in a read failure.
fn take_batch<S: TermStore>(
    batch: &mut Vec<Parsed>,
    pipeline: &mut Pipeline<S>,
    sink: &mut dyn Sink,
) -> Result<Option<SourceError>, SinkError> {
    for item in batch.drain(..) {
        match item {
            Parsed::Record(rec) => pipeline.push(rec, sink)?,
            Parsed::Unstamped => pipeline.unstamped += 1,
            Parsed::Malformed(what) => pipeline.malformed(&what),
            Parsed::Fatal(e) => return Ok(Some(e)),
        }
    }
    Ok(None)
}
