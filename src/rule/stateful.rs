//! The rules that remember events: EQL sequences ([`sequence`]) and threshold rules
//! ([`threshold`]). The detector hands every event document (of any category: exec today, other
//! events when the agent makes them) to [`Stateful::on_event`], tells it when audit time moves on
//! without events ([`Stateful::advance`]) and when the input ends ([`Stateful::finish`]); what it
//! finds comes back as [`Finding`]s, alerts to be delivered like any other.
//!
//! State is kept per rule across reloads when the rule did not change: it is keyed by the rule id
//! and a fingerprint of everything that shapes it (query text, type, threshold, interval, look-back).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::rule::eql::QueryKind;
use crate::rule::file::{Rule, RuleKind, RuleQuery, DEFAULT_FROM};
use crate::rule::kql::{Document, EvalOptions};
use crate::rule::sequence::{self, Completed, SequenceEngine};
use crate::rule::threshold::{self, ThresholdEngine};

/// A stage document longer than this (compact JSON) is kept trimmed while its sequence is pending.
pub const MAX_STAGE_DOCUMENT: usize = 64 * 1024;
/// In a trimmed stage document, strings are cut to this many bytes...
const TRIM_STRING: usize = 4096;
/// ...and arrays to this many elements.
const TRIM_ARRAY: usize = 256;

/// Bytes all stateful rules together may hold by default (stage documents, join keys, groups).
pub const DEFAULT_BUDGET: usize = 16 << 20;

/// The least one rule's share of the budget may be, however many rules are loaded.
const MIN_SHARE: usize = 256 << 10;

/// An alert found by a stateful rule.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The rule.
    pub rule: Arc<Rule>,
    /// Audit time of the alert (the last event of a sequence; the run of a threshold rule).
    pub time_ms: u64,
    /// The alert's document.
    pub document: Value,
}

/// Counters of the stateful rules, those of rules since reloaded away included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatefulStats {
    /// Pending sequences evicted by the memory bounds.
    pub sequences_evicted: u64,
    /// Threshold counts dropped by the memory bounds.
    pub threshold_dropped: u64,
}

impl std::ops::AddAssign for StatefulStats {
    fn add_assign(&mut self, other: StatefulStats) {
        self.sequences_evicted += other.sequences_evicted;
        self.threshold_dropped += other.threshold_dropped;
    }
}

#[derive(Debug)]
enum Engine {
    Sequence(Box<SequenceEngine>),
    Threshold(Box<ThresholdEngine>),
}

impl Engine {
    fn stats(&self) -> StatefulStats {
        match self {
            Engine::Sequence(e) => StatefulStats {
                sequences_evicted: e.stats().evicted,
                ..StatefulStats::default()
            },
            Engine::Threshold(e) => StatefulStats {
                threshold_dropped: e.stats().dropped,
                ..StatefulStats::default()
            },
        }
    }
}

#[derive(Debug)]
struct Entry {
    rule: Arc<Rule>,
    fingerprint: u64,
    engine: Engine,
}

/// The stateful rules and their state.
#[derive(Debug)]
pub struct Stateful {
    entries: Vec<Entry>,
    /// `host.*` of threshold alerts.
    host: Value,
    /// Bytes all rules together may hold, shared evenly.
    budget: usize,
    /// Counters of rules no longer loaded.
    retired: StatefulStats,
}

/// Whether `rule` needs state: an EQL sequence or a threshold rule.
pub fn is_stateful(rule: &Rule) -> bool {
    matches!(rule.kind, RuleKind::Threshold(_))
        || matches!(&rule.query, RuleQuery::Eql(q) if matches!(q.kind(), QueryKind::Sequence(_)))
}

/// What identifies a rule's state: everything that shapes it.
fn fingerprint(rule: &Rule) -> u64 {
    let mut h = DefaultHasher::new();
    (&rule.language, &rule.query_text, &rule.from, &rule.interval).hash(&mut h);
    format!("{:?}", rule.kind).hash(&mut h);
    h.finish()
}

impl Stateful {
    /// No rules yet; threshold alerts will carry `host` (the ECS `host` object); the rules
    /// loaded will share `budget` bytes evenly (at least 256 KiB each).
    pub fn new(host: Value, budget: usize) -> Self {
        Stateful {
            entries: Vec::new(),
            host,
            budget,
            retired: StatefulStats::default(),
        }
    }

    /// One rule's share of the budget when `n` rules are loaded.
    fn share(&self, n: usize) -> usize {
        (self.budget / n.max(1)).max(MIN_SHARE)
    }

    /// Takes the stateful rules of `rules` and returns the others. A rule loaded before with the
    /// same id and fingerprint keeps its state; the state of every other rule starts empty.
    pub fn load(&mut self, rules: Vec<Rule>) -> Vec<Rule> {
        let mut old = std::mem::take(&mut self.entries);
        let mut rest = Vec::with_capacity(rules.len());
        for rule in rules {
            if !is_stateful(&rule) {
                rest.push(rule);
                continue;
            }
            let print = fingerprint(&rule);
            let kept = old
                .iter()
                .position(|e| e.rule.id == rule.id && e.fingerprint == print)
                .map(|i| old.swap_remove(i).engine);
            let Some(engine) = kept.or_else(|| self.engine(&rule)) else {
                rest.push(rule);
                continue;
            };
            self.entries.push(Entry {
                rule: Arc::new(rule),
                fingerprint: print,
                engine,
            });
        }
        for gone in old {
            self.retired += gone.engine.stats();
        }
        let share = self.share(self.entries.len());
        for e in &mut self.entries {
            match &mut e.engine {
                Engine::Sequence(s) => s.set_max_bytes(share),
                Engine::Threshold(t) => t.set_max_bytes(share),
            }
        }
        rest
    }

    fn engine(&self, rule: &Rule) -> Option<Engine> {
        let from = rule
            .from_ms()
            .or_else(|| crate::rule::file::parse_now_minus_ms(DEFAULT_FROM))
            .unwrap_or(u64::MAX);
        match (&rule.kind, &rule.query) {
            (RuleKind::Threshold(t), _) => Some(Engine::Threshold(Box::new(ThresholdEngine::new(
                t.clone(),
                rule.interval_ms().unwrap_or(1),
                from,
                threshold::Limits::default(),
            )))),
            (_, RuleQuery::Eql(q)) => {
                match q.kind() {
                    QueryKind::Sequence(seq) => Some(Engine::Sequence(Box::new(
                        SequenceEngine::new(seq, from, sequence::Limits::default()),
                    ))),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Whether any stateful rule is loaded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The loaded stateful rules.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.entries.iter().map(|e| e.rule.as_ref())
    }

    /// Counters so far.
    pub fn stats(&self) -> StatefulStats {
        let mut s = self.retired;
        for e in &self.entries {
            s += e.engine.stats();
        }
        s
    }

    /// Feeds one event document at audit time `time_ms`; `json` builds its JSON document (only
    /// when a rule keeps it). Alerts found go to `out`.
    pub fn on_event(
        &mut self,
        doc: &dyn Document,
        json: &dyn Fn() -> Value,
        time_ms: u64,
        opts: &EvalOptions,
        out: &mut Vec<Finding>,
    ) {
        let mut stage_json: Option<Arc<str>> = None;
        let mut kept = || {
            stage_json
                .get_or_insert_with(|| stage_document(json()))
                .clone()
        };
        let mut completed = Vec::new();
        let mut signals = Vec::new();
        for entry in &mut self.entries {
            match &mut entry.engine {
                Engine::Sequence(e) => {
                    e.on_event(doc, opts, time_ms, &mut kept, &mut completed);
                    sequence_findings(&entry.rule, &mut completed, out);
                }
                Engine::Threshold(e) => {
                    if entry.rule.query.matches_with(doc, opts) {
                        e.count(doc, opts, time_ms, &mut signals);
                    } else {
                        e.advance(time_ms, &mut signals);
                    }
                    threshold_findings(&entry.rule, &self.host, &mut signals, out);
                }
            }
        }
    }

    /// Audit time has reached `now_ms` without an event (a live source is idle): threshold runs
    /// and trailing missing-event windows that are due close.
    pub fn advance(&mut self, now_ms: u64, out: &mut Vec<Finding>) {
        let mut completed = Vec::new();
        let mut signals = Vec::new();
        for entry in &mut self.entries {
            match &mut entry.engine {
                Engine::Sequence(e) => {
                    e.advance(now_ms, &mut completed);
                    sequence_findings(&entry.rule, &mut completed, out);
                }
                Engine::Threshold(e) => {
                    e.advance(now_ms, &mut signals);
                    threshold_findings(&entry.rule, &self.host, &mut signals, out);
                }
            }
        }
    }

    /// The end of the input: threshold rules run once more over the last events, and sequences
    /// waiting only for a trailing missing-event window complete.
    pub fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut completed = Vec::new();
        let mut signals = Vec::new();
        for entry in &mut self.entries {
            match &mut entry.engine {
                Engine::Sequence(e) => {
                    e.finish(&mut completed);
                    sequence_findings(&entry.rule, &mut completed, out);
                }
                Engine::Threshold(e) => {
                    e.finish(&mut signals);
                    threshold_findings(&entry.rule, &self.host, &mut signals, out);
                }
            }
        }
    }
}

fn sequence_findings(rule: &Arc<Rule>, completed: &mut Vec<Completed>, out: &mut Vec<Finding>) {
    for c in completed.drain(..) {
        out.push(Finding {
            rule: Arc::clone(rule),
            time_ms: c.time_ms,
            document: sequence_document(&c.events),
        });
    }
}

fn threshold_findings(
    rule: &Arc<Rule>,
    host: &Value,
    signals: &mut Vec<threshold::Signal>,
    out: &mut Vec<Finding>,
) {
    for s in signals.drain(..) {
        out.push(Finding {
            rule: Arc::clone(rule),
            time_ms: s.run_ms,
            document: s.document(host),
        });
    }
}

/// A sequence's alert document: the last stage's document (so a one-line rendering shows the
/// event that completed the sequence), with `auditsentry.sequence` holding every stage's
/// document in order.
pub fn sequence_document(events: &[Arc<str>]) -> Value {
    let stages: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or(Value::Null))
        .collect();
    let mut doc = match stages.last() {
        Some(Value::Object(last)) => Value::Object(last.clone()),
        _ => Value::Object(Map::new()),
    };
    if let Some(obj) = doc.as_object_mut() {
        let ours = obj
            .entry("auditsentry")
            .or_insert_with(|| Value::Object(Map::new()));
        if !ours.is_object() {
            *ours = Value::Object(Map::new());
        }
        if let Some(ours) = ours.as_object_mut() {
            ours.insert("sequence".into(), Value::Array(stages));
        }
    }
    doc
}

/// A stage document as kept while its sequence is pending: compact JSON, trimmed when longer than
/// [`MAX_STAGE_DOCUMENT`] (strings cut, arrays shortened, and `auditsentry.trimmed: true`).
pub fn stage_document(doc: Value) -> Arc<str> {
    let text = doc.to_string();
    if text.len() <= MAX_STAGE_DOCUMENT {
        return text.into();
    }
    let mut doc = doc;
    trim(&mut doc);
    if let Some(obj) = doc.as_object_mut() {
        let ours = obj
            .entry("auditsentry")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(ours) = ours.as_object_mut() {
            ours.insert("trimmed".into(), Value::Bool(true));
        }
    }
    doc.to_string().into()
}

fn trim(v: &mut Value) {
    match v {
        Value::String(s) if s.len() > TRIM_STRING => {
            let mut end = TRIM_STRING;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push('…');
        }
        Value::Array(a) => {
            a.truncate(TRIM_ARRAY);
            a.iter_mut().for_each(trim);
        }
        Value::Object(o) => o.values_mut().for_each(trim),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::file::load_str;
    use serde_json::json;

    fn rule(id: &str, kind: &str, query: &str, extra: &str) -> Rule {
        let language = if kind == "eql" { "eql" } else { "kuery" };
        let text = format!(
            "[rule]\nrule_id = \"{id}\"\nname = \"n\"\ndescription = \"d\"\nseverity = \"low\"\nrisk_score = 1\n\
             type = \"{kind}\"\nlanguage = \"{language}\"\ninterval = \"1m\"\nfrom = \"now-1m\"\nquery = '''\n{query}\n'''\n{extra}"
        );
        load_str(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    const SEQ: &str = r#"sequence by process.parent.pid [process where process.name == "a"] [process where process.name == "b"]"#;

    fn ev(name: &str, ppid: u32) -> Value {
        json!({"event": {"category": ["process"]}, "process": {"name": name, "parent": {"pid": ppid}}})
    }

    fn feed(s: &mut Stateful, t: u64, doc: &Value) -> Vec<Finding> {
        let mut out = Vec::new();
        s.on_event(doc, &|| doc.clone(), t, &EvalOptions::default(), &mut out);
        out
    }

    #[test]
    fn only_stateful_rules_are_taken_and_a_sequence_alerts_with_every_stage() {
        let mut s = Stateful::new(json!({"id": "h"}), DEFAULT_BUDGET);
        let rest = s.load(vec![
            rule("seq", "eql", SEQ, ""),
            rule("single", "eql", "process where true", ""),
            rule("kql", "query", "process.name:a", ""),
        ]);
        assert_eq!(
            rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["single", "kql"]
        );
        assert!(feed(&mut s, 1, &ev("a", 7)).is_empty());
        let found = feed(&mut s, 2, &ev("b", 7));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule.id, "seq");
        assert_eq!(found[0].time_ms, 2);
        let doc = &found[0].document;
        assert_eq!(
            doc["process"]["name"], "b",
            "the last stage is the top-level document"
        );
        assert_eq!(doc["auditsentry"]["sequence"][0]["process"]["name"], "a");
        assert_eq!(doc["auditsentry"]["sequence"][1]["process"]["name"], "b");
    }

    #[test]
    fn a_reload_keeps_the_state_of_unchanged_rules_only() {
        let mut s = Stateful::new(json!({}), DEFAULT_BUDGET);
        s.load(vec![
            rule("seq", "eql", SEQ, ""),
            rule("other", "eql", SEQ, ""),
        ]);
        feed(&mut s, 1, &ev("a", 7));
        // Reload: "seq" unchanged, "other" changed (its query text differs).
        let changed = SEQ.replace("== \"b\"", "== \"b\" and true");
        s.load(vec![
            rule("seq", "eql", SEQ, ""),
            rule("other", "eql", &changed, ""),
        ]);
        let found = feed(&mut s, 2, &ev("b", 7));
        let ids: Vec<&str> = found.iter().map(|f| f.rule.id.as_str()).collect();
        assert_eq!(ids, ["seq"], "the changed rule starts over");
        // Threshold: the count carries over a reload that changes nothing.
        let thr = "[rule.threshold]\nfield = [\"process.parent.pid\"]\nvalue = 2\n";
        let mut s = Stateful::new(json!({"id": "h"}), DEFAULT_BUDGET);
        s.load(vec![rule("t", "threshold", "process.name:a", thr)]);
        feed(&mut s, 1, &ev("a", 7));
        s.load(vec![rule("t", "threshold", "process.name:a", thr)]);
        feed(&mut s, 2, &ev("a", 7));
        let mut out = Vec::new();
        s.advance(60_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].document["auditsentry"]["threshold_result"]["count"],
            2
        );
        assert_eq!(out[0].document["process"]["parent"]["pid"], 7);
        assert_eq!(out[0].document["host"]["id"], "h");
    }

    #[test]
    fn the_rules_share_one_budget() {
        let mut s = Stateful::new(json!({}), 1 << 20);
        let rules: Vec<Rule> = (0..8)
            .map(|i| rule(&format!("r{i}"), "eql", SEQ, ""))
            .collect();
        s.load(rules);
        // 8 rules: 128 KiB each would be less than the least share.
        assert_eq!(s.share(8), MIN_SHARE);
        assert_eq!(s.share(2), 512 << 10);
        let mut out = Vec::new();
        for pid in 0..2000 {
            let mut doc = ev("a", pid);
            doc["process"]["args"] = json!(["x".repeat(1000)]);
            s.on_event(
                &doc,
                &|| doc.clone(),
                u64::from(pid),
                &EvalOptions::default(),
                &mut out,
            );
        }
        assert!(s.stats().sequences_evicted > 0);
        for e in &s.entries {
            if let Engine::Sequence(seq) = &e.engine {
                assert!(seq.bytes() <= MIN_SHARE, "{}", seq.bytes());
            }
        }
    }

    #[test]
    fn big_stage_documents_are_kept_trimmed() {
        let doc =
            json!({"process": {"args": ["x".repeat(100_000), "y"], "name": "é".repeat(40_000)}});
        let kept = stage_document(doc);
        assert!(kept.len() < 16 * 1024, "{}", kept.len());
        let v: Value = serde_json::from_str(&kept).expect("json");
        assert_eq!(v["auditsentry"]["trimmed"], true);
        assert_eq!(v["process"]["args"][1], "y");
        let small = json!({"a": "b"});
        assert_eq!(&*stage_document(small.clone()), small.to_string());
    }
}
