use super::*;
use crate::rule::file::load_str;

fn rule(language: &str, query: &str) -> Rule {
    let kind = if language == "eql" { "eql" } else { "query" };
    let text = format!(
        "[rule]\nrule_id = \"r\"\nname = \"r\"\ndescription = \"d\"\nseverity = \"low\"\n\
         risk_score = 1\ntype = \"{kind}\"\nlanguage = \"{language}\"\nquery = '''\n{query}\n'''\n"
    );
    load_str(&text, "test").unwrap()
}

/// The field a query is filed under, with its exact values only (no literal runs required).
fn key(language: &str, query: &str) -> Option<(&'static str, Vec<String>)> {
    key_of(&rule(language, query).query).map(|(f, mut r)| {
        assert_eq!(r.pieces, Vec::<String>::new(), "{query}");
        r.exact.sort();
        (f, r.exact)
    })
}

/// The field a query is filed under, with the literal runs its values must contain.
fn runs(language: &str, query: &str) -> Option<(&'static str, Vec<String>)> {
    key_of(&rule(language, query).query).map(|(f, mut r)| {
        assert_eq!(r.exact, Vec::<String>::new(), "{query}");
        r.pieces.sort();
        (f, r.pieces)
    })
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_seed_query_is_filed_under_its_process_names() {
    let seed = crate::rule::file::builtin();
    let (field, mut required) = key_of(&seed.query).unwrap();
    required.exact.sort();
    assert_eq!(field, "process.name");
    assert_eq!(required.exact, strings(&["busybox", "cp", "ln"]));
}

#[test]
fn conjunctions_and_disjunctions_of_literals_are_keys() {
    assert_eq!(
        key("kuery", "event.category:process and process.name:(a or B)"),
        Some(("process.name", strings(&["B", "a"])))
    );
    assert_eq!(
        key(
            "eql",
            r#"process where process.name : ("a", "B") and process.args : "*x*""#
        ),
        Some(("process.name", strings(&["B", "a"])))
    );
    assert_eq!(
        key(
            "eql",
            r#"process where process.name in~ ("a", 1) or process.name == "c""#
        ),
        Some(("process.name", strings(&["a", "c"])))
    );
    assert_eq!(
        key(
            "eql",
            r#"file where process.parent.name like "x" and file.name : "*.sh""#
        ),
        Some(("process.parent.name", strings(&["x"])))
    );
}

#[test]
fn what_cannot_be_proven_falls_back_to_the_category_or_to_always() {
    // A wildcard, a negation, a disjunction with a branch that names no process.name.
    for q in [
        r#"process where process.name : "l*""#,
        r#"process where not process.name == "ln""#,
        r#"process where process.name == "ln" or process.args == "ln""#,
        r#"process where process.args regex "curl.*""#,
        r#"process where process.name != "ln""#,
        r#"process where startsWith(process.name, "ln")"#,
    ] {
        assert_eq!(
            key("eql", q),
            Some(("event.category", strings(&["process"]))),
            "{q}"
        );
    }
    for (lang, q) in [
        ("eql", r#"any where process.name : "l*""#),
        ("kuery", "process.name:l*"),
        ("kuery", "not process.name:ln"),
        ("kuery", "process.name:ln or process.args:ln"),
        ("kuery", ""),
        ("eql", r#"any where length(process.name) == 2"#),
    ] {
        assert_eq!(key(lang, q), None, "{q}");
    }
}

#[test]
fn wildcards_and_substring_tests_are_filed_under_their_longest_literal_run() {
    assert_eq!(
        runs(
            "eql",
            r#"process where process.args : ("*curl*", "wget?x*")"#
        ),
        Some(("process.args", strings(&["curl", "wget"])))
    );
    assert_eq!(
        runs("kuery", "event.category:file and file.path:/etc/cron.d/*"),
        Some(("file.path", strings(&["/etc/cron.d/"])))
    );
    assert_eq!(
        runs(
            "eql",
            r#"process where stringContains(process.command_line, "base64")"#
        ),
        Some(("process.command_line", strings(&["base64"])))
    );
    // A run shorter than MIN_PIECE picks out nothing: the next field it requires.
    assert_eq!(
        key(
            "eql",
            r#"process where process.args : "-c*" and event.action == "exec""#
        ),
        Some(("event.action", strings(&["exec"])))
    );
    let rules = vec![
        rule("eql", r#"process where process.args : "*curl*""#),
        rule("kuery", "process.executable:/tmp/*"),
    ];
    let mut set = RuleSet::new(rules);
    let count = |set: &mut RuleSet, doc: serde_json::Value| set.candidates(&doc).count();
    let doc = serde_json::json!({"process": {"args": ["sh", "-c", "/usr/bin/CURL x"]}});
    assert_eq!(count(&mut set, doc), 1);
    let doc = serde_json::json!({"process": {"args": ["ls"], "executable": "/usr/bin/ls"}});
    assert_eq!(count(&mut set, doc), 0);
    let doc = serde_json::json!({"process": {"executable": "/tmp/x"}});
    assert_eq!(count(&mut set, doc), 1);
}

#[test]
fn candidates_keep_load_order_and_fold_case() {
    let rules = vec![
        rule("kuery", "process.name:b"),
        rule("kuery", "process.pid > 3"),
        rule("eql", r#"process where process.name : "A""#),
        rule("eql", r#"file where true"#),
    ];
    let mut set = RuleSet::new(rules);
    assert_eq!(
        set.stats(),
        IndexStats {
            keyed: 3,
            always: 1
        }
    );
    let names = |set: &mut RuleSet, doc: serde_json::Value| -> Vec<String> {
        set.candidates(&doc).map(|r| r.query_text.clone()).collect()
    };
    let doc = serde_json::json!({"event": {"category": "process"}, "process": {"name": "a"}});
    assert_eq!(
        names(&mut set, doc),
        ["process.pid > 3\n", "process where process.name : \"A\"\n"]
    );
    let doc = serde_json::json!({"process": {"name": ["B", "a"]}});
    assert_eq!(names(&mut set, doc).len(), 3);
    // A value that is no string: every rule filed under the field.
    let doc = serde_json::json!({"process": {"name": 7}, "event": {"category": "file"}});
    assert_eq!(names(&mut set, doc).len(), 4);
}

#[test]
fn candidates_cross_word_boundaries() {
    let rules: Vec<Rule> = (0..150)
        .map(|i| rule("kuery", &format!("process.name:n{}", i % 3)))
        .collect();
    let mut set = RuleSet::new(rules);
    let doc = serde_json::json!({"process": {"name": "N1"}});
    let hits: Vec<usize> = set
        .candidates(&doc)
        .map(|r| {
            r.query_text
                .trim_end()
                .trim_start_matches("process.name:n")
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(hits, vec![1; 50]);
    assert_eq!(set.candidates(&doc).count(), 50);
    assert_eq!(
        RuleSet::unindexed(set.rules().to_vec())
            .candidates(&doc)
            .count(),
        150
    );
}

/// Runs that overlap in one value are all found (a non-overlapping search finds `abcd` in
/// `xABCDEFx` and misses the rule filed under `cdef`), and a padded megabyte value still gives
/// each rule once, in load order.
#[test]
fn overlapping_runs_in_long_values_all_count() {
    let rules = vec![
        rule("eql", r#"process where process.args : "*abcd*""#),
        rule("eql", r#"process where process.args : "*cdef*""#),
        rule("eql", r#"process where process.args : "*zzzz*""#),
    ];
    let mut set = RuleSet::new(rules);
    let queries = |set: &mut RuleSet, doc: serde_json::Value| -> Vec<String> {
        set.candidates(&doc).map(|r| r.query_text.clone()).collect()
    };
    let doc = serde_json::json!({"process": {"args": ["xABCDEFx"]}});
    assert_eq!(queries(&mut set, doc).len(), 2);
    let padded = "abcdef".repeat(200_000);
    let doc = serde_json::json!({"process": {"args": [padded]}});
    assert_eq!(
        queries(&mut set, doc),
        [
            "process where process.args : \"*abcd*\"\n",
            "process where process.args : \"*cdef*\"\n"
        ]
    );
}
