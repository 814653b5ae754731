//! End-to-end tests of the `auditsentry` binary: the shared corpus against checked-in golden alerts,
//! other kernels' logs, the new-terms contract, and the CLI's error contract.
//!
//! Golden files: `AUDITSENTRY_REGENERATE=1 cargo test --test integration` rewrites them from the
//! current binary; review the diff before committing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "it/coverage.rs"]
mod coverage;
#[path = "it/filenet.rs"]
mod filenet;
#[path = "it/flood.rs"]
mod flood;
#[path = "it/hardening.rs"]
mod hardening;
#[path = "it/index.rs"]
mod index;
#[path = "it/live.rs"]
mod live;
#[path = "it/loaders.rs"]
mod loaders;
#[path = "it/rules_coverage.rs"]
mod rules_coverage;
#[path = "it/stage_order.rs"]
mod stage_order;
#[path = "it/stateful.rs"]
mod stateful;
#[path = "it/view.rs"]
mod view;

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

/// An exclusive `flock` on `/tmp/auditsentry-NAME-tests.lock`, held until dropped: tests that
/// change machine-wide state (kernel audit, rsyslogd) run one at a time across every test process.
pub type MachineLock = nix::fcntl::Flock<std::fs::File>;

/// Takes the machine-wide lock `name` (see [`MachineLock`]).
pub fn machine_lock(name: &str) -> MachineLock {
    let path = format!("/tmp/auditsentry-{name}-tests.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("flock {path}: {e}"))
}

/// Fails `test`, naming its missing prerequisite `what`. Tests with prerequisites are
/// `#[ignore = "live: ..."]` or `#[ignore = "rsyslog: ..."]`, so a plain `cargo test` lists them as
/// ignored with the reason; once opted in (`--include-ignored`, as `scripts/test-all.sh` does as
/// root and always with `CI=true`), a test that cannot run must fail, not pass (docs/testing.md).
pub fn missing(test: &str, what: &str) -> ! {
    panic!(
        "{test} cannot run: {what}. It is #[ignore]d by default; run it as root with its \
         prerequisites (`.ci/run` installs them), or leave out --include-ignored"
    )
}

/// [`missing`] unless `present`.
pub fn require(test: &str, present: bool, what: &str) {
    if !present {
        missing(test, what);
    }
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

/// Parent names of alerts, sorted.
fn parents(alerts: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = alerts
        .iter()
        .map(|a| {
            a["process"]["parent"]["name"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    v.sort();
    v
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

/// The repository's own captures (samples/capture.sh), each labelled in samples/labels.tsv; a
/// missing one fails the tests that read it.
fn sample_inputs() -> Vec<PathBuf> {
    [
        "sample.audit.log",
        "sample-enriched.audit.log",
        "sample.netlink.bin",
    ]
    .iter()
    .map(|f| repo("samples").join(f))
    .collect()
}

/// The shared corpus beside the checkout (read only by [`shared_corpus`] tests).
fn shared_inputs() -> Vec<PathBuf> {
    [
        "raw.audit.log",
        "enriched.audit.log",
        "raw.netlink.bin",
        "enriched.netlink.bin",
    ]
    .iter()
    .map(|f| shared("corpus").join(f))
    .collect()
}

/// Every alert of `inputs` (`--all-matches`) is its golden file's.
fn alerts_match_golden_files(inputs: &[PathBuf]) {
    for input in inputs {
        let out = replay(&["--all-matches"], input);
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
fn sample_alerts_match_golden_files() {
    alerts_match_golden_files(&sample_inputs());
}

/// New terms on `inputs` with a fresh state: one alert per parent, none on a second pass.
fn new_terms_alert_once_per_parent(inputs: &[PathBuf]) {
    for input in inputs {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().to_str().expect("utf-8 temp path");
        let first = alerts(&replay(&["--state-dir", state], input));
        assert_eq!(
            parents(&first),
            ["bash", "busybox", "dash", "perl", "python3.11"],
            "{}",
            input.display()
        );
        for a in &first {
            assert_eq!(a["new_terms"][0], "00000000000000000000000000000001");
            assert_eq!(a["new_terms"][1], a["process"]["parent"]["name"]);
        }
        let again = alerts(&replay(&["--state-dir", state], input));
        assert!(
            again.is_empty(),
            "second pass over the same state alerted: {}",
            input.display()
        );
    }
}

#[test]
fn new_terms_alert_once_per_parent_and_never_on_a_second_pass() {
    new_terms_alert_once_per_parent(&sample_inputs());
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
    assert_eq!(a["user"]["id"], "0", "the effective uid, as Elastic Defend");
    assert_eq!(a["user"]["effective"]["id"], "0");
    assert_eq!(a["user"]["Ext"]["real"]["id"], "1000");
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

/// A read that fails in the middle of a threaded replay (every input a regular file): reading
/// `/proc/self/mem` at offset 0 fails with EIO. The run ends naming it, after the alerts of the
/// file before it.
#[test]
fn read_error_in_a_threaded_replay_names_the_input_and_keeps_earlier_alerts() {
    let good = repo("samples/sample.audit.log");
    let out = bin()
        .args(["replay", "--all-matches"])
        .arg(&good)
        .arg("/proc/self/mem")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: /proc/self/mem: Input/output error"),
        "{err}"
    );
    assert_eq!(
        alerts(&out).len(),
        30,
        "alerts of the readable file were lost"
    );
    assert_eq!(summary(&out)["records"], 845);
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

// ---------------------------------------------------------------------------------------------
// The shared corpus beside the checkout (../shared): ignored by a plain `cargo test`, run by the
// corpus step of scripts/test-all.sh (docs/testing.md).
// ---------------------------------------------------------------------------------------------

mod shared_corpus {
    use super::*;

    #[test]
    #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
    fn corpus_alerts_match_golden_files() {
        alerts_match_golden_files(&shared_inputs());
    }

    #[test]
    #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
    fn new_terms_alert_once_per_parent_and_never_on_a_second_pass() {
        new_terms_alert_once_per_parent(&shared_inputs());
    }

    #[test]
    #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
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
    #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
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
}

// ---------------------------------------------------------------------------------------------
// Outputs and configuration: config file, syslog through a real rsyslogd, rate cap, JSON files.
// ---------------------------------------------------------------------------------------------

mod outputs {
    use super::{alerts, bin, repo, summary, SEED_RULE_ID};
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::sync::{Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    const HOST: [&str; 4] = [
        "--host-id",
        "00000000000000000000000000000001",
        "--host-name",
        "testhost",
    ];

    // --- synthetic audit logs ------------------------------------------------------------------

    /// One successful execve as the kernel logs it (SYSCALL, EXECVE with hex arguments split into
    /// 7500-character fragments as the kernel does for long ones, CWD, EOE).
    struct Exec<'a> {
        serial: u32,
        ms: u64,
        pid: u32,
        ppid: u32,
        exe: &'a str,
        args: Vec<Vec<u8>>,
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    impl Exec<'_> {
        fn write(&self, out: &mut String) {
            let stamp = format!(
                "msg=audit({}.{:03}:{})",
                self.ms / 1000,
                self.ms % 1000,
                self.serial
            );
            let comm = self.exe.rsplit('/').next().unwrap_or("x");
            out.push_str(&format!(
                "type=SYSCALL {stamp}: arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 \
                 items=1 ppid={} pid={} auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 \
                 fsgid=0 tty=pts0 ses=3 comm=\"{comm}\" exe=\"{}\" key=\"exec\"\n",
                self.ppid, self.pid, self.exe
            ));
            let mut line = format!("type=EXECVE {stamp}: argc={}", self.args.len());
            for (i, arg) in self.args.iter().enumerate() {
                let h = hex(arg);
                if h.len() <= 7500 {
                    line.push_str(&format!(" a{i}={h}"));
                    continue;
                }
                line.push_str(&format!(" a{i}_len={}", h.len()));
                for (j, chunk) in h.as_bytes().chunks(7500).enumerate() {
                    out.push_str(&line);
                    out.push('\n');
                    line = format!(
                        "type=EXECVE {stamp}:  a{i}[{j}]={}",
                        String::from_utf8_lossy(chunk)
                    );
                }
            }
            out.push_str(&line);
            out.push('\n');
            out.push_str(&format!("type=CWD {stamp}: cwd=\"/root\"\n"));
            out.push_str(&format!("type=EOE {stamp}: \n"));
        }
    }

    fn args(list: &[&[u8]]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.to_vec()).collect()
    }

    const T0_MS: u64 = 1_700_000_000_000;

    /// A bash (pid 100, whose own exec is in the log) running `ln -s /usr/bin/id LINK` per link.
    fn ln_log(links: &[Vec<u8>]) -> String {
        let mut text = String::new();
        Exec {
            serial: 1,
            ms: T0_MS,
            pid: 100,
            ppid: 1,
            exe: "/usr/bin/bash",
            args: args(&[b"-bash"]),
        }
        .write(&mut text);
        for (i, link) in links.iter().enumerate() {
            let i = i as u32;
            let mut a = args(&[b"ln", b"-s", b"/usr/bin/id"]);
            a.push(link.clone());
            Exec {
                serial: 2 + i,
                ms: T0_MS + 10 + u64::from(i),
                pid: 200 + i,
                ppid: 100,
                exe: "/usr/bin/ln",
                args: a,
            }
            .write(&mut text);
        }
        text
    }

    /// `n` different parents (`/usr/bin/tool{i}`), each running one `ln -s` within one minute:
    /// `n` distinct new tuples.
    fn many_parents_log(n: u32) -> String {
        let mut text = String::new();
        for i in 0..n {
            let ms = T0_MS + u64::from(i) * 200; // 250 parents in 50 s
            let tool = format!("/usr/bin/tool{i}");
            Exec {
                serial: 2 * i + 1,
                ms,
                pid: 1000 + i,
                ppid: 1,
                exe: &tool,
                args: args(&[tool.as_bytes()]),
            }
            .write(&mut text);
            let link = format!("/tmp/x{i}");
            Exec {
                serial: 2 * i + 2,
                ms: ms + 10,
                pid: 5000 + i,
                ppid: 1000 + i,
                exe: "/usr/bin/ln",
                args: args(&[b"ln", b"-s", b"/usr/bin/id", link.as_bytes()]),
            }
            .write(&mut text);
        }
        text
    }

    fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write test input");
        path
    }

    fn run(args: &[&str]) -> Output {
        bin().args(args).output().expect("run auditsentry")
    }

    fn stderr(out: &Output) -> String {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    // --- rsyslogd -------------------------------------------------------------------------------

    /// The rsyslog rule the syslog tests rely on (also written by `.ci/run`).
    const DROPIN: &str = "/etc/rsyslog.d/30-auditsentry-test.conf";
    const DROPIN_TEXT: &str = "local5.* /var/log/auditsentry-test.log\n& stop\n";
    const SYSLOG_FILE: &str = "/var/log/auditsentry-test.log";
    const PIDFILE: &str = "/run/rsyslogd.pid";

    /// Syslog tests share one rsyslogd (and restart it): they run one at a time.
    static RSYSLOG: Mutex<()> = Mutex::new(());

    /// The installed rsyslogd: a regular, executable file.
    fn rsyslogd_bin() -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }

    fn rsyslogd_pid() -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(PIDFILE).ok()?.trim().parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "rsyslogd").then_some(pid)
    }

    pub(crate) fn syslog_file_len() -> u64 {
        std::fs::metadata(SYSLOG_FILE).map_or(0, |m| m.len())
    }

    /// Messages (the part after `auditsentry[PID]: `) that process `pid` logged to the test file
    /// after byte `from`.
    pub(crate) fn messages(pid: u32, from: u64) -> Vec<String> {
        let data = std::fs::read(SYSLOG_FILE).unwrap_or_default();
        let start = usize::try_from(from).unwrap_or(0).min(data.len());
        let tag = format!("auditsentry[{pid}]: ");
        String::from_utf8_lossy(&data[start..])
            .lines()
            .filter_map(|l| l.split_once(&tag).map(|(_, m)| m.to_string()))
            .collect()
    }

    /// Waits until `pid` has at least `want` messages, then a little longer for stragglers.
    fn wait_messages(pid: u32, from: u64, want: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while messages(pid, from).len() < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        messages(pid, from)
    }

    /// Waits until rsyslogd writes a probe line to the test file.
    fn wait_ready() {
        let from = syslog_file_len();
        let token = format!("probe-{}-{:?}", std::process::id(), Instant::now());
        let mut client = auditsentry::sink::syslog::Syslog::new("/dev/log");
        let facility = auditsentry::sink::syslog::Facility::Local(5);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let _ = client.log(facility, auditsentry::sink::syslog::Severity::Info, &token);
            std::thread::sleep(Duration::from_millis(200));
            if messages(std::process::id(), from)
                .iter()
                .any(|m| m == &token)
            {
                return;
            }
        }
        panic!("rsyslogd does not write local5 to {SYSLOG_FILE} (see {DROPIN})");
    }

    fn start_rsyslogd(bin: &Path) {
        let status = Command::new(bin).status().expect("start rsyslogd");
        assert!(status.success(), "rsyslogd failed to start: {status}");
        wait_ready();
    }

    fn restart_rsyslogd(bin: &Path) {
        if let Some(pid) = rsyslogd_pid() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            )
            .expect("stop rsyslogd");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        start_rsyslogd(bin);
    }

    /// A running rsyslogd that writes local5 to [`SYSLOG_FILE`], held for the calling test (which
    /// is `#[ignore = "rsyslog: ..."]`: once run, a missing root or rsyslogd fails it).
    pub(crate) fn rsyslog(test: &str) -> ((MutexGuard<'static, ()>, super::MachineLock), PathBuf) {
        super::require(test, nix::unistd::Uid::effective().is_root(), "needs root");
        let guard = (
            RSYSLOG.lock().unwrap_or_else(|p| p.into_inner()),
            super::machine_lock("rsyslog"),
        );
        let Some(bin) = rsyslogd_bin() else {
            super::missing(
                test,
                "needs rsyslogd (/usr/sbin/rsyslogd; `.ci/run` installs rsyslog)",
            )
        };
        if std::fs::read_to_string(DROPIN).ok().as_deref() != Some(DROPIN_TEXT) {
            std::fs::create_dir_all("/etc/rsyslog.d").expect("create /etc/rsyslog.d (root?)");
            std::fs::write(DROPIN, DROPIN_TEXT).expect("write the rsyslog drop-in (root?)");
            restart_rsyslogd(&bin);
        } else if rsyslogd_pid().is_none() {
            start_rsyslogd(&bin);
        }
        (guard, bin)
    }

    /// Spawns `auditsentry replay ARGS` and returns its pid and output.
    fn replay_pid(args: &[&str]) -> (u32, Output) {
        let child = bin()
            .arg("replay")
            .args(HOST)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn auditsentry");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait auditsentry");
        assert!(out.status.success(), "replay failed: {}", stderr(&out));
        (pid, out)
    }

    /// The value of `key=` in a syslog alert line (bare or quoted, escapes kept).
    fn field(line: &str, key: &str) -> Option<String> {
        let at = line
            .find(&format!(" {key}="))
            .map(|i| i + 1)
            .or_else(|| line.starts_with(&format!("{key}=")).then_some(0))?;
        let rest = &line[at + key.len() + 1..];
        if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut esc = false;
            for c in q.chars() {
                match (esc, c) {
                    (true, c) => {
                        out.push('\\');
                        out.push(c);
                        esc = false;
                    }
                    (false, '\\') => esc = true,
                    (false, '"') => return Some(out),
                    (false, c) => out.push(c),
                }
            }
            Some(out)
        } else {
            Some(rest.split(' ').next().unwrap_or("").to_string())
        }
    }

    fn s(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    // --- tests ----------------------------------------------------------------------------------

    #[test]
    #[ignore = "rsyslog: needs root and rsyslogd"]
    fn syslog_corpus_one_line_per_alert_with_the_right_fields() {
        let (_guard, _) = rsyslog("syslog_corpus");
        let from = syslog_file_len();
        let corpus = repo("samples/sample.audit.log");
        let corpus = corpus.to_str().expect("utf-8 path");
        let (pid, out) = replay_pid(&["--syslog=local5", "--all-matches", corpus]);
        let json = alerts(&out);
        assert_eq!(json.len(), 30);
        let lines = wait_messages(pid, from, json.len());
        assert_eq!(lines.len(), json.len(), "{lines:#?}");
        for (line, a) in lines.iter().zip(&json) {
            assert_eq!(
                field(line, "rule_id").as_deref(),
                Some(SEED_RULE_ID),
                "{line}"
            );
            assert_eq!(
                field(line, "rule").as_deref(),
                Some("System Binary Symlink to Suspicious Location")
            );
            assert_eq!(field(line, "severity").as_deref(), Some("low"));
            assert_eq!(field(line, "host").as_deref(), Some("testhost"));
            assert_eq!(
                field(line, "event_id"),
                Some(s(&a["event"]["id"])),
                "{line}"
            );
            assert_eq!(field(line, "pid"), Some(s(&a["process"]["pid"])), "{line}");
            assert_eq!(field(line, "ppid"), Some(s(&a["process"]["parent"]["pid"])));
            assert_eq!(
                field(line, "parent"),
                Some(s(&a["process"]["parent"]["name"]))
            );
            assert_eq!(
                field(line, "parent_exe"),
                Some(s(&a["process"]["parent"]["executable"]))
            );
            assert_eq!(field(line, "exe"), Some(s(&a["process"]["executable"])));
            assert_eq!(field(line, "uid"), Some(s(&a["user"]["id"])));
            assert_eq!(field(line, "auid"), Some(s(&a["auditd"]["auid"])));
            assert_eq!(field(line, "argc"), Some(s(&a["process"]["args_count"])));
            assert!(line.len() <= 2048, "{line}");
            // Only sc12 (an argument of several KiB) outgrows the default line cap.
            assert_eq!(
                line.ends_with("...\" truncated=yes"),
                line.contains("-sc12"),
                "{line}"
            );
        }
        // sc10's link name holds a newline: escaped in its one line, never a line of its own.
        let sc10: Vec<&String> = lines.iter().filter(|l| l.contains("-sc10")).collect();
        assert_eq!(sc10.len(), 1, "{lines:#?}");
        assert!(
            sc10[0].ends_with("-sc10\\nFAKE\\x20ALERT\\x20forged\\x20line\""),
            "{}",
            sc10[0]
        );
        let all = std::fs::read_to_string(SYSLOG_FILE).unwrap_or_default();
        assert!(
            !all.lines().any(|l| l.starts_with("FAKE ALERT forged line")),
            "an argument started a line of its own"
        );
    }

    #[test]
    #[ignore = "rsyslog: needs root and rsyslogd"]
    fn syslog_alerts_still_arrive_after_rsyslogd_restarts_mid_run() {
        let (_guard, rsyslogd) = rsyslog("syslog_restart");
        let from = syslog_file_len();
        let corpus = std::fs::read(repo("samples/sample.audit.log")).expect("sample");
        let lines: Vec<&[u8]> = corpus.split_inclusive(|&b| b == b'\n').collect();
        let (first, second) = lines.split_at(lines.len() / 2);
        let mut child = bin()
            .args([
                "replay",
                "--syslog=local5",
                "--all-matches",
                "--format",
                "text",
            ])
            .args(HOST)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&first.concat()).expect("first half");
        stdin.flush().expect("flush");
        let before = wait_messages(pid, from, 1).len();
        assert!(before >= 1, "no alert of the first half reached rsyslog");

        restart_rsyslogd(&rsyslogd);

        stdin.write_all(&second.concat()).expect("second half");
        drop(stdin);
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
        let total = alerts(&out).len();
        assert_eq!(total, 30);
        assert!(
            before < total,
            "every alert came before the restart: nothing tested"
        );
        let got = wait_messages(pid, from, total);
        assert_eq!(
            got.len(),
            total,
            "{} alerts before the restart, {} in syslog in all",
            before,
            got.len()
        );
    }

    #[test]
    #[ignore = "rsyslog: needs root and rsyslogd"]
    fn hostile_arguments_make_one_bounded_line_each() {
        let (_guard, _) = rsyslog("hostile_arguments");
        let dir = tempfile::tempdir().expect("tempdir");
        let evil = b"/tmp/evil\nFAKE rule=\"x\" q'uote\x1d\x01\x7f \xff\xfe\x80 end\r\n".to_vec();
        let mut big = b"/tmp/".to_vec();
        big.extend(std::iter::repeat_n(b'B', 1 << 20));
        let log = write_temp(dir.path(), "hostile.log", &ln_log(&[evil, big]));
        let from = syslog_file_len();
        let (pid, out) = replay_pid(&[
            "--syslog=local5",
            "--syslog-max-line",
            "1024",
            "--all-matches",
            log.to_str().expect("utf-8"),
        ]);
        let json = alerts(&out);
        assert_eq!(json.len(), 2, "{}", stderr(&out));
        // The JSON sink keeps the full record.
        assert_eq!(
            json[1]["process"]["args"][3].as_str().map(str::len),
            Some(5 + (1 << 20))
        );
        let lines = wait_messages(pid, from, 2);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        for l in &lines {
            assert!(l.len() <= 1024, "{} bytes", l.len());
            assert_eq!(l.matches(" args=").count(), 1, "{l}");
            assert_eq!(l.matches(" rule_id=").count(), 1, "{l}");
        }
        assert!(
            lines[0].ends_with(
                "args=\"ln -s /usr/bin/id /tmp/evil\\nFAKE\\x20rule=\\\"x\\\"\\x20q'uote\\x1d\\x01\\x7f\\x20\u{fffd}\u{fffd}\u{fffd}\\x20end\\r\\n\""
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].ends_with("BBBB...\" truncated=yes"),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains(" parent=bash "), "{}", lines[1]);
        let all = std::fs::read_to_string(SYSLOG_FILE).unwrap_or_default();
        assert!(!all.lines().any(|l| l.starts_with("FAKE")));
    }

    #[test]
    fn rate_cap_250_new_parents_in_a_minute_gives_100_alerts_and_one_summary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = write_temp(dir.path(), "burst.log", &many_parents_log(250));
        let log = log.to_str().expect("utf-8");
        let out = run(&["replay", HOST[0], HOST[1], HOST[2], HOST[3], log]);
        assert!(out.status.success(), "{}", stderr(&out));
        let got = alerts(&out);
        assert_eq!(got.len(), 100);
        assert_eq!(got[99]["process"]["parent"]["name"], "tool99");
        let err = stderr(&out);
        let caps: Vec<&str> = err.lines().filter(|l| l.contains("rate cap:")).collect();
        assert_eq!(caps.len(), 1, "{err}");
        let named: Vec<String> = (100..120)
            .map(|i| format!("[\"00000000000000000000000000000001\",\"tool{i}\"]"))
            .collect();
        assert_eq!(
            caps[0],
            format!(
                "auditsentry: rate cap: rule=\"System Binary Symlink to Suspicious Location\" \
                 rule_id={SEED_RULE_ID} window_start=2023-11-14T22:13:20.010Z \
                 window_end=2023-11-14T22:18:20.010Z max_signals=100 emitted=100 capped=150 \
                 capped_terms=[{}] capped_terms_more=130",
                named.join(",")
            )
        );
        let s = summary(&out);
        assert_eq!((s["alerts"], s["capped"], s["matched"]), (100, 150, 250));

        // --max-signals overrides the rule's max_signals.
        let out = run(&["replay", "--max-signals", "10", log]);
        assert_eq!(alerts(&out).len(), 10);
        assert_eq!(summary(&out)["capped"], 240);
    }

    /// Regression: 100 throwaway parents, then `evil`, under `--max-signals 3`: `evil` was capped,
    /// recorded as seen, and never alerted again (also after a restart on the same state). A
    /// capped tuple is no longer recorded: the summary names it, and it alerts once it recurs
    /// after the window.
    #[test]
    fn a_flood_of_the_rate_cap_does_not_hide_a_later_tuple() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = many_parents_log(100);
        let evil = |text: &mut String, serial: u32, ms: u64, name: &str| {
            Exec {
                serial,
                ms,
                pid: 9000 + serial,
                ppid: 1,
                exe: "/usr/bin/evil",
                args: args(&[b"evil"]),
            }
            .write(text);
            let link = format!("/tmp/{name}");
            Exec {
                serial: serial + 1,
                ms: ms + 10,
                pid: 9500 + serial,
                ppid: 9000 + serial,
                exe: "/usr/bin/ln",
                args: args(&[b"ln", b"-s", b"/usr/bin/id", link.as_bytes()]),
            }
            .write(text);
        };
        // Within the flood's window (60 s from its first alert), then ten minutes later.
        evil(&mut text, 1000, T0_MS + 30_000, "e1");
        evil(&mut text, 1002, T0_MS + 600_000, "e2");
        let log = write_temp(dir.path(), "flood.log", &text);
        let conf = write_temp(dir.path(), "c.toml", "[limits]\nrate_window_secs = 60\n");
        let state = dir.path().join("state");
        let out = run(&[
            "replay",
            HOST[0],
            HOST[1],
            HOST[2],
            HOST[3],
            "--config",
            conf.to_str().expect("utf-8"),
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--max-signals",
            "3",
            log.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let got = alerts(&out);
        let links: Vec<&str> = got
            .iter()
            .filter_map(|a| a["process"]["args"][3].as_str())
            .collect();
        assert_eq!(links, ["/tmp/x0", "/tmp/x1", "/tmp/x2", "/tmp/e2"]);
        let err = stderr(&out);
        let caps: Vec<&str> = err.lines().filter(|l| l.contains("rate cap:")).collect();
        assert_eq!(caps.len(), 1, "{err}");
        assert!(
            caps[0].contains(" max_signals=3 emitted=3 capped=98 capped_terms=[[\"00000000000000000000000000000001\",\"tool3\"],"),
            "{}",
            caps[0]
        );
        assert!(caps[0].ends_with(" capped_terms_more=78"), "{}", caps[0]);
        // `evil` was never recorded while capped; once alerted, it is.
        let again = run(&[
            "replay",
            HOST[0],
            HOST[1],
            HOST[2],
            HOST[3],
            "--state-dir",
            state.to_str().expect("utf-8"),
            log.to_str().expect("utf-8"),
        ]);
        let links: Vec<String> = alerts(&again)
            .iter()
            .filter_map(|a| a["process"]["args"][3].as_str().map(str::to_string))
            .collect();
        assert!(!links.iter().any(|l| l.starts_with("/tmp/e")), "{links:?}");
        assert!(
            links.contains(&"/tmp/x3".to_string()),
            "capped tuples alert later: {links:?}"
        );
    }

    #[test]
    #[ignore = "rsyslog: needs root and rsyslogd"]
    fn rate_cap_summary_reaches_syslog() {
        let (_guard, _) = rsyslog("rate_cap_summary");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = write_temp(dir.path(), "burst.log", &many_parents_log(250));
        let from = syslog_file_len();
        let (pid, out) = replay_pid(&["--syslog=local5", log.to_str().expect("utf-8")]);
        assert_eq!(alerts(&out).len(), 100);
        let lines = wait_messages(pid, from, 101);
        assert_eq!(lines.len(), 101, "{lines:#?}");
        let caps: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("rate cap:"))
            .collect();
        assert_eq!(caps.len(), 1);
        assert!(
            caps[0].contains(" max_signals=100 emitted=100 capped=150 capped_terms=[["),
            "{}",
            caps[0]
        );
    }

    #[test]
    fn json_file_output_appends_and_events_output_has_every_exec() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json = dir.path().join("alerts.json");
        let events = dir.path().join("events.json");
        let input = repo("tests/data/plugin-node-split.log");
        for _ in 0..2 {
            let out = run(&[
                "replay",
                "--all-matches",
                "--json",
                json.to_str().expect("utf-8"),
                "--events",
                events.to_str().expect("utf-8"),
                input.to_str().expect("utf-8"),
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(out.stdout.is_empty(), "alerts went to stdout too");
            assert_eq!(summary(&out)["events_out"], 2);
        }
        let read = |p: &Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(p)
                .expect("output file")
                .lines()
                .map(|l| serde_json::from_str(l).expect("JSON line"))
                .collect()
        };
        let a = read(&json);
        assert_eq!(a.len(), 2, "appended across runs");
        assert!(a.iter().all(|v| v["event"]["kind"] == "alert"));
        let e = read(&events);
        let names: Vec<&str> = e
            .iter()
            .map(|v| v["process"]["name"].as_str().unwrap_or("?"))
            .collect();
        assert_eq!(names, ["bash", "ln", "bash", "ln"]);
        assert!(e
            .iter()
            .all(|v| v["event"]["kind"] == "event" && v.get("rule").is_none()));
    }

    #[test]
    fn config_check_exit_codes_and_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The packaged file, with its rules directory where this checkout has it.
        let text = std::fs::read_to_string(repo("packaging/etc/auditsentry.toml"))
            .expect("packaged config")
            .replace(
                "\"/etc/auditsentry/rules\"",
                &format!("{:?}", repo("packaging/rules").display().to_string()),
            );
        let packaged = write_temp(dir.path(), "packaged.toml", &text);
        let out = run(&["config", "check", packaged.to_str().expect("utf-8")]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("ok: {}\n", packaged.display())
        );

        let bad = write_temp(
            dir.path(),
            "bad.toml",
            "[output.syslog]\nenabled = true\nfacility = \"nope\"\n",
        );
        let out = run(&["config", "check", bad.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(1));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.starts_with(&format!(
                "error: {}:3: output.syslog.facility: unknown facility \"nope\"",
                bad.display()
            )),
            "{said}"
        );
        let unknown = write_temp(dir.path(), "unknown.toml", "[limits]\nmax_signal = 5\n");
        let out = run(&["config", "check", unknown.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(1));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(":2: limits.max_signal: unknown key `max_signal`"),
            "{said}"
        );
        let out = run(&["config", "check", "/nonexistent/a.toml"]);
        assert_eq!(out.status.code(), Some(1));

        // A bad file stops replay before it reads anything.
        let out = run(&["replay", "--config", bad.to_str().expect("utf-8"), "-"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("output.syslog.facility"),
            "{}",
            stderr(&out)
        );
    }

    #[test]
    fn replay_reads_the_config_file_and_flags_override_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json = dir.path().join("from-config.json");
        let rules = repo("packaging/rules");
        let cfg = write_temp(
            dir.path(),
            "a.toml",
            &format!(
                "[rules]\npaths = [{:?}]\n[state]\ndir = {:?}\n[output.json]\npath = {:?}\n\
                 [output.syslog]\nenabled = true\nfacility = \"local5\"\n[limits]\nmax_signals = 3\n",
                rules.display().to_string(),
                dir.path().join("state").display().to_string(),
                json.display().to_string()
            ),
        );
        let burst = write_temp(dir.path(), "burst.log", &many_parents_log(5));
        let cfg = cfg.to_str().expect("utf-8");
        let burst = burst.to_str().expect("utf-8");
        let out = run(&["replay", "--config", cfg, burst]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
        let written = std::fs::read_to_string(&json).expect("json output");
        assert_eq!(written.lines().count(), 3, "max_signals from the file");
        assert!(dir.path().join("state").exists(), "state dir from the file");

        // The alerted tuples are recorded; the capped ones are not (unlike Kibana, so a cap
        // flood cannot hide them): a second pass raises the two capped ones.
        let out = run(&["replay", "--config", cfg, burst]);
        assert_eq!(summary(&out)["seen"], 3);
        assert_eq!(summary(&out)["alerts"], 2);

        // Flags win: stdout instead of the file, another state, another cap.
        let fresh = dir.path().join("fresh");
        let out = run(&[
            "replay",
            "--config",
            cfg,
            "--json",
            "-",
            "--state-dir",
            fresh.to_str().expect("utf-8"),
            "--max-signals",
            "1",
            burst,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(alerts(&out).len(), 1);
        assert_eq!(summary(&out)["capped"], 4);
        assert_eq!(
            std::fs::read_to_string(&json)
                .map(|t| t.lines().count())
                .ok(),
            Some(5),
            "3 + 2 from the first passes, nothing from the one on stdout"
        );
    }
}

/// `--output text`: the quick start's view for a person at a terminal — one readable line per
/// alert (the sample's sc10 link name holds a newline: still one line), a summary in words; and
/// `--output json` on the same input is the JSON the golden files hold.
#[test]
fn replay_text_view_is_one_line_per_alert_and_json_stays_the_same() {
    let input = repo("samples/sample.audit.log");
    let text = replay(&["--all-matches", "--output", "text"], &input);
    assert!(text.status.success(), "{text:?}");
    let stdout = String::from_utf8_lossy(&text.stdout);
    let json = replay(&["--all-matches", "--output", "json"], &input);
    let alerts = alerts(&json);
    assert_eq!(stdout.lines().count(), alerts.len(), "{stdout}");
    for (line, alert) in stdout.lines().zip(&alerts) {
        assert!(!line.starts_with('{'), "{line}");
        let who = format!(
            "{}[{}] → {}[{}]",
            alert["process"]["parent"]["name"].as_str().unwrap_or("?"),
            alert["process"]["parent"]["pid"],
            alert["process"]["name"].as_str().unwrap_or("?"),
            alert["process"]["pid"],
        );
        assert!(line.contains(&who), "{line} lacks {who}");
        assert!(line.chars().all(|c| !c.is_control()), "{line:?}");
    }
    let summary = String::from_utf8_lossy(&text.stderr);
    assert!(
        summary.contains(&format!("; {} alerts written", alerts.len())),
        "{summary}"
    );
    assert!(!summary.contains("records="), "{summary}");
    let default = replay(&["--all-matches"], &input);
    assert_eq!(default.stdout, json.stdout, "a pipe gets JSON by default");
}
