//! The new-terms gate: lets a query match through only when its tuple of new-terms field values was
//! not carried by any matching document within the rule's history window before it.
//!
//! This reproduces Elastic's `new_terms` rule type for a stream instead of a 5-minute batch. The gate
//! only ever sees documents that matched the rule's query, so only matching events feed the history.
//! History lives behind [`TermStore`] (sled in production, [`MemStore`] for tests and replays that do
//! not keep state), one "last seen" time per (rule, tuple). A new tuple is recorded only after its
//! alert left (the caller's [`NewTermsGate::commit`]); the store makes it durable later, in its own
//! batches, so a crash can repeat an alert but never lose one.
//!
//! The history is bounded: tuples last seen longer than the rule's window ago no longer count and
//! are pruned (driven by event time, so a replay prunes as a live run does), and each rule holds at
//! most `max_terms_per_rule` tuples, the oldest evicted first (a repeat alert later, never a miss).

use std::collections::HashMap;

use crate::rule::kql::{Document, Scalar};

use crate::rule::file::{Rule, RuleKind};
pub use crate::state::{StateError, TermStore};

/// Most value combinations examined per document when new-terms fields hold arrays; beyond it the
/// remaining combinations are ignored (bounded work per event, whatever the document holds).
pub const MAX_COMBINATIONS: usize = 64;

/// Default most tuples stored per rule (`state.max_terms_per_rule`).
pub const DEFAULT_MAX_TERMS_PER_RULE: usize = 10_000;

/// Event time between two prune passes: tuples past their window are deleted at most this late.
pub const PRUNE_EVERY_MS: u64 = 60_000;

/// The gate's decision for one matching document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Alert: this tuple of values (in the rule's field order) is new. Empty for a `query` rule.
    New(Vec<String>),
    /// Every tuple of the document was seen within the history window: no alert.
    Seen,
    /// This new-terms field is absent, null, empty or not a scalar: no alert, nothing recorded.
    MissingField(String),
}

/// The new-terms gate over a [`TermStore`].
#[derive(Debug)]
pub struct NewTermsGate<S: TermStore> {
    store: S,
    /// New tuples whose alert has not been confirmed delivered yet: (rule id, key, time).
    pending: Vec<(String, Vec<u8>, u64)>,
    /// Most tuples kept per rule.
    max_per_rule: usize,
    /// New-terms rules by id: what pruning needs to know of each.
    held: HashMap<String, Held>,
    /// The latest event time seen (the gate's clock; never moves back).
    clock_ms: u64,
    /// When the next prune pass is due (`None`: at the next event).
    next_prune_ms: Option<u64>,
    /// Tuples deleted because their window had passed.
    pruned: u64,
    /// Tuples deleted to keep a rule under `max_per_rule`.
    evicted: u64,
}

/// What the gate knows of one rule's stored tuples.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The rule's history window.
    window_ms: u64,
    /// No stored tuple was last seen before this (0: unknown, `u64::MAX`: none stored), so a
    /// prune pass skips the rule until its cut-off passes it.
    oldest_ms: u64,
}

impl<S: TermStore> NewTermsGate<S> {
    /// A gate recording its history in `store`, at most [`DEFAULT_MAX_TERMS_PER_RULE`] per rule.
    pub fn new(store: S) -> Self {
        NewTermsGate {
            store,
            pending: Vec::new(),
            max_per_rule: DEFAULT_MAX_TERMS_PER_RULE,
            held: HashMap::new(),
            clock_ms: 0,
            next_prune_ms: None,
            pruned: 0,
            evicted: 0,
        }
    }

    /// Keeps at most `max` tuples per rule (at least 1), evicting the least recently seen.
    pub fn with_max_terms_per_rule(mut self, max: usize) -> Self {
        self.max_per_rule = max.max(1);
        self
    }

    /// The new-terms rules to prune: their windows (others are ignored). Rules `check` meets are
    /// added as it meets them; a rule left out keeps its stored tuples as they are. The next
    /// event runs a prune pass, so a changed window applies at once.
    pub fn set_rules<'a>(&mut self, rules: impl IntoIterator<Item = &'a Rule>) {
        let mut held = HashMap::new();
        for rule in rules {
            if let RuleKind::NewTerms {
                history_window_ms, ..
            } = rule.kind
            {
                let oldest_ms = self.held.get(&rule.id).map_or(0, |h| h.oldest_ms);
                let entry = Held {
                    window_ms: history_window_ms,
                    oldest_ms,
                };
                held.insert(rule.id.clone(), entry);
            }
        }
        self.held = held;
        self.next_prune_ms = None;
    }

    /// Tuples pruned so far (their window had passed).
    pub fn pruned(&self) -> u64 {
        self.pruned
    }

    /// Tuples evicted so far (a rule held more than its cap).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Event time has reached `now_ms`: when a prune pass is due (the first event, then every
    /// [`PRUNE_EVERY_MS`] of event time), deletes every tuple whose window has passed and brings
    /// each rule under its cap. Audit time, not the wall clock, so a replay prunes as it ran.
    pub fn advance(&mut self, now_ms: u64) -> Result<(), StateError> {
        self.clock_ms = self.clock_ms.max(now_ms);
        if self.next_prune_ms.is_some_and(|due| self.clock_ms < due) {
            return Ok(());
        }
        self.next_prune_ms = Some(self.clock_ms.saturating_add(PRUNE_EVERY_MS));
        let ids: Vec<String> = self.held.keys().cloned().collect();
        for id in &ids {
            self.prune(id)?;
            self.enforce_cap(id)?;
        }
        Ok(())
    }

    /// Deletes `rule_id`'s tuples last seen more than its window before the clock.
    fn prune(&mut self, rule_id: &str) -> Result<(), StateError> {
        let Some(held) = self.held.get(rule_id).copied() else {
            return Ok(());
        };
        let cutoff = self.clock_ms.saturating_sub(held.window_ms);
        if held.oldest_ms >= cutoff {
            return Ok(());
        }
        let mut oldest = u64::MAX;
        let removed = self.store.retain(rule_id, &mut |seen| {
            let keep = seen >= cutoff;
            if keep {
                oldest = oldest.min(seen);
            }
            keep
        })?;
        self.pruned += removed as u64;
        if let Some(h) = self.held.get_mut(rule_id) {
            h.oldest_ms = oldest;
        }
        Ok(())
    }

    /// Over the cap, evicts `rule_id`'s least recently seen tuples down to 90 % of it (one scan
    /// of the rule's tuples pays for a tenth of the cap's new ones).
    fn enforce_cap(&mut self, rule_id: &str) -> Result<(), StateError> {
        let held = self.store.len_of(rule_id);
        if held <= self.max_per_rule {
            return Ok(());
        }
        let keep = self.max_per_rule - self.max_per_rule / 10;
        let mut times = self.store.times(rule_id)?;
        let n = held.saturating_sub(keep).min(times.len());
        if n == 0 {
            return Ok(());
        }
        let threshold = *times.select_nth_unstable(n - 1).1;
        let below = times.iter().filter(|&&t| t < threshold).count();
        let mut at_threshold = n - below;
        let removed = self.store.retain(rule_id, &mut |seen| match seen {
            s if s < threshold => false,
            s if s == threshold && at_threshold > 0 => {
                at_threshold -= 1;
                false
            }
            _ => true,
        })?;
        self.evicted += removed as u64;
        if let Some(h) = self.held.get_mut(rule_id) {
            h.oldest_ms = h.oldest_ms.max(threshold);
        }
        Ok(())
    }

    /// Records the tuples of the last `New` verdict. Call it once the alert has left (sink
    /// flushed): a crash before the store makes them durable means the tuple alerts again after
    /// restart — a possible repeat, never a miss. The store is not flushed here (an fsync per
    /// alert): it flushes in its own batches, and [`TermStore::flush`] at the end of a run.
    /// `check` calls it first too, so a caller that never commits still records every tuple.
    pub fn commit(&mut self) -> Result<(), StateError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        for (rule_id, key, time) in &pending {
            self.store.record(rule_id, key, *time)?;
            if let Some(h) = self.held.get_mut(rule_id) {
                h.oldest_ms = h.oldest_ms.min(*time);
            }
        }
        let mut last: Option<&str> = None;
        for (rule_id, _, _) in &pending {
            if last != Some(rule_id) {
                self.enforce_cap(rule_id)?;
                last = Some(rule_id);
            }
        }
        Ok(())
    }

    /// Forgets the tuples of the last `New` verdict without recording them: its alert was held
    /// back (rate cap), so the tuple must stay new and alert when it recurs.
    pub fn discard(&mut self) {
        self.pending.clear();
    }

    /// The store, for stats (`len`).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for a final flush at shutdown.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Decides whether `doc`, which MATCHED `rule`'s query, alerts. `event_time_ms` is the event's
    /// own time (audit timestamp), not the wall clock, so replays behave like live runs.
    ///
    /// For a `RuleKind::Query` rule the gate does nothing and returns `New` with an empty tuple.
    /// For `NewTerms`: each combination of the fields' values (arrays give several, at most
    /// [`MAX_COMBINATIONS`]) is new when it was never recorded or was last recorded more than
    /// `history_window_ms` before this event; its last-seen time becomes max(last seen, this event),
    /// so late events never move it backwards (and a late event is never new). The first new
    /// combination is returned; the new combinations are recorded by [`NewTermsGate::commit`].
    pub fn check(
        &mut self,
        rule: &Rule,
        doc: &dyn Document,
        event_time_ms: u64,
    ) -> Result<Verdict, StateError> {
        let (fields, window) = match &rule.kind {
            RuleKind::Query | RuleKind::Threshold(_) => return Ok(Verdict::New(Vec::new())),
            RuleKind::NewTerms {
                fields,
                history_window_ms,
            } => (fields, *history_window_ms),
        };
        if !self.held.contains_key(&rule.id) {
            let held = Held {
                window_ms: window,
                oldest_ms: 0,
            };
            self.held.insert(rule.id.clone(), held);
        }
        let mut values: Vec<Vec<String>> = Vec::with_capacity(fields.len());
        for field in fields {
            let vals = field_values(doc, field);
            if vals.is_empty() {
                return Ok(Verdict::MissingField(field.clone()));
            }
            values.push(vals);
        }

        self.commit()?;
        let mut first_new: Option<Vec<String>> = None;
        for tuple in combinations(values, MAX_COMBINATIONS) {
            let key = encode_key(&tuple);
            let last = self.store.last_seen(&rule.id, &key)?;
            let is_new = match last {
                None => true,
                Some(last) => event_time_ms.saturating_sub(last) > window,
            };
            if is_new {
                self.pending.push((rule.id.clone(), key, event_time_ms));
            } else if last.is_none_or(|last| event_time_ms > last) {
                self.store.record(&rule.id, &key, event_time_ms)?;
            }
            if is_new && first_new.is_none() {
                first_new = Some(tuple);
            }
        }
        Ok(match first_new {
            Some(tuple) => Verdict::New(tuple),
            None => Verdict::Seen,
        })
    }
}

/// Unambiguous store key of a tuple: the JSON array of its strings (`["h1","bash"]`), so values
/// containing separators or quotes cannot collide.
pub fn encode_key(tuple: &[String]) -> Vec<u8> {
    // Serializing a slice of strings to a Vec cannot fail; the empty fallback keeps this total.
    serde_json::to_vec(tuple).unwrap_or_default()
}

/// The distinct non-empty scalar values of dotted `field` in `doc`, as strings, in document order,
/// at most [`MAX_COMBINATIONS`]. Field resolution is KQL's ([`Document::any_value`]): nested
/// objects, flat dotted keys and mixes; arrays contribute each element. Numbers and booleans use
/// their JSON text; null, empty strings and objects contribute nothing.
pub fn field_values(doc: &dyn Document, field: &str) -> Vec<String> {
    let mut out = Vec::new();
    doc.any_value(field, &mut |v| {
        let text = match v {
            Scalar::Str(s) if !s.is_empty() && !out.iter().any(|o| o == s) => s.to_string(),
            Scalar::Num(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Str(_) => return false,
        };
        push_distinct(&mut out, text);
        out.len() >= MAX_COMBINATIONS
    });
    out
}

fn push_distinct(out: &mut Vec<String>, value: String) {
    if !value.is_empty() && !out.contains(&value) {
        out.push(value);
    }
}

/// The first `limit` tuples of the cartesian product of `values`, first field varying slowest.
fn combinations(values: Vec<Vec<String>>, limit: usize) -> Vec<Vec<String>> {
    if limit > 0 && values.iter().all(|vals| vals.len() == 1) {
        // One value per field, nearly always: the one tuple, made of the values themselves.
        return vec![values.into_iter().flatten().collect()];
    }
    let mut tuples: Vec<Vec<String>> = vec![Vec::new()];
    for vals in &values {
        let mut next = Vec::new();
        'outer: for prefix in &tuples {
            for v in vals {
                if next.len() >= limit {
                    break 'outer;
                }
                let mut t = prefix.clone();
                t.push(v.clone());
                next.push(t);
            }
        }
        tuples = next;
    }
    tuples
}

/// In-memory [`TermStore`]: for tests, and for runs that need no history across restarts
/// (replays of one file, `--all-matches`). `flush` has nothing to do (tests count its calls).
#[derive(Debug, Default)]
pub struct MemStore {
    /// Rule id → tuple key → last seen; looked up by borrowed keys, so a check allocates nothing.
    entries: HashMap<String, HashMap<Vec<u8>, u64>>,
    #[cfg(test)]
    flushes: usize,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        MemStore::default()
    }

    /// How many times `flush` was called (tests check that a `New` verdict flushed first).
    #[cfg(test)]
    pub fn flushes(&self) -> usize {
        self.flushes
    }
}

impl TermStore for MemStore {
    fn last_seen(&self, rule_id: &str, key: &[u8]) -> Result<Option<u64>, StateError> {
        Ok(self
            .entries
            .get(rule_id)
            .and_then(|tuples| tuples.get(key))
            .copied())
    }

    fn record(&mut self, rule_id: &str, key: &[u8], time_ms: u64) -> Result<(), StateError> {
        let tuples = match self.entries.get_mut(rule_id) {
            Some(tuples) => tuples,
            None => self.entries.entry(rule_id.to_string()).or_default(),
        };
        match tuples.get_mut(key) {
            Some(last) => *last = time_ms,
            None => {
                tuples.insert(key.to_vec(), time_ms);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StateError> {
        #[cfg(test)]
        {
            self.flushes += 1;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.entries.values().map(HashMap::len).sum()
    }

    fn len_of(&self, rule_id: &str) -> usize {
        self.entries.get(rule_id).map_or(0, HashMap::len)
    }

    fn times(&self, rule_id: &str) -> Result<Vec<u64>, StateError> {
        Ok(self
            .entries
            .get(rule_id)
            .map(|tuples| tuples.values().copied().collect())
            .unwrap_or_default())
    }

    fn retain(
        &mut self,
        rule_id: &str,
        keep: &mut dyn FnMut(u64) -> bool,
    ) -> Result<usize, StateError> {
        let Some(tuples) = self.entries.get_mut(rule_id) else {
            return Ok(0);
        };
        let before = tuples.len();
        tuples.retain(|_, seen| keep(*seen));
        Ok(before - tuples.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::file::{load_str, Severity};
    use serde_json::{json, Value};

    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_700_000_000_000;

    fn rule(kind: RuleKind) -> Rule {
        let mut rule = match load_str(
            "[rule]\ndescription = \"d\"\nlanguage = \"kuery\"\nname = \"n\"\nrisk_score = 21\n\
             rule_id = \"r-1\"\nseverity = \"low\"\ntype = \"query\"\nquery = \"process.name:ln\"\n",
            "test",
        ) {
            Ok(rule) => rule,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(rule.severity, Severity::Low);
        rule.kind = kind;
        rule
    }

    fn seed_rule() -> Rule {
        rule(RuleKind::NewTerms {
            fields: vec!["host.id".to_string(), "process.parent.name".to_string()],
            history_window_ms: 10 * DAY,
        })
    }

    fn doc(host: &str, parent: &str) -> Value {
        json!({"host": {"id": host}, "process": {"name": "ln", "parent": {"name": parent}}})
    }

    fn new(values: &[&str]) -> Verdict {
        Verdict::New(values.iter().map(|s| s.to_string()).collect())
    }

    fn check(gate: &mut NewTermsGate<MemStore>, rule: &Rule, d: &Value, t: u64) -> Verdict {
        match gate.check(rule, d, t) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn first_sighting_is_new_and_recorded_only_on_commit() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "bash"), T0),
            new(&["h1", "bash"])
        );
        // Not yet: the alert must leave first (a crash now repeats it instead of losing it).
        assert_eq!(gate.store().len(), 0);
        gate.commit().expect("commit");
        assert_eq!(gate.store().len(), 1);
        // No fsync per alert: the store makes it durable in its own batches.
        assert_eq!(gate.store().flushes(), 0, "a commit does not flush");
    }

    #[test]
    fn same_tuple_nine_days_later_is_seen() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        check(&mut gate, &rule, &doc("h1", "bash"), T0);
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "bash"), T0 + 9 * DAY),
            Verdict::Seen
        );
        assert_eq!(gate.store().flushes(), 0, "Seen does not flush");
    }

    #[test]
    fn same_tuple_eleven_days_after_its_last_match_is_new() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        check(&mut gate, &rule, &doc("h1", "bash"), T0);
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "bash"), T0 + 11 * DAY),
            new(&["h1", "bash"])
        );
    }

    #[test]
    fn exactly_the_window_later_is_still_seen() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        check(&mut gate, &rule, &doc("h1", "bash"), T0);
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "bash"), T0 + 10 * DAY),
            Verdict::Seen
        );
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "bash"), T0 + 20 * DAY + 1),
            new(&["h1", "bash"])
        );
    }

    #[test]
    fn nine_days_then_nine_days_again_is_seen_because_the_last_match_moves() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        check(&mut gate, &rule, &doc("h1", "bash"), T0);
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "bash"), T0 + 9 * DAY),
            Verdict::Seen
        );
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "bash"), T0 + 18 * DAY),
            Verdict::Seen
        );
    }

    #[test]
    fn different_parent_or_host_is_new() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        check(&mut gate, &rule, &doc("h1", "bash"), T0);
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "python3"), T0 + 1),
            new(&["h1", "python3"])
        );
        assert_eq!(
            check(&mut gate, &rule, &doc("h2", "bash"), T0 + 2),
            new(&["h2", "bash"])
        );
        gate.commit().expect("commit");
        assert_eq!(gate.store().len(), 3);
    }

    #[test]
    fn missing_null_or_empty_field_never_alerts_and_records_nothing() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        let docs = [
            json!({"host": {"id": "h1"}, "process": {"name": "ln"}}),
            json!({"host": {"id": "h1"}, "process": {"parent": {"name": null}}}),
            json!({"host": {"id": "h1"}, "process": {"parent": {"name": ""}}}),
            json!({"host": {"id": "h1"}, "process": {"parent": {"name": []}}}),
            json!({"host": {"id": "h1"}, "process": {"parent": {"name": {"x": 1}}}}),
        ];
        for d in &docs {
            assert_eq!(
                check(&mut gate, &rule, d, T0),
                Verdict::MissingField("process.parent.name".to_string())
            );
        }
        assert_eq!(
            check(
                &mut gate,
                &rule,
                &json!({"process": {"parent": {"name": "bash"}}}),
                T0
            ),
            Verdict::MissingField("host.id".to_string())
        );
        assert_eq!(gate.store().len(), 0);
        assert_eq!(gate.store().flushes(), 0);
    }

    #[test]
    fn out_of_order_event_does_not_move_last_seen_back() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        check(&mut gate, &rule, &doc("h1", "bash"), T0 + 5 * DAY);
        // A late event from before the recorded one: not new, and last seen stays at T0+5d.
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "bash"), T0),
            Verdict::Seen
        );
        let key = encode_key(&["h1".to_string(), "bash".to_string()]);
        assert_eq!(
            gate.store().last_seen("r-1", &key).ok().flatten(),
            Some(T0 + 5 * DAY)
        );
        // 14 days after T0 is only 9 days after the last match.
        assert_eq!(
            check(&mut gate, &rule, &doc("h1", "bash"), T0 + 14 * DAY),
            Verdict::Seen
        );
    }

    #[test]
    fn query_rule_passes_through_without_touching_the_store() {
        let rule = rule(RuleKind::Query);
        let mut gate = NewTermsGate::new(MemStore::new());
        assert_eq!(
            check(&mut gate, &rule, &json!({}), T0),
            Verdict::New(vec![])
        );
        assert_eq!(gate.store().len(), 0);
        assert_eq!(gate.store().flushes(), 0);
    }

    #[test]
    fn array_field_is_new_if_any_combination_is_new() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        check(&mut gate, &rule, &doc("h1", "bash"), T0);
        let d = json!({"host": {"id": "h1"}, "process": {"parent": {"name": ["bash", "sh"]}}});
        assert_eq!(check(&mut gate, &rule, &d, T0 + 1), new(&["h1", "sh"]));
        // Both combinations are now history.
        assert_eq!(check(&mut gate, &rule, &d, T0 + 2), Verdict::Seen);
        assert_eq!(gate.store().len(), 2);
    }

    #[test]
    fn combinations_in_order_with_and_without_arrays() {
        let v = |list: &[&[&str]]| -> Vec<Vec<String>> {
            list.iter()
                .map(|vals| vals.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        assert_eq!(combinations(v(&[&["h"], &["p"]]), 4), v(&[&["h", "p"]]));
        assert_eq!(
            combinations(v(&[&["h1", "h2"], &["p"]]), 4),
            v(&[&["h1", "p"], &["h2", "p"]])
        );
        assert_eq!(
            combinations(v(&[&["h"], &["p1", "p2", "p3"]]), 2),
            v(&[&["h", "p1"], &["h", "p2"]])
        );
        assert_eq!(combinations(v(&[&["h"]]), 0), v(&[]));
        assert_eq!(combinations(Vec::new(), 4), vec![Vec::<String>::new()]);
    }

    #[test]
    fn mem_store_updates_in_place_and_counts_every_rule() {
        let mut store = MemStore::new();
        store.record("r1", b"k", 5).unwrap();
        store.record("r1", b"k", 7).unwrap();
        store.record("r1", b"j", 1).unwrap();
        store.record("r2", b"k", 9).unwrap();
        assert_eq!(store.last_seen("r1", b"k").unwrap(), Some(7));
        assert_eq!(store.last_seen("r2", b"k").unwrap(), Some(9));
        assert_eq!(store.last_seen("r2", b"j").unwrap(), None);
        assert_eq!(store.last_seen("r3", b"k").unwrap(), None);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn combinations_are_bounded() {
        let names: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        let hosts: Vec<String> = (0..100).map(|i| format!("h{i}")).collect();
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        let d = json!({"host": {"id": hosts}, "process": {"parent": {"name": names}}});
        assert_eq!(check(&mut gate, &rule, &d, T0), new(&["h0", "p0"]));
        gate.commit().expect("commit");
        assert_eq!(gate.store().len(), MAX_COMBINATIONS);
    }

    #[test]
    fn dotted_names_resolve_nested_flat_and_mixed() {
        assert_eq!(
            field_values(&doc("h1", "bash"), "process.parent.name"),
            ["bash"]
        );
        assert_eq!(
            field_values(&json!({"process.parent.name": "sh"}), "process.parent.name"),
            ["sh"]
        );
        assert_eq!(
            field_values(
                &json!({"process": {"parent.name": "zsh"}}),
                "process.parent.name"
            ),
            ["zsh"]
        );
        assert_eq!(
            field_values(
                &json!({"process": [{"pid": 1}, {"pid": 2}, {"pid": 1}]}),
                "process.pid"
            ),
            ["1", "2"]
        );
        assert_eq!(field_values(&json!({"a": true}), "a"), ["true"]);
        assert_eq!(
            field_values(&json!({"a": {"b": 1}}), "a"),
            Vec::<String>::new()
        );
        assert_eq!(
            field_values(&json!({"a": "x"}), "a.b"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn key_encoding_is_unambiguous() {
        let a = encode_key(&["a,b".to_string(), "c".to_string()]);
        let b = encode_key(&["a".to_string(), "b,c".to_string()]);
        assert_ne!(a, b);
        assert_eq!(
            encode_key(&["h\"1".to_string(), "bash".to_string()]),
            br#"["h\"1","bash"]"#.to_vec()
        );
    }

    /// Checks `d` at `t` and, when new, commits as the pipeline does after the alert left.
    fn check_commit(gate: &mut NewTermsGate<MemStore>, rule: &Rule, d: &Value, t: u64) -> Verdict {
        let v = check(gate, rule, d, t);
        gate.commit().expect("commit");
        v
    }

    #[test]
    fn tuples_past_their_window_are_pruned_by_event_time_once_a_minute() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new());
        gate.set_rules([&rule]);
        check_commit(&mut gate, &rule, &doc("h1", "old"), T0);
        check_commit(&mut gate, &rule, &doc("h1", "newer"), T0 + 5 * DAY);
        gate.advance(T0 + 5 * DAY).expect("advance");
        assert_eq!((gate.store().len(), gate.pruned()), (2, 0));
        // Past the old one's window, but a pass ran less than a minute (event time) ago.
        gate.advance(T0 + 5 * DAY + 1).expect("advance");
        gate.advance(T0 + 10 * DAY + 1).expect("advance");
        assert_eq!((gate.store().len(), gate.pruned()), (1, 1));
        // Exactly the window: still counts, so it stays.
        gate.advance(T0 + 15 * DAY).expect("advance");
        assert_eq!(gate.store().len(), 1);
        gate.advance(T0 + 15 * DAY + PRUNE_EVERY_MS)
            .expect("advance");
        assert_eq!((gate.store().len(), gate.pruned()), (0, 2));
        // A clock that goes back (a late event) does not bring anything back or prune again.
        gate.advance(T0).expect("advance");
        assert_eq!(gate.pruned(), 2);
    }

    #[test]
    fn the_first_event_prunes_what_an_earlier_run_left() {
        let rule = seed_rule();
        let mut store = MemStore::new();
        let key = encode_key(&["h1".to_string(), "bash".to_string()]);
        store.record("r-1", &key, T0).expect("record");
        store.record("r-9", &key, T0).expect("record");
        let mut gate = NewTermsGate::new(store);
        gate.set_rules([&rule]);
        gate.advance(T0 + 11 * DAY).expect("advance");
        // r-9 is no loaded rule: its window is unknown, so it is left as it is.
        assert_eq!((gate.store().len(), gate.pruned()), (1, 1));
        assert_eq!(gate.store().len_of("r-9"), 1);
    }

    #[test]
    fn a_rule_over_its_cap_evicts_the_least_recently_seen() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new()).with_max_terms_per_rule(10);
        for i in 0..10 {
            check_commit(&mut gate, &rule, &doc("h1", &format!("p{i}")), T0 + i);
        }
        // p0 is seen again: now the most recent.
        assert_eq!(
            check_commit(&mut gate, &rule, &doc("h1", "p0"), T0 + 100),
            Verdict::Seen
        );
        assert_eq!(gate.evicted(), 0);
        check_commit(&mut gate, &rule, &doc("h1", "p10"), T0 + 101);
        // 11 > 10: down to 9, the two seen longest ago (p1, p2) go.
        assert_eq!((gate.store().len(), gate.evicted()), (9, 2));
        // An evicted tuple alerts again (a repeat), a kept one does not (no miss, no repeat).
        assert_eq!(
            check_commit(&mut gate, &rule, &doc("h1", "p1"), T0 + 102),
            new(&["h1", "p1"])
        );
        for kept in ["p0", "p3", "p9", "p10"] {
            assert_eq!(
                check_commit(&mut gate, &rule, &doc("h1", kept), T0 + 103),
                Verdict::Seen,
                "{kept}"
            );
        }
    }

    #[test]
    fn a_cap_of_one_keeps_one_tuple_when_times_tie() {
        let rule = seed_rule();
        let mut gate = NewTermsGate::new(MemStore::new()).with_max_terms_per_rule(1);
        for i in 0..5 {
            check_commit(&mut gate, &rule, &doc("h1", &format!("p{i}")), T0);
            assert_eq!(gate.store().len(), 1);
        }
        assert_eq!(gate.evicted(), 4);
    }

    #[test]
    fn a_lower_cap_applies_at_the_first_event() {
        let rule = seed_rule();
        let mut store = MemStore::new();
        for i in 0..50u64 {
            store
                .record("r-1", format!("k{i}").as_bytes(), T0 + i)
                .expect("record");
        }
        let mut gate = NewTermsGate::new(store).with_max_terms_per_rule(20);
        gate.set_rules([&rule]);
        gate.advance(T0 + 50).expect("advance");
        assert_eq!((gate.store().len(), gate.evicted()), (18, 32));
        assert_eq!(gate.store().last_seen("r-1", b"k31").ok().flatten(), None);
        assert_eq!(
            gate.store().last_seen("r-1", b"k32").ok().flatten(),
            Some(T0 + 32)
        );
    }

    /// Pruning and the cap may turn a `Seen` into a `New` (a repeat), never a `New` into a `Seen`
    /// (a miss); with event times in order and room under the cap, pruning changes no verdict.
    #[test]
    fn bounded_history_never_hides_a_new_tuple() {
        let rule = seed_rule();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (cap, late) in [(1_000_000, false), (1_000_000, true), (7, false), (7, true)] {
            let mut bounded = NewTermsGate::new(MemStore::new()).with_max_terms_per_rule(cap);
            bounded.set_rules([&rule]);
            let mut reference = NewTermsGate::new(MemStore::new());
            let mut t = T0;
            let (mut repeats, mut pruned_some) = (0, false);
            for _ in 0..5_000 {
                t += next() % (2 * DAY);
                let when = if late {
                    t.saturating_sub(next() % DAY)
                } else {
                    t
                };
                let d = doc("h1", &format!("p{}", next() % 40));
                bounded.advance(when).expect("advance");
                let b = check_commit(&mut bounded, &rule, &d, when);
                let r = check_commit(&mut reference, &rule, &d, when);
                match (&b, &r) {
                    (x, y) if x == y => {}
                    (Verdict::New(_), Verdict::Seen) => repeats += 1,
                    _ => panic!("cap {cap} late {late}: bounded {b:?}, reference {r:?}"),
                }
                pruned_some |= bounded.pruned() > 0;
            }
            assert!(pruned_some, "the test reaches past the window");
            if cap > 1_000 && !late {
                assert_eq!(
                    repeats, 0,
                    "in order and under the cap, pruning changes nothing"
                );
            }
        }
    }

    #[test]
    fn mem_store_retains_and_lists_times_per_rule() {
        let mut store = MemStore::new();
        for (rule, key, t) in [
            ("r1", "a", 1),
            ("r1", "b", 5),
            ("r1", "c", 9),
            ("r2", "a", 1),
        ] {
            store.record(rule, key.as_bytes(), t).expect("record");
        }
        let mut times = store.times("r1").expect("times");
        times.sort_unstable();
        assert_eq!(times, [1, 5, 9]);
        assert_eq!(store.retain("r1", &mut |t| t >= 5).expect("retain"), 1);
        assert_eq!(
            (store.len_of("r1"), store.len_of("r2"), store.len()),
            (2, 1, 3)
        );
        assert_eq!(store.retain("r3", &mut |_| false).expect("retain"), 0);
    }

    #[test]
    fn rules_do_not_share_history() {
        let first = seed_rule();
        let mut second = seed_rule();
        second.id = "r-2".to_string();
        let mut gate = NewTermsGate::new(MemStore::new());
        check(&mut gate, &first, &doc("h1", "bash"), T0);
        assert_eq!(
            check(&mut gate, &second, &doc("h1", "bash"), T0 + 1),
            new(&["h1", "bash"])
        );
    }
}
