//! The views against the JSON documents they stand for: for every file and network event of the
//! repository's logs (and the shared corpus) and for generated odd ones, every catalogued path,
//! every path the document holds and some it does not give the same scalars, in the same order.

use super::*;
use crate::audit::fileop::{self, FileAction};
use crate::audit::netconn::{NetAction, Sockets};
use crate::audit::reassemble::test_support::read_log;
use crate::audit::reassemble::{Event, ReassembleConfig, Reassembler};
use crate::audit::record::AuditTime;
use crate::catalog;
use crate::document::{Document, Field};

/// Paths no file or network document holds, or holds as an object.
const UNKNOWN: &[&str] = &[
    "",
    ".",
    "file",
    "process",
    "process.parent",
    "file.Ext",
    "file.Ext.original",
    "destination",
    "file.path.x",
    "process..pid",
    "process.pid.",
    ".process.pid",
    "Process.pid",
    "file.PATH",
    "process.parent.parent.pid",
    "user.name",
    "group.id",
    "event.outcome",
    "process.title",
    "nope",
];

/// The values `doc` yields for `path`, each with its type, and what `any_value` says when `f`
/// accepts the first.
fn values(doc: &dyn Document, path: &str) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let none = doc.any_value(path, &mut |s| {
        out.push(format!("{s:?}"));
        false
    });
    assert!(!none, "{path}: true though f accepted nothing");
    let mut by_field = Vec::new();
    doc.any_field(&Field::new(path), &mut |s| {
        by_field.push(format!("{s:?}"));
        false
    });
    assert_eq!(out, by_field, "{path}: by path and by resolved field");
    (out, doc.any_value(path, &mut |_| true))
}

/// Every leaf path (scalar or array) of a JSON document.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(child, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Compares `view` with its JSON `doc` on every path: the catalogue's of every kind, the
/// document's own, and [`UNKNOWN`].
fn same(view: &dyn Document, doc: &Value, what: &str) {
    let mut paths: Vec<String> = catalog::KINDS
        .iter()
        .flat_map(|k| k.fields.iter().flat_map(|p| p.iter()))
        .chain(UNKNOWN)
        .map(|p| p.to_string())
        .collect();
    leaves(doc, "", &mut paths);
    for path in &paths {
        assert_eq!(
            values(view, path),
            values(doc, path),
            "{what}: {path} in {doc}"
        );
    }
}

fn host() -> Host {
    Host {
        id: "h1".into(),
        name: "web1".into(),
    }
}

/// What the process table may know of the acting process and its parent: nothing, one, both,
/// with and without ids, odd arguments.
fn tables() -> Vec<(Option<ProcessInfo>, Option<ProcessInfo>)> {
    let me = ProcessInfo::from_bytes(
        Some(b"/usr/bin/python3"),
        Some(b"python3"),
        &[
            b"python3".to_vec(),
            b"-c".to_vec(),
            b"x = 'a b'\n\xff".to_vec(),
        ],
    )
    .with_ids(Some(0), Some(27));
    let parent = ProcessInfo::from_bytes(
        Some(b"/bin/b\xe2sh"),
        Some(b"b\xe2sh"),
        &[b"-bash".to_vec(), Vec::new()],
    )
    .with_ids(Some(1000), None);
    let bare = ProcessInfo::from_bytes::<Vec<u8>>(None, None, &[]);
    vec![
        (None, None),
        (Some(me.clone()), None),
        (None, Some(parent.clone())),
        (Some(me), Some(parent)),
        (Some(bare.clone()), Some(bare)),
    ]
}

/// The actings of `task` for every [`tables`] entry, handed one by one to `check`.
fn each_acting(task: &Task, check: &mut dyn FnMut(Acting<'_>)) {
    let host = host();
    for (me, parent) in &tables() {
        check(Acting {
            task,
            me: me.as_ref().map(|p| (p, Instance { pid: 20, stamp: 7 })),
            parent: parent.as_ref().map(|p| (p, Instance { pid: 10, stamp: 3 })),
            host: &host,
        });
    }
}

fn check_file(ev: &FileEvent, what: &str) {
    each_acting(&ev.task, &mut |acting| {
        let view = FileView { ev, acting };
        same(&view, &view.document(), what);
    });
}

fn check_net(ev: &NetEvent, what: &str) {
    each_acting(&ev.task, &mut |acting| {
        let view = NetView { ev, acting };
        same(&view, &view.document(), what);
    });
}

/// Every file and network event of the log at `path` (one socket table, as the detector has):
/// compares each with its document, returns how many of each there were.
fn check_log(path: &str) -> (usize, usize) {
    let mut events: Vec<Event> = Vec::new();
    let mut r = Reassembler::new(ReassembleConfig::default());
    for rec in read_log(path) {
        r.push(rec, &mut |e| events.push(e));
    }
    r.flush(&mut |e| events.push(e));
    let mut sockets = Sockets::default();
    let (mut files, mut nets) = (0, 0);
    for ev in &events {
        if let Some(f) = fileop::build(ev) {
            check_file(&f, &format!("{path} serial {}", ev.serial));
            files += 1;
        }
        if let Some(n) = sockets.build(ev) {
            check_net(&n, &format!("{path} serial {}", ev.serial));
            nets += 1;
        }
    }
    (files, nets)
}

#[test]
fn the_repositorys_file_and_network_events_read_alike_in_view_and_document() {
    let root = env!("CARGO_MANIFEST_DIR");
    let captured = check_log(&format!("{root}/tests/data/filenet/captured.audit.log"));
    assert!(captured.0 >= 10 && captured.1 >= 5, "{captured:?}");
    let mixed = check_log(&format!("{root}/tests/data/filenet/mixed.audit.log"));
    assert!(mixed.0 + mixed.1 > 0, "{mixed:?}");
    for sample in ["sample.audit.log", "sample-enriched.audit.log"] {
        check_log(&format!("{root}/samples/{sample}"));
    }
}

/// A task with every fact, for the generated events to take apart.
fn task() -> Task {
    Task {
        node: Some("web1".into()),
        time: AuditTime {
            sec: 1_795_858_582,
            msec: 851,
        },
        suid: Some(0),
        gid: Some(1000),
        egid: Some(0),
        auid: Some(1000),
        ses: Some(4),
        tty: Some(b"pts0".to_vec()),
        ..super::super::tests::task()
    }
}

/// [`task`] and variants: no exe (comm names it), neither, invalid UTF-8, no ids or facts.
fn tasks() -> Vec<Task> {
    let full = task();
    let mut comm_only = task();
    comm_only.exe = None;
    let mut nameless = task();
    nameless.exe = None;
    nameless.comm = None;
    let mut odd = task();
    odd.exe = Some(b"/tmp/\xff\xe2\x82/m\xe2v\xe2\x82".to_vec());
    odd.cwd = Some(b"/home/\xc3(".to_vec());
    odd.key = Some(b"k\xff".to_vec());
    odd.tty = Some(b"(none)\xfe".to_vec());
    let mut bare = task();
    bare.node = None;
    bare.uid = None;
    bare.euid = None;
    bare.auid = None;
    bare.ses = None;
    bare.tty = None;
    bare.key = None;
    bare.cwd = None;
    bare.exe = Some(b"mv".to_vec());
    vec![full, comm_only, nameless, odd, bare]
}

#[test]
fn generated_file_events_read_alike_in_view_and_document() {
    let paths: &[&[u8]] = &[
        b"/etc/cron.d/job",
        b"/tmp/x.tar.gz",
        b"/root/.bashrc",
        b"/tmp/a.",
        b"/tmp/dir/",
        b"/x",
        b"/",
        b"",
        b"noext",
        b"rel/a.b",
        b"/tmp/\xff\xfe.s\xffh",
        b"/tmp/\xe2\x82/x.\xe2\x82",
        b"/tmp/.",
        b"/tmp/..",
    ];
    let originals: &[Option<&[u8]>] = &[None, Some(b"/tmp/job.sh"), Some(b".hidden"), Some(b"")];
    let targets: &[Option<&[u8]>] = &[None, Some(b"../x\xff"), Some(b"/bin/sh")];
    let actions = [
        FileAction::Creation,
        FileAction::Deletion,
        FileAction::Rename,
        FileAction::Modification,
    ];
    let mut n = 0;
    for (i, task) in tasks().into_iter().enumerate() {
        for path in paths {
            for (j, (original, target)) in originals.iter().zip(targets.iter().cycle()).enumerate()
            {
                for resolved in [true, false] {
                    let ev = FileEvent {
                        task: task.clone(),
                        action: actions[(i + j) % actions.len()],
                        call: "renameat2",
                        path: path.to_vec(),
                        original: original.map(<[u8]>::to_vec),
                        target: target.map(<[u8]>::to_vec),
                        resolved,
                    };
                    check_file(&ev, &format!("{ev:?}"));
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 5 * 14 * 4 * 2);
}

#[test]
fn generated_network_events_read_alike_in_view_and_document() {
    let v4: Endpoint = ("10.1.2.3".parse().unwrap(), 4444);
    let v6: Endpoint = ("fe80::1:2".parse().unwrap(), 0);
    let mapped: Endpoint = ("::ffff:127.0.0.1".parse().unwrap(), 65535);
    let ends = [None, Some(v4), Some(v6), Some(mapped)];
    let mut n = 0;
    for task in tasks() {
        for action in [NetAction::Attempted, NetAction::Accepted, NetAction::Bind] {
            for destination in ends {
                for source in ends {
                    for transport in [None, Some("tcp"), Some("udp")] {
                        let ev = NetEvent {
                            task: task.clone(),
                            action,
                            call: "socketcall",
                            destination,
                            source,
                            transport,
                        };
                        check_net(&ev, &format!("{ev:?}"));
                        n += 1;
                    }
                }
            }
        }
    }
    assert_eq!(n, 5 * 3 * 4 * 4 * 3);
}

#[test]
fn a_view_reads_only_its_own_kinds_fields() {
    for path in catalog::FILE_FIELDS {
        assert!(FileView::slot(path).is_some(), "{path}");
        assert_eq!(NetView::slot(path), None, "{path}");
    }
    for path in catalog::NETWORK_FIELDS {
        assert!(NetView::slot(path).is_some(), "{path}");
        assert_eq!(FileView::slot(path), None, "{path}");
    }
    for path in catalog::COMMON_FIELDS {
        assert!(
            FileView::slot(path).is_some() && NetView::slot(path).is_some(),
            "{path}"
        );
    }
}

/// Tests on the shared corpus beside the checkout: ignored by a plain `cargo test`, run by the
/// corpus step of `scripts/test-all.sh` (docs/testing.md).
mod shared_corpus {
    use super::*;
    use crate::audit::reassemble::test_support::shared;

    #[test]
    #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
    fn the_corpus_file_and_network_events_read_alike_in_view_and_document() {
        for log in ["corpus/raw.audit.log", "corpus/enriched.audit.log"] {
            let counts = check_log(&shared(log));
            eprintln!("{log}: {counts:?} file and network events");
        }
    }
}
