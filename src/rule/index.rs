//! The rule index: each stateless rule is filed under one literal its query requires — a field and
//! the set of string values one of which that field must hold for the rule to match (`process.name
//! : ("a", "b")`, `process.name in (…)`, `process:name:(a or b)`, an EQL query's event category) —
//! so that an event is tested only against the rules filed under its own values, plus the rules
//! whose requirements could not be proven ("always test").
//!
//! A requirement is either a set of exact values or a set of literal runs one of which the value
//! must contain: a wildcard pattern (`process.args : "*curl*"`, `file.path like "/etc/cron.d/*"`)
//! or `startsWith`/`endsWith`/`stringContains` requires its longest run of literal text, found in
//! each value of the field with one Aho-Corasick pass per field.
//!
//! The extraction is conservative: a requirement is taken only from a positive test in a
//! conjunction, or from a disjunction whose every branch requires the same field. Keys are compared
//! with ASCII letters folded (EQL's `:`, `in~` fold ASCII, and an exact match is also a folded
//! match), so the index can only test more rules than match, never fewer; a document value that is
//! not a string (where a numeric literal could match) makes every rule filed under that field a
//! candidate. Candidates are tested in load order, so alerts come out as without the index.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::document::Field;
use crate::rule::eql;
use crate::rule::file::{Rule, RuleQuery};
use crate::rule::kql::{self, Document, Scalar};

/// The fields rules are filed under, most selective first: a rule goes under the first of them it
/// is proven to require. Each value an event holds is looked up (every argument, for the args).
const KEY_FIELDS: &[&str] = &[
    "process.name",
    "process.parent.name",
    "file.name",
    "file.extension",
    "file.path",
    "process.executable",
    "process.parent.executable",
    "process.working_directory",
    "user.name",
    "process.command_line",
    "process.args",
    "process.parent.command_line",
    "process.parent.args",
    "event.action",
    "event.category",
];

/// Shortest literal run a rule is filed under: a shorter one (`-c`, `/`) is in too many values to
/// pick anything out, so such a rule is filed under a later field instead.
const MIN_PIECE: usize = 3;

/// The stateless rules in load order, with the index that picks each event's candidates.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    index: Option<Index>,
}

/// Rules filed by key, and the bit mask reused to collect one event's candidates.
#[derive(Debug)]
struct Index {
    /// Key fields some rule is filed under, in [`KEY_FIELDS`] order.
    fields: Vec<KeyField>,
    /// One bit per rule that is tested on every event.
    always: Vec<u64>,
    /// The current event's candidates (scratch).
    mask: Vec<u64>,
}

/// The rules filed under one field.
#[derive(Debug)]
struct KeyField {
    /// One of [`KEY_FIELDS`], resolved for lookups.
    field: Field,
    /// Rule positions by ASCII-lower-cased required value.
    by_value: HashMap<String, Vec<usize>>,
    /// Literal runs some rule requires a value to contain, and each run's rules.
    contains: Option<Contains>,
    /// Every rule filed under this field (candidates when the event's value is no string).
    all: Vec<usize>,
}

/// The literal runs of one field, searched together (ASCII case folded).
#[derive(Debug)]
struct Contains {
    runs: AhoCorasick,
    /// Rule positions by run number.
    rules: Vec<Vec<usize>>,
}

/// What a rule requires of one field's value: to equal one of `exact` or to contain one of
/// `pieces` (ASCII case aside).
#[derive(Debug, Default)]
struct Requirement {
    exact: Vec<String>,
    pieces: Vec<String>,
}

impl Requirement {
    fn exact(values: Vec<String>) -> Requirement {
        Requirement {
            exact: values,
            pieces: Vec::new(),
        }
    }

    fn pieces(pieces: Vec<String>) -> Option<Requirement> {
        let usable = pieces.iter().all(|p| p.len() >= MIN_PIECE);
        usable.then_some(Requirement {
            exact: Vec::new(),
            pieces,
        })
    }
}

/// How many rules the index filed under a key, and how many it tests on every event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Rules tested only on events holding one of their required values.
    pub keyed: usize,
    /// Rules tested on every event.
    pub always: usize,
}

impl RuleSet {
    /// The rules, indexed.
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let index = Index::build(&rules);
        RuleSet {
            rules,
            index: Some(index),
        }
    }

    /// The rules without an index: every event is tested against every rule (the reference the
    /// indexed path is checked against).
    pub fn unindexed(rules: Vec<Rule>) -> RuleSet {
        RuleSet { rules, index: None }
    }

    /// The rules in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How the rules were filed.
    pub fn stats(&self) -> IndexStats {
        match &self.index {
            Some(index) => {
                let always: usize = index.always.iter().map(|w| w.count_ones() as usize).sum();
                IndexStats {
                    keyed: self.rules.len() - always,
                    always,
                }
            }
            None => IndexStats {
                keyed: 0,
                always: self.rules.len(),
            },
        }
    }

    /// The rules that may match `doc`, in load order: every rule that matches is among them.
    pub fn candidates(&mut self, doc: &dyn Document) -> Candidates<'_> {
        let Some(index) = &mut self.index else {
            return Candidates {
                rules: &self.rules,
                mask: None,
                next: 0,
            };
        };
        index.collect(doc);
        Candidates {
            rules: &self.rules,
            mask: Some(&index.mask),
            next: 0,
        }
    }
}

/// The candidate rules of one event, in load order (see [`RuleSet::candidates`]).
#[derive(Debug)]
pub struct Candidates<'a> {
    rules: &'a [Rule],
    mask: Option<&'a [u64]>,
    next: usize,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a Rule;

    fn next(&mut self) -> Option<&'a Rule> {
        let Some(mask) = self.mask else {
            let rule = self.rules.get(self.next)?;
            self.next += 1;
            return Some(rule);
        };
        loop {
            let word = *mask.get(self.next / 64)?;
            let bits = word >> (self.next % 64);
            if bits == 0 {
                self.next = (self.next / 64 + 1) * 64;
                continue;
            }
            let at = self.next + bits.trailing_zeros() as usize;
            self.next = at + 1;
            return self.rules.get(at);
        }
    }
}

impl Index {
    fn build(rules: &[Rule]) -> Index {
        let words = rules.len().div_ceil(64);
        let mut always = vec![0u64; words];
        let mut fields: Vec<KeyField> = Vec::new();
        let mut runs: Vec<HashMap<String, Vec<usize>>> = Vec::new();
        for (at, rule) in rules.iter().enumerate() {
            let Some((path, required)) = key_of(&rule.query) else {
                set(&mut always, at);
                continue;
            };
            let place = match fields.iter().position(|f| f.field.path() == path) {
                Some(i) => i,
                None => {
                    fields.push(KeyField {
                        field: Field::new(path),
                        by_value: HashMap::new(),
                        contains: None,
                        all: Vec::new(),
                    });
                    runs.push(HashMap::new());
                    fields.len() - 1
                }
            };
            let field = &mut fields[place];
            field.all.push(at);
            for value in required.exact {
                push_once(
                    field
                        .by_value
                        .entry(value.to_ascii_lowercase())
                        .or_default(),
                    at,
                );
            }
            for piece in required.pieces {
                push_once(
                    runs[place].entry(piece.to_ascii_lowercase()).or_default(),
                    at,
                );
            }
        }
        for (field, runs) in fields.iter_mut().zip(runs) {
            field.contains = Contains::build(runs);
        }
        fields.sort_by_key(|f| KEY_FIELDS.iter().position(|k| *k == f.field.path()));
        Index {
            fields,
            mask: always.clone(),
            always,
        }
    }

    /// Fills `mask` with the candidates of `doc`.
    fn collect(&mut self, doc: &dyn Document) {
        self.mask.copy_from_slice(&self.always);
        let mask = &mut self.mask;
        for field in &self.fields {
            doc.any_field(&field.field, &mut |value| {
                let s = match value {
                    Scalar::Str(s) => s,
                    Scalar::Num(_) | Scalar::Bool(_) => {
                        field.all.iter().for_each(|&at| set(mask, at));
                        return false;
                    }
                };
                let hits = if s.bytes().any(|b| b.is_ascii_uppercase()) {
                    field.by_value.get(&s.to_ascii_lowercase())
                } else {
                    field.by_value.get(s)
                };
                hits.into_iter().flatten().for_each(|&at| set(mask, at));
                if let Some(contains) = &field.contains {
                    for run in contains.runs.find_overlapping_iter(s) {
                        let rules = contains.rules.get(run.pattern().as_usize());
                        rules.into_iter().flatten().for_each(|&at| set(mask, at));
                    }
                }
                false
            });
        }
    }
}

impl Contains {
    /// The automaton of `runs` (lower-cased run → rules), or `None` without runs.
    fn build(runs: HashMap<String, Vec<usize>>) -> Option<Contains> {
        if runs.is_empty() {
            return None;
        }
        let (texts, rules): (Vec<String>, Vec<Vec<usize>>) = runs.into_iter().unzip();
        let runs = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&texts)
            .ok()?;
        Some(Contains { runs, rules })
    }
}

fn push_once(list: &mut Vec<usize>, at: usize) {
    if list.last() != Some(&at) {
        list.push(at);
    }
}

fn set(mask: &mut [u64], at: usize) {
    if let Some(word) = mask.get_mut(at / 64) {
        *word |= 1 << (at % 64);
    }
}

/// The key a query is filed under: the first of [`KEY_FIELDS`] it requires, with what that
/// field must hold. `None`: nothing proven, test on every event.
fn key_of(query: &RuleQuery) -> Option<(&'static str, Requirement)> {
    KEY_FIELDS.iter().find_map(|&path| {
        let values = match query {
            RuleQuery::Kql(q) => kql_requires(q.root(), path),
            RuleQuery::Eql(q) => match q.kind() {
                eql::QueryKind::Event(filter) => eql_requires(filter, path),
                eql::QueryKind::Sequence(_) | eql::QueryKind::Sample(_) => None,
            },
        }?;
        Some((path, values))
    })
}

/// What `path` must hold for the KQL tree to match, if proven.
fn kql_requires(node: &kql::Node, path: &str) -> Option<Requirement> {
    match node {
        kql::Node::Leaf(kql::Leaf {
            field,
            test: kql::Test::Equals { text, .. },
        }) if field.path() == path => Some(Requirement::exact(vec![text.clone()])),
        kql::Node::Leaf(kql::Leaf {
            field,
            test: kql::Test::Wildcard(pattern),
        }) if field.path() == path => Requirement::pieces(longest(pattern.pieces())),
        kql::Node::And(items) => items.iter().find_map(|n| kql_requires(n, path)),
        kql::Node::Or(items) => union(items.iter().map(|n| kql_requires(n, path))),
        kql::Node::Leaf(_) | kql::Node::Not(_) | kql::Node::MatchAll => None,
    }
}

/// What `path` must hold for the EQL filter to match, if proven.
fn eql_requires(filter: &eql::EventFilter, path: &str) -> Option<Requirement> {
    if path == "event.category" {
        if let Some(category) = filter.category() {
            return Some(Requirement::exact(vec![category.to_string()]));
        }
    }
    cond_requires(filter.condition(), path)
}

fn cond_requires(cond: &eql::Cond, path: &str) -> Option<Requirement> {
    match cond {
        eql::Cond::Field { path: p, test } if p.path() == path => test_requires(test),
        eql::Cond::And(items) => items.iter().find_map(|c| cond_requires(c, path)),
        eql::Cond::Or(items) => union(items.iter().map(|c| cond_requires(c, path))),
        eql::Cond::Field { .. }
        | eql::Cond::Const(_)
        | eql::Cond::Not(_)
        | eql::Cond::Exists(_)
        | eql::Cond::Script { .. } => None,
    }
}

/// What a string value must equal or contain (ASCII case aside) to pass `test`, if provable.
/// Non-string literals are left out: only a non-string value can equal them, and such a value
/// makes every rule under the field a candidate.
fn test_requires(test: &eql::Test) -> Option<Requirement> {
    let strings = |list: &[eql::Val<'static>]| {
        list.iter()
            .filter_map(|v| match v {
                eql::Val::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect()
    };
    match test {
        eql::Test::Cmp(eql::ast::CmpOp::Eq, lit) => {
            Some(Requirement::exact(strings(std::slice::from_ref(lit))))
        }
        eql::Test::In(list) | eql::Test::InFold(list) => Some(Requirement::exact(strings(list))),
        eql::Test::Pattern(set) => {
            let (exact, pieces) = set.required()?;
            let mut required = Requirement::pieces(pieces.to_vec())?;
            required.exact = exact.to_vec();
            Some(required)
        }
        eql::Test::Affix { needle, .. } => Requirement::pieces(vec![needle.clone()]),
        eql::Test::Cmp(..) | eql::Test::Cidr(_) => None,
    }
}

/// The longest of a pattern's literal runs (a match contains each of them).
fn longest(runs: Vec<String>) -> Vec<String> {
    runs.into_iter()
        .max_by_key(String::len)
        .into_iter()
        .collect()
}

/// The union of every branch's requirements, or `None` when some branch requires nothing
/// provable.
fn union(branches: impl Iterator<Item = Option<Requirement>>) -> Option<Requirement> {
    let mut out = Requirement::default();
    for branch in branches {
        let branch = branch?;
        out.exact.extend(branch.exact);
        out.pieces.extend(branch.pieces);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
