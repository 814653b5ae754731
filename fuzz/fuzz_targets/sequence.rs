//! The stateful rules on arbitrary event streams: a few sequence queries (keys, maxspan, until,
//! runs, missing events) and a threshold rule with cardinality, under small memory bounds, fed
//! events decoded from the input (time steps, forward and back, names, pids, users, arguments).
//! After every event each engine must be within its bounds; nothing may panic.
#![no_main]

use std::sync::Arc;

use auditsentry::rule::eql::{parse, QueryKind};
use auditsentry::rule::kql::EvalOptions;
use auditsentry::rule::sequence::{self, SequenceEngine};
use auditsentry::rule::threshold::{self, Threshold, ThresholdEngine};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const QUERIES: &[&str] = &[
    r#"sequence by process.parent.pid with maxspan=2s [process where process.name == "a"] [process where process.name == "b"] with runs=2 [process where process.name == "c"] until [process where process.name == "d"]"#,
    r#"sequence [process where process.name == "a"] by process.pid [process where true] by process.parent.pid"#,
    r#"sequence by process.args with maxspan=1s ![process where process.name == "d"] [process where process.name == "a"] ![process where process.name == "b"] [process where process.name : "C"] ![process where process.name == "a"]"#,
    r#"sequence by ?user.name, user.id [any where true] with runs=5"#,
];

const NAMES: &[&str] = &["a", "b", "c", "d", "A", "C", ""];

fuzz_target!(|data: &[u8]| {
    let limits = sequence::Limits {
        max_pending: 64,
        max_bytes: 64 * 1024,
    };
    let mut engines: Vec<SequenceEngine> = QUERIES
        .iter()
        .map(|q| {
            let query = parse(q).expect("the target's queries compile");
            let QueryKind::Sequence(seq) = query.kind() else {
                panic!("not a sequence: {q}")
            };
            SequenceEngine::new(seq, 60_000, limits)
        })
        .collect();
    let mut thr = ThresholdEngine::new(
        Threshold {
            fields: vec!["user.id".into(), "process.args".into()],
            value: 3,
            cardinality: Some(("process.name".into(), 2)),
        },
        1_000,
        3_000,
        threshold::Limits {
            max_groups: 32,
            max_bytes: 32 * 1024,
        },
    );
    let opts = EvalOptions::default();
    let mut time: u64 = 1_000_000;
    let mut completed = Vec::new();
    let mut signals = Vec::new();
    for chunk in data.chunks(6) {
        let b = |i: usize| chunk.get(i).copied().unwrap_or(0);
        // Time mostly moves on, sometimes back a little (events complete out of order).
        let step = u64::from(b(0));
        time = if step >= 240 {
            time.saturating_sub(step - 239)
        } else {
            time + step * 37
        };
        let args: Vec<Value> = (0..b(4) % 4)
            .map(|i| json!(format!("{}{}", NAMES[usize::from(b(5)) % NAMES.len()], i)))
            .collect();
        let doc = json!({
            "event": {"category": ["process"]},
            "process": {
                "name": NAMES[usize::from(b(1)) % NAMES.len()],
                "pid": b(2),
                "parent": {"pid": b(3) % 8},
                "args": args,
            },
            "user": {"id": (b(5) % 3).to_string()},
        });
        let text: Arc<str> = doc.to_string().into();
        for e in &mut engines {
            e.on_event(&doc, &opts, time, &mut || text.clone(), &mut completed);
            assert!(e.pending() <= limits.max_pending, "{} pending", e.pending());
            assert!(e.bytes() <= limits.max_bytes, "{} bytes", e.bytes());
        }
        thr.count(&doc, &opts, time, &mut signals);
        assert!(thr.groups() <= 32 && thr.bytes() <= 32 * 1024);
        if b(0) == 7 {
            for e in &mut engines {
                e.advance(time + 5_000, &mut completed);
            }
            thr.advance(time + 5_000, &mut signals);
        }
        completed.clear();
        signals.clear();
    }
    for e in &mut engines {
        e.finish(&mut completed);
        assert!(e.pending() <= limits.max_pending);
    }
    thr.finish(&mut signals);
});
