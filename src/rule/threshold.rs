//! Threshold rules as Kibana runs them, on a stream of events in audit time.
//!
//! Kibana runs a threshold rule every `interval`; a run at time T counts the query's matches of
//! `[T - from, T]` per group of `threshold.field` values (a composite terms aggregation: events
//! missing a group field are not counted; a multi-valued field puts the event in a group per
//! value), and alerts once for each group whose count reaches `threshold.value` (and whose
//! `cardinality` field has at least that many distinct values), with the count. Events a group
//! already alerted on are not counted again (Kibana's signal history keeps, per group, the time of
//! the last event it alerted on).
//!
//! Here the runs happen at the multiples of `interval` in audit time (the events' own clock), so
//! a replay alerts as the live run did; a run's window is `[T - from, T)`, an event at exactly T
//! counting in the next run. Counts are kept per group in time buckets as fine as the run grid
//! needs (the greatest common divisor of `interval` and `from`), distinct values as keyed hashes.
//! Memory is bounded per rule: groups beyond [`Limits`] are not counted, and counted as dropped.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;

use serde_json::{json, Map, Value};

use crate::rule::eql::KeyAtom;
use crate::rule::kql::{Document, EvalOptions, Scalar};

/// Most time buckets one group may need (`(from + interval) / gcd(from, interval)`); a rule
/// needing more is refused at load.
pub const MAX_BUCKETS: u64 = 10_000;

/// Most groups one event may count in (the product of its group fields' value counts).
pub const MAX_GROUPS_PER_EVENT: usize = 256;

/// Most distinct values of the cardinality field kept per group (the reported cardinality is
/// exact below it).
pub const MAX_DISTINCT: usize = 10_000;

/// What a threshold rule counts: `[rule.threshold]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    /// `field`: the group fields (none: one group of all events).
    pub fields: Vec<String>,
    /// `value`: the count a group must reach.
    pub value: u64,
    /// `cardinality`: a field and the number of its distinct values a group must reach.
    pub cardinality: Option<(String, u64)>,
}

/// Memory bounds of one threshold rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most groups counted at once.
    pub max_groups: usize,
    /// Most bytes held: group values, buckets, distinct-value hashes.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_groups: 10_000,
            max_bytes: 16 << 20,
        }
    }
}

/// Counters of one threshold rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThresholdStats {
    /// Alerts (groups over the threshold at a run).
    pub alerts: u64,
    /// Counts that could not be kept: a new group beyond the bounds, an event in more than
    /// [`MAX_GROUPS_PER_EVENT`] groups, a distinct value beyond [`MAX_DISTINCT`].
    pub dropped: u64,
}

/// One group over the threshold at a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    /// The run's time (audit time, ms).
    pub run_ms: u64,
    /// The group: each field with its value.
    pub terms: Vec<(String, Value)>,
    /// Events counted.
    pub count: u64,
    /// Distinct values of the cardinality field, with the field.
    pub cardinality: Option<(String, u64)>,
    /// Audit time of the first and last event counted.
    pub first_ms: u64,
    /// See `first_ms`.
    pub last_ms: u64,
}

/// Checks that `interval_ms` and `lookback_ms` (`from`) give a bucket grid of at most
/// [`MAX_BUCKETS`] per group; the reason otherwise.
pub fn check_windows(interval_ms: u64, lookback_ms: u64) -> Result<(), String> {
    let grain = gcd(interval_ms, lookback_ms).max(1);
    let buckets = (lookback_ms.saturating_add(interval_ms)) / grain;
    if buckets > MAX_BUCKETS {
        return Err(format!(
            "a threshold rule whose interval and from need {buckets} time buckets per group \
             (more than {MAX_BUCKETS}); use round values such as 5m and 9m"
        ));
    }
    Ok(())
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Events counted in one time bucket of a group.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    index: u64,
    count: u64,
    first_ms: u64,
    last_ms: u64,
}

/// One group's counts.
#[derive(Debug, Default)]
struct Group {
    buckets: VecDeque<Bucket>,
    /// Distinct cardinality values (keyed hashes) and the last bucket each was seen in.
    distinct: HashMap<u64, u64>,
}

/// Bytes counted per bucket, per distinct value and per group besides its values.
const BUCKET_BYTES: usize = 32;
const DISTINCT_BYTES: usize = 32;
const GROUP_BYTES: usize = 128;

/// The state of one threshold rule.
#[derive(Debug)]
pub struct ThresholdEngine {
    spec: Threshold,
    interval_ms: u64,
    lookback_ms: u64,
    grain_ms: u64,
    limits: Limits,
    groups: BTreeMap<Box<[KeyAtom]>, Group>,
    hasher: RandomState,
    bytes: usize,
    /// The next run's time, once an event has been counted.
    next_run_ms: Option<u64>,
    stats: ThresholdStats,
}

impl ThresholdEngine {
    /// An engine for `spec` run every `interval_ms` over the last `lookback_ms` (both at least 1;
    /// [`check_windows`] should have accepted them).
    pub fn new(spec: Threshold, interval_ms: u64, lookback_ms: u64, limits: Limits) -> Self {
        let interval_ms = interval_ms.max(1);
        let lookback_ms = lookback_ms.max(1);
        ThresholdEngine {
            spec,
            interval_ms,
            lookback_ms,
            grain_ms: gcd(interval_ms, lookback_ms).max(1),
            limits,
            groups: BTreeMap::new(),
            hasher: RandomState::new(),
            bytes: 0,
            next_run_ms: None,
            stats: ThresholdStats::default(),
        }
    }

    /// Changes the byte bound (a reload shares the budget anew); it applies from the next event.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.limits.max_bytes = max_bytes;
    }

    /// Counters so far.
    pub fn stats(&self) -> ThresholdStats {
        self.stats
    }

    /// Groups being counted.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Audit time has reached `now_ms`: every run due by then happens, its signals to `out`.
    pub fn advance(&mut self, now_ms: u64, out: &mut Vec<Signal>) {
        while let Some(run) = self.next_run_ms {
            if run > now_ms {
                break;
            }
            self.run(run, out);
            self.next_run_ms = if self.groups.is_empty() {
                None
            } else {
                Some(run.saturating_add(self.interval_ms))
            };
        }
    }

    /// The end of the input: the run that would count the last events happens now.
    pub fn finish(&mut self, out: &mut Vec<Signal>) {
        if let Some(run) = self.next_run_ms {
            self.advance(run, out);
        }
    }

    /// Counts one event that matched the rule's query, at audit time `time_ms` (runs due before
    /// it happen first).
    pub fn count(
        &mut self,
        doc: &dyn Document,
        opts: &EvalOptions,
        time_ms: u64,
        out: &mut Vec<Signal>,
    ) {
        self.advance(time_ms, out);
        let Some(keys) = self.group_keys(doc, opts) else {
            return;
        };
        let distinct: Vec<u64> = match &self.spec.cardinality {
            Some((field, _)) => {
                let mut hashes = Vec::new();
                doc.any_value(field, &mut |s| {
                    if !ignored(&s, opts) {
                        hashes.push(self.hash(&s));
                    }
                    false
                });
                hashes
            }
            None => Vec::new(),
        };
        let bucket = time_ms / self.grain_ms;
        for key in keys {
            self.count_in(key, bucket, time_ms, &distinct);
        }
        if self.next_run_ms.is_none() && !self.groups.is_empty() {
            self.next_run_ms = Some(
                (time_ms / self.interval_ms)
                    .saturating_add(1)
                    .saturating_mul(self.interval_ms),
            );
        }
    }

    fn hash(&self, s: &Scalar<'_>) -> u64 {
        match s {
            Scalar::Str(v) => self.hasher.hash_one((0u8, v)),
            Scalar::Num(n) => self.hasher.hash_one((1u8, n.to_string())),
            Scalar::Bool(b) => self.hasher.hash_one((2u8, b)),
        }
    }

    /// The groups an event counts in: the product of its group fields' values; `None` when a
    /// field has no value, or the product is too large (counted as dropped).
    fn group_keys(
        &mut self,
        doc: &dyn Document,
        opts: &EvalOptions,
    ) -> Option<Vec<Box<[KeyAtom]>>> {
        let mut keys: Vec<Vec<KeyAtom>> = vec![Vec::new()];
        for field in &self.spec.fields {
            let mut values: Vec<KeyAtom> = Vec::new();
            let mut over = false;
            doc.any_value(field, &mut |s| {
                if ignored(&s, opts) {
                    return false;
                }
                let atom = atom(&s);
                if !values.contains(&atom) {
                    values.push(atom);
                }
                over = values.len() * keys.len() > MAX_GROUPS_PER_EVENT;
                over
            });
            if over {
                self.stats.dropped += 1;
                return None;
            }
            if values.is_empty() {
                return None;
            }
            keys = keys
                .iter()
                .flat_map(|k| {
                    values.iter().map(move |v| {
                        let mut k = k.clone();
                        k.push(v.clone());
                        k
                    })
                })
                .collect();
        }
        Some(keys.into_iter().map(Vec::into_boxed_slice).collect())
    }

    fn count_in(&mut self, key: Box<[KeyAtom]>, bucket: u64, time_ms: u64, distinct: &[u64]) {
        if !self.groups.contains_key(&key) {
            let bytes = group_bytes(&key, &Group::default());
            if self.groups.len() >= self.limits.max_groups
                || self.bytes + bytes > self.limits.max_bytes
            {
                self.stats.dropped += 1;
                return;
            }
            self.bytes += bytes;
            self.groups.insert(key.clone(), Group::default());
        }
        let Some(group) = self.groups.get_mut(&key) else {
            return;
        };
        let at = group.buckets.partition_point(|b| b.index < bucket);
        match group.buckets.get_mut(at) {
            Some(b) if b.index == bucket => {
                b.count += 1;
                b.first_ms = b.first_ms.min(time_ms);
                b.last_ms = b.last_ms.max(time_ms);
            }
            _ => {
                group.buckets.insert(
                    at,
                    Bucket {
                        index: bucket,
                        count: 1,
                        first_ms: time_ms,
                        last_ms: time_ms,
                    },
                );
                self.bytes += BUCKET_BYTES;
            }
        }
        for &h in distinct {
            let room = group.distinct.len() < MAX_DISTINCT
                && self.bytes + DISTINCT_BYTES <= self.limits.max_bytes;
            match group.distinct.get_mut(&h) {
                Some(last) => *last = (*last).max(bucket),
                None if room => {
                    group.distinct.insert(h, bucket);
                    self.bytes += DISTINCT_BYTES;
                }
                None => self.stats.dropped += 1,
            }
        }
    }

    /// One run at `run_ms`: each group over the threshold in `[run - from, run)` signals and
    /// starts over; what the next run no longer looks at is forgotten.
    fn run(&mut self, run_ms: u64, out: &mut Vec<Signal>) {
        let low = run_ms.saturating_sub(self.lookback_ms) / self.grain_ms;
        let high = run_ms / self.grain_ms;
        let keep_from = run_ms
            .saturating_add(self.interval_ms)
            .saturating_sub(self.lookback_ms)
            / self.grain_ms;
        let mut signalled = Vec::new();
        for (key, group) in &self.groups {
            let in_window = || {
                group
                    .buckets
                    .iter()
                    .filter(|b| b.index >= low && b.index < high)
            };
            let count: u64 = in_window().map(|b| b.count).sum();
            if count == 0 || count < self.spec.value {
                continue;
            }
            let cardinality = match &self.spec.cardinality {
                Some((field, min)) => {
                    let n = group
                        .distinct
                        .values()
                        .filter(|&&b| b >= low && b < high)
                        .count() as u64;
                    if n < *min {
                        continue;
                    }
                    Some((field.clone(), n))
                }
                None => None,
            };
            out.push(Signal {
                run_ms,
                terms: self
                    .spec
                    .fields
                    .iter()
                    .cloned()
                    .zip(key.iter().map(KeyAtom::to_json))
                    .collect(),
                count,
                cardinality,
                first_ms: in_window().map(|b| b.first_ms).min().unwrap_or(run_ms),
                last_ms: in_window().map(|b| b.last_ms).max().unwrap_or(run_ms),
            });
            self.stats.alerts += 1;
            signalled.push(key.clone());
        }
        // A group that signalled starts over: its events are not counted again.
        let mut freed = 0;
        for key in signalled {
            if let Some(group) = self.groups.remove(&key) {
                freed += group_bytes(&key, &group);
            }
        }
        self.groups.retain(|key, group| {
            let before = group.buckets.len();
            while group.buckets.front().is_some_and(|b| b.index < keep_from) {
                group.buckets.pop_front();
            }
            let distinct_before = group.distinct.len();
            group.distinct.retain(|_, &mut b| b >= keep_from);
            freed += (before - group.buckets.len()) * BUCKET_BYTES
                + (distinct_before - group.distinct.len()) * DISTINCT_BYTES;
            let keep = !group.buckets.is_empty();
            if !keep {
                freed += group_bytes(key, group);
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }
}

/// Bytes a group is counted for, with what it holds.
fn group_bytes(key: &[KeyAtom], group: &Group) -> usize {
    GROUP_BYTES
        + key.iter().map(KeyAtom::bytes).sum::<usize>()
        + group.buckets.len() * BUCKET_BYTES
        + group.distinct.len() * DISTINCT_BYTES
}

fn ignored(s: &Scalar<'_>, opts: &EvalOptions) -> bool {
    matches!(s, Scalar::Str(v) if opts.ignore_above.is_some_and(|limit| v.len() > limit))
}

fn atom(s: &Scalar<'_>) -> KeyAtom {
    match s {
        Scalar::Str(v) => KeyAtom::Str((*v).into()),
        Scalar::Bool(b) => KeyAtom::Bool(*b),
        Scalar::Num(n) => match n.as_i64() {
            Some(i) => KeyAtom::Int(i),
            None => KeyAtom::Float(n.as_f64().unwrap_or(0.0).to_bits()),
        },
    }
}

impl Signal {
    /// The alert document: `@timestamp` (the last event counted), `host`, the group's fields
    /// with their values, and `auditsentry.threshold_result` shaped as Kibana's
    /// `threshold_result` (`terms`, `count`, `from`, `cardinality`).
    pub fn document(&self, host: &Value) -> Value {
        let mut doc = json!({
            "@timestamp": crate::event::timestamp_ms(self.last_ms),
            "event": {"kind": "alert"},
            "host": host.clone(),
        });
        for (field, value) in &self.terms {
            set_path(&mut doc, field, value.clone());
        }
        let mut result = Map::new();
        result.insert(
            "terms".into(),
            self.terms
                .iter()
                .map(|(f, v)| json!({"field": f, "value": v}))
                .collect(),
        );
        result.insert("count".into(), json!(self.count));
        result.insert(
            "from".into(),
            json!(crate::event::timestamp_ms(self.first_ms)),
        );
        if let Some((field, n)) = &self.cardinality {
            result.insert("cardinality".into(), json!([{"field": field, "value": n}]));
        }
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("auditsentry".into(), json!({"threshold_result": result}));
        }
        doc
    }
}

/// Sets the dotted `path` of `doc` to `value`, making objects on the way; a path through a
/// value that is not an object is left alone.
fn set_path(doc: &mut Value, path: &str, value: Value) {
    let mut cur = doc;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if parts.peek().is_none() {
            obj.insert(part.to_string(), value);
            return;
        }
        cur = obj
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn spec(fields: &[&str], value: u64, cardinality: Option<(&str, u64)>) -> Threshold {
        Threshold {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            value,
            cardinality: cardinality.map(|(f, n)| (f.to_string(), n)),
        }
    }

    fn ev(user: &str, exe: &str, args: &[&str]) -> Value {
        json!({"user": {"id": user}, "process": {"executable": exe, "args": args}})
    }

    fn feed(e: &mut ThresholdEngine, events: &[(u64, Value)]) -> Vec<Signal> {
        let mut out = Vec::new();
        for (t, doc) in events {
            e.count(doc, &EvalOptions::default(), *t, &mut out);
        }
        out
    }

    #[test]
    fn one_alert_per_group_per_run_with_the_count() {
        // Kibana's defaults for upstream rules: every 5 minutes over the last 9.
        let mut e = ThresholdEngine::new(
            spec(&["user.id"], 3, None),
            5 * MIN,
            9 * MIN,
            Limits::default(),
        );
        let mut events = Vec::new();
        for i in 0..5 {
            events.push((MIN + i * 1000, ev("0", "/bin/kill", &[])));
        }
        events.push((MIN + 10_000, ev("1000", "/bin/kill", &[])));
        let out = feed(&mut e, &events);
        assert!(out.is_empty(), "nothing before the run at 5 min");
        let mut out = Vec::new();
        e.advance(5 * MIN, &mut out);
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(s.terms, vec![("user.id".to_string(), json!("0"))]);
        assert_eq!(
            (s.count, s.first_ms, s.last_ms, s.run_ms),
            (5, MIN, MIN + 4000, 5 * MIN)
        );
        // The next run looks back over the same events: they alerted already.
        let mut out = Vec::new();
        e.advance(10 * MIN, &mut out);
        assert!(out.is_empty());
        let doc = s.document(&json!({"id": "h"}));
        assert_eq!(doc["user"]["id"], "0");
        assert_eq!(doc["host"]["id"], "h");
        assert_eq!(doc["auditsentry"]["threshold_result"]["count"], 5);
        assert_eq!(
            doc["auditsentry"]["threshold_result"]["terms"][0]["field"],
            "user.id"
        );
    }

    #[test]
    fn the_look_back_counts_events_of_the_previous_interval() {
        let mut e = ThresholdEngine::new(
            spec(&["user.id"], 4, None),
            5 * MIN,
            9 * MIN,
            Limits::default(),
        );
        // Two events before the run at 5 min, two after: the run at 10 min sees all four.
        let events: Vec<(u64, Value)> = [4 * MIN, 4 * MIN + 1, 6 * MIN, 6 * MIN + 1]
            .iter()
            .map(|&t| (t, ev("0", "x", &[])))
            .collect();
        let mut out = feed(&mut e, &events);
        assert!(out.is_empty());
        e.advance(10 * MIN, &mut out);
        assert_eq!(out.iter().map(|s| s.count).collect::<Vec<_>>(), vec![4]);
        // Events older than the look-back are forgotten: 0.5 min and 9.5 min are 9 min apart
        // from the run at 10 min only for the second.
        let mut e = ThresholdEngine::new(spec(&[], 2, None), 5 * MIN, 9 * MIN, Limits::default());
        let mut out = feed(
            &mut e,
            &[
                (MIN / 2, ev("0", "x", &[])),
                (9 * MIN + MIN / 2, ev("0", "x", &[])),
            ],
        );
        e.advance(10 * MIN, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(e.groups(), 1, "the 9.5 min event stays for the next run");
        e.advance(15 * MIN, &mut out);
        assert_eq!(
            (e.groups(), e.bytes()),
            (0, 0),
            "and then everything is released"
        );
    }

    #[test]
    fn an_event_at_the_run_time_counts_in_the_next_run() {
        let mut e = ThresholdEngine::new(spec(&[], 2, None), MIN, MIN, Limits::default());
        let mut out = feed(
            &mut e,
            &[(MIN - 1, ev("0", "x", &[])), (MIN, ev("0", "x", &[]))],
        );
        assert!(out.is_empty());
        e.finish(&mut out);
        assert!(
            out.is_empty(),
            "the window of the run at 2 min is [1 min, 2 min): one event"
        );
    }

    #[test]
    fn cardinality_and_missing_and_multi_valued_group_fields() {
        // Kibana's ping sweep shape: per user and executable, at least 3 distinct arguments.
        let mut e = ThresholdEngine::new(
            spec(
                &["user.id", "process.executable"],
                1,
                Some(("process.args", 3)),
            ),
            5 * MIN,
            9 * MIN,
            Limits::default(),
        );
        let events = vec![
            (1, ev("0", "/bin/ping", &["ping", "10.0.0.1"])),
            (2, ev("0", "/bin/ping", &["ping", "10.0.0.1"])),
            (3, ev("1", "/bin/ping", &["ping", "10.0.0.2"])),
            (4, ev("1", "/bin/ping", &["ping", "10.0.0.3"])),
            (
                5,
                json!({"process": {"executable": "/bin/ping", "args": ["a", "b", "c"]}}),
            ),
        ];
        let mut out = feed(&mut e, &events);
        e.finish(&mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].terms[0].1, json!("1"));
        assert_eq!(out[0].cardinality, Some(("process.args".to_string(), 3)));
        assert_eq!(out[0].count, 2);

        // A multi-valued group field counts the event once in each value's group.
        let mut e = ThresholdEngine::new(
            spec(&["process.args"], 2, None),
            MIN,
            MIN,
            Limits::default(),
        );
        let mut out = feed(
            &mut e,
            &[
                (1, ev("0", "x", &["a", "b"])),
                (2, ev("0", "x", &["b", "c", "b"])),
            ],
        );
        e.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].terms[0].1.clone(), out[0].count), (json!("b"), 2));
    }

    #[test]
    fn memory_is_bounded_and_drops_are_counted() {
        let limits = Limits {
            max_groups: 50,
            max_bytes: 1 << 30,
        };
        let mut e = ThresholdEngine::new(spec(&["process.executable"], 2, None), MIN, MIN, limits);
        let flood: Vec<(u64, Value)> = (0..500)
            .map(|i| (i, ev("0", &format!("/tmp/{i}"), &[])))
            .collect();
        let mut out = feed(&mut e, &flood);
        assert_eq!(e.groups(), 50);
        assert_eq!(e.stats().dropped, 450);
        // The groups already counted still alert.
        out.extend(feed(&mut e, &[(600, ev("0", "/tmp/7", &[]))]));
        e.finish(&mut out);
        assert_eq!(out.len(), 1);
        // An event in too many groups is dropped whole.
        let mut e = ThresholdEngine::new(
            spec(&["process.args"], 1, None),
            MIN,
            MIN,
            Limits::default(),
        );
        let many: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        feed(&mut e, &[(1, ev("0", "x", &many))]);
        assert_eq!((e.groups(), e.stats().dropped), (0, 1));
        // Too fine a run grid is refused.
        assert!(check_windows(5 * MIN, 9 * MIN).is_ok());
        assert!(check_windows(3_600_000, 7 * 24 * 3_600_000 + 1000).is_err());
    }
}
