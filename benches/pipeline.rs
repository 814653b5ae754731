//! Per-stage benchmarks on the real corpus: parse, reassemble, build + evaluate, the new-terms
//! gate on a sled store, and the whole pipeline. Run with `cargo bench --bench pipeline`; save a baseline with
//! `cargo bench --bench pipeline -- --save-baseline main` and compare with `--baseline main`.

use auditsentry::alert::Alert;
use auditsentry::audit::exec::{self, ExecLimits};
use auditsentry::audit::reassemble::{Event, ReassembleConfig, Reassembler};
use auditsentry::audit::record::{parse_frame, Record};
use auditsentry::event::{self, ExecView, Host};
use auditsentry::pipeline::{DetectOptions, Detector, Pipeline};
use auditsentry::proc::NoFallback;
use auditsentry::rule::file as rules;
use auditsentry::rule::kql::EvalOptions;
use auditsentry::rule::new_terms::{MemStore, NewTermsGate, Verdict};
use auditsentry::sink::{Sink, SinkError};
use auditsentry::source::file::{Format, FrameReader};
use auditsentry::source::Frame;
use auditsentry::state::SledStore;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use std::io::Cursor;

/// Keeps the alerts in memory, so the benchmark measures the pipeline and not an output.
#[derive(Default)]
struct Collect(Vec<Alert>);

impl Sink for Collect {
    fn emit(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.0.push(alert.clone());
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

fn corpus() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/raw.audit.log"
    );
    let fallback = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sample.audit.log");
    std::fs::read(path)
        .or_else(|_| std::fs::read(fallback))
        .unwrap_or_default()
}

fn read_frames(data: &[u8]) -> Vec<Frame> {
    FrameReader::new(Cursor::new(data.to_vec()), Format::Text, "corpus".into())
        .filter_map(Result::ok)
        .collect()
}

fn parse_records(frames: &[Frame]) -> Vec<Record> {
    frames.iter().filter_map(|f| parse_frame(f).ok()).collect()
}

fn reassemble(records: &[Record]) -> Vec<Event> {
    let mut r = Reassembler::new(ReassembleConfig::default());
    let mut out = Vec::new();
    for rec in records {
        r.push(rec.clone(), &mut |e| out.push(e));
    }
    r.flush(&mut |e| out.push(e));
    out
}

fn options() -> DetectOptions {
    DetectOptions {
        reassemble: ReassembleConfig::default(),
        exec_limits: ExecLimits::default(),
        eval: EvalOptions::default(),
        all_matches: true,
        host: Host {
            id: "bench".into(),
            name: "bench".into(),
        },
        proc_capacity: 65_536,
        proc_budget: auditsentry::proc::ProcessTable::DEFAULT_BUDGET,
        max_terms_per_rule: auditsentry::rule::new_terms::DEFAULT_MAX_TERMS_PER_RULE,
    }
}

fn stages(c: &mut Criterion) {
    let data = corpus();
    let frames = read_frames(&data);
    let records = parse_records(&frames);
    let events = reassemble(&records);
    let execs: Vec<_> = events
        .iter()
        .filter_map(|e| exec::build(e, &ExecLimits::default()).ok().flatten())
        .collect();
    let host = Host {
        id: "bench".into(),
        name: "bench".into(),
    };
    let known = event::Known::default();
    let infos: Vec<_> = execs
        .iter()
        .map(|e| (e.clone(), event::process_info(e)))
        .collect();
    let views: Vec<_> = infos
        .iter()
        .map(|(e, me)| ExecView::new(e, me, Some(me), &host, &known))
        .collect();
    let docs: Vec<_> = views.iter().map(ExecView::document).collect();
    let rule = rules::builtin();

    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("frame+parse", |b| {
        b.iter(|| parse_records(&read_frames(black_box(&data))))
    });
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("reassemble", |b| b.iter(|| reassemble(black_box(&records))));
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("exec-build", |b| {
        b.iter(|| {
            events
                .iter()
                .filter_map(|e| exec::build(e, &ExecLimits::default()).ok().flatten())
                .count()
        })
    });
    g.throughput(Throughput::Elements(docs.len() as u64));
    g.bench_function("kql-evaluate", |b| {
        b.iter(|| {
            docs.iter()
                .filter(|d| rule.query.matches(black_box(d)))
                .count()
        })
    });
    // What the pipeline runs: the rule on the typed view, no JSON built.
    g.bench_function("kql-evaluate (view)", |b| {
        b.iter(|| {
            views
                .iter()
                .filter(|v| {
                    rule.query
                        .matches_with(black_box(*v), &EvalOptions::default())
                })
                .count()
        })
    });
    g.bench_function("document", |b| {
        b.iter(|| {
            for v in &views {
                black_box(v.document());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("records→alerts", |b| {
        b.iter(|| {
            let mut p = Pipeline::new(Detector::new(
                vec![rule.clone()],
                MemStore::default(),
                Box::new(NoFallback),
                options(),
            ));
            let mut sink = Collect::default();
            for rec in &records {
                let _ = p.push(rec.clone(), &mut sink);
            }
            let _ = p.finish(&mut sink);
            sink.0.len()
        })
    });
    g.finish();
}

/// A matched document whose new-terms tuple is (`h1`, `parent`).
fn gate_doc(parent: &str) -> Value {
    json!({
        "host": {"id": "h1", "name": "h1", "os": {"type": "linux"}},
        "process": {"name": "ln", "parent": {"name": parent, "executable": "/usr/bin/bash"}},
    })
}

/// The new-terms gate on a sled store in a temporary directory: a tuple already seen (the common
/// case: a lookup plus a last-seen update), a tuple never seen (insert plus the flush to disk that
/// precedes every alert), and the in-memory store for comparison.
fn gate(c: &mut Criterion) {
    let rule = rules::builtin();
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let Ok((store, _)) = SledStore::open(&dir.path().join("state")) else {
        return;
    };
    let mut sled_gate = NewTermsGate::new(store);
    let mut mem_gate = NewTermsGate::new(MemStore::default());
    let seen = gate_doc("bash");
    let mut t = 1_700_000_000_000u64;
    let _ = sled_gate.check(&rule, &seen, t);
    let _ = mem_gate.check(&rule, &seen, t);

    let mut g = c.benchmark_group("new-terms");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seen (sled)", |b| {
        b.iter(|| {
            t += 1;
            let v = sled_gate.check(&rule, black_box(&seen), t);
            debug_assert!(matches!(v, Ok(Verdict::Seen)));
            v.is_ok()
        })
    });
    g.bench_function("seen (memory)", |b| {
        b.iter(|| {
            t += 1;
            mem_gate.check(&rule, black_box(&seen), t).is_ok()
        })
    });
    let mut n = 0u64;
    g.bench_function("new + flush (sled)", |b| {
        b.iter_batched(
            || {
                n += 1;
                gate_doc(&format!("parent-{n}"))
            },
            |doc| {
                t += 1;
                let v = sled_gate.check(&rule, &doc, t);
                debug_assert!(matches!(v, Ok(Verdict::New(_))));
                v.is_ok()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, stages, gate);
criterion_main!(benches);
