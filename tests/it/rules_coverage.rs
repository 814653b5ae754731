//! `auditsentry rules check --coverage` on rule files of this project's own (tests/data/coverage):
//! one line per file with its outcome and reason, the table of counts per language and type, and
//! the same refusals when the agent loads those rules.

use super::{bin, repo};

#[test]
fn coverage_names_every_rule_and_counts_them_per_language_and_type() {
    let dir = repo("tests/data/coverage");
    let out = bin()
        .args(["rules", "check", "--coverage"])
        .arg(&dir)
        .output()
        .expect("run auditsentry");
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&format!("{}/", dir.display()), "");
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let want = [
        "unsupported syntax: bad_syntax.toml [eql eql]: query line 2, column 1: expected ')', found the end of the query",
        "needs fields: defend_only.toml [eql eql]: process.Ext.relative_file_creation_time, process.code_signature.trusted",
        "unsupported type: esql.toml [esql esql]: rule type \"esql\" is not supported (only \"query\", \"new_terms\", \"threshold\" and \"eql\")",
        "loaded: file_events.toml [eql eql]",
        "unsupported type: ml.toml [- machine_learning]: rule type \"machine_learning\" is not supported (only \"query\", \"new_terms\", \"threshold\" and \"eql\")",
        "needs fields: new_terms_defend_field.toml [kuery new_terms]: process.entry_leader.entity_id",
        "loaded: process_eql.toml [eql eql]",
        "loaded: process_kql.toml [kuery query]",
        "loaded: process_sequence.toml [eql eql sequence]",
        "unsupported category: registry_events.toml [eql eql]: \"registry\" events",
        "unsupported syntax: sample.toml [eql eql sample]: EQL sample queries are not supported",
        "loaded: threshold.toml [kuery threshold]",
    ];
    assert_eq!(&lines[..want.len()], want, "{stdout}");
    let table: Vec<Vec<&str>> = lines[want.len()..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let rows: Vec<Vec<&str>> = [
        "language type rules loaded syntax fields category type error",
        "- machine_learning 1 0 0 0 0 1 0",
        "eql eql 5 2 1 1 1 0 0",
        "eql eql sample 1 0 1 0 0 0 0",
        "eql eql sequence 1 1 0 0 0 0 0",
        "esql esql 1 0 0 0 0 1 0",
        "kuery new_terms 1 0 0 1 0 0 0",
        "kuery query 1 1 0 0 0 0 0",
        "kuery threshold 1 1 0 0 0 0 0",
        "total 12 5 2 2 1 2 0",
        "fields refused rules need: process.Ext.relative_file_creation_time (1), process.code_signature.trusted (1), process.entry_leader.entity_id (1)",
    ]
    .iter()
    .map(|l| l.split_whitespace().collect())
    .collect();
    assert_eq!(table, rows, "{stdout}");

    // Plain `rules check` refuses the same files, and so does an agent asked to load them.
    let out = bin()
        .args(["rules", "check"])
        .arg(dir.join("defend_only.toml"))
        .output()
        .expect("run auditsentry");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(
        "needs fields this agent does not provide: process.Ext.relative_file_creation_time, \
         process.code_signature.trusted"
    ));
    let out = bin()
        .args(["replay", "--rules"])
        .arg(dir.join("defend_only.toml"))
        .arg(repo("samples/sample.audit.log"))
        .output()
        .expect("run auditsentry");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs fields this agent does not provide"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn coverage_of_an_unreadable_or_invalid_file_fails() {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("broken.toml"), "[rule\n").expect("write");
    let out = bin()
        .args(["rules", "check", "--coverage"])
        .arg(tmp.path())
        .output()
        .expect("run auditsentry");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("error: "), "{stdout}");
    assert!(stdout.contains("broken.toml [- -]: line 1"), "{stdout}");
}

/// A sequence joined child-to-parent by entity id (`by process.entity_id` then
/// `by process.parent.entity_id`) completes when the parent's exec and its child's are both
/// seen, and not for a child of a process never seen.
#[test]
fn entity_ids_join_a_parent_and_its_child_in_a_sequence() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let rules = tmp.path().join("rules");
    std::fs::create_dir(&rules).expect("mkdir");
    std::fs::write(
        rules.join("join.toml"),
        "[rule]\nrule_id = \"join\"\nname = \"join\"\ndescription = \"d\"\nseverity = \"low\"\n\
         risk_score = 21\ntype = \"eql\"\nlanguage = \"eql\"\nquery = '''\n\
         sequence with maxspan=1m\n  [process where process.name == \"bash\"] by process.entity_id\n  \
         [process where process.name == \"chmod\"] by process.parent.entity_id\n'''\n",
    )
    .expect("write rule");
    let exec = |serial: u32, pid: u32, ppid: u32, exe: &str| {
        let head = format!("msg=audit(1795858584.{serial:03}:{serial}):");
        let name = exe.rsplit('/').next().unwrap_or(exe);
        format!(
            "type=SYSCALL {head} arch=c000003e syscall=59 success=yes exit=0 ppid={ppid} \
             pid={pid} auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 egid=1000 sgid=1000 \
             ses=3 tty=pts1 comm=\"{name}\" exe=\"{exe}\" key=\"exec\"\n\
             type=EXECVE {head} argc=1 a0=\"{name}\"\ntype=EOE {head}\n"
        )
    };
    let log = [
        exec(1, 100, 1, "/usr/bin/bash"),
        exec(2, 101, 100, "/usr/bin/chmod"),
        // A child of pid 200, never seen exec: no parent id, no join.
        exec(3, 201, 200, "/usr/bin/chmod"),
    ]
    .concat();
    let input = tmp.path().join("join.audit.log");
    std::fs::write(&input, log).expect("write log");
    let out = bin()
        .args(["replay", "--all-matches", "--host-id", "h", "--rules"])
        .arg(&rules)
        .arg(&input)
        .output()
        .expect("run auditsentry");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(alerts.len(), 1, "{stdout}");
    let a = &alerts[0];
    assert_eq!(a["process"]["pid"], 101);
    let seq = a["auditsentry"]["sequence"].as_array().expect("stages");
    assert_eq!(
        seq[0]["process"]["entity_id"], a["process"]["parent"]["entity_id"],
        "the child names its parent's own id"
    );
    assert_ne!(
        a["process"]["entity_id"],
        a["process"]["parent"]["entity_id"]
    );
    assert_eq!(
        a["process"]["entity_id"].as_str().map(str::len),
        Some(32),
        "{a}"
    );
}
