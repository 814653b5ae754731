//! The seed rule's locations and exclusions as path tests, read from the seed rule's compiled
//! query (so they cannot drift from it), and the decision on a resolved link.

use thiserror::Error;

use super::paths::{within, LinkPair};
use crate::rule::file::{Rule, RuleQuery};
use crate::rule::kql::{Shape, ValueTest};

/// The field whose values the seed's location lists test.
const ARGS_FIELD: &str = "process.args";

/// The seed query's `/*/.*` (a hidden name anywhere), split at its stars.
const HIDDEN_PATTERN: [&str; 3] = ["/", "/.", ""];

/// Why a seed rule's query cannot give the path policy.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// The rule is not written in KQL.
    #[error("the seed rule {0} is not a KQL rule")]
    NotKql(String),
    /// The query lacks the two location lists and the exclusion list on `process.args`.
    #[error(
        "the seed rule {rule}'s query has {positive} location list(s) and {negative} exclusion \
         list(s) on process.args (expected 2 and 1)"
    )]
    Lists {
        /// The rule's id.
        rule: String,
        /// Lists of `process.args` values a match needs.
        positive: usize,
        /// Lists of `process.args` values a match must not have.
        negative: usize,
    },
    /// A value in a list is not a `DIR/*` location (or an exact path / `PREFIX*` exclusion).
    #[error("the seed rule {rule}'s {list} list holds {value}, which is not {expected}")]
    Value {
        /// The rule's id.
        rule: String,
        /// Which list: `system`, `suspicious` or `exclusion`.
        list: &'static str,
        /// The value as parsed.
        value: String,
        /// What the list's values must look like.
        expected: &'static str,
    },
}

/// Where the seed looks for a system binary and a suspicious location among `process.args`, and
/// what it excludes: its query's `process.args:((…/*) and (…/*) and not (…))`, as directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedPolicy {
    /// System-binary locations (`/bin/*` … `/usr/sbin/*`), as directories.
    pub system_dirs: Vec<String>,
    /// Suspicious locations (`/dev/shm/*` … `/var/tmp/*`), as directories.
    pub suspicious_dirs: Vec<String>,
    /// Whether a hidden name anywhere (`/*/.*`) is suspicious.
    pub hidden: bool,
    /// Excluded paths (`/usr/bin/coreutils`).
    pub excluded_exact: Vec<String>,
    /// Excluded prefixes (`/tmp/mkinitcpio*` …).
    pub excluded_prefixes: Vec<String>,
}

impl SeedPolicy {
    /// The policy `rule`'s query states: its first list of `process.args` locations is the
    /// system one, the second the suspicious one, and the negated list the exclusions.
    pub fn from_rule(rule: &Rule) -> Result<Self, PolicyError> {
        let RuleQuery::Kql(query) = &rule.query else {
            return Err(PolicyError::NotKql(rule.id.clone()));
        };
        let mut conjuncts = Vec::new();
        flatten_and(query.shape(), &mut conjuncts);
        let (mut positive, mut negative) = (Vec::new(), Vec::new());
        for conjunct in conjuncts {
            match conjunct {
                Shape::Not(inner) => negative.extend(args_list(*inner)),
                other => positive.extend(args_list(other)),
            }
        }
        let (Ok([system, suspicious]), Ok([excluded])) = (
            <[_; 2]>::try_from(positive.clone()),
            <[_; 1]>::try_from(negative.clone()),
        ) else {
            return Err(PolicyError::Lists {
                rule: rule.id.clone(),
                positive: positive.len(),
                negative: negative.len(),
            });
        };
        let bad = |list, value: &ValueTest, expected| PolicyError::Value {
            rule: rule.id.clone(),
            list,
            value: format!("{value:?}"),
            expected,
        };
        let mut policy = SeedPolicy {
            system_dirs: Vec::new(),
            suspicious_dirs: Vec::new(),
            hidden: false,
            excluded_exact: Vec::new(),
            excluded_prefixes: Vec::new(),
        };
        for value in &system {
            let dir = directory(value).ok_or_else(|| bad("system", value, "DIR/*"))?;
            policy.system_dirs.push(dir);
        }
        for value in &suspicious {
            if matches!(value, ValueTest::Wildcard(p) if p == &HIDDEN_PATTERN) {
                policy.hidden = true;
                continue;
            }
            let dir = directory(value).ok_or_else(|| bad("suspicious", value, "DIR/* or /*/.*"))?;
            policy.suspicious_dirs.push(dir);
        }
        for value in &excluded {
            match value {
                ValueTest::Text(path) => policy.excluded_exact.push(path.clone()),
                ValueTest::Wildcard(p) if p.len() == 2 && p[1].is_empty() => {
                    policy.excluded_prefixes.push(p[0].clone());
                }
                _ => return Err(bad("exclusion", value, "a path or PREFIX*")),
            }
        }
        Ok(policy)
    }

    /// A system-binary location: one of [`Self::system_dirs`] or anything under it (a whole
    /// system directory linked elsewhere exposes every binary in it).
    pub fn is_system(&self, path: &str) -> bool {
        self.system_dirs.iter().any(|dir| within(path, dir))
    }

    /// A suspicious location: one of [`Self::suspicious_dirs`] or under it, or a hidden name
    /// anywhere.
    pub fn is_suspicious(&self, path: &str) -> bool {
        self.suspicious_dirs.iter().any(|dir| within(path, dir)) || (self.hidden && is_hidden(path))
    }

    /// The seed's exclusions, applied to a resolved path.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.excluded_exact.iter().any(|p| p == path)
            || self
                .excluded_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
    }

    /// Whether `dir` is one of the listed locations itself (a directory the host surely has).
    pub fn is_location(&self, dir: &str) -> bool {
        self.system_dirs
            .iter()
            .chain(&self.suspicious_dirs)
            .any(|d| d == dir)
    }

    /// The decision: a system binary linked into a suspicious location, or the reverse (the
    /// seed is order-blind), with neither end excluded.
    pub fn is_suspicious_pair(&self, pair: &LinkPair) -> bool {
        let forward = self.is_system(&pair.target) && self.is_suspicious(&pair.path);
        let reverse = self.is_suspicious(&pair.target) && self.is_system(&pair.path);
        (forward || reverse) && !self.is_excluded(&pair.target) && !self.is_excluded(&pair.path)
    }
}

/// A hidden name anywhere: a component starting with `.` other than `.` and `..`.
pub fn is_hidden(path: &str) -> bool {
    path.split('/')
        .any(|c| c.starts_with('.') && c != "." && c != "..")
}

/// The conjuncts of `shape`, nested `and`s flattened.
fn flatten_and<'a>(shape: Shape<'a>, out: &mut Vec<Shape<'a>>) {
    match shape {
        Shape::And(items) => items.into_iter().for_each(|s| flatten_and(s, out)),
        other => out.push(other),
    }
}

/// The values of `shape` when it is a list of `process.args` values (`or`ed tests on it, or one
/// test), as one list.
fn args_list(shape: Shape<'_>) -> Option<Vec<ValueTest>> {
    let items = match shape {
        Shape::Or(items) => items,
        test @ Shape::Test { .. } => vec![test],
        _ => return None,
    };
    items
        .into_iter()
        .map(|item| match item {
            Shape::Test { field, value } if field == ARGS_FIELD => Some(value),
            _ => None,
        })
        .collect()
}

/// The directory of a `DIR/*` location (`/bin/*` is `/bin`).
fn directory(value: &ValueTest) -> Option<String> {
    match value {
        ValueTest::Wildcard(p) if p.len() == 2 && p[1].is_empty() => p[0]
            .strip_suffix('/')
            .filter(|dir| dir.starts_with('/') && !dir.is_empty())
            .map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::extended::test_support::*;
    use crate::rule::extended::ExtendedDetector;
    use crate::rule::file::{builtin, load_str, RuleKind, Severity, BUILTIN_TOML};

    fn is_system(path: &str) -> bool {
        seed().is_system(path)
    }

    fn is_suspicious(path: &str) -> bool {
        seed().is_suspicious(path)
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// The seed rule file with `edits` (from, to) applied to its text.
    fn edited_seed(edits: &[(&str, &str)]) -> Rule {
        let mut text = BUILTIN_TOML.to_string();
        for (from, to) in edits {
            assert!(text.contains(from), "the seed has {from}");
            text = text.replace(from, to);
        }
        load_str(&text, "edited").unwrap()
    }

    // --- the lists come from the seed

    #[test]
    fn the_lists_are_the_seed_querys() {
        let policy = SeedPolicy::from_rule(&builtin()).unwrap();
        assert_eq!(
            policy.system_dirs,
            strings(&[
                "/bin",
                "/lib",
                "/lib64",
                "/sbin",
                "/usr/bin",
                "/usr/lib",
                "/usr/lib64",
                "/usr/local/bin",
                "/usr/local/lib",
                "/usr/local/lib64",
                "/usr/local/sbin",
                "/usr/sbin",
            ])
        );
        assert_eq!(
            policy.suspicious_dirs,
            strings(&["/dev/shm", "/home", "/root", "/tmp", "/var/tmp"])
        );
        assert!(policy.hidden);
        assert_eq!(policy.excluded_exact, strings(&["/usr/bin/coreutils"]));
        assert_eq!(
            policy.excluded_prefixes,
            strings(&["/tmp/mkinitcpio", "/var/tmp/dracut", "/var/tmp/mkinitramfs"])
        );
    }

    #[test]
    fn a_changed_seed_changes_the_lists_and_the_detectors_rule() {
        let seed = edited_seed(&[
            ("/usr/sbin/*", "/opt/sbin/*"),
            ("/root/* or", "/srv/* or"),
            ("/*/.* or ", ""),
            ("/usr/bin/coreutils", "/usr/bin/busybox"),
            ("/tmp/mkinitcpio*", "/tmp/keep*"),
            ("risk_score = 21", "risk_score = 47"),
            ("severity = \"low\"", "severity = \"medium\""),
            ("\"now-10d\"", "\"now-2d\""),
        ]);
        let policy = SeedPolicy::from_rule(&seed).unwrap();
        assert_eq!(
            policy.system_dirs.last().map(String::as_str),
            Some("/opt/sbin")
        );
        assert!(policy.suspicious_dirs.contains(&"/srv".to_string()));
        assert!(!policy.suspicious_dirs.contains(&"/root".to_string()));
        assert!(!policy.hidden);
        assert_eq!(policy.excluded_exact, strings(&["/usr/bin/busybox"]));
        assert_eq!(policy.excluded_prefixes[0], "/tmp/keep");
        assert!(policy.is_suspicious_pair(&pair("/opt/sbin/x", "/srv/x")));
        assert!(!policy.is_suspicious_pair(&pair("/usr/sbin/x", "/root/x")));
        assert!(!policy.is_suspicious_pair(&pair("/usr/bin/id", "/opt/.x")));

        let det = ExtendedDetector::from_seed(&seed).unwrap();
        assert_eq!(det.policy(), &policy);
        assert_eq!(det.rule().risk_score, 47);
        assert_eq!(det.rule().severity, Severity::Medium);
        assert_eq!(
            det.rule().kind,
            RuleKind::NewTerms {
                fields: strings(&["host.id", "process.parent.name"]),
                history_window_ms: 2 * 24 * 3600 * 1000,
            }
        );
        let builtin_detector = ExtendedDetector::new().unwrap();
        assert_eq!(builtin_detector.rule().kind, builtin().kind);
    }

    #[test]
    fn a_seed_without_the_lists_is_refused() {
        let seed = edited_seed(&[("process.args:(", "process.name:(")]);
        assert_eq!(
            SeedPolicy::from_rule(&seed),
            Err(PolicyError::Lists {
                rule: seed.id.clone(),
                positive: 0,
                negative: 0,
            })
        );
        let seed = edited_seed(&[("/tmp/mkinitcpio*", "/tmp/*/x")]);
        assert!(matches!(
            SeedPolicy::from_rule(&seed),
            Err(PolicyError::Value {
                list: "exclusion",
                ..
            })
        ));
    }

    // --- locations and the decision

    #[test]
    fn location_lists_are_whole_components() {
        assert!(is_system("/usr/bin/id"));
        assert!(is_system("/usr/bin"));
        assert!(!is_system("/usr/binary/x"));
        assert!(is_suspicious("/tmp/x"));
        assert!(!is_suspicious("/TMP/x"));
        assert!(!is_suspicious("/tmpfoo/x"));
        assert!(is_suspicious("/.x"));
        assert!(is_suspicious("/opt/.cache/x"));
        assert!(!is_suspicious("/opt/a-x/a"));
    }

    #[test]
    fn hidden_means_a_dot_name_not_dot_or_dotdot() {
        assert!(is_hidden("/opt/.x"));
        assert!(is_hidden(".x"));
        assert!(!is_hidden("/opt/./x"));
        assert!(!is_hidden("../x"));
    }

    #[test]
    fn decision_is_order_blind_and_honours_exclusions() {
        assert!(is_suspicious_pair(&pair("/usr/bin/id", "/tmp/x")));
        assert!(is_suspicious_pair(&pair("/tmp/x", "/usr/bin/x")));
        assert!(!is_suspicious_pair(&pair("/tmp/a", "/tmp/b")));
        assert!(!is_suspicious_pair(&pair("/usr/bin/id", "/opt/x")));
        assert!(!is_suspicious_pair(&pair("/usr/bin/coreutils", "/tmp/x")));
        assert!(!is_suspicious_pair(&pair(
            "/usr/lib/modules",
            "/tmp/mkinitcpio.x"
        )));
        assert!(!is_suspicious_pair(&pair(
            "/usr/bin/id",
            "/var/tmp/dracut.x"
        )));
        assert!(!is_suspicious_pair(&pair(
            "/usr/bin/id",
            "/var/tmp/mkinitramfs_x"
        )));
        // The exclusions apply to resolved paths: a relative name in /tmp is still excluded.
        assert_eq!(
            links("ln", &["ln", "-s", "/usr/bin/id", "mkinitcpio.x"], "/tmp"),
            one("/usr/bin/id", "/tmp/mkinitcpio.x")
        );
        assert!(!is_suspicious_pair(&pair(
            "/usr/bin/id",
            "/tmp/mkinitcpio.x"
        )));
    }
}
