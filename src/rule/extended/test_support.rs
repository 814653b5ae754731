//! Helpers shared by the extended detector's unit tests.

use std::sync::OnceLock;

use super::{links_of_exec, LinkPair, SeedPolicy};
use crate::rule::file::builtin;

/// The built-in seed rule's policy.
pub(super) fn seed() -> &'static SeedPolicy {
    static SEED: OnceLock<SeedPolicy> = OnceLock::new();
    SEED.get_or_init(|| SeedPolicy::from_rule(&builtin()).unwrap())
}

/// The seed's decision on a pair.
pub(super) fn is_suspicious_pair(pair: &LinkPair) -> bool {
    seed().is_suspicious_pair(pair)
}

pub(super) fn s(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

pub(super) fn pair(target: &str, path: &str) -> LinkPair {
    LinkPair {
        target: target.to_string(),
        path: path.to_string(),
    }
}

/// Links of `argv` run by `name` in `cwd`, as (target, path) strings.
pub(super) fn links(name: &str, argv: &[&str], cwd: &str) -> Vec<(String, String)> {
    links_of_exec(name, &s(argv), cwd, seed())
        .into_iter()
        .map(|p| (p.target, p.path))
        .collect()
}

pub(super) fn one(target: &str, path: &str) -> Vec<(String, String)> {
    vec![(target.to_string(), path.to_string())]
}
