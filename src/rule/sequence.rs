//! EQL sequences on a stream of events, with Elasticsearch's semantics: one state machine per
//! join key, whose states are the stages; one pending sequence per state (a newer one overwrites
//! it); a stage only after the one before it in audit time; `maxspan` counted from the first
//! event; `until` ends the key's pending sequences; `![…]` missing events as Elasticsearch checks
//! them. A completed sequence is handed out once, with the document of every stage.
//!
//! Memory is bounded per rule: pending sequences expire when they can no longer complete (their
//! span is over), and beyond [`Limits`] the oldest are evicted and counted. Time is audit time
//! (the events' own clock, moved on by [`SequenceEngine::advance`] when a live source is idle),
//! so a replay completes exactly the sequences the live run did.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::rule::eql::{EventFilter, JoinKey, KeyAtom, Sequence};
use crate::rule::kql::{Document, EvalOptions};

/// Where an event stands in audit time: its time, then the order in which events arrived (which
/// breaks ties within one millisecond).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ordinal {
    /// Audit time, milliseconds since the epoch.
    pub time_ms: u64,
    /// Arrival number.
    pub arrival: u64,
}

/// Memory bounds of one sequence rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most pending sequences (all keys and states together).
    pub max_pending: usize,
    /// Most bytes held: stage documents, join keys and bookkeeping.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pending: 4096,
            max_bytes: 8 << 20,
        }
    }
}

/// Counters of one sequence rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequenceStats {
    /// Sequences completed (handed out).
    pub completed: u64,
    /// Pending sequences dropped because the rule's memory bound was reached (oldest first).
    pub evicted: u64,
    /// Pending sequences dropped because their span ran out (normal operation).
    pub expired: u64,
}

/// A completed sequence: each stage's event in order, as compact JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Completed {
    /// Audit time of the last event.
    pub time_ms: u64,
    /// The stage documents, first stage first.
    pub events: Vec<Arc<str>>,
}

/// Bookkeeping bytes counted per pending sequence and per join key, besides what they hold.
const OVERHEAD: usize = 128;

/// The join key of an event: one list of values per key (empty for a `null` optional key).
type Key = Arc<[Vec<KeyAtom>]>;

/// One event filter of the query with the join keys that go with it (the sequence's, then the
/// stage's own).
#[derive(Debug)]
struct Criterion {
    filter: EventFilter,
    keys: Vec<JoinKey>,
}

impl Criterion {
    fn key(&self, doc: &dyn Document, opts: &EvalOptions) -> Option<Key> {
        let parts: Option<Vec<Vec<KeyAtom>>> =
            self.keys.iter().map(|k| k.extract(doc, opts)).collect();
        parts.map(Into::into)
    }
}

/// The query laid out for the engine: `runs` expanded, positive and missing stages apart.
#[derive(Debug)]
struct Plan {
    /// Distinct criteria (a stage `with runs=N` is one criterion used N times).
    criteria: Vec<Criterion>,
    /// Each stage's criterion and whether it is a missing event, `runs` expanded.
    stages: Vec<(usize, bool)>,
    /// The `until` criterion.
    until: Option<usize>,
    /// Longest time from the first to the last event of a sequence, in milliseconds.
    span_ms: u64,
    /// `maxspan` as written (missing events need it).
    maxspan_ms: u64,
    first_positive: usize,
    last_positive: usize,
}

impl Plan {
    fn new(seq: &Sequence, lookback_ms: u64) -> Plan {
        let mut criteria = Vec::new();
        let mut stages = Vec::new();
        let criterion = |st: &crate::rule::eql::SequenceStage| Criterion {
            filter: st.filter.clone(),
            keys: seq.by.iter().chain(&st.by).cloned().collect(),
        };
        for st in &seq.stages {
            criteria.push(criterion(st));
            for _ in 0..st.runs.max(1) {
                stages.push((criteria.len() - 1, st.missing));
            }
        }
        let until = seq.until.as_ref().map(|st| {
            criteria.push(criterion(st));
            criteria.len() - 1
        });
        let first_positive = stages.iter().position(|s| !s.1).unwrap_or(0);
        let last_positive = stages.iter().rposition(|s| !s.1).unwrap_or(0);
        Plan {
            criteria,
            stages,
            until,
            span_ms: seq.maxspan_ms.unwrap_or(u64::MAX).min(lookback_ms),
            maxspan_ms: seq.maxspan_ms.unwrap_or(u64::MAX),
            first_positive,
            last_positive,
        }
    }

    fn missing(&self, stage: usize) -> bool {
        self.stages.get(stage).is_some_and(|s| s.1)
    }

    fn previous_positive(&self, stage: usize) -> Option<usize> {
        (0..stage).rev().find(|&i| !self.missing(i))
    }

    fn has_leading(&self) -> bool {
        self.first_positive > 0
    }

    fn has_trailing(&self) -> bool {
        self.last_positive + 1 < self.stages.len()
    }
}

/// A sequence in progress.
#[derive(Debug)]
struct Pending {
    id: u64,
    start: Ordinal,
    last: Ordinal,
    events: Vec<Arc<str>>,
    /// Latest leading missing event before the start (leading `![…]` stages only).
    lead_ms: Option<u64>,
}

impl Pending {
    fn bytes(&self) -> usize {
        OVERHEAD + self.events.iter().map(|e| e.len()).sum::<usize>()
    }
}

/// One key's state machine.
#[derive(Debug, Default)]
struct Machine {
    /// One pending sequence per stage at most.
    slots: Vec<Option<Pending>>,
    /// Sequences waiting for their trailing missing events' window to close, with its end.
    waiting: Vec<(u64, Pending)>,
}

impl Machine {
    fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.slots.iter().all(Option::is_none)
    }
}

/// The latest two distinct times a leading missing event was seen for one key.
#[derive(Clone, Copy, Debug)]
struct Seen {
    latest: u64,
    before: Option<u64>,
}

impl Seen {
    fn record(&mut self, t: u64) {
        if t > self.latest {
            self.before = Some(self.latest);
            self.latest = t;
        } else if t < self.latest && self.before.is_none_or(|b| t > b) {
            self.before = Some(t);
        }
    }

    /// The latest time strictly before `t`.
    fn before(&self, t: u64) -> Option<u64> {
        if self.latest < t {
            Some(self.latest)
        } else {
            self.before.filter(|&b| b < t)
        }
    }
}

/// The state of one sequence rule.
#[derive(Debug)]
pub struct SequenceEngine {
    plan: Plan,
    limits: Limits,
    machines: HashMap<Key, Machine>,
    /// Sequences in a stage's state by (start, id), with their key and stage: expiry and
    /// eviction go oldest first.
    order: BTreeMap<(Ordinal, u64), (Key, usize)>,
    /// Sequences waiting for their trailing window to close, by (deadline, id).
    deadlines: BTreeMap<(u64, u64), Key>,
    /// Leading missing events seen, per key.
    leading: HashMap<Key, Seen>,
    bytes: usize,
    next_id: u64,
    arrivals: u64,
    clock_ms: u64,
    stats: SequenceStats,
    /// Per criterion for the current event: matched, and its key (computed once).
    scratch: Vec<Option<Option<Key>>>,
}

impl SequenceEngine {
    /// An engine for `seq`. `lookback_ms` is the rule's look-back (`from`): Kibana only finds a
    /// sequence whose events all fall within one run's look-back, so a sequence never spans more
    /// (a sequence without `maxspan` expires after it).
    pub fn new(seq: &Sequence, lookback_ms: u64, limits: Limits) -> SequenceEngine {
        let plan = Plan::new(seq, lookback_ms);
        let criteria = plan.criteria.len();
        SequenceEngine {
            plan,
            limits,
            machines: HashMap::new(),
            order: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            leading: HashMap::new(),
            bytes: 0,
            next_id: 0,
            arrivals: 0,
            clock_ms: 0,
            stats: SequenceStats::default(),
            scratch: vec![None; criteria],
        }
    }

    /// Changes the byte bound (a reload shares the budget anew); it applies from the next event.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.limits.max_bytes = max_bytes;
    }

    /// Counters so far.
    pub fn stats(&self) -> SequenceStats {
        self.stats
    }

    /// Pending sequences (in a state, or waiting for their trailing window).
    pub fn pending(&self) -> usize {
        self.order.len() + self.deadlines.len()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Feeds one event at audit time `time_ms`. `json` gives its document as compact JSON (asked
    /// for only when a stage keeps it). Sequences it completes, or whose trailing window its time
    /// closes, are pushed to `out`.
    pub fn on_event(
        &mut self,
        doc: &dyn Document,
        opts: &EvalOptions,
        time_ms: u64,
        json: &mut dyn FnMut() -> Arc<str>,
        out: &mut Vec<Completed>,
    ) {
        self.advance(time_ms, out);
        self.arrivals += 1;
        let now = Ordinal {
            time_ms,
            arrival: self.arrivals,
        };
        let mut any = false;
        for (i, c) in self.plan.criteria.iter().enumerate() {
            let hit = c.filter.matches(doc, opts);
            any |= hit;
            self.scratch[i] = hit.then(|| c.key(doc, opts));
        }
        if !any {
            return;
        }
        // Later stages first, so an event that matches two consecutive stages moves the older
        // sequence on before it starts a new one (a stage never follows itself in one event).
        for stage in (self.plan.first_positive..=self.plan.last_positive).rev() {
            let (criterion, missing) = self.plan.stages[stage];
            if missing {
                continue;
            }
            if let Some(Some(key)) = self.scratch[criterion].clone() {
                self.on_stage(stage, key, now, json, out);
            }
        }
        self.on_missing(now);
        if let Some(Some(Some(key))) = self.plan.until.map(|u| self.scratch[u].clone()) {
            self.end_key(&key);
        }
        self.enforce_limits();
    }

    /// Audit time has reached `now_ms`: sequences whose trailing window has closed complete,
    /// and sequences that can no longer complete expire.
    pub fn advance(&mut self, now_ms: u64, out: &mut Vec<Completed>) {
        if now_ms <= self.clock_ms {
            return;
        }
        self.clock_ms = now_ms;
        while let Some((&(deadline, id), key)) = self.deadlines.first_key_value() {
            if deadline >= now_ms {
                break;
            }
            let key = key.clone();
            match self.remove_waiting(&key, id) {
                Some(p) => self.emit(p, out),
                None => {
                    self.deadlines.remove(&(deadline, id));
                }
            }
        }
        let span = self.plan.span_ms;
        while let Some((&(start, id), (key, stage))) = self.order.first_key_value() {
            if start.time_ms.saturating_add(span) >= now_ms {
                break;
            }
            let (key, stage) = (key.clone(), *stage);
            self.take(&key, stage);
            // A stale entry (there should be none) must not stop expiry.
            self.order.remove(&(start, id));
            self.stats.expired += 1;
        }
        // Leading events older than the span can no longer stop anything.
        if self.leading.len() > self.limits.max_pending {
            let keep_after = now_ms.saturating_sub(self.plan.maxspan_ms);
            self.leading.retain(|_, s| s.latest >= keep_after);
        }
    }

    /// The end of the input (a replay's last record): sequences waiting for their trailing
    /// window complete, as Elasticsearch would find no trailing event after the data.
    pub fn finish(&mut self, out: &mut Vec<Completed>) {
        let waiting: Vec<((u64, u64), Key)> = self
            .deadlines
            .iter()
            .map(|(k, key)| (*k, key.clone()))
            .collect();
        for ((_, id), key) in waiting {
            if let Some(p) = self.remove_waiting(&key, id) {
                self.emit(p, out);
            }
        }
    }

    fn on_stage(
        &mut self,
        stage: usize,
        key: Key,
        now: Ordinal,
        json: &mut dyn FnMut() -> Arc<str>,
        out: &mut Vec<Completed>,
    ) {
        let pending = if stage == self.plan.first_positive {
            let lead_ms = self
                .plan
                .has_leading()
                .then(|| self.leading.get(&key).and_then(|s| s.before(now.time_ms)))
                .flatten();
            self.next_id += 1;
            Pending {
                id: self.next_id,
                start: now,
                last: now,
                events: Vec::with_capacity(self.plan.last_positive + 1 - stage),
                lead_ms,
            }
        } else {
            let Some(previous) = self.plan.previous_positive(stage) else {
                return;
            };
            // Only a sequence strictly before this event moves on.
            let before = self
                .machines
                .get(&key)
                .and_then(|m| m.slots.get(previous))
                .and_then(Option::as_ref)
                .is_some_and(|p| p.last < now);
            if !before {
                return;
            }
            let Some(p) = self.take(&key, previous) else {
                return;
            };
            if now.time_ms.saturating_sub(p.start.time_ms) > self.plan.span_ms {
                // Rejected: the span from the first event is over.
                return;
            }
            p
        };
        let mut pending = pending;
        pending.last = now;
        pending.events.push(json());
        if stage == self.plan.last_positive {
            self.complete(key, pending, out);
        } else {
            self.put(key, stage, pending);
        }
    }

    /// Missing-event stages: a leading one is remembered; a middle one ends the key's sequence
    /// waiting just before it; a trailing one ends the key's sequences waiting for their window.
    fn on_missing(&mut self, now: Ordinal) {
        let t = now.time_ms;
        for stage in 0..self.plan.stages.len() {
            let (criterion, missing) = self.plan.stages[stage];
            if !missing {
                continue;
            }
            let Some(Some(key)) = self.scratch[criterion].clone() else {
                continue;
            };
            if stage < self.plan.first_positive {
                let seen = self.leading.entry(key).or_insert(Seen {
                    latest: t,
                    before: None,
                });
                seen.record(t);
            } else if stage > self.plan.last_positive {
                let ended: Vec<u64> = self.machines.get(&key).map_or_else(Vec::new, |m| {
                    m.waiting
                        .iter()
                        .filter(|(deadline, p)| p.last.time_ms < t && t <= *deadline)
                        .map(|(_, p)| p.id)
                        .collect()
                });
                for id in ended {
                    self.remove_waiting(&key, id);
                }
            } else if let Some(previous) = self.plan.previous_positive(stage) {
                let ends = self
                    .machines
                    .get(&key)
                    .and_then(|m| m.slots.get(previous))
                    .and_then(Option::as_ref)
                    .is_some_and(|p| p.last.time_ms < t);
                if ends {
                    self.take(&key, previous);
                }
            }
        }
    }

    /// The positive stages are all matched: decide now, or wait for the trailing window.
    fn complete(&mut self, key: Key, p: Pending, out: &mut Vec<Completed>) {
        let maxspan = self.plan.maxspan_ms;
        let leading = self.plan.has_leading();
        if !self.plan.has_trailing() {
            let clear = match (leading, p.lead_ms) {
                (true, Some(lead)) => p.last.time_ms.saturating_sub(lead) > maxspan,
                _ => true,
            };
            if clear {
                self.emit(p, out);
            }
            return;
        }
        let deadline = match (leading, p.lead_ms) {
            // Elasticsearch completes a sequence with leading and trailing missing stages when
            // no leading event was found, whatever follows.
            (true, None) => return self.emit(p, out),
            (true, Some(lead)) => lead.saturating_add(maxspan),
            (false, _) => p.start.time_ms.saturating_add(maxspan),
        };
        if deadline <= p.last.time_ms {
            return self.emit(p, out);
        }
        self.hold(&key);
        self.bytes += p.bytes();
        self.deadlines.insert((deadline, p.id), key.clone());
        if let Some(m) = self.machines.get_mut(&key) {
            m.waiting.push((deadline, p));
        }
    }

    fn emit(&mut self, p: Pending, out: &mut Vec<Completed>) {
        self.stats.completed += 1;
        out.push(Completed {
            time_ms: p.last.time_ms,
            events: p.events,
        });
    }

    /// The machine of `key`, made (and its key counted) if new.
    fn hold(&mut self, key: &Key) {
        if !self.machines.contains_key(key) {
            self.bytes += key_bytes(key);
            let stages = self.plan.stages.len();
            self.machines.insert(
                key.clone(),
                Machine {
                    slots: (0..stages).map(|_| None).collect(),
                    waiting: Vec::new(),
                },
            );
        }
    }

    /// Places `p` in `stage`'s state of `key`; a sequence already there is overwritten.
    fn put(&mut self, key: Key, stage: usize, p: Pending) {
        self.hold(&key);
        self.bytes += p.bytes();
        self.order.insert((p.start, p.id), (key.clone(), stage));
        let replaced = self
            .machines
            .get_mut(&key)
            .and_then(|m| m.slots.get_mut(stage))
            .and_then(|slot| slot.replace(p));
        if let Some(old) = replaced {
            self.bytes = self.bytes.saturating_sub(old.bytes());
            self.order.remove(&(old.start, old.id));
        }
    }

    /// Takes the sequence in `stage`'s state of `key`, if any.
    fn take(&mut self, key: &Key, stage: usize) -> Option<Pending> {
        let machine = self.machines.get_mut(key)?;
        let p = machine.slots.get_mut(stage)?.take()?;
        let empty = machine.is_empty();
        self.order.remove(&(p.start, p.id));
        self.release(key, &p, empty);
        Some(p)
    }

    /// Takes the sequence `id` of `key` that waits for its trailing window, if any.
    fn remove_waiting(&mut self, key: &Key, id: u64) -> Option<Pending> {
        let machine = self.machines.get_mut(key)?;
        let at = machine.waiting.iter().position(|(_, p)| p.id == id)?;
        let (deadline, p) = machine.waiting.swap_remove(at);
        let empty = machine.is_empty();
        self.deadlines.remove(&(deadline, id));
        self.release(key, &p, empty);
        Some(p)
    }

    /// Forgets the bytes of `p` (already out of its machine); drops the machine of `key` if it is
    /// now empty.
    fn release(&mut self, key: &Key, p: &Pending, machine_empty: bool) {
        self.bytes = self.bytes.saturating_sub(p.bytes());
        if machine_empty && self.machines.remove(key).is_some() {
            self.bytes = self.bytes.saturating_sub(key_bytes(key));
        }
    }

    /// `until`: every pending sequence of `key` ends (those waiting only for their trailing
    /// window are complete already and stay).
    fn end_key(&mut self, key: &Key) {
        for stage in 0..self.plan.stages.len() {
            self.take(key, stage);
        }
    }

    /// Evicts the oldest pending sequences (then those waiting for a trailing window) until the
    /// rule is within its bounds.
    fn enforce_limits(&mut self) {
        while self.pending() > self.limits.max_pending || self.bytes > self.limits.max_bytes {
            if let Some((&(start, id), (key, stage))) = self.order.first_key_value() {
                let (key, stage) = (key.clone(), *stage);
                self.take(&key, stage);
                self.order.remove(&(start, id));
            } else if let Some((&(_, id), key)) = self.deadlines.first_key_value() {
                let key = key.clone();
                self.remove_waiting(&key, id);
            } else {
                break;
            }
            self.stats.evicted += 1;
        }
    }
}

/// Bytes a join key is counted for.
fn key_bytes(key: &Key) -> usize {
    OVERHEAD + key.iter().flatten().map(KeyAtom::bytes).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::eql::{self, QueryKind};
    use serde_json::{json, Value};

    fn engine(query: &str, limits: Limits) -> SequenceEngine {
        let q = eql::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        let QueryKind::Sequence(seq) = q.kind() else {
            panic!("not a sequence: {query}");
        };
        SequenceEngine::new(seq, 3_600_000, limits)
    }

    /// A process event named `name` at `t` ms, with pid, parent pid and user.
    fn ev(name: &str, pid: u32, ppid: u32, user: &str) -> Value {
        json!({
            "event": {"category": ["process"]},
            "process": {"name": name, "pid": pid, "parent": {"pid": ppid}, "args": [name, "x"]},
            "user": {"id": user},
        })
    }

    /// Feeds `(time, doc)` in order; returns each completed sequence as its process names.
    fn run(e: &mut SequenceEngine, events: &[(u64, Value)]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for (t, doc) in events {
            let text: Arc<str> = doc.to_string().into();
            e.on_event(
                doc,
                &EvalOptions::default(),
                *t,
                &mut || text.clone(),
                &mut out,
            );
        }
        names(&out)
    }

    fn names(out: &[Completed]) -> Vec<Vec<String>> {
        out.iter()
            .map(|c| {
                c.events
                    .iter()
                    .map(|e| {
                        let v: Value = serde_json::from_str(e).expect("json");
                        let n = v["process"]["name"].as_str().unwrap_or("?").to_string();
                        format!("{n}@{}", v["process"]["pid"])
                    })
                    .collect()
            })
            .collect()
    }

    const ABC: &str = r#"sequence by user.id
        [process where process.name == "attrib"]
        [process where process.name == "bash"]
        [process where process.name == "cat"]"#;

    #[test]
    fn the_documented_state_machine_example() {
        // Elasticsearch's "How sequence queries handle matches": events 1..11 for root/elkbee.
        let mut e = engine(ABC, Limits::default());
        let seq = [
            ("root", "attrib"),
            ("root", "attrib"),
            ("elkbee", "bash"),
            ("root", "bash"),
            ("root", "bash"),
            ("elkbee", "attrib"),
            ("root", "attrib"),
            ("elkbee", "bash"),
            ("root", "cat"),
            ("elkbee", "cat"),
            ("root", "cat"),
        ];
        let events: Vec<(u64, Value)> = seq
            .iter()
            .enumerate()
            .map(|(i, (u, n))| (1000 + i as u64, ev(n, i as u32 + 1, 1, u)))
            .collect();
        assert_eq!(
            run(&mut e, &events),
            vec![
                vec!["attrib@2", "bash@4", "cat@9"],
                vec!["attrib@6", "bash@8", "cat@10"]
            ]
        );
        // Sequence [7] is still in state A for root.
        assert_eq!(e.pending(), 1);
    }

    #[test]
    fn a_stage_needs_a_strictly_later_event_and_keys_must_be_equal() {
        let q = r#"sequence by process.parent.pid [process where process.name == "a"] [process where process.name : "*"]"#;
        let mut e = engine(q, Limits::default());
        // One event matching both stages does not complete the sequence alone.
        assert!(run(&mut e, &[(10, ev("a", 1, 7, "0"))]).is_empty());
        // Another parent: no join. Same parent: joins.
        assert!(run(&mut e, &[(11, ev("b", 2, 8, "0"))]).is_empty());
        assert_eq!(
            run(&mut e, &[(12, ev("b", 3, 7, "0"))]),
            vec![vec!["a@1", "b@3"]]
        );
        // An event that arrives late (earlier time than the pending stage) does not join.
        assert!(run(
            &mut e,
            &[(20, ev("a", 4, 9, "0")), (19, ev("b", 5, 9, "0"))]
        )
        .is_empty());
        // The same millisecond, later arrival: joins.
        assert_eq!(
            run(
                &mut e,
                &[(30, ev("a", 6, 5, "0")), (30, ev("b", 7, 5, "0"))]
            ),
            vec![vec!["a@6", "b@7"]]
        );
    }

    #[test]
    fn maxspan_counts_from_the_first_event() {
        let q = r#"sequence by user.id with maxspan=10s
            [process where process.name == "a"] [process where process.name == "b"] [process where process.name == "c"]"#;
        let mut e = engine(q, Limits::default());
        let got = run(
            &mut e,
            &[
                (0, ev("a", 1, 1, "u")),
                (9_000, ev("b", 2, 1, "u")),
                (10_001, ev("c", 3, 1, "u")),
            ],
        );
        assert!(got.is_empty(), "c is 10.001 s after a: {got:?}");
        assert_eq!(e.stats().expired, 1, "time passing the span expired [a, b]");
        let got = run(
            &mut e,
            &[
                (20_000, ev("a", 4, 1, "u")),
                (29_000, ev("b", 5, 1, "u")),
                (30_000, ev("c", 6, 1, "u")),
            ],
        );
        assert_eq!(
            got,
            vec![vec!["a@4", "b@5", "c@6"]],
            "exactly maxspan is within"
        );
        // A sequence whose span is over expires from memory when time moves on.
        run(&mut e, &[(40_000, ev("a", 7, 1, "u"))]);
        assert_eq!(e.pending(), 1);
        let mut out = Vec::new();
        e.advance(50_001, &mut out);
        assert_eq!((e.pending(), e.stats().expired), (0, 2));
        assert_eq!(e.bytes(), 0, "everything held is released");
    }

    #[test]
    fn until_ends_pending_sequences_of_its_key_only() {
        let q = r#"sequence by process.parent.pid
            [process where process.name == "a"] [process where process.name == "b"]
            until [process where process.name == "stop"]"#;
        let mut e = engine(q, Limits::default());
        // A, C, B: no match; A, B, C: match (the docs' example).
        let got = run(
            &mut e,
            &[
                (1, ev("a", 1, 10, "0")),
                (2, ev("a", 2, 20, "0")),
                (3, ev("stop", 3, 10, "0")),
                (4, ev("b", 4, 10, "0")),
                (5, ev("b", 5, 20, "0")),
                (6, ev("stop", 6, 20, "0")),
            ],
        );
        assert_eq!(got, vec![vec!["a@2", "b@5"]]);
        // An event that is both the until and a first stage starts nothing that survives it.
        let q2 = r#"sequence by user.id [process where process.name == "a"] [process where process.name == "b"] until [process where process.name == "a"]"#;
        let mut e = engine(q2, Limits::default());
        assert!(run(&mut e, &[(1, ev("a", 1, 1, "u")), (2, ev("b", 2, 1, "u"))]).is_empty());
    }

    #[test]
    fn runs_repeat_a_stage() {
        let q = r#"sequence by user.id with maxspan=1m [process where process.name == "x"] with runs=3 [process where process.name == "y"]"#;
        let mut e = engine(q, Limits::default());
        let got = run(
            &mut e,
            &[
                (1, ev("x", 1, 1, "u")),
                (2, ev("x", 2, 1, "u")),
                (3, ev("y", 3, 1, "u")),
                (4, ev("x", 4, 1, "u")),
                (5, ev("y", 5, 1, "u")),
            ],
        );
        assert_eq!(got, vec![vec!["x@1", "x@2", "x@4", "y@5"]]);
        // Runs of one stage overlap, as in Elasticsearch (which moves the latest earlier
        // sequence on for each event): every x from the third completes one sequence.
        let q = r#"sequence by user.id [process where process.name == "x"] with runs=3"#;
        let mut e = engine(q, Limits::default());
        let events: Vec<(u64, Value)> = (1..=5).map(|i| (i, ev("x", i as u32, 1, "u"))).collect();
        assert_eq!(
            run(&mut e, &events),
            vec![
                vec!["x@1", "x@2", "x@3"],
                vec!["x@2", "x@3", "x@4"],
                vec!["x@3", "x@4", "x@5"]
            ]
        );
    }

    #[test]
    fn null_keys_join_only_when_optional_and_multi_valued_keys_join_as_lists() {
        let q = r#"sequence by user.name [process where process.name == "a"] [process where process.name == "b"]"#;
        let mut e = engine(q, Limits::default());
        assert!(run(&mut e, &[(1, ev("a", 1, 1, "u")), (2, ev("b", 2, 1, "u"))]).is_empty());
        let q = r#"sequence by ?user.name [process where process.name == "a"] [process where process.name == "b"]"#;
        let mut e = engine(q, Limits::default());
        assert_eq!(
            run(&mut e, &[(1, ev("a", 1, 1, "u")), (2, ev("b", 2, 1, "u"))]),
            vec![vec!["a@1", "b@2"]]
        );
        let q = r#"sequence [process where process.name == "a"] by process.args [process where process.name == "b"] by process.args"#;
        let mut e = engine(q, Limits::default());
        let with_args = |name: &str, pid: u32, args: Value| json!({"event": {"category": "process"}, "process": {"name": name, "pid": pid, "args": args}});
        let got = run(
            &mut e,
            &[
                (1, with_args("a", 1, json!(["p", "q"]))),
                (2, with_args("b", 2, json!(["q", "p"]))),
                (3, with_args("b", 3, json!(["p"]))),
                (4, with_args("b", 4, json!(["p", "q"]))),
            ],
        );
        assert_eq!(got, vec![vec!["a@1", "b@4"]]);
    }

    #[test]
    fn stage_keys_may_name_different_fields() {
        // A parent exec followed by its child's exec: the first stage's pid is the second's ppid.
        let q = r#"sequence with maxspan=5s [process where process.name == "sh"] by process.pid [process where process.name == "curl"] by process.parent.pid"#;
        let mut e = engine(q, Limits::default());
        let got = run(
            &mut e,
            &[
                (1, ev("sh", 100, 1, "0")),
                (2, ev("curl", 101, 99, "0")),
                (3, ev("curl", 102, 100, "0")),
            ],
        );
        assert_eq!(got, vec![vec!["sh@100", "curl@102"]]);
    }

    #[test]
    fn missing_events_in_the_middle_at_the_end_and_at_the_start() {
        let middle = r#"sequence by user.id with maxspan=10s
            [process where process.name == "a"] ![process where process.name == "m"] [process where process.name == "b"]"#;
        let mut e = engine(middle, Limits::default());
        let got = run(
            &mut e,
            &[
                (1, ev("a", 1, 1, "u")),
                (2, ev("m", 2, 1, "u")),
                (3, ev("b", 3, 1, "u")),
                (4, ev("a", 4, 1, "u")),
                (5, ev("m", 5, 1, "v")),
                (6, ev("b", 6, 1, "u")),
            ],
        );
        assert_eq!(got, vec![vec!["a@4", "b@6"]]);

        let trailing = r#"sequence by user.id with maxspan=10s
            [process where process.name == "login"] ![process where process.name == "logout"]"#;
        let mut e = engine(trailing, Limits::default());
        let got = run(
            &mut e,
            &[
                (0, ev("login", 1, 1, "u")),
                (5_000, ev("logout", 2, 1, "u")),
                (20_000, ev("login", 3, 1, "u")),
                (30_001, ev("logout", 4, 1, "u")),
            ],
        );
        // The second login's window (to 30 s) closed before the logout at 30.001 s.
        assert_eq!(got, vec![vec!["login@3"]]);
        // A window still open at the end of the input completes then.
        run(&mut e, &[(40_000, ev("login", 5, 1, "u"))]);
        let mut out = Vec::new();
        e.finish(&mut out);
        assert_eq!(names(&out), vec![vec!["login@5"]]);
        assert_eq!((e.pending(), e.bytes()), (0, 0));

        let leading = r#"sequence by user.id with maxspan=10s
            ![process where process.name == "sudo"] [process where process.name == "a"] [process where process.name == "b"]"#;
        let mut e = engine(leading, Limits::default());
        let got = run(
            &mut e,
            &[
                (0, ev("sudo", 1, 1, "u")),
                (5_000, ev("a", 2, 1, "u")),
                (6_000, ev("b", 3, 1, "u")),
                (30_000, ev("a", 4, 1, "u")),
                (31_000, ev("b", 5, 1, "u")),
            ],
        );
        // sudo at 0 is within 10 s of the first sequence's last event, not of the second's.
        assert_eq!(got, vec![vec!["a@4", "b@5"]]);
    }

    #[test]
    fn memory_is_bounded_and_evictions_are_counted() {
        let q = r#"sequence by process.pid [process where process.name == "a"] [process where process.name == "b"]"#;
        let limits = Limits {
            max_pending: 100,
            max_bytes: 1 << 30,
        };
        let mut e = engine(q, limits);
        let flood: Vec<(u64, Value)> = (0..1000).map(|i| (i, ev("a", i as u32, 1, "u"))).collect();
        run(&mut e, &flood);
        assert_eq!(e.pending(), 100);
        assert_eq!(e.stats().evicted, 900);
        // The newest survive: pid 999 still completes, pid 0 does not.
        let got = run(
            &mut e,
            &[(2000, ev("b", 999, 1, "u")), (2001, ev("b", 0, 1, "u"))],
        );
        assert_eq!(got, vec![vec!["a@999", "b@999"]]);

        // The byte bound holds too, whatever the documents weigh.
        let limits = Limits {
            max_pending: 1 << 20,
            max_bytes: 64 * 1024,
        };
        let mut e = engine(q, limits);
        let big: Vec<(u64, Value)> = (0..200)
            .map(|i| {
                let mut d = ev("a", i as u32, 1, "u");
                d["process"]["args"] = json!(["a", "x".repeat(4000)]);
                (i, d)
            })
            .collect();
        run(&mut e, &big);
        assert!(e.bytes() <= 64 * 1024, "{}", e.bytes());
        assert!(e.stats().evicted > 150);
    }
}
