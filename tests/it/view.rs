//! The rules see an exec through `event::ExecView` (no JSON built) and alerts carry the JSON
//! `event::document`: both must hold exactly the same field values, or a rule would match on
//! something an alert does not show. Checked on every exec of the corpus, the samples and a few
//! hostile events, for every field path of the document and every path the view knows.

use super::{repo, sample_inputs, shared_inputs};
use auditsentry::audit::exec::{self, ExecLimits};
use auditsentry::audit::reassemble::{ReassembleConfig, Reassembler};
use auditsentry::audit::record::parse_frame;
use auditsentry::catalog;
use auditsentry::document::Field;
use auditsentry::event::{self, ExecView, Host, Known, FIELDS};
use auditsentry::proc::{NoFallback, ProcessTable};
use auditsentry::rule::kql::{Document, Scalar};
use auditsentry::source::file::{self, Format};
use serde_json::Value;
use std::path::Path;

/// Every value of `path`, as `kind:text`, in lookup order.
/// The values of `path` in `doc`, looked up by path and by resolved [`Field`] (which must agree).
fn values(doc: &dyn Document, path: &str) -> Vec<String> {
    let mut by_path = Vec::new();
    doc.any_value(path, &mut |v| {
        by_path.push(shown(v));
        false
    });
    let mut by_field = Vec::new();
    doc.any_field(&Field::new(path), &mut |v| {
        by_field.push(shown(v));
        false
    });
    assert_eq!(by_path, by_field, "{path}: by path and by field");
    by_path
}

fn shown(v: Scalar<'_>) -> String {
    match v {
        Scalar::Str(s) => format!("str:{s}"),
        Scalar::Num(n) => format!("num:{n}"),
        Scalar::Bool(b) => format!("bool:{b}"),
    }
}

/// Dotted paths of every non-object value in `doc`.
fn leaf_paths(doc: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = doc {
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_object() {
                leaf_paths(v, &path, out);
            } else {
                out.push(path);
            }
        }
    }
}

/// Calls `f` on the view of every exec of `input`, parents looked up as the detector does;
/// returns how many there were.
pub(crate) fn for_each_exec(input: &Path, f: &mut dyn FnMut(&ExecView<'_>)) -> usize {
    let host = Host {
        id: "h-1".into(),
        name: "web\"1".into(),
    };
    let mut procs = ProcessTable::new(4096, Box::new(NoFallback));
    let mut events = Vec::new();
    let mut reassembler = Reassembler::new(ReassembleConfig::default());
    let reader = file::open(&input.to_string_lossy(), Format::Auto).unwrap();
    for frame in reader.flatten() {
        if let Ok(rec) = parse_frame(&frame) {
            reassembler.push(rec, &mut |e| events.push(e));
        }
    }
    reassembler.flush(&mut |e| events.push(e));
    let mut execs = 0;
    for ev in &events {
        let Ok(Some(exec)) = exec::build(ev, &ExecLimits::default()) else {
            continue;
        };
        execs += 1;
        let me = event::process_info(&exec);
        procs.note_audit_time(exec.task.time.as_millis());
        let parent = procs.lookup(exec.task.ppid);
        let instance = procs.instance_for_exec(exec.task.pid);
        let known = Known {
            process: Some(instance),
            parent: parent.as_ref().map(|(_, i)| *i),
            user_name: exec.task.euid_name.as_deref().map(Into::into),
            group_name: Some("wheel\"s".into()),
        };
        let view = ExecView::new(
            &exec,
            &me,
            parent.as_ref().map(|(p, _)| &**p),
            &host,
            &known,
        );
        f(&view);
        procs.exec_as(instance, me);
    }
    execs
}

/// Checks every exec of `input`; returns how many there were.
fn check_input(input: &Path) -> usize {
    for_each_exec(input, &mut |view| {
        let doc = view.document();
        let mut paths = Vec::new();
        leaf_paths(&doc, "", &mut paths);
        for path in &paths {
            assert!(
                FIELDS.contains(&path.as_str()),
                "{path} missing from FIELDS"
            );
        }
        paths.extend(catalog::paths().iter().map(|f| f.to_string()));
        paths.extend(["process", "process.parent", "nope", "process.args.x"].map(String::from));
        for path in &paths {
            assert_eq!(
                values(view, path),
                values(&doc, path),
                "{}: serial {}: {path}",
                input.display(),
                view.ev.task.serial
            );
        }
    })
}

#[test]
fn the_view_and_the_document_hold_the_same_values() {
    let mut total = 0;
    for input in sample_inputs() {
        total += check_input(&input);
    }
    total += check_input(&repo("tests/data/hostile-exec.log"));
    assert!(total > 200, "only {total} execs checked");
}

/// The shared corpus beside the checkout: run by the corpus step of scripts/test-all.sh.
mod shared_corpus {
    use super::*;

    #[test]
    #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
    fn the_view_and_the_document_hold_the_same_values_on_the_shared_corpus() {
        let total: usize = shared_inputs().iter().map(|i| check_input(i)).sum();
        assert!(total > 200, "only {total} execs checked");
    }
}

/// `user.id` is the effective uid and `user.name` its ENRICHED name (as Elastic Defend fills them);
/// the real uid is `user.Ext.real.id`. A rule on `user.id` sees the view's value, the alert the
/// document's.
#[test]
fn user_id_is_the_effective_uid() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let rule = tmp.path().join("root.toml");
    std::fs::write(
        &rule,
        "[rule]\nrule_id = \"root\"\nname = \"root\"\ndescription = \"d\"\nseverity = \"low\"\n\
         risk_score = 21\ntype = \"eql\"\nlanguage = \"eql\"\nquery = '''\n\
         process where user.id == \"0\" and user.name == \"root\" and user.Ext.real.id == \"1000\"\n'''\n",
    )
    .expect("write rule");
    let head = "msg=audit(1795858584.001:1):";
    let log = format!(
        "type=SYSCALL {head} arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=100 \
         auid=1000 uid=1000 gid=1000 euid=0 suid=0 egid=1000 sgid=1000 ses=3 tty=pts1 \
         comm=\"passwd\" exe=\"/usr/bin/passwd\" key=\"exec\"\u{1d}AUID=\"alice\" UID=\"alice\" \
         GID=\"alice\" EUID=\"root\" SUID=\"root\"\n\
         type=EXECVE {head} argc=1 a0=\"passwd\"\ntype=EOE {head}\n"
    );
    let input = tmp.path().join("setuid.audit.log");
    std::fs::write(&input, log).expect("write log");
    let rule = rule.to_string_lossy();
    let out = super::replay(&["--all-matches", "--rules", &rule], &input);
    let alerts = super::alerts(&out);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let user = &alerts[0]["user"];
    assert_eq!(user["id"], "0", "{user}");
    assert_eq!(user["name"], "root", "{user}");
    assert_eq!(user["Ext"]["real"]["id"], "1000", "{user}");
}
