//! Semantics of whole queries on JSON documents, each case tied to what Elasticsearch documents or
//! does (the EQL syntax and function references, and its query translation).

use super::*;
use serde_json::json;

fn q(text: &str) -> Query {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn err(text: &str) -> EqlError {
    match parse(text) {
        Ok(q) => panic!("{text:?} compiled: {q:?}"),
        Err(e) => e,
    }
}

fn exec(name: &str, args: &[&str]) -> Value {
    json!({
        "event": {"category": ["process"], "type": ["start"], "action": "exec"},
        "host": {"os": {"type": "linux"}},
        "process": {
            "name": name,
            "executable": format!("/usr/bin/{name}"),
            "args": args,
            "args_count": args.len(),
            "command_line": args.join(" "),
            "pid": 4242,
            "parent": {"name": "bash", "executable": "/usr/bin/bash", "args": ["bash", "-i"]}
        },
        "user": {"id": "0"}
    })
}

fn yes(text: &str, doc: &Value) {
    assert!(q(text).matches(doc), "should match: {text}\n{doc}");
}

fn no(text: &str, doc: &Value) {
    assert!(!q(text).matches(doc), "should not match: {text}\n{doc}");
}

#[test]
fn category_filters_on_event_category() {
    let doc = exec("ln", &["ln", "-s", "a", "b"]);
    yes("process where true", &doc);
    yes("any where true", &doc);
    no("file where true", &doc);
    no("network where process.name == \"ln\"", &doc);
    no("process where true", &json!({"process": {"name": "ln"}}));
    yes(
        "any where process.name == \"ln\"",
        &json!({"process": {"name": "ln"}}),
    );
    // Category match is exact (a term query on event.category).
    no("Process where true", &doc);
}

#[test]
fn equality_is_case_sensitive_and_colon_is_not() {
    // Syntax reference: `==` case-sensitive, no wildcards; `:` case-insensitive, wildcards.
    let doc = exec("Ln", &["Ln"]);
    yes("process where process.name == \"Ln\"", &doc);
    no("process where process.name == \"ln\"", &doc);
    no("process where process.name == \"L*\"", &doc);
    yes("process where process.name : \"ln\"", &doc);
    yes("process where process.name : \"l*\"", &doc);
    yes("process where process.name : \"?N\"", &doc);
    no("process where process.name : \"?\"", &doc);
    yes("process where process.name : (\"x\", \"LN\")", &doc);
    let star = exec("a*b", &[]);
    yes("process where process.name == \"a*b\"", &star);
    no("process where process.name == \"axb\"", &star);
}

#[test]
fn like_regex_and_their_insensitive_forms() {
    let doc = exec("Python3.11", &[]);
    yes("process where process.name like \"Python*\"", &doc);
    no("process where process.name like \"python*\"", &doc);
    yes("process where process.name like~ \"python*\"", &doc);
    yes(
        "process where process.name like (\"x\", \"P?thon3.1?\")",
        &doc,
    );
    yes("process where process.name regex \"Python[0-9.]+\"", &doc);
    no("process where process.name regex \"python[0-9.]+\"", &doc);
    yes("process where process.name regex~ \"python[0-9.]+\"", &doc);
    no("process where process.name regex \"Python\"", &doc);
    yes("process where process.name regex (\"x\", \"P.*\")", &doc);
}

#[test]
fn in_lists() {
    let doc = exec("Bash", &[]);
    yes("process where process.name in (\"sh\", \"Bash\")", &doc);
    no("process where process.name in (\"sh\", \"bash\")", &doc);
    yes("process where process.name in~ (\"sh\", \"bash\")", &doc);
    no("process where process.name not in (\"sh\", \"Bash\")", &doc);
    yes("process where process.name not in (\"sh\", \"bash\")", &doc);
    no(
        "process where process.name not in~ (\"sh\", \"bash\")",
        &doc,
    );
    yes("process where process.pid in (1, 4242)", &doc);
    yes("process where process.pid in (null, 4242)", &doc);
    no("process where process.name in (\"B*\")", &doc);
}

#[test]
fn multi_valued_fields_match_when_any_value_matches() {
    let doc = exec("ln", &["ln", "-s", "/usr/bin/id", "/tmp/x"]);
    yes("process where process.args == \"-s\"", &doc);
    yes("process where process.args : \"/TMP/*\"", &doc);
    yes(
        "process where process.args like \"/usr/bin/*\" and process.args like \"/tmp/*\"",
        &doc,
    );
    // `!=` is `not ==`: true only when no value equals.
    no("process where process.args != \"-s\"", &doc);
    yes("process where process.args != \"-f\"", &doc);
    yes("process where not process.args : \"-f\"", &doc);
    yes("process where startsWith(process.args, \"/tmp\")", &doc);
    yes("process where length(process.args) == 11", &doc);
    no("process where length(process.args) == 3", &doc);
    yes("process where event.type == \"start\"", &doc);
}

#[test]
fn missing_fields_are_null() {
    let doc = exec("ln", &["ln"]);
    // Syntax reference: `field != null` checks that a field exists, `== null` that it does not.
    yes("process where process.title == null", &doc);
    no("process where process.title != null", &doc);
    yes("process where process.name != null", &doc);
    no("process where process.name == null", &doc);
    // A comparison with a missing field is false; its negation is true.
    no("process where process.title == \"x\"", &doc);
    yes("process where process.title != \"x\"", &doc);
    yes("process where not process.title : \"x\"", &doc);
    yes("process where process.title not in (\"x\")", &doc);
    no("process where process.title < \"x\"", &doc);
    no("process where startsWith(process.title, \"x\")", &doc);
    yes("process where not startsWith(process.title, \"x\")", &doc);
    // `?field` is a field that may be absent from the mapping; absent here means null too.
    yes("process where ?process.title == null", &doc);
    no("process where ?process.title : \"x\"", &doc);
    yes("process where ?process.name == \"ln\"", &doc);
    // Null-valued and empty arrays are no values.
    let nulls = json!({"event": {"category": "process"}, "f": null, "g": [], "h": [null]});
    yes(
        "process where f == null and g == null and h == null",
        &nulls,
    );
    yes("process where concat(f, \"x\") == null", &nulls);
    no("process where concat(f, \"x\") == \"x\"", &nulls);
}

#[test]
fn comparisons_and_types() {
    let doc = exec("ln", &["ln", "-s"]);
    yes("process where process.pid > 4000", &doc);
    yes(
        "process where process.pid >= 4242 and process.pid <= 4242",
        &doc,
    );
    no("process where process.pid < 4242", &doc);
    yes("process where 4000 < process.pid", &doc);
    yes("process where process.pid == 4242.0", &doc);
    yes("process where process.args_count == 2", &doc);
    // Strings compare lexicographically, case-sensitively.
    yes("process where process.name > \"la\"", &doc);
    no("process where process.name > \"lz\"", &doc);
    no("process where process.name < \"Z\"", &doc);
    // Different types never compare equal (Elasticsearch refuses such queries).
    no("process where user.id == 0", &doc);
    yes("process where user.id == \"0\"", &doc);
    no("process where process.pid == \"4242\"", &doc);
    no("process where process.pid : \"4242\"", &doc);
    // A bare boolean field as a condition.
    yes(
        "process where flag",
        &json!({"event": {"category": "process"}, "flag": true}),
    );
    no(
        "process where flag",
        &json!({"event": {"category": "process"}, "flag": false}),
    );
}

#[test]
fn arithmetic_in_comparisons() {
    let doc = exec("ln", &["ln", "-s", "a", "b"]);
    // Syntax reference: integer division rounds down, 4 / 3 == 1.
    yes("process where 4 / process.args_count == 1", &doc);
    yes("process where (4 / 3) == 1", &doc);
    no("process where 4.0 / 3 == 1", &doc);
    yes("process where process.args_count + 1 == 5", &doc);
    yes("process where add(process.args_count, 0.5) == 4.5", &doc);
    yes("process where subtract(process.args_count, 6) == -2", &doc);
    yes("process where multiply(process.args_count, 2) == 8", &doc);
    yes("process where divide(process.args_count, 3) == 1", &doc);
    yes("process where modulo(process.args_count, 3) == 1", &doc);
    yes("process where process.args_count % 3 == 1", &doc);
    yes("process where -process.args_count == -4", &doc);
    no("process where process.args_count / 0 == 0", &doc);
}

#[test]
fn string_functions() {
    let doc = exec("regsvr32.exe", &["start", "regsvr32.exe"]);
    yes("process where startsWith(process.name, \"regsvr32\")", &doc);
    no("process where startsWith(process.name, \"Regsvr32\")", &doc);
    yes(
        "process where startsWith~(process.name, \"Regsvr32\")",
        &doc,
    );
    yes("process where startswith~(process.name, \"REG\")", &doc);
    yes("process where endsWith(process.name, \".exe\")", &doc);
    yes("process where endsWith~(process.name, \".EXE\")", &doc);
    yes(
        "process where stringContains(process.command_line, \"regsvr32\")",
        &doc,
    );
    no(
        "process where stringContains(process.command_line, \"Regsvr32\")",
        &doc,
    );
    yes(
        "process where stringContains~(process.command_line, \"REGSVR32\")",
        &doc,
    );
    no(
        "process where stringContains(process.command_line, \"\")",
        &doc,
    );
    yes("process where indexOf(process.name, \"s\") == 3", &doc);
    yes("process where indexOf~(process.name, \"S\", 2) == 3", &doc);
    yes("process where indexOf(process.name, \"z\") == null", &doc);
    yes(
        "process where between(process.command_line, \"start \", \".exe\") == \"regsvr32\"",
        &doc,
    );
    yes(
        "process where substring(process.name, -4) == \".exe\"",
        &doc,
    );
    yes(
        "process where substring(process.name, 0, 3) == \"reg\"",
        &doc,
    );
    yes("process where length(process.name) == 12", &doc);
    yes("process where string(process.pid) == \"4242\"", &doc);
    yes("process where number(string(process.pid)) == 4242", &doc);
    yes(
        "process where concat(process.name, \" \", process.pid) == \"regsvr32.exe 4242\"",
        &doc,
    );
    yes("process where wildcard(process.name, \"*32.exe\")", &doc);
    no("process where wildcard(process.name, \"*32.EXE\")", &doc);
    yes(
        "process where wildcard~(process.name, \"*32.EXE\", \"x\")",
        &doc,
    );
    yes("process where CONCAT(\"a\", \"b\") == \"ab\"", &doc);
}

#[test]
fn case_insensitive_field_queries_fold_ascii_only() {
    // Elasticsearch's case_insensitive term/wildcard/prefix queries: "ASCII case insensitive".
    let doc = exec("Été", &[]);
    yes("process where process.name : \"ÉTé\"", &doc);
    no("process where process.name : \"été\"", &doc);
    no("process where process.name in~ (\"été\")", &doc);
    no("process where startsWith~(process.name, \"é\")", &doc);
    // A script (the function's argument is not a bare field) lower-cases as Java does.
    yes(
        "process where startsWith~(concat(process.name), \"é\")",
        &doc,
    );
}

#[test]
fn cidr_match() {
    let doc = json!({"event": {"category": "network"}, "source": {"ip": "192.168.152.12"}});
    yes(
        "network where cidrMatch(source.ip, \"192.168.0.0/16\")",
        &doc,
    );
    yes(
        "network where cidrMatch(source.ip, \"10.0.0.0/8\", \"192.168.0.0/16\")",
        &doc,
    );
    no("network where cidrMatch(source.ip, \"10.0.0.0/8\")", &doc);
    yes(
        "network where cidrmatch(source.ip, \"10.0.0.0/8\") == false",
        &doc,
    );
    yes(
        "network where not cidrMatch(missing.ip, \"10.0.0.0/8\")",
        &doc,
    );
}

#[test]
fn functions_equal_to_booleans_are_the_function() {
    let doc = exec("ln", &[]);
    yes(
        "process where startsWith(process.name, \"l\") == true",
        &doc,
    );
    no(
        "process where startsWith(process.name, \"l\") == false",
        &doc,
    );
    yes(
        "process where startsWith(process.name, \"x\") != true",
        &doc,
    );
    yes(
        "process where startsWith(process.title, \"x\") == false",
        &doc,
    );
}

#[test]
fn verifier_errors_are_reported_with_position() {
    let e = err("process where process.name == process.executable");
    assert!(e.message.contains("another field"), "{e}");
    assert_eq!((e.line, e.column), (1, 31));
    assert!(err("process where nosuch(x)")
        .message
        .contains("unknown function"));
    assert!(err("process where length(x, y) == 1")
        .message
        .contains("takes 1"));
    assert!(err("process where add~(x, 1) == 1")
        .message
        .contains("no case-insensitive"));
    assert!(err("process where x in (y)").message.contains("constants"));
    assert!(err("process where x : 5")
        .message
        .contains("string literals"));
    assert!(err("process where cidrMatch(x, \"nope\")")
        .message
        .contains("CIDR"));
    assert!(err("process where length(x)")
        .message
        .contains("comparison or a boolean"));
    assert!(err("process where \"a\"")
        .message
        .contains("comparison or a boolean"));
    assert!(err("process where x regex \"a&b\"")
        .message
        .contains("intersection"));
    assert!(err("process where string(x) regex \"a\"")
        .message
        .contains("computed value"));
    assert!(err("process where string(a and b) == \"x\"")
        .message
        .contains("and/or"));
    let e = err("process where a == 1 and\n  b regex \"(\"");
    assert_eq!((e.line, e.column), (2, 11), "{e}");
    assert!(err("process where concat(a, b, c, d, e) == \"x\"")
        .message
        .contains("field references"));
}

#[test]
fn constants_fold() {
    let doc = exec("ln", &[]);
    yes("process where 1 + 1 == 2", &doc);
    no("process where \"a\" == \"b\"", &doc);
    yes("process where number(\"0x32\", 16) == 50", &doc);
    yes("process where process.pid == number(\"4242\")", &doc);
    yes("process where concat(\"a\", 1) : \"A1\"", &doc);
    no("process where null", &doc);
    yes("process where not null", &doc);
}

#[test]
fn two_field_references_try_every_pair() {
    let doc = json!({"event": {"category": "process"}, "a": [1, 2, 3], "b": [10, 20]});
    yes("process where add(a, b) == 23", &doc);
    no("process where add(a, b) == 24", &doc);
    // Each occurrence is independent, even of the same field (Elasticsearch's rewrite).
    yes("process where a - a == 2", &doc);
}

#[test]
fn ignore_above_hides_long_values() {
    let long = format!("/tmp/{}", "x".repeat(2000));
    let doc = exec("ln", &["ln", &long]);
    let opts = EvalOptions {
        ignore_above: Some(1024),
    };
    let query = q("process where process.args : \"/tmp/*\"");
    assert!(query.matches(&doc));
    assert!(!query.matches_with(&doc, &opts));
    let query = q("process where length(process.args) > 1000");
    assert!(query.matches(&doc));
    assert!(!query.matches_with(&doc, &opts));
}

#[test]
fn fields_are_listed() {
    assert_eq!(
        q("process where process.name == \"a\" and length(process.args) > 1 or ?x != null")
            .fields(),
        ["event.category", "process.args", "process.name", "x"].map(String::from)
    );
}

#[test]
fn sequences_compile_but_match_no_single_document() {
    let query = q("sequence by process.entity_id with maxspan=30s\n [process where process.name == \"a\"] by process.pid\n [network where true] by ?source.ip\n until [process where event.type == \"end\"] by process.pid");
    assert!(!query.is_single_event());
    let QueryKind::Sequence(seq) = query.kind() else {
        panic!("not a sequence")
    };
    assert_eq!(seq.maxspan_ms, Some(30_000));
    assert_eq!(seq.stages.len(), 2);
    assert!(seq.by[0].is_field());
    assert!(seq.stages[1].by[0].optional());
    assert!(!seq.stages[0].by[0].optional());
    assert_eq!(seq.stages[1].filter.category(), Some("network"));
    assert!(seq.until.is_some());
    assert!(!query.matches(&exec("a", &[])));
    assert!(query.fields().contains(&"process.entity_id".to_string()));
}

#[test]
fn huge_queries_are_refused_quickly() {
    let start = std::time::Instant::now();
    let huge = format!("process where {}", "a == 1 or ".repeat(1 << 20));
    assert!(huge.len() > 10 << 20);
    assert!(err(&huge).message.contains("bytes long"));
    let many = format!("process where x in ({}1)", "1,".repeat(60_000));
    assert!(err(&many).message.contains("tokens"));
    // Generous: this is a check that nothing is quadratic, not a benchmark.
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn hostile_values_are_matched_in_linear_time() {
    let long = "a".repeat(1 << 20);
    let doc = exec("ln", &["ln", &long, &format!("{long}b")]);
    let start = std::time::Instant::now();
    no(
        "process where process.args : \"*a*a*a*a*a*a*a*a*a*a*a*a*c\"",
        &doc,
    );
    no("process where process.args regex \"(a|aa)*c\"", &doc);
    yes("process where stringContains~(process.args, \"AB\")", &doc);
    yes(
        "process where indexOf(process.args, \"b\") == 1048576",
        &doc,
    );
    yes(
        "process where between(process.args, \"a\", \"b\") != null",
        &doc,
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn error_display() {
    let e = EqlError {
        message: "unexpected ')'".to_string(),
        line: 2,
        column: 14,
    };
    assert_eq!(e.to_string(), "line 2, column 14: unexpected ')'");
}

#[test]
fn sequence_verifier_checks_keys_missing_events_and_size() {
    let e = err("sequence by a [any where true] by b [any where true]");
    assert!(
        e.message.contains("inconsistent number of join keys"),
        "{e}"
    );
    assert_eq!((e.line, e.column), (1, 38));
    let e = err("sequence by a [any where true] [any where true] until [any where true] by c");
    assert!(e.message.contains("2 found"), "{e}");
    let e = err("sequence [any where true] ![any where true]");
    assert!(e.message.contains("needs `with maxspan`"), "{e}");
    let e = err("sequence with maxspan=1m ![any where true] ![any where true]");
    assert!(e.message.contains("at least one stage"), "{e}");
    let e = err("sequence [any where true] with runs=100 [any where true] with runs=100 [any where true] with runs=57");
    assert!(e.message.contains("more than 256"), "{e}");
    q("sequence [any where true] with runs=100 [any where true] with runs=100 [any where true] with runs=56");
    q("sequence with maxspan=1m [any where true] ![any where true]");
}
