//! Rule files: Elastic detection-rules TOML → validated [`Rule`] with its KQL or EQL query compiled.
//!
//! Upstream rule files (elastic/detection-rules, `rules/**/*.toml`) are read as they are, so that a
//! newer version of the seed rule can be dropped in unchanged. Keys this crate does not use (`note`,
//! `tags`, `[[rule.threat]]`, `[transform]`, …) are tolerated; keys it needs are checked and a missing
//! or wrong one is an error naming the file. Supported: types `query`, `new_terms` and `threshold`
//! with language `kuery`, and type `eql` with language `eql` (single events and sequences) when
//! every event the query names is one this agent makes and every field the rule reads is one
//! those events can hold ([`crate::catalog`]); everything else is refused at load time rather
//! than silently never firing. [`crate::rule::coverage`] says, for every file, which it is and why.
//! `[metadata]` is optional and not interpreted.

use std::fmt;

use crate::rule::eql;
use crate::rule::kql::{self, Document, EvalOptions};
use crate::rule::threshold::Threshold;

/// The seed rule's TOML text, compiled into the binary so the agent works with no rules directory.
pub const BUILTIN_TOML: &str =
    include_str!("../../../packaging/rules/defense_evasion_symlink_binary_to_writable_dir.toml");

/// `source` of the rule returned by [`builtin`].
pub const BUILTIN_SOURCE: &str = "builtin";

/// Kibana's default `max_signals`: alerts a rule may raise per run.
pub const DEFAULT_MAX_SIGNALS: u32 = 100;

/// Kibana's default look-back (`from`) when a rule file has none.
pub const DEFAULT_FROM: &str = "now-6m";

/// Kibana's default run interval when a rule file has none.
pub const DEFAULT_INTERVAL: &str = "5m";

/// Largest rule file read: upstream rule files are a few KiB (the query has its own, lower bound),
/// and the TOML parser takes up to ~45 bytes of memory per byte of a file made of tiny keys.
pub const MAX_RULE_FILE_BYTES: u64 = 1 << 20;

/// Most rule files one directory may hold.
pub const MAX_RULE_FILES: usize = 1000;

/// Kibana accepts one to three new-terms fields.
pub const MAX_NEW_TERMS_FIELDS: usize = 3;

/// One loaded detection rule: the metadata alerts carry, the compiled query and how it gates.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `rule.rule_id`, the stable identity of the rule (also the key of its new-terms history).
    pub id: String,
    /// `rule.name`, shown in alerts.
    pub name: String,
    /// `rule.description`.
    pub description: String,
    /// `rule.severity`.
    pub severity: Severity,
    /// `rule.risk_score`, 0 to 100.
    pub risk_score: u32,
    /// `rule.language`: `kuery` or `eql`.
    pub language: String,
    /// `rule.query` verbatim as TOML decoded it. Upstream writes `query = '''` + newline + text +
    /// newline + `'''`; TOML drops the first newline but keeps the last, so the text ends in `\n`.
    pub query_text: String,
    /// The compiled query.
    pub query: RuleQuery,
    /// Plain query rule, or new-terms rule with its fields and history window.
    pub kind: RuleKind,
    /// `rule.max_signals` (default 100): most alerts per run of `interval`.
    pub max_signals: u32,
    /// `rule.from` (default `now-6m`), Elastic date math for the look-back of each run.
    pub from: String,
    /// `rule.interval` (default `5m`), how often Kibana would run the rule.
    pub interval: String,
    /// Where the rule came from: the file path as given, or `builtin`.
    pub source: String,
}

impl Rule {
    /// `interval` in milliseconds (None only for a hand-built rule with a bad interval; loaded rules
    /// are validated). Used to size the per-run alert cap.
    pub fn interval_ms(&self) -> Option<u64> {
        parse_duration_ms(&self.interval)
    }

    /// `from` (look-back) in milliseconds, for the same reason as [`Rule::interval_ms`].
    pub fn from_ms(&self) -> Option<u64> {
        parse_now_minus_ms(&self.from)
    }

    /// What the rule is, as `rules check` names it: its type (`query`, `new_terms`,
    /// `threshold`), or `eql` / `eql sequence`.
    pub fn type_name(&self) -> &'static str {
        match (&self.kind, &self.query) {
            (RuleKind::Query, RuleQuery::Eql(q)) if q.is_single_event() => "eql",
            (RuleKind::Query, RuleQuery::Eql(_)) => "eql sequence",
            (kind, _) => kind.name(),
        }
    }
}

/// A rule's compiled query, in its language.
#[derive(Debug, Clone)]
pub enum RuleQuery {
    /// `language = "kuery"`
    Kql(kql::Query),
    /// `language = "eql"` (single events and sequences).
    Eql(eql::Query),
}

impl RuleQuery {
    /// Does the document match, with default options?
    pub fn matches(&self, doc: &serde_json::Value) -> bool {
        self.matches_with(doc, &EvalOptions::default())
    }

    /// Does the document match under the given options?
    pub fn matches_with(&self, doc: &dyn Document, opts: &EvalOptions) -> bool {
        match self {
            RuleQuery::Kql(q) => q.matches_with(doc, opts),
            RuleQuery::Eql(q) => q.matches_with(doc, opts),
        }
    }

    /// The field names the query reads, sorted and without duplicates.
    pub fn fields(&self) -> Vec<String> {
        match self {
            RuleQuery::Kql(q) => q.fields(),
            RuleQuery::Eql(q) => q.fields(),
        }
    }
}

/// Which events besides execs the loaded rules need made (each costs audit volume).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventNeeds {
    /// Some rule queries file events.
    pub file: bool,
    /// Some rule queries network events.
    pub network: bool,
}

impl EventNeeds {
    /// What `rules` need: an EQL query (or sequence stage) on `file` or `network` events, or a
    /// query on any event (`any where`, every KQL query) reading a field only those events hold
    /// (`file.*`; `destination.*`, `source.*`, `network.*`).
    pub fn of(rules: &[Rule]) -> EventNeeds {
        let mut needs = EventNeeds::default();
        for rule in rules {
            let fields = rule.query.fields();
            let reads = |prefixes: &[&str]| {
                fields
                    .iter()
                    .any(|f| prefixes.iter().any(|p| f.starts_with(p)))
            };
            let categories: Vec<Option<&str>> = match &rule.query {
                RuleQuery::Kql(_) => vec![None],
                RuleQuery::Eql(q) => match q.kind() {
                    eql::QueryKind::Event(f) => vec![f.category()],
                    eql::QueryKind::Sequence(seq) => seq
                        .stages
                        .iter()
                        .chain(&seq.until)
                        .map(|st| st.filter.category())
                        .collect(),
                    eql::QueryKind::Sample(_) => Vec::new(),
                },
            };
            for category in categories {
                match category {
                    Some("file") => needs.file = true,
                    Some("network") => needs.network = true,
                    Some(_) => {}
                    None => {
                        needs.file |= reads(&["file."]);
                        needs.network |= reads(&["destination.", "source.", "network."]);
                    }
                }
            }
        }
        needs
    }

    /// Whether any event besides execs is needed.
    pub fn any(self) -> bool {
        self.file || self.network
    }
}

impl From<kql::Query> for RuleQuery {
    fn from(q: kql::Query) -> Self {
        RuleQuery::Kql(q)
    }
}

/// How a matching document becomes an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// `type = "query"`: every matching document alerts.
    Query,
    /// `type = "new_terms"`: a matching document alerts only when its tuple of `fields` values was
    /// not seen in a matching document within `history_window_ms` before it.
    NewTerms {
        /// `rule.new_terms.value`, in file order.
        fields: Vec<String>,
        /// `history_window_start` (`now-10d`) as milliseconds.
        history_window_ms: u64,
    },
    /// `type = "threshold"`: matching documents are counted per group over each run's
    /// look-back, and a group that reaches the threshold alerts once with its count.
    Threshold(Threshold),
}

impl RuleKind {
    /// The rule type as a rule file names it.
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Query => "query",
            RuleKind::NewTerms { .. } => "new_terms",
            RuleKind::Threshold(_) => "threshold",
        }
    }
}

/// `rule.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `low`
    Low,
    /// `medium`
    Medium,
    /// `high`
    High,
    /// `critical`
    Critical,
}

impl Severity {
    /// The detection-rules / ECS spelling (`low`, `medium`, `high`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    fn parse(text: &str) -> Option<Severity> {
        match text {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

mod error;
mod load;
mod set;

pub use error::RuleError;
pub use load::{load_file, load_str, parse_duration_ms, parse_now_minus_ms, MAX_THRESHOLD_FIELDS};
pub use set::{builtin, check, load_configured, load_paths, summary};

#[cfg(test)]
mod tests {
    use super::load::DATE_MATH_EXPECTED;
    use super::*;
    use crate::rule::line_column;
    use std::fs;
    use std::path::{Path, PathBuf};

    /// The seed query exactly as the rule file carries it (without TOML's trailing newline).
    const SEED_QUERY: &str = r"host.os.type:linux and event.category:process and event.type:start and event.action:exec and process.parent.executable:* and
(process.name:ln or process.name:busybox and process.args:ln or process.name:cp and process.args:--symbolic-link) and
process.args:(
  (
    /bin/* or /lib/* or /lib64/* or /sbin/* or /usr/bin/* or /usr/lib/* or /usr/lib64/* or /usr/local/bin/* or
    /usr/local/lib/* or /usr/local/lib64/* or /usr/local/sbin/* or /usr/sbin/*
  ) and (
    /*/.* or /dev/shm/* or /home/* or /root/* or /tmp/* or /var/tmp/*
  ) and
  not (/usr/bin/coreutils or /tmp/mkinitcpio* or /var/tmp/dracut* or /var/tmp/mkinitramfs*)
)";

    /// The 2026/03/02 upstream version of the rule (note shortened), with keys this loader does not
    /// use, including ones from other upstream files (`setup`, `[[rule.required_fields]]`, `[transform]`).
    const UPSTREAM_V2: &str = r#"[metadata]
creation_date = "2025/04/30"
integration = ["endpoint"]
maturity = "production"
updated_date = "2026/03/02"
min_stack_version = "8.13.0"

[rule]
author = ["Elastic"]
description = "Symlink from a system binary to a writable location."
from = "now-9m"
index = ["logs-endpoint.events.process*"]
language = "kuery"
license = "Elastic License v2"
name = "System Binary Symlink to Suspicious Location"
note = """ ## Triage and analysis
"""
setup = "none"
references = ["https://example.invalid/"]
risk_score = 21
rule_id = "d19a2399-f8e2-4b10-80d8-a561ce9d24d1"
severity = "low"
tags = ["OS: Linux", "Rule Type: New Terms"]
timestamp_override = "event.ingested"
type = "new_terms"
query = '''
host.os.type:linux and event.category:process and event.type:start and event.action:exec and
process.parent.executable:(* and not (/bin/make or /sbin/weak-modules or /usr/bin/make or /usr/sbin/weak-modules)) and
(process.name:ln or process.name:busybox and process.args:ln or process.name:cp and process.args:--symbolic-link) and
process.args:(
  (
    /bin/* or /lib/* or /lib64/* or /sbin/* or /usr/bin/* or /usr/lib/* or /usr/lib64/* or /usr/local/bin/* or
    /usr/local/lib/* or /usr/local/lib64/* or /usr/local/sbin/* or /usr/sbin/*
  ) and (
    /*/.* or /dev/shm/* or /home/* or /root/* or /tmp/* or /var/tmp/*
  ) and
    not (
      /usr/bin/coreutils or /tmp/mkinitcpio* or /var/tmp/dracut* or /var/tmp/mkinitramfs* or /var/tmp/pamac-build* or
      /var/tmp/portage/* or usr/lib/python3/dist-packages/*
    )
) and not
process.parent.args:(/usr/bin/qemu-aarch64-static or /usr/sbin/weak-modules or /usr/share/initramfs-tools/hooks/ntfs_3g or /var/tmp/rpm-tmp*)
'''

[[rule.required_fields]]
name = "process.args"
type = "keyword"

[[rule.threat]]
framework = "MITRE ATT&CK"
  [rule.threat.tactic]
  name = "Defense Evasion"
  id = "TA0005"
  reference = "https://attack.mitre.org/tactics/TA0005/"

[rule.new_terms]
field = "new_terms_fields"
value = ["host.id", "process.parent.name"]

[[rule.new_terms.history_window_start]]
field = "history_window_start"
value = "now-5d"

[transform]
[[transform.osquery]]
label = "x"
query = "SELECT 1"
"#;

    /// A minimal valid query rule; tests replace one line to make it invalid.
    const MINIMAL: &str = r#"[rule]
description = "d"
language = "kuery"
name = "n"
risk_score = 47
rule_id = "r-1"
severity = "medium"
type = "query"
query = "process.name:ln"
"#;

    fn err(text: &str) -> RuleError {
        match load_str(text, "x.toml") {
            Ok(rule) => panic!("expected an error, loaded {}", rule.id),
            Err(e) => e,
        }
    }

    #[test]
    fn builtin_rule_loads_with_the_seed_values() {
        let rule = builtin();
        assert_eq!(rule.id, "d19a2399-f8e2-4b10-80d8-a561ce9d24d1");
        assert_eq!(rule.name, "System Binary Symlink to Suspicious Location");
        assert_eq!(rule.severity, Severity::Low);
        assert_eq!(rule.severity.as_str(), "low");
        assert_eq!(rule.risk_score, 21);
        assert_eq!(rule.language, "kuery");
        assert_eq!(rule.max_signals, 100);
        assert_eq!(rule.from, "now-9m");
        assert_eq!(rule.interval, "5m");
        assert_eq!(rule.interval_ms(), Some(300_000));
        assert_eq!(rule.from_ms(), Some(540_000));
        assert_eq!(rule.source, "builtin");
        assert_eq!(
            rule.kind,
            RuleKind::NewTerms {
                fields: vec!["host.id".to_string(), "process.parent.name".to_string()],
                history_window_ms: 10 * 86_400_000,
            }
        );
        assert!(rule
            .description
            .starts_with("This rule detects the creation of a symbolic link"));
    }

    #[test]
    fn builtin_query_text_is_the_seed_query_plus_tomls_trailing_newline() {
        assert_eq!(builtin().query_text, format!("{SEED_QUERY}\n"));
    }

    #[test]
    fn current_upstream_version_with_unknown_keys_loads() {
        let rule = load_str(UPSTREAM_V2, "v2.toml").unwrap();
        assert_eq!(rule.id, "d19a2399-f8e2-4b10-80d8-a561ce9d24d1");
        assert_eq!(rule.max_signals, 100);
        assert_eq!(rule.interval, "5m");
        assert_eq!(rule.source, "v2.toml");
        assert_eq!(
            rule.kind,
            RuleKind::NewTerms {
                fields: vec!["host.id".to_string(), "process.parent.name".to_string()],
                history_window_ms: 5 * 86_400_000,
            }
        );
        assert!(rule.query_text.ends_with("/var/tmp/rpm-tmp*)\n"));
    }

    #[test]
    fn minimal_query_rule_gets_kibana_defaults() {
        let rule = load_str(MINIMAL, "m.toml").unwrap();
        assert_eq!(rule.kind, RuleKind::Query);
        assert_eq!(rule.severity, Severity::Medium);
        assert_eq!(rule.risk_score, 47);
        assert_eq!(rule.max_signals, 100);
        assert_eq!(rule.from, "now-6m");
        assert_eq!(rule.interval, "5m");
        assert_eq!(rule.query_text, "process.name:ln");
    }

    #[test]
    fn unsupported_type_names_file_and_type() {
        let e = err(&MINIMAL.replace("type = \"query\"", "type = \"threshold_x\""));
        assert!(
            matches!(&e, RuleError::UnsupportedType { rule_type, .. } if rule_type == "threshold_x")
        );
        assert_eq!(
            e.to_string(),
            "x.toml: rule type \"threshold_x\" is not supported (only \"query\", \"new_terms\", \"threshold\" and \"eql\")"
        );
    }

    #[test]
    fn threshold_rules_load_with_fields_value_and_cardinality() {
        let base = MINIMAL.replace("type = \"query\"", "type = \"threshold\"");
        let text = format!(
            "{base}\n[rule.threshold]\nfield = [\"host.id\", \"process.executable\"]\nvalue = 15\n\n\
             [[rule.threshold.cardinality]]\nfield = \"process.args\"\nvalue = 100\n"
        );
        let rule = load_str(&text, "x.toml").expect("loads");
        assert_eq!(
            rule.kind,
            RuleKind::Threshold(Threshold {
                fields: vec!["host.id".into(), "process.executable".into()],
                value: 15,
                cardinality: Some(("process.args".into(), 100)),
            })
        );
        assert_eq!(rule.kind.name(), "threshold");
        // One field as a string, or none at all (one group).
        let one = load_str(
            &format!("{base}\n[rule.threshold]\nfield = \"user.id\"\nvalue = 2\n"),
            "x.toml",
        )
        .expect("loads");
        assert!(matches!(&one.kind, RuleKind::Threshold(t) if t.fields == ["user.id"]));
        let none = load_str(
            &format!("{base}\n[rule.threshold]\nfield = []\nvalue = 2\n"),
            "x.toml",
        )
        .expect("loads");
        assert!(matches!(&none.kind, RuleKind::Threshold(t) if t.fields.is_empty()));
        // What is wrong is named.
        for (table, says) in [
            ("", "missing required key `rule.threshold`"),
            ("[rule.threshold]\nfield = \"a\"\n", "missing required key `rule.threshold.value`"),
            ("[rule.threshold]\nvalue = 0\n", "`rule.threshold.value` = \"0\": expected a positive integer"),
            (
                "[rule.threshold]\nvalue = 1\nfield = [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"]\n",
                "expected at most five field names",
            ),
            (
                "[rule.threshold]\nvalue = 1\n[[rule.threshold.cardinality]]\nfield = \"a\"\nvalue = 99999\n",
                "expected 0 to 10000",
            ),
        ] {
            let e = err(&format!("{base}\n{table}"));
            assert!(e.to_string().contains(says), "{e}");
        }
        let e = err(&format!(
            "{}\n[rule.threshold]\nvalue = 1\n",
            base.replace("[rule]\n", "[rule]\ninterval = \"7s\"\nfrom = \"now-1d\"\n")
        ));
        assert!(e.to_string().contains("time buckets"), "{e}");
    }

    #[test]
    fn machine_learning_rule_without_query_is_an_unsupported_type() {
        let text = MINIMAL
            .replace("type = \"query\"", "type = \"machine_learning\"")
            .replace("query = \"process.name:ln\"\n", "")
            .replace("language = \"kuery\"\n", "");
        assert!(matches!(err(&text), RuleError::UnsupportedType { .. }));
    }

    #[test]
    fn unsupported_languages_are_refused() {
        for lang in ["eql", "esql", "lucene"] {
            let e = err(&MINIMAL.replace("\"kuery\"", &format!("\"{lang}\"")));
            assert_eq!(
                e.to_string(),
                format!("x.toml: query language \"{lang}\" is not supported for rule type \"query\" (kuery with query, new_terms or threshold, eql with eql)")
            );
        }
        let e = err(&MINIMAL.replace("type = \"query\"", "type = \"eql\""));
        assert!(matches!(e, RuleError::UnsupportedLanguage { .. }), "{e}");
    }

    /// [`MINIMAL`] as an EQL rule with the given query.
    fn eql_rule(query: &str) -> String {
        MINIMAL
            .replace("\"kuery\"", "\"eql\"")
            .replace("type = \"query\"", "type = \"eql\"")
            .replace(
                "query = \"process.name:ln\"",
                &format!("query = '''\n{query}\n'''"),
            )
    }

    #[test]
    fn eql_rule_loads_and_matches() {
        let rule = load_str(
            &eql_rule("process where process.name == \"ln\" and process.args : \"-S\""),
            "e.toml",
        )
        .unwrap();
        assert_eq!(rule.language, "eql");
        assert_eq!(rule.kind, RuleKind::Query);
        assert!(matches!(rule.query, RuleQuery::Eql(_)));
        let doc = serde_json::json!({
            "event": {"category": ["process"]},
            "process": {"name": "ln", "args": ["ln", "-s"]}
        });
        assert!(rule.query.matches(&doc));
        assert_eq!(
            rule.query.fields(),
            ["event.category", "process.args", "process.name"].map(String::from)
        );
        assert!(load_str(&eql_rule("any where true"), "e.toml").is_ok());
    }

    #[test]
    fn file_and_network_needs_follow_the_loaded_queries() {
        let needs = |queries: &[&str]| {
            let rules: Vec<Rule> = queries
                .iter()
                .map(|q| match q.strip_prefix("kql:") {
                    Some(k) => load_str(&MINIMAL.replace("process.name:ln", k), "k.toml"),
                    None => load_str(&eql_rule(q), "e.toml"),
                })
                .collect::<Result<_, _>>()
                .expect("rules load");
            let n = EventNeeds::of(&rules);
            (n.file, n.network)
        };
        assert_eq!(
            needs(&["process where true", "kql:process.name:ln"]),
            (false, false)
        );
        assert_eq!(needs(&["file where true"]), (true, false));
        assert_eq!(needs(&["network where true"]), (false, true));
        assert_eq!(needs(&["any where file.path : \"/etc/*\""]), (true, false));
        assert_eq!(needs(&["kql:destination.port:4444"]), (false, true));
        assert_eq!(
            needs(&["sequence [process where true] [network where true] until [file where true]"]),
            (true, true)
        );
        // A query on another category naming their fields is refused (no process document
        // holds them), so it needs nothing.
        assert!(load_str(&eql_rule("process where file.path == \"x\""), "e.toml").is_err());
    }

    #[test]
    fn eql_errors_and_unsupported_queries_are_named() {
        let e = err(&eql_rule("process where process.name == (\"ln\""));
        assert!(matches!(e, RuleError::Eql { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "x.toml: query line 2, column 1: expected ')', found the end of the query"
        );
        let e = err(&eql_rule("iam where user.name == \"x\""));
        assert_eq!(
            e.to_string(),
            "x.toml: EQL query on \"iam\" events: this agent makes process, file, network events only"
        );
        // Process sequences load; a sequence that needs other events does not.
        let text = eql_rule("sequence by process.pid [process where true] [any where true]");
        let rule = load_str(&text, "x.toml").expect("a process sequence loads");
        assert!(crate::rule::stateful::is_stateful(&rule));
        let e = err(&eql_rule(
            "sequence by process.entity_id [process where true] [driver where true]",
        ));
        assert_eq!(
            e.to_string(),
            "x.toml: EQL sequence with a stage on \"driver\" events: this agent makes process, file, network events only"
        );
        let e = err(&eql_rule(
            "sequence by process.pid [process where true] [process where true] until [web where true]",
        ));
        assert!(e.to_string().contains("on \"web\" events"), "{e}");
        let e = err(&eql_rule(
            "sample by host.id [process where true] [process where true]",
        ));
        assert!(matches!(e, RuleError::UnsupportedQuery { .. }), "{e}");
    }

    #[test]
    fn rules_reading_fields_the_agent_cannot_fill_are_refused() {
        let e = err(&eql_rule(
            "process where process.name == \"ln\" and not process.Ext.ancestry : \"x\"",
        ));
        assert!(
            matches!(&e, RuleError::MissingFields { fields, .. } if fields == &["process.Ext.ancestry"]),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "x.toml: needs fields this agent does not provide: process.Ext.ancestry"
        );
        // Join keys count, sorted and named once.
        let e = err(&eql_rule(
            "sequence by process.entry_leader.entity_id [process where process.env_vars : \"A\"] \
             [process where process.env_vars : \"B\"]",
        ));
        assert_eq!(
            e.to_string(),
            "x.toml: needs fields this agent does not provide: process.entry_leader.entity_id, \
             process.env_vars"
        );
        // KQL.
        let kql = MINIMAL.replace("process.name:ln", "process.code_signature.trusted:false");
        assert!(matches!(err(&kql), RuleError::MissingFields { .. }));
        // The fields the agent fills from audit load.
        let text = eql_rule(
            "sequence [process where user.name == \"root\" and process.interactive == true and \
             user.Ext.real.id == \"0\"] by process.entity_id [process where group.name == \"x\" \
             and process.parent.args_count > 1 and event.outcome == \"success\"] by \
             process.parent.entity_id",
        );
        load_str(&text, "x.toml").unwrap_or_else(|e| panic!("{e}"));
        // The seed rule reads only fields the agent fills.
        assert!(crate::catalog::missing(None, &builtin().query.fields()).is_empty());
    }

    #[test]
    fn missing_required_keys_are_named() {
        for (line, key) in [
            ("rule_id = \"r-1\"\n", "rule.rule_id"),
            ("name = \"n\"\n", "rule.name"),
            ("description = \"d\"\n", "rule.description"),
            ("severity = \"medium\"\n", "rule.severity"),
            ("risk_score = 47\n", "rule.risk_score"),
            ("type = \"query\"\n", "rule.type"),
            ("language = \"kuery\"\n", "rule.language"),
            ("query = \"process.name:ln\"\n", "rule.query"),
        ] {
            let e = err(&MINIMAL.replace(line, ""));
            assert_eq!(
                e.to_string(),
                format!("x.toml: missing required key `{key}`")
            );
        }
        assert_eq!(
            err("[metadata]\nmaturity = \"production\"\n").to_string(),
            "x.toml: missing required key `rule`"
        );
    }

    #[test]
    fn new_terms_rule_without_new_terms_table_is_an_error() {
        let e = err(&MINIMAL.replace("type = \"query\"", "type = \"new_terms\""));
        assert_eq!(
            e.to_string(),
            "x.toml: missing required key `rule.new_terms`"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = err(&MINIMAL.replace("\"medium\"", "\"severe\""));
        assert_eq!(
            e.to_string(),
            "x.toml: `rule.severity` = \"severe\": expected low, medium, high or critical"
        );
        let e = err(&MINIMAL.replace("47", "101"));
        assert_eq!(
            e.to_string(),
            "x.toml: `rule.risk_score` = \"101\": expected 0 to 100"
        );
        let e = err(&MINIMAL.replace("47", "-1"));
        assert!(matches!(
            e,
            RuleError::Invalid {
                key: "rule.risk_score",
                ..
            }
        ));
        let e = err(&format!("{MINIMAL}max_signals = 0\n"));
        assert!(matches!(
            e,
            RuleError::Invalid {
                key: "rule.max_signals",
                ..
            }
        ));
        let e = err(&format!("{MINIMAL}interval = \"5 minutes\"\n"));
        assert!(matches!(
            e,
            RuleError::Invalid {
                key: "rule.interval",
                ..
            }
        ));
    }

    #[test]
    fn history_window_other_than_now_minus_n_unit_names_file_and_value() {
        for bad in [
            "now-10M",
            "now-1y",
            "10d",
            "now-d",
            "now-0d",
            "now-10d/d",
            "now+1d",
        ] {
            let text = BUILTIN_TOML.replace("\"now-10d\"", &format!("\"{bad}\""));
            let e = err(&text);
            assert_eq!(
                e.to_string(),
                format!("x.toml: `rule.new_terms.history_window_start` = \"{bad}\": {DATE_MATH_EXPECTED}")
            );
        }
    }

    #[test]
    fn new_terms_fields_must_be_one_to_three() {
        let text = BUILTIN_TOML.replace(
            "value = [\"host.id\", \"process.parent.name\"]",
            "value = []",
        );
        assert!(matches!(
            err(&text),
            RuleError::Invalid {
                key: "rule.new_terms.value",
                ..
            }
        ));
        let text = BUILTIN_TOML.replace(
            "value = [\"host.id\", \"process.parent.name\"]",
            "value = [\"a\", \"b\", \"c\", \"d\"]",
        );
        assert!(matches!(
            err(&text),
            RuleError::Invalid {
                key: "rule.new_terms.value",
                ..
            }
        ));
    }

    #[test]
    fn date_math_units() {
        assert_eq!(parse_now_minus_ms("now-30s"), Some(30_000));
        assert_eq!(parse_now_minus_ms("now-9m"), Some(540_000));
        assert_eq!(parse_now_minus_ms("now-2h"), Some(7_200_000));
        assert_eq!(parse_now_minus_ms("now-10d"), Some(864_000_000));
        assert_eq!(parse_now_minus_ms("now-1w"), Some(604_800_000));
        assert_eq!(parse_now_minus_ms("now-99999999999999999w"), None);
        assert_eq!(parse_now_minus_ms("now-+1d"), None);
        assert_eq!(parse_now_minus_ms("now-"), None);
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("é"), None);
    }

    #[test]
    fn toml_syntax_error_carries_line_and_column() {
        let e = err("[rule]\nname = \"n\"\nrisk_score = = 3\n");
        match &e {
            RuleError::Toml {
                file, line, column, ..
            } => {
                assert_eq!(file, "x.toml");
                assert_eq!((*line, *column), (3, 14));
            }
            other => panic!("expected a TOML error, got {other:?}"),
        }
        assert!(e.to_string().starts_with("x.toml: line 3, column 14: "));
    }

    #[test]
    fn wrong_toml_type_is_a_toml_error_with_position() {
        let e = err(&MINIMAL.replace("risk_score = 47", "risk_score = \"47\""));
        assert!(matches!(e, RuleError::Toml { line: 5, .. }), "{e:?}");
    }

    #[test]
    fn kql_error_is_reported_with_file_and_query_position() {
        let e = err(&MINIMAL.replace("process.name:ln", "process.name:(ln"));
        assert!(matches!(e, RuleError::Kql { .. }));
        assert!(
            e.to_string().starts_with("x.toml: query line 1, column "),
            "{e}"
        );
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 6), (2, 3));
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("abc", 99), (1, 4));
        // Offset inside a multi-byte character backs off to its start.
        assert_eq!(line_column("é", 1), (1, 1));
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn directory_loads_toml_files_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.toml", &MINIMAL.replace("r-1", "r-b"));
        write(dir.path(), "a.toml", &MINIMAL.replace("r-1", "r-a"));
        write(dir.path(), "c.txt", "not a rule");
        write(dir.path(), ".hidden.toml", "not a rule either");
        fs::create_dir(dir.path().join("sub.toml")).unwrap();
        let rules = load_paths(&[dir.path().to_path_buf()]).unwrap();
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r-a", "r-b"]);
        assert_eq!(
            rules[0].source,
            dir.path().join("a.toml").display().to_string()
        );
    }

    #[test]
    fn paths_with_no_rule_are_an_error_and_no_path_at_all_is_the_builtin_rule() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "notes.txt", "not a rule");
        let e = match load_configured(&[dir.path().to_path_buf()]) {
            Err(e) => e.to_string(),
            Ok(rules) => panic!("loaded {} rules", rules.len()),
        };
        assert_eq!(
            e,
            format!(
                "{}: no rules loaded (no *.toml rule files found there)",
                dir.path().display()
            )
        );
        let results = check(&[dir.path().to_path_buf()]);
        assert!(matches!(
            results.as_slice(),
            [Err(RuleError::NoRules { .. })]
        ));
        let builtin = load_configured(&[]).unwrap();
        assert_eq!(builtin.len(), 1);
        assert_eq!(builtin[0].source, BUILTIN_SOURCE);
    }

    #[test]
    fn summary_names_the_origin_and_every_rule() {
        let seed = builtin();
        assert_eq!(
            summary(std::slice::from_ref(&seed), &[]),
            "1 rule(s) built in (no rule path configured): \
             d19a2399-f8e2-4b10-80d8-a561ce9d24d1 \"System Binary Symlink to Suspicious Location\""
        );
        let mut odd = load_str(MINIMAL, "m.toml").unwrap();
        odd.name = "two\nlines".into();
        let many: Vec<Rule> = std::iter::repeat_n(odd, 21).collect();
        let line = summary(&many, &[PathBuf::from("/a"), PathBuf::from("/b")]);
        assert!(
            line.starts_with("21 rule(s) from /a, /b: r-1 \"two\\nlines\", "),
            "{line}"
        );
        assert!(line.ends_with(", … and 1 more"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn duplicate_rule_id_across_files_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.toml", MINIMAL);
        let b = write(dir.path(), "b.toml", MINIMAL);
        let e = match load_paths(&[dir.path().to_path_buf()]) {
            Err(e) => e,
            Ok(_) => panic!("expected a duplicate error"),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "{}: rule_id r-1 is already defined in {}",
                b.display(),
                a.display()
            )
        );
    }

    #[test]
    fn check_reports_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "good.toml", MINIMAL);
        let bad = write(
            dir.path(),
            "bad.toml",
            &MINIMAL.replace("\"kuery\"", "\"esql\""),
        );
        let gone = dir.path().join("gone.toml");
        let results = check(&[good.clone(), bad.clone(), gone.clone()]);
        assert_eq!(results.len(), 3);
        assert!(matches!(&results[0], Ok(r) if r.id == "r-1"));
        assert!(
            matches!(&results[1], Err(RuleError::UnsupportedLanguage { file, .. })
            if *file == bad.display().to_string())
        );
        match &results[2] {
            Err(e @ RuleError::Io { .. }) => assert_eq!(e.file(), gone.display().to_string()),
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn load_file_reads_the_packaged_rule() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/rules/defense_evasion_symlink_binary_to_writable_dir.toml"
        ));
        let rule = load_file(path).unwrap();
        assert_eq!(rule.id, "d19a2399-f8e2-4b10-80d8-a561ce9d24d1");
        assert_eq!(rule.source, path.display().to_string());
    }
}
