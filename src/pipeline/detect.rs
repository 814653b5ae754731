//! The per-event detector: an event from the reassembler becomes an exec event and its document,
//! which the rules, the new-terms gate and the rate cap judge; link and watcher events feed the
//! extended detector. Alerts go to the sink.

use crate::alert::Alert;
use crate::audit::config_change::ConfigChange;
use crate::audit::exec::{self, ExecEvent, ExecLimits};
use crate::audit::link;
use crate::audit::reassemble::{Event, ReassembleConfig};
use crate::audit::task::Task;
use crate::audit::{fileop, netconn};
use crate::event::syscall::{Acting, FileView, NetView};
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
use crate::source::file::{self};
use crate::stats::Stats;
use std::sync::Arc;

/// A process table entry and the instance it stands for.
type Entry = Option<(Arc<ProcessInfo>, Instance)>;

/// The [`Acting`] of `task` from its table entries.
fn acting<'a>(task: &'a Task, me: &'a Entry, parent: &'a Entry, host: &'a Host) -> Acting<'a> {
    let entry = |e: &'a Entry| e.as_ref().map(|(p, i)| (&**p, *i));
    Acting {
        task,
        me: entry(me),
        parent: entry(parent),
        host,
    }
}

/// Most configuration changes kept for the live agent between two of its looks.
const CONFIG_CHANGES_KEPT: usize = 64;

/// A completed event after the stateless build step, ready for [`Detector::on_built`]. Building
/// needs no detector state, so a replay does it outside the detector's borrow, recycling the
/// event's record buffers on the way.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // Most events are execs: a Box would cost each an allocation.
pub(super) enum Built {
    /// A successful exec.
    Exec(ExecEvent),
    /// Not an exec; the event itself when the extended detector's syscall sensor wants it.
    Other(Option<Event>),
    /// An exec that could not be built: counted as partial.
    Partial,
}

impl Built {
    /// What the argv of an exec is charged against its budget (0 for anything else).
    pub(super) fn argv_cost(&self) -> usize {
        match self {
            Built::Exec(exec) => exec.argv_cost(),
            Built::Other(_) | Built::Partial => 0,
        }
    }

    /// Builds `ev`: an exec event, or the event kept whole (if `keep_other`) for the link sensor.
    /// The record buffers of an event not kept go to `spare`, if given, for the reader to reuse.
    pub(super) fn new(
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
    pub(super) opts: DetectOptions,
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
    pub(super) fn build_options(&self) -> (ExecLimits, bool) {
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
    pub(super) fn count_others(&mut self, n: u64) {
        self.stats.events_completed += n;
    }

    /// Handles one completed event after its build step ([`Detector::on_event`] = build + this).
    pub(super) fn on_built(&mut self, built: &Built, sink: &mut dyn Sink) -> Result<(), SinkError> {
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
        let view = ExecView::new(exec, &me, parent.as_ref().map(|(p, _)| &**p), &host, &known);
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

    /// An event that is no exec: the link sensor's, and a file or network event when a rule
    /// needs those. The rules see it through a view; its JSON document is built for an alert or
    /// an events output.
    fn on_other_event(&mut self, ev: &Event, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if self.extended.is_some() {
            self.on_link_event(ev, sink)?;
        }
        if self.needs.file {
            if let Some(f) = fileop::build(ev) {
                let (me, parent, host) = self.acting_entries(&f.task);
                let acting = acting(&f.task, &me, &parent, &host);
                let view = FileView { ev: &f, acting };
                return self.judge_acting(&f.task, &view, &|| view.document(), sink);
            }
        }
        if self.needs.network {
            if let Some(n) = self.sockets.build(ev) {
                let (me, parent, host) = self.acting_entries(&n.task);
                let acting = acting(&n.task, &me, &parent, &host);
                let view = NetView { ev: &n, acting };
                return self.judge_acting(&n.task, &view, &|| view.document(), sink);
            }
        }
        Ok(())
    }

    /// What the process table knows of the process that made `task`'s call and of its parent,
    /// and the host, for an [`Acting`].
    fn acting_entries(&mut self, task: &Task) -> (Entry, Entry, Arc<Host>) {
        let me = self.procs.lookup(task.pid);
        let parent = self.procs.lookup(task.ppid);
        (me, parent, Arc::clone(&self.host))
    }

    /// Runs the rules on a file or network event `doc` made by `task` (`json` builds its
    /// document), unless it is the agent's own.
    fn judge_acting(
        &mut self,
        task: &Task,
        doc: &dyn Document,
        json: &dyn Fn() -> serde_json::Value,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        if self.excluded_pid == Some(task.pid) {
            return Ok(());
        }
        self.stats.events_syscall += 1;
        let mut closed = Vec::new();
        self.judge(doc, json, task.time.as_millis(), &mut closed, sink)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::reassemble::Reassembler;
    use crate::audit::record::parse_frame_owned;
    use crate::proc::NoFallback;
    use crate::rule::extended;
    use crate::rule::file::builtin;
    use crate::rule::new_terms::MemStore;
    use crate::source::Frame;
    use serde_json::Value;

    /// A sink that keeps what it is given.
    #[derive(Default)]
    struct Kept {
        alerts: Vec<Alert>,
        notices: Vec<String>,
    }

    impl Sink for Kept {
        fn emit(&mut self, alert: &Alert) -> Result<(), SinkError> {
            self.alerts.push(alert.clone());
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
        fn notice(&mut self, line: &str) -> Result<(), SinkError> {
            self.notices.push(line.to_string());
            Ok(())
        }
    }

    fn options(all_matches: bool) -> DetectOptions {
        DetectOptions {
            reassemble: ReassembleConfig::default(),
            exec_limits: ExecLimits::default(),
            eval: EvalOptions::default(),
            all_matches,
            host: Host {
                id: "h1".to_string(),
                name: "host1".to_string(),
            },
            proc_capacity: 1024,
            proc_budget: 1 << 20,
            max_terms_per_rule: 1024,
        }
    }

    /// The seed rule's detector, replaying nothing but what the test gives it.
    fn seed_detector(all_matches: bool) -> Detector<MemStore> {
        Detector::new(
            vec![builtin()],
            MemStore::new(),
            Box::new(NoFallback),
            options(all_matches),
        )
    }

    fn hex(text: &str) -> String {
        text.bytes().map(|b| format!("{b:02X}")).collect()
    }

    /// The audit lines of one successful execve by `pid` (child of `ppid`) of `exe` with `argv`,
    /// as auditd writes them.
    fn exec_lines(
        serial: u32,
        sec: u64,
        (pid, ppid): (u32, u32),
        exe: &str,
        argv: &[&str],
    ) -> String {
        let stamp = format!("msg=audit({sec}.000:{serial}):");
        let comm = event::basename(exe);
        let args: String = argv
            .iter()
            .enumerate()
            .map(|(i, a)| format!(" a{i}=\"{a}\""))
            .collect();
        format!(
            "type=SYSCALL {stamp} arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 \
             items=1 ppid={ppid} pid={pid} auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 \
             fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm=\"{comm}\" \
             exe=\"{exe}\" key=\"exec\"\n\
             type=EXECVE {stamp} argc={}{args}\n\
             type=CWD {stamp} cwd=\"/home/u\"\n\
             type=PATH {stamp} item=0 name=\"{exe}\" inode=1 dev=fe:00 mode=0100755 ouid=0 \
             ogid=0 rdev=00:00 nametype=NORMAL\n\
             type=PROCTITLE {stamp} proctitle={}\n\
             type=EOE {stamp}\n",
            argv.len(),
            hex(&argv.join("\0")),
        )
    }

    /// The audit lines of a successful symlinkat(TARGET, AT_FDCWD, LINK) by `pid`.
    fn symlink_lines(
        serial: u32,
        sec: u64,
        (pid, ppid): (u32, u32),
        target: &str,
        link: &str,
    ) -> String {
        let stamp = format!("msg=audit({sec}.000:{serial}):");
        format!(
            "type=SYSCALL {stamp} arch=c000003e syscall=266 success=yes exit=0 a0=1 \
             a1=ffffff9c a2=2 a3=3 items=3 ppid={ppid} pid={pid} auid=1000 uid=1000 gid=1000 \
             euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 \
             comm=\"ln\" exe=\"/usr/bin/ln\" key=\"links\"\n\
             type=CWD {stamp} cwd=\"/home/u\"\n\
             type=PATH {stamp} item=0 name=\"/tmp/\" inode=2 dev=fe:00 mode=041777 ouid=0 \
             ogid=0 rdev=00:00 nametype=PARENT\n\
             type=PATH {stamp} item=1 name=\"{target}\" nametype=UNKNOWN\n\
             type=PATH {stamp} item=2 name=\"{link}\" inode=3 dev=fe:00 mode=0120777 \
             ouid=1000 ogid=1000 rdev=00:00 nametype=CREATE\n\
             type=EOE {stamp}\n",
        )
    }

    /// Parses `log`, groups its records into events and hands each to `detector`.
    fn feed<S: TermStore>(detector: &mut Detector<S>, log: &str, sink: &mut Kept) {
        let mut reassembler = Reassembler::new(detector.opts.reassemble.clone());
        let mut events = Vec::new();
        for line in log.lines() {
            let rec = parse_frame_owned(Frame::Text(line.as_bytes().to_vec()))
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            reassembler.push(rec, &mut |ev| events.push(ev));
        }
        reassembler.flush(&mut |ev| events.push(ev));
        for ev in events {
            detector.on_event(ev, sink).unwrap();
        }
    }

    /// A shell (pid 100) under init, then `ln -s /usr/bin/id /tmp/x` by its child `pid`.
    fn shell_then_ln(serial: u32, pid: u32, link: &str) -> String {
        exec_lines(serial, 1_700_000_000, (100, 1), "/usr/bin/bash", &["bash"])
            + &exec_lines(
                serial + 1,
                1_700_000_001,
                (pid, 100),
                "/usr/bin/ln",
                &["ln", "-s", "/usr/bin/id", link],
            )
    }

    fn rule_ids(alerts: &[Alert]) -> Vec<&str> {
        alerts.iter().map(|a| a.rule_id.as_str()).collect()
    }

    #[test]
    fn an_ln_into_tmp_alerts_once_per_new_parent_with_the_exec_document() {
        let mut det = seed_detector(false);
        let mut sink = Kept::default();
        feed(&mut det, &shell_then_ln(10, 200, "/tmp/x"), &mut sink);
        assert_eq!(rule_ids(&sink.alerts), [builtin().id.as_str()]);
        let doc: &Value = &sink.alerts[0].document;
        assert_eq!(doc["process"]["pid"], 200);
        assert_eq!(doc["process"]["name"], "ln");
        assert_eq!(doc["process"]["parent"]["executable"], "/usr/bin/bash");
        assert_eq!(doc["process"]["parent"]["name"], "bash");
        assert_eq!(doc["host"]["id"], "h1");
        assert_eq!(
            sink.alerts[0].new_terms,
            ["h1".to_string(), "bash".to_string()]
        );
        // The same host and parent name again: not a new term, no second alert.
        feed(&mut det, &shell_then_ln(20, 201, "/tmp/y"), &mut sink);
        assert_eq!(sink.alerts.len(), 1);
        let stats = det.stats();
        assert_eq!(stats.events_exec, 4);
        assert_eq!(stats.rules_matched, 2);
        assert_eq!(stats.alerts_emitted, 1);
    }

    #[test]
    fn all_matches_turns_the_new_terms_gate_off() {
        let mut det = seed_detector(true);
        let mut sink = Kept::default();
        feed(&mut det, &shell_then_ln(10, 200, "/tmp/x"), &mut sink);
        feed(&mut det, &shell_then_ln(20, 201, "/tmp/y"), &mut sink);
        assert_eq!(sink.alerts.len(), 2);
    }

    #[test]
    fn benign_execs_and_an_unknown_parent_do_not_alert() {
        let mut det = seed_detector(true);
        let mut sink = Kept::default();
        let ls = exec_lines(1, 1_700_000_000, (300, 1), "/usr/bin/ls", &["ls", "/tmp"]);
        let ln_opt = exec_lines(
            2,
            1_700_000_000,
            (301, 1),
            "/usr/bin/ln",
            &["ln", "-s", "/usr/bin/id", "/opt/x"],
        );
        // The parent (pid 999) never exec'd in the input: process.parent.executable is unknown,
        // which the seed's `process.parent.executable:*` requires.
        let orphan = exec_lines(
            3,
            1_700_000_000,
            (302, 999),
            "/usr/bin/ln",
            &["ln", "-s", "/usr/bin/id", "/tmp/x"],
        );
        feed(&mut det, &(ls + &ln_opt + &orphan), &mut sink);
        assert!(sink.alerts.is_empty(), "{:?}", rule_ids(&sink.alerts));
        assert_eq!(det.stats().events_exec, 3);
    }

    #[test]
    fn the_agents_own_pid_is_not_judged() {
        let mut det = seed_detector(true);
        det.exclude_pid(200);
        let mut sink = Kept::default();
        feed(&mut det, &shell_then_ln(10, 200, "/tmp/x"), &mut sink);
        assert!(sink.alerts.is_empty());
    }

    #[test]
    fn an_exec_without_its_argv_is_partial() {
        let mut det = seed_detector(true);
        let mut sink = Kept::default();
        let lines: String = exec_lines(5, 1_700_000_000, (400, 1), "/usr/bin/ln", &["ln"])
            .lines()
            .filter(|l| !l.starts_with("type=EXECVE"))
            .map(|l| format!("{l}\n"))
            .collect();
        feed(&mut det, &lines, &mut sink);
        let stats = det.stats();
        assert_eq!((stats.events_exec, stats.events_partial), (0, 1));
    }

    #[test]
    fn the_extended_detector_alerts_once_for_an_exec_and_its_symlink_call() {
        let mut det = seed_detector(true);
        det.set_extended(Some(extended::ExtendedDetector::new().unwrap()));
        let mut sink = Kept::default();
        // `cd /tmp; ln -s /usr/bin/id x`: the seed's text match misses the relative name, the
        // path-aware rule resolves it; the symlinkat call of the same link does not alert again.
        let log = exec_lines(1, 1_700_000_000, (100, 1), "/usr/bin/bash", &["bash"])
            + &exec_lines(
                2,
                1_700_000_001,
                (200, 100),
                "/usr/bin/ln",
                &["ln", "-s", "/usr/bin/id", "../../tmp/x"],
            )
            + &symlink_lines(3, 1_700_000_001, (200, 100), "/usr/bin/id", "../../tmp/x");
        feed(&mut det, &log, &mut sink);
        assert_eq!(rule_ids(&sink.alerts), [extended::RULE_ID]);
        let doc = &sink.alerts[0].document;
        assert_eq!(doc["auditsentry"]["sensor"], "exec");
        assert_eq!(doc["auditsentry"]["link"]["path"], "/tmp/x");
        // A symlink call alone (no exec of ln seen) is the syscall sensor's.
        let call = symlink_lines(4, 1_700_000_100, (201, 100), "/usr/bin/id", "/tmp/z");
        feed(&mut det, &call, &mut sink);
        assert_eq!(sink.alerts.len(), 2);
        assert_eq!(sink.alerts[1].document["auditsentry"]["sensor"], "syscall");
    }
}
