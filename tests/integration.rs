//! End-to-end tests of the `auditsentry` binary: the shared corpus against checked-in golden alerts,
//! other kernels' logs, the new-terms contract, and the CLI's error contract.
//!
//! Golden files: `AUDITSENTRY_REGENERATE=1 cargo test --test integration` rewrites them from the
//! current binary; review the diff before committing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "it/hardening.rs"]
mod hardening;
#[path = "it/live.rs"]
mod live;

const SEED_RULE_ID: &str = "d19a2399-f8e2-4b10-80d8-a561ce9d24d1";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_auditsentry"))
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn shared(rel: &str) -> PathBuf {
    repo("../shared").join(rel)
}

/// Runs `auditsentry replay` with a fixed host identity, so output does not depend on the machine.
fn replay(extra: &[&str], input: &Path) -> Output {
    let out = bin()
        .args([
            "replay",
            "--host-id",
            "00000000000000000000000000000001",
            "--host-name",
            "testhost",
        ])
        .args(extra)
        .arg(input)
        .output()
        .expect("run auditsentry");
    assert!(
        out.status.success(),
        "replay {} failed: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Alerts in an NDJSON file (empty when it does not exist yet).
fn alerts_in(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn alerts(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("stdout is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The `key=value` counters of the stderr summary line.
fn summary(out: &Output) -> std::collections::HashMap<String, u64> {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .rev()
        .find(|l| l.contains("records="))
        .expect("summary line on stderr");
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn golden(name: &str, actual: &str) {
    let path = repo("tests/golden").join(name);
    if std::env::var_os("AUDITSENTRY_REGENERATE").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set AUDITSENTRY_REGENERATE=1 to create it)",
            path.display()
        )
    });
    if want != actual {
        let (w, a): (Vec<_>, Vec<_>) = (want.lines().collect(), actual.lines().collect());
        let first = w
            .iter()
            .zip(&a)
            .position(|(x, y)| x != y)
            .unwrap_or(w.len().min(a.len()));
        panic!(
            "{} differs at alert {} ({} expected, {} actual)\nexpected: {}\nactual:   {}",
            path.display(),
            first + 1,
            w.len(),
            a.len(),
            w.get(first).unwrap_or(&""),
            a.get(first).unwrap_or(&"")
        );
    }
}

fn corpus_inputs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        "raw.audit.log",
        "enriched.audit.log",
        "raw.netlink.bin",
        "enriched.netlink.bin",
    ]
    .iter()
    .map(|f| shared("corpus").join(f))
    .collect();
    for f in [
        "sample.audit.log",
        "sample-enriched.audit.log",
        "sample.netlink.bin",
    ] {
        let p = repo("samples").join(f);
        if p.exists() {
            v.push(p);
        }
    }
    v
}

#[test]
fn corpus_alerts_match_golden_files() {
    for input in corpus_inputs() {
        let out = replay(&["--all-matches"], &input);
        let name = format!(
            "{}.all-matches.ndjson",
            input.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        );
        golden(&name, &String::from_utf8_lossy(&out.stdout));
        let s = summary(&out);
        assert_eq!(s["malformed"], 0, "{}", input.display());
        for a in alerts(&out) {
            assert_eq!(a["rule"]["id"], SEED_RULE_ID);
            assert_eq!(a["event"]["kind"], "alert");
        }
    }
}

#[test]
fn new_terms_alert_once_per_parent_and_never_on_a_second_pass() {
    for input in corpus_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().to_str().expect("utf-8 temp path");
        let first = alerts(&replay(&["--state-dir", state], &input));
        let mut parents: Vec<String> = first
            .iter()
            .map(|a| {
                a["process"]["parent"]["name"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        parents.sort();
        assert_eq!(
            parents,
            ["bash", "busybox", "dash", "perl", "python3.11"],
            "{}",
            input.display()
        );
        for a in &first {
            assert_eq!(a["new_terms"][0], "00000000000000000000000000000001");
            assert_eq!(a["new_terms"][1], a["process"]["parent"]["name"]);
        }
        let again = alerts(&replay(&["--state-dir", state], &input));
        assert!(
            again.is_empty(),
            "second pass over the same state alerted: {}",
            input.display()
        );
    }
}

#[test]
fn other_kernels_logs_parse_cleanly_and_raise_nothing() {
    let dir = shared("peer/go-libaudit");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("peer logs") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("log") {
            continue;
        }
        seen += 1;
        let out = replay(&["--all-matches"], &path);
        let s = summary(&out);
        assert_eq!(s["malformed"], 0, "{}", path.display());
        assert_eq!(s["alerts"], 0, "{}", path.display());
        assert!(s["records"] > 0, "{}", path.display());
    }
    assert!(seen >= 19, "only {seen} peer logs found");
}

#[test]
fn lost_serials_are_counted_in_the_summary() {
    let out = replay(
        &[],
        &shared("peer/go-libaudit/reassembler-lost_messages.log"),
    );
    assert_eq!(summary(&out)["lost_serials"], 9);
    for f in [
        "reassembler-normal.log",
        "reassembler-out_of_order.log",
        "reassembler-rollover.log",
    ] {
        let out = replay(&[], &shared("peer/go-libaudit").join(f));
        assert_eq!(summary(&out)["lost_serials"], 0, "{f}");
    }
}

#[test]
fn plugin_lines_with_node_and_three_fragment_argument() {
    let out = replay(
        &["--all-matches"],
        &repo("tests/data/plugin-node-split.log"),
    );
    let got = alerts(&out);
    assert_eq!(got.len(), 1, "{got:?}");
    let a = &got[0];
    let link = format!("/tmp/split-{}\nFAKE \"line", "Z".repeat(30));
    assert_eq!(
        a["process"]["args"],
        serde_json::json!(["ln", "-s", "/usr/bin/id", link])
    );
    assert_eq!(a["process"]["parent"]["name"], "bash");
    assert_eq!(a["process"]["parent"]["executable"], "/usr/bin/bash");
    assert_eq!(a["process"]["parent"]["args"], serde_json::json!(["-bash"]));
    assert_eq!(a["process"]["working_directory"], "/home/ops");
    assert_eq!(a["auditd"]["node"], "web1");
    assert_eq!(a["user"]["id"], "1000");
    assert_eq!(a["user"]["effective"]["id"], "0");
    assert_eq!(a["@timestamp"], "2023-11-14T22:13:20.200Z");
    // One JSON line per alert, whatever the argument holds.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn stdin_and_several_files_in_order() {
    use std::io::Write;
    let input = std::fs::read(repo("tests/data/plugin-node-split.log")).expect("read");
    let mut child = bin()
        .args(["replay", "--all-matches", "--format", "text", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(alerts(&out).len(), 1);
}

#[test]
fn unreadable_input_names_the_file_and_keeps_earlier_alerts() {
    let good = repo("tests/data/plugin-node-split.log");
    let out = bin()
        .args(["replay", "--all-matches"])
        .arg(&good)
        .arg("/nonexistent/audit.log")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/audit.log"), "{err}");
    assert_eq!(
        alerts(&out).len(),
        1,
        "alerts of the readable file were lost"
    );
}

#[test]
fn garbage_lines_are_counted_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mixed.log");
    let mut data = b"this is not audit\n\xff\xfe\x00garbage\ntype=SYSCALL msg=audit(12:\n".to_vec();
    data.extend(std::fs::read(repo("tests/data/plugin-node-split.log")).expect("read"));
    std::fs::write(&path, data).expect("write");
    let out = replay(&["--all-matches"], &path);
    assert_eq!(summary(&out)["malformed"], 3);
    assert_eq!(alerts(&out).len(), 1);
}

#[test]
fn rules_check_accepts_the_seed_and_names_bad_files() {
    let seed = repo("packaging/rules/defense_evasion_symlink_binary_to_writable_dir.toml");
    let out = bin()
        .args(["rules", "check"])
        .arg(&seed)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(SEED_RULE_ID));

    let dir = tempfile::tempdir().expect("tempdir");
    let eql = dir.path().join("eql.toml");
    let text = std::fs::read_to_string(&seed)
        .expect("seed")
        .replace("language = \"kuery\"", "language = \"eql\"");
    std::fs::write(&eql, text).expect("write");
    let out = bin()
        .args(["rules", "check"])
        .arg(&eql)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("eql.toml") && said.contains("eql"), "{said}");
}
