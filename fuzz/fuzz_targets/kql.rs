//! The KQL parser on arbitrary text, and every query that parses evaluated against a fixed exec
//! document (with and without ignore_above): no panic, no hang.
#![no_main]

use auditsentry::rule::kql::{parse, EvalOptions};
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
        "host": {"os": {"type": "linux"}, "id": "h1", "name": "h"},
        "event": {"category": ["process"], "type": ["start"], "action": "exec"},
        "process": {
            "name": "ln",
            "executable": "/usr/bin/ln",
            "args": ["ln", "-s", "/usr/bin/id", "/tmp/.x", ""],
            "args_count": 4,
            "parent": {"executable": "/usr/bin/bash", "name": "bash", "pid": 1}
        },
        "user": {"id": "0"}
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
