//! The path-aware extended detector: what the seed rule means, computed from paths instead of
//! matched against argv text.
//!
//! Elastic's query looks for a system-binary path and a suspicious path among the arguments of
//! `ln`, `busybox ln` or `cp --symbolic-link`. That misses `cp -s`, relative names
//! (`cd /tmp; ln -s /usr/bin/id x`), `-t DIR`, `../` targets, renamed copies of ln and links made
//! without ln at all. This module works out which links a command would create (GNU ln/cp option
//! syntax, resolved against the process cwd and, for symlink targets, against the link's
//! directory — lexically, never touching the file system) and decides on the resolved
//! (target, link) pairs. Three sensors feed it: exec events ([`ExtendedDetector::on_exec`]), the
//! link system calls ([`ExtendedDetector::on_link`]), and a third reports new symlinks through
//! fanotify ([`ExtendedDetector::on_fanotify`]); the same link seen by several alerts once.
//!
//! It has its own rule id and name, so its alerts never change the exact rule's verdicts; the
//! pipeline puts them through the same new-terms gate and sinks.

mod coreutils;
mod detector;
mod document;
mod paths;
mod policy;
#[cfg(test)]
mod test_support;

pub use coreutils::{identify, links_of_exec, parse_args, plan, Invocation, ParseError, Tool};
pub use detector::{link_pair, DetectorError, ExtendedDetector, PARENTS_CAPACITY};
pub use document::Sensor;
pub use document::{fanotify_document, link_document};
pub use paths::{dirname, last_component, normalize, LinkPair};
pub use policy::{is_hidden, PolicyError, SeedPolicy};

/// `rule.id` of the extended detector (fixed, so its new-terms history survives upgrades).
pub const RULE_ID: &str = "11c92b38-ce91-4195-b02c-384615ada437";

/// `rule.name` of the extended detector.
pub const RULE_NAME: &str = "System Binary Symlink to Suspicious Location (path-aware)";

/// The same (pid, link path) within this much audit time alerts once, whichever sensor saw it.
pub const DEDUPE_WINDOW_MS: u64 = 5_000;
