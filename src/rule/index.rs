//! The rule index: each stateless rule is filed under one literal its query requires — a field and
//! the set of string values one of which that field must hold for the rule to match (`process.name
//! : ("a", "b")`, `process.name in (…)`, `process:name:(a or b)`, an EQL query's event category) —
//! so that an event is tested only against the rules filed under its own values, plus the rules
//! whose requirements could not be proven ("always test").
//!
//! The extraction is conservative: a requirement is taken only from a positive test of a string
//! literal in a conjunction, or from a disjunction whose every branch requires the same field. Keys
//! are compared with ASCII letters folded (EQL's `:`, `in~` fold ASCII, and an exact match is also a
//! folded match), so the index can only test more rules than match, never fewer; a document value
//! that is not a string (where a numeric literal could match) makes every rule filed under that
//! field a candidate. Candidates are tested in load order, so alerts come out as without the index.

use std::collections::HashMap;

use crate::rule::eql;
use crate::rule::file::{Rule, RuleQuery};
use crate::rule::kql::{self, Document, Scalar};

/// The fields rules are filed under, most selective first: a rule goes under the first of them it
/// is proven to require. Single-valued fields only, so one lookup per field per event.
const KEY_FIELDS: &[&str] = &[
    "process.name",
    "process.parent.name",
    "file.name",
    "file.extension",
    "process.executable",
    "process.parent.executable",
    "event.action",
    "event.category",
];

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
    path: &'static str,
    /// Rule positions by ASCII-lower-cased required value.
    by_value: HashMap<String, Vec<usize>>,
    /// Every rule filed under this field (candidates when the event's value is no string).
    all: Vec<usize>,
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
        for (at, rule) in rules.iter().enumerate() {
            let Some((path, values)) = key_of(&rule.query) else {
                set(&mut always, at);
                continue;
            };
            let field = match fields.iter().position(|f| f.path == path) {
                Some(i) => &mut fields[i],
                None => {
                    fields.push(KeyField {
                        path,
                        by_value: HashMap::new(),
                        all: Vec::new(),
                    });
                    let last = fields.len() - 1;
                    &mut fields[last]
                }
            };
            field.all.push(at);
            for value in values {
                let list = field
                    .by_value
                    .entry(value.to_ascii_lowercase())
                    .or_default();
                if list.last() != Some(&at) {
                    list.push(at);
                }
            }
        }
        fields.sort_by_key(|f| KEY_FIELDS.iter().position(|k| *k == f.path));
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
            doc.any_value(field.path, &mut |value| {
                let hits = match value {
                    Scalar::Str(s) if s.bytes().any(|b| b.is_ascii_uppercase()) => {
                        field.by_value.get(&s.to_ascii_lowercase())
                    }
                    Scalar::Str(s) => field.by_value.get(s),
                    Scalar::Num(_) | Scalar::Bool(_) => Some(&field.all),
                };
                for &at in hits.into_iter().flatten() {
                    set(mask, at);
                }
                false
            });
        }
    }
}

fn set(mask: &mut [u64], at: usize) {
    if let Some(word) = mask.get_mut(at / 64) {
        *word |= 1 << (at % 64);
    }
}

/// The key a query is filed under: the first of [`KEY_FIELDS`] it requires, with the values one
/// of which that field must hold. `None`: nothing proven, test on every event.
fn key_of(query: &RuleQuery) -> Option<(&'static str, Vec<String>)> {
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

/// The string values one of which `path` must hold for the KQL tree to match, if proven.
fn kql_requires(node: &kql::Node, path: &str) -> Option<Vec<String>> {
    match node {
        kql::Node::Leaf(kql::Leaf {
            field,
            test: kql::Test::Equals { text, .. },
        }) if field == path => Some(vec![text.clone()]),
        kql::Node::And(items) => items.iter().find_map(|n| kql_requires(n, path)),
        kql::Node::Or(items) => union(items.iter().map(|n| kql_requires(n, path))),
        kql::Node::Leaf(_) | kql::Node::Not(_) | kql::Node::MatchAll => None,
    }
}

/// The string values one of which `path` must hold for the EQL filter to match, if proven.
fn eql_requires(filter: &eql::EventFilter, path: &str) -> Option<Vec<String>> {
    if path == "event.category" {
        if let Some(category) = filter.category() {
            return Some(vec![category.to_string()]);
        }
    }
    cond_requires(filter.condition(), path)
}

fn cond_requires(cond: &eql::Cond, path: &str) -> Option<Vec<String>> {
    match cond {
        eql::Cond::Field { path: p, test } if p == path => test_requires(test),
        eql::Cond::And(items) => items.iter().find_map(|c| cond_requires(c, path)),
        eql::Cond::Or(items) => union(items.iter().map(|c| cond_requires(c, path))),
        eql::Cond::Field { .. }
        | eql::Cond::Const(_)
        | eql::Cond::Not(_)
        | eql::Cond::Exists(_)
        | eql::Cond::Script { .. } => None,
    }
}

/// The strings a string value must equal (ASCII case aside) to pass `test`, if it is an equality
/// test. Non-string literals are left out: only a non-string value can equal them, and such a
/// value makes every rule under the field a candidate.
fn test_requires(test: &eql::Test) -> Option<Vec<String>> {
    let strings = |list: &[eql::Val<'static>]| {
        list.iter()
            .filter_map(|v| match v {
                eql::Val::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect()
    };
    match test {
        eql::Test::Cmp(eql::ast::CmpOp::Eq, lit) => Some(strings(std::slice::from_ref(lit))),
        eql::Test::In(list) | eql::Test::InFold(list) => Some(strings(list)),
        eql::Test::Pattern(set) => set.literals().map(|(exact, _)| exact.to_vec()),
        eql::Test::Cmp(..) | eql::Test::Affix { .. } | eql::Test::Cidr(_) => None,
    }
}

/// The union of every branch's values, or `None` when some branch requires nothing provable.
fn union(branches: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for branch in branches {
        out.extend(branch?);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
