//! The EQL parser and compiler on arbitrary text, and every single-event query that compiles
//! evaluated against a fixed exec document (with and without ignore_above): no panic, no hang.
#![no_main]

use auditsentry::rule::eql::parse;
use auditsentry::rule::kql::EvalOptions;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(query) = parse(text) else {
        return;
    };
    let doc = json!({
        "@timestamp": "2026-01-01T00:00:00.000Z",
        "host": {"os": {"type": "linux"}, "id": "h1", "name": "h"},
        "event": {"category": ["process"], "type": ["start"], "action": "exec"},
        "process": {
            "name": "ln",
            "executable": "/usr/bin/ln",
            "args": ["ln", "-s", "/usr/bin/id", "/tmp/.x", "", "\u{1F600}é\n*?"],
            "args_count": 6,
            "command_line": "ln -s /usr/bin/id /tmp/.x",
            "pid": 4242,
            "parent": {"executable": "/usr/bin/bash", "name": "bash", "pid": 1, "args": ["bash"]}
        },
        "source": {"ip": "10.1.2.3"},
        "user": {"id": "0"},
        "n": [1, -2, 3.5, 9223372036854775807_i64],
        "b": [true, false]
    });
    let _ = query.matches(&doc);
    let _ = query.matches_with(
        &doc,
        &EvalOptions {
            ignore_above: Some(4),
        },
    );
    let _ = query.fields();
});
