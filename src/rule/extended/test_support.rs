//! Helpers shared by the extended detector's unit tests.

use super::{links_of_exec, LinkPair};

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
    links_of_exec(name, &s(argv), cwd)
        .into_iter()
        .map(|p| (p.target, p.path))
        .collect()
}

pub(super) fn one(target: &str, path: &str) -> Vec<(String, String)> {
    vec![(target.to_string(), path.to_string())]
}
