//! Live tests on the real kernel (root): the daemon's sources, rule management and parity with replay.
//!
//! They change kernel audit state (rules, enabled, daemon pid), so they hold one lock and check that
//! the kernel is left exactly as they found it.
//!
//! How to write one (see docs/testing.md): mark it `#[ignore = "live: needs ..."]`, naming what it
//! needs, and start it with [`begin`] (plus `require` for anything more). A plain `cargo test`
//! then lists it as ignored with that reason; `scripts/test-all.sh` runs it (`--include-ignored`) as
//! root and always with `CI=true`, and once it runs, a missing prerequisite fails it: a live test
//! never passes without having run.

use super::{alerts_in, bin, replay, require};
use auditsentry::source::netlink::AuditSocket;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// One kernel, one test at a time.
pub static KERNEL: Mutex<()> = Mutex::new(());

/// The kernel lock of this process and of every other test process on the machine (the library's
/// live tests, another checkout's tests): held until dropped.
pub struct KernelLock {
    _local: MutexGuard<'static, ()>,
    _machine: super::MachineLock,
}

/// Takes [`KERNEL`] and the machine-wide kernel test lock.
pub fn kernel_lock() -> KernelLock {
    let local = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    KernelLock {
        _local: local,
        _machine: super::machine_lock("kernel"),
    }
}

/// The kernel's audit rules (as bytes) and enabled flag and daemon pid, to compare before/after.
#[derive(PartialEq, Eq)]
pub struct KernelState {
    rules: Vec<Vec<u8>>,
    enabled: u32,
    pid: u32,
}

impl std::fmt::Debug for KernelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Rules as (length, trailing key text): enough to tell them apart in a failure message.
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|r| {
                format!(
                    "{}B:{}",
                    r.len(),
                    String::from_utf8_lossy(&r[r.len().saturating_sub(24)..]).trim_matches('\0')
                )
            })
            .collect();
        write!(
            f,
            "KernelState {{ enabled: {}, pid: {}, rules: {rules:?} }}",
            self.enabled, self.pid
        )
    }
}

pub fn kernel_state() -> Option<KernelState> {
    let mut ctl = AuditSocket::control().ok()?;
    let status = ctl.status().ok()?;
    let rules = ctl
        .list_rules()
        .ok()?
        .iter()
        .filter_map(|r| r.encode().ok())
        .collect();
    Some(KernelState {
        rules,
        enabled: status.enabled,
        pid: status.pid,
    })
}

/// Fails unless the kernel's audit state is `before` again, within 3 s (an agent's exit or an
/// auditd's stop may still be finishing); the failure names the audit processes running.
pub fn assert_kernel_as_found(before: &Option<KernelState>, context: &str) {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let now = kernel_state();
        if &now == before {
            return;
        }
        if Instant::now() > end {
            panic!(
                "kernel audit state changed{context}\n  now: {now:?}\n  before: {before:?}\n  \
                 audit processes: {:?}",
                audit_processes()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `pid comm` of every running auditsentry or auditd process.
fn audit_processes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let comm = comm.trim();
            (comm.starts_with("auditsentry") || comm == "auditd").then(|| format!("{pid} {comm}"))
        })
        .collect()
}

/// What every live test starts with: the kernel lock (hold it until the test ends), a failure
/// when not root or without kernel audit, a temp dir, a token unique to the test and the run, and
/// the alert file path.
pub fn begin(test: &str, tag: &str) -> (KernelLock, TempDir, String, PathBuf) {
    require(test, nix::unistd::Uid::effective().is_root(), "needs root");
    let lock = kernel_lock();
    require(
        test,
        kernel_state().is_some(),
        "needs kernel audit (NETLINK_AUDIT control)",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("alerts.ndjson");
    (
        lock,
        dir,
        format!("as-live-{tag}-{}", std::process::id()),
        json,
    )
}

/// Fails `test` when an audit daemon (auditd, or a leftover agent) is registered with the kernel.
pub fn require_no_daemon(test: &str) {
    let pid = kernel_state().map_or(0, |s| s.pid);
    require(
        test,
        pid == 0,
        &format!("needs no registered audit daemon, but pid {pid} is (stop auditd)"),
    );
}

/// An unrelated rule (`-a always,exit -F arch=b64 -S unlinkat -k auditsentry-test-pre`) loaded for
/// the length of a test, as an operator's own rules would be; deleted on drop.
pub struct PreexistingRule(Option<auditsentry::source::netlink::RuleData>);

impl PreexistingRule {
    pub fn add() -> PreexistingRule {
        use auditsentry::source::netlink::{Arch, RuleData};
        let rule = RuleData::syscall_rule(Arch::X86_64, &[263], None, "auditsentry-test-pre")
            .expect("rule");
        let added = AuditSocket::control()
            .and_then(|mut c| c.add_rule(&rule))
            .is_ok();
        PreexistingRule(added.then_some(rule))
    }
}

impl Drop for PreexistingRule {
    fn drop(&mut self) {
        if let Some(rule) = &self.0 {
            let _ = AuditSocket::control().and_then(|mut c| c.del_rule(rule));
        }
    }
}

/// The execve and link-syscall rules the agent would add (without `-F pid!=`), loaded by a test
/// for an agent run with `--no-manage-rules`, with audit turned on; all undone on drop.
pub struct TestRules {
    rules: Vec<auditsentry::source::netlink::RuleData>,
    enabled: bool,
}

impl TestRules {
    pub fn load() -> TestRules {
        use auditsentry::source::netlink::{Arch, RuleData};
        let mut ctl = AuditSocket::control().expect("control socket");
        let mut rules = Vec::new();
        for arch in Arch::host() {
            rules.push(RuleData::exec_rule(*arch, None, "auditsentry-test-exec").expect("rule"));
            rules.push(auditsentry::audit::link::link_rules(*arch, None).expect("rule"));
        }
        for rule in &rules {
            ctl.add_rule(rule).expect("add a test rule");
        }
        let enabled = ctl.status().expect("status").enabled == 0;
        if enabled {
            ctl.set_enabled(true).expect("enable audit");
        }
        TestRules { rules, enabled }
    }
}

impl Drop for TestRules {
    fn drop(&mut self) {
        if let Ok(mut ctl) = AuditSocket::control() {
            for rule in &self.rules {
                let _ = ctl.del_rule(rule);
            }
            if self.enabled {
                let _ = ctl.set_enabled(false);
            }
        }
    }
}

/// A running `auditsentry run` with its stderr collected.
pub struct Agent {
    pub child: Child,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub json: PathBuf,
}

impl Agent {
    /// Starts `auditsentry run ARGS --json JSON` (and `--no-syslog` unless ARGS name a
    /// `--syslog`) and waits for its `running:` line.
    pub fn start(args: &[&str], json: &Path) -> Agent {
        let syslog = args.iter().any(|a| a.starts_with("--syslog"));
        let mut child = bin()
            .arg("run")
            .args((!syslog).then_some("--no-syslog"))
            .args(args)
            .arg("--json")
            .arg(json)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn auditsentry run");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("stderr pipe");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line);
            }
        });
        let agent = Agent {
            child,
            stderr,
            json: json.to_path_buf(),
        };
        agent.wait_for_log("running:", Duration::from_secs(10));
        agent
    }

    pub fn log(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agent never logged {needle:?}; log:\n{}", self.log());
    }

    /// Waits until an alert whose args contain `token` is in the JSON file.
    pub fn wait_alert(&self, token: &str, timeout: Duration) -> Value {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(a) = alerts_in(&self.json)
                .into_iter()
                .find(|a| args_contain(a, token))
            {
                return a;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no alert for {token} within {timeout:?}; log:\n{}",
            self.log()
        );
    }

    /// SIGTERM, then the exit status within 5 s.
    pub fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "agent exited {status}; log:\n{}",
                    self.log()
                );
                break;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!(
                    "agent did not stop within 5 s of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }
}

impl Drop for Agent {
    /// A test that fails while its agent runs stops it (SIGTERM, so it removes its audit rules):
    /// an agent left running would change what the next tests see.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn args_contain(alert: &Value, token: &str) -> bool {
    alert["process"]["args"].as_array().is_some_and(|a| {
        a.iter()
            .any(|v| v.as_str().is_some_and(|s| s.contains(token)))
    })
}

/// Runs `sh`-style command text under `shell` (e.g. /usr/bin/dash -c) from /tmp and waits for it.
pub fn sh(shell: &str, script: &str) {
    let status = Command::new(shell)
        .arg("-c")
        .arg(script)
        .current_dir("/tmp")
        .status()
        .expect("run shell");
    assert!(status.success(), "{shell} -c {script:?}: {status}");
}

#[test]
#[ignore = "live: needs root and kernel audit"]
fn live_multicast_alerts_once_per_parent_leaves_the_kernel_as_found_and_replays_the_same() {
    let (_lock, dir, token, json) = begin("live multicast", "mc");
    // An operator's rule that is already loaded (not about execve) must come out byte-identical.
    let _pre = PreexistingRule::add();
    let before = kernel_state();
    let capture = dir.path().join("capture.bin");
    let state = dir.path().join("state");
    let agent = Agent::start(
        &[
            "--source",
            "multicast",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--record",
            capture.to_str().expect("utf-8"),
            "--status-period",
            "60",
        ],
        &json,
    );
    let t0 = Instant::now();
    sh(
        "/usr/bin/dash",
        &format!("ln -s /usr/bin/id /tmp/{token}-1; true"),
    );
    let first = agent.wait_alert(&format!("{token}-1"), Duration::from_secs(5));
    let latency = t0.elapsed();
    assert!(latency < Duration::from_secs(2), "alert took {latency:?}");
    assert_eq!(
        first["process"]["args"],
        serde_json::json!(["ln", "-s", "/usr/bin/id", format!("/tmp/{token}-1")])
    );
    assert_eq!(first["process"]["parent"]["name"], "dash");
    assert_eq!(first["process"]["parent"]["executable"], "/usr/bin/dash");
    assert_eq!(first["process"]["working_directory"], "/tmp");
    assert_eq!(first["new_terms"][1], "dash");

    // Same parent again: not new. A benign ln: no match. Then a new parent, whose alert proves the
    // agent has processed the two before it (events are handled in order).
    sh(
        "/usr/bin/dash",
        &format!("ln -s /usr/bin/id /tmp/{token}-2; true"),
    );
    sh(
        "/usr/bin/dash",
        &format!("ln -s /tmp/{token}-src /tmp/{token}-3; true"),
    );
    let status = Command::new("/usr/bin/perl")
        .arg("-e")
        .arg(format!(
            "system('ln','-s','/usr/bin/id','/tmp/{token}-4') == 0 or exit 1"
        ))
        .status()
        .expect("perl");
    assert!(status.success());
    let fourth = agent.wait_alert(&format!("{token}-4"), Duration::from_secs(5));
    assert_eq!(fourth["process"]["parent"]["name"], "perl");
    let log = agent.stop();
    assert!(log.contains("stopped:"), "{log}");

    let ours: Vec<Value> = alerts_in(&json)
        .into_iter()
        .filter(|a| args_contain(a, &token))
        .collect();
    let names: Vec<&str> = ours
        .iter()
        .filter_map(|a| a["process"]["args"][3].as_str())
        .collect();
    assert_eq!(
        names,
        [format!("/tmp/{token}-1"), format!("/tmp/{token}-4")]
    );
    assert_kernel_as_found(&before, "");

    // Parity: the recording replays to the same alerts.
    let replay_state = dir.path().join("replay-state");
    let out = replay(
        &["--state-dir", replay_state.to_str().expect("utf-8")],
        &capture,
    );
    let replayed: Vec<Value> = super::alerts(&out)
        .into_iter()
        .filter(|a| args_contain(a, &token))
        .collect();
    let key = |a: &Value| {
        (
            a["process"]["args"].clone(),
            a["process"]["parent"]["name"].clone(),
            a["event"]["id"].clone(),
        )
    };
    assert_eq!(
        replayed.iter().map(key).collect::<Vec<_>>(),
        ours.iter().map(key).collect::<Vec<_>>()
    );

    for i in 1..=4 {
        let _ = std::fs::remove_file(format!("/tmp/{token}-{i}"));
    }
}

#[test]
#[ignore = "live: needs root, kernel audit and no audit daemon running"]
fn live_unicast_registers_alerts_and_releases_the_kernel() {
    let (_lock, dir, token, json) = begin("live unicast", "uc");
    require_no_daemon("live unicast");
    let before = kernel_state();
    let state = dir.path().join("state");
    let agent = Agent::start(
        &[
            "--source",
            "unicast",
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
        &json,
    );
    assert_eq!(
        kernel_state().map(|s| s.pid),
        Some(agent.child.id()),
        "agent is the registered daemon"
    );
    sh(
        "/usr/bin/dash",
        &format!("ln -s /usr/bin/id /tmp/{token}; true"),
    );
    let alert = agent.wait_alert(&token, Duration::from_secs(5));
    assert_eq!(alert["process"]["parent"]["name"], "dash");
    agent.stop();
    assert_eq!(
        kernel_state(),
        before,
        "kernel audit state changed (daemon pid must be 0 again)"
    );
    let _ = std::fs::remove_file(format!("/tmp/{token}"));
}

/// A private auditd (`auditd -n -c DIR -s nochange`) whose plugin directory holds one plugin file
/// pointing at this build, stopped (SIGTERM) on drop.
pub struct PrivateAuditd {
    pub child: Child,
}

impl PrivateAuditd {
    pub fn start(dir: &Path, plugin_conf: Option<&str>) -> Option<PrivateAuditd> {
        let base = std::fs::read_to_string("/etc/audit/auditd.conf").ok()?;
        let mut conf: Vec<String> = base
            .lines()
            .filter(|l| {
                !["log_file", "log_format", "plugin_dir", "name_format"]
                    .iter()
                    .any(|k| l.trim_start().starts_with(k))
            })
            .map(str::to_string)
            .collect();
        conf.push(format!("log_file = {}", dir.join("audit.log").display()));
        conf.push("log_format = RAW".into());
        conf.push("name_format = NONE".into());
        let plugins = dir.join("plugins.d");
        std::fs::create_dir_all(&plugins).ok()?;
        conf.push(format!("plugin_dir = {}", plugins.display()));
        if let Some(text) = plugin_conf {
            std::fs::write(plugins.join("auditsentry.conf"), text).ok()?;
        }
        let path = dir.join("auditd.conf");
        std::fs::write(&path, conf.join("\n") + "\n").ok()?;
        // auditd refuses a config readable by others.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).ok()?;
        // -f keeps auditd (and its plugins' stderr) in the foreground: both go to auditd.err.
        let err = std::fs::File::create(dir.join("auditd.err")).ok()?;
        let child = Command::new("/usr/sbin/auditd")
            .args(["-f", "-n", "-s", "nochange", "-c"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .ok()?;
        let auditd = PrivateAuditd { child };
        let end = Instant::now() + Duration::from_secs(10);
        let mut auditd = auditd;
        while Instant::now() < end {
            if kernel_state().is_some_and(|s| s.pid == auditd.child.id()) {
                return Some(auditd);
            }
            if let Ok(Some(_)) = auditd.child.try_wait() {
                // It gave up (e.g. another daemon is registered).
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateAuditd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fails `test` unless auditd is installed and no audit daemon is registered.
pub fn require_auditd(test: &str) {
    require(
        test,
        Path::new("/usr/sbin/auditd").exists() && Path::new("/etc/audit/auditd.conf").exists(),
        "needs auditd installed (/usr/sbin/auditd, /etc/audit/auditd.conf)",
    );
    require_no_daemon(test);
}

#[test]
#[ignore = "live: needs root, kernel audit and auditd (not running)"]
fn live_plugin_under_auditd_alerts_and_exits_with_auditd_and_unicast_refuses_to_steal() {
    let (_lock, dir, token, json) = begin("live plugin", "pl");
    require_auditd("live plugin");
    let before = kernel_state();
    let agent_conf = dir.path().join("agent.toml");
    std::fs::write(
        &agent_conf,
        format!(
            "[state]\ndir = \"{}\"\n\n[output.syslog]\nenabled = false\n\n[output.json]\npath = \"{}\"\n",
            dir.path().join("state").display(),
            json.display()
        ),
    )
    .expect("write agent config");
    let plugin = format!(
        "active = yes\ndirection = out\npath = {}\ntype = always\nargs = plugin {}\nformat = string\n",
        env!("CARGO_BIN_EXE_auditsentry"),
        agent_conf.display()
    );
    let mut auditd =
        PrivateAuditd::start(dir.path(), Some(&plugin)).expect("private auditd registered");
    let auditd_pid = auditd.child.id();

    // The plugin adds its execve rules through netlink once it runs.
    let end = Instant::now() + Duration::from_secs(10);
    while kernel_state()
        .is_none_or(|s| s.rules.len() <= before.as_ref().map_or(0, |b| b.rules.len()))
    {
        assert!(
            Instant::now() < end,
            "the plugin never added its execve rules; auditd said:\n{}",
            std::fs::read_to_string(dir.path().join("auditd.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    sh(
        "/usr/bin/dash",
        &format!("ln -s /usr/bin/id /tmp/{token}; true"),
    );
    let end = Instant::now() + Duration::from_secs(5);
    let alert = loop {
        if let Some(a) = alerts_in(&json)
            .into_iter()
            .find(|a| args_contain(a, &token))
        {
            break a;
        }
        assert!(Instant::now() < end, "no alert through the auditd plugin");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(alert["process"]["parent"]["name"], "dash");
    assert_eq!(alert["process"]["args"][3], format!("/tmp/{token}"));

    // With auditd registered, unicast refuses, names auditd, and leaves it registered.
    let out = bin()
        .args(["run", "--no-syslog", "--source", "unicast", "--state-dir"])
        .arg(dir.path().join("unicast-state"))
        .output()
        .expect("run unicast");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {auditd_pid}")) && err.contains("plugins.d"),
        "{err}"
    );
    assert_eq!(
        kernel_state().map(|s| s.pid),
        Some(auditd_pid),
        "auditd lost its registration"
    );

    // Stopping auditd stops the plugin, which removes its rules: the kernel is as it was.
    auditd.stop();
    let end = Instant::now() + Duration::from_secs(10);
    while kernel_state() != before {
        assert!(
            Instant::now() < end,
            "kernel not restored after auditd stopped: {:?} vs {before:?}",
            kernel_state()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(format!("/tmp/{token}"));
}

#[test]
#[ignore = "live: needs root and kernel audit"]
fn live_extended_sees_links_made_without_ln_once_each() {
    let (_lock, dir, token, json) = begin("live extended", "ext");
    let before = kernel_state();
    let state = dir.path().join("state");
    let renamed = dir.path().join(format!("{token}-lnk"));
    std::fs::copy("/usr/bin/ln", &renamed).expect("copy ln");
    let agent = Agent::start(
        &[
            "--source",
            "multicast",
            "--extended",
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
        &json,
    );
    assert!(
        agent
            .log()
            .contains("sensors: exec (execve audit records), syscall"),
        "{}",
        agent.log()
    );
    // No ln at all: perl's symlink(2), from perl (parent: this test).
    let status = Command::new("/usr/bin/perl")
        .arg("-e")
        .arg(format!(
            "symlink('/usr/bin/id', '/tmp/{token}-pl') or exit 1"
        ))
        .status()
        .expect("perl");
    assert!(status.success());
    // A renamed copy of ln, from dash.
    sh(
        "/usr/bin/dash",
        &format!("{} -s /usr/bin/id /tmp/{token}-rn; true", renamed.display()),
    );
    // Plain ln from bash: the exact rule and the extended rule each alert once (exec and syscall
    // sensors see the same link: one extended alert).
    sh(
        "/usr/bin/bash",
        &format!("ln -s /usr/bin/id /tmp/{token}-ln; true"),
    );
    agent.wait_alert(&format!("{token}-ln"), Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    agent.stop();

    let all = alerts_in(&json);
    let by = |suffix: &str| -> Vec<&Value> {
        let needle = format!("/tmp/{token}-{suffix}");
        all.iter()
            .filter(|a| {
                a["auditsentry"]["link"]["path"].as_str() == Some(needle.as_str())
                    || args_contain(a, &needle)
            })
            .collect()
    };
    let rule_ids = |v: &[&Value]| -> Vec<String> {
        let mut ids: Vec<String> = v
            .iter()
            .map(|a| a["rule"]["id"].as_str().unwrap_or("?").to_string())
            .collect();
        ids.sort();
        ids
    };
    let ext = auditsentry::rule::extended::RULE_ID.to_string();
    let seed = super::SEED_RULE_ID.to_string();
    let pl = by("pl");
    assert_eq!(rule_ids(&pl), vec![ext.clone()], "perl symlink(2): {pl:?}");
    assert_eq!(pl[0]["auditsentry"]["sensor"], "syscall");
    assert_eq!(pl[0]["auditsentry"]["link"]["target"], "/usr/bin/id");
    assert_eq!(rule_ids(&by("rn")), vec![ext.clone()], "renamed ln");
    let mut both = vec![ext, seed];
    both.sort();
    assert_eq!(
        rule_ids(&by("ln")),
        both,
        "plain ln: one exact, one extended"
    );
    assert_kernel_as_found(&before, "");
    for s in ["pl", "rn", "ln"] {
        let _ = std::fs::remove_file(format!("/tmp/{token}-{s}"));
    }
}

#[test]
#[ignore = "live: needs root and kernel audit"]
fn live_sighup_refuses_a_broken_config_and_keeps_detecting() {
    let (_lock, dir, token, json) = begin("live sighup", "hup");
    let before = kernel_state();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("rules dir");
    std::fs::copy(
        super::repo("packaging/rules/defense_evasion_symlink_binary_to_writable_dir.toml"),
        rules_dir.join("seed.toml"),
    )
    .expect("copy seed rule");
    let conf = dir.path().join("auditsentry.toml");
    let good = format!(
        "[rules]\npaths = [\"{}\"]\n\n[state]\ndir = \"{}\"\n\n[output.syslog]\nenabled = false\n",
        rules_dir.display(),
        dir.path().join("state").display()
    );
    std::fs::write(&conf, &good).expect("write config");
    let agent = Agent::start(
        &[
            "--source",
            "multicast",
            "--config",
            conf.to_str().expect("utf-8"),
        ],
        &json,
    );
    // The start line names the rules and where they came from.
    assert!(
        agent.log().contains(&format!(
            "rules: 1 rule(s) from {}: {} \"System Binary Symlink to Suspicious Location\"",
            rules_dir.display(),
            super::SEED_RULE_ID
        )),
        "{}",
        agent.log()
    );
    let hup = || {
        let pid = nix::unistd::Pid::from_raw(agent.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    };
    // A rules path that went missing is refused too: the running rules stay.
    let gone = dir.path().join("gone");
    std::fs::write(
        &conf,
        good.replace(
            &rules_dir.display().to_string(),
            &gone.display().to_string(),
        ),
    )
    .expect("config naming a missing path");
    hup();
    agent.wait_for_log(
        &format!(
            "reload refused, keeping the running rules: {}",
            gone.display()
        ),
        Duration::from_secs(5),
    );
    std::fs::write(&conf, format!("{good}\n[output]\nbogus = 1\n")).expect("break config");
    hup();
    agent.wait_for_log(
        "reload refused, keeping the running configuration",
        Duration::from_secs(5),
    );
    assert!(
        agent.log().contains("bogus"),
        "the refusal names the key: {}",
        agent.log()
    );
    sh(
        "/usr/bin/dash",
        &format!("ln -s /usr/bin/id /tmp/{token}; true"),
    );
    agent.wait_alert(&token, Duration::from_secs(5));
    std::fs::write(&conf, &good).expect("mend config");
    hup();
    agent.wait_for_log("reloaded 1 rule(s)", Duration::from_secs(5));
    let log = agent.stop();
    assert!(
        log.contains("stop requested; draining") && log.contains("stopped:"),
        "{log}"
    );
    assert_kernel_as_found(&before, "");
    let _ = std::fs::remove_file(format!("/tmp/{token}"));
}

/// Regression: SIGHUP re-read the configuration file and ran its `rules.paths`, dropping the
/// `--rules` given at start. A reload lays the start's flags over the file again.
#[test]
#[ignore = "live: needs root and kernel audit"]
fn live_sighup_keeps_the_rules_flag_over_the_reread_config() {
    let (_lock, dir, _token, json) = begin("live sighup --rules", "hupr");
    let before = kernel_state();
    let seed = super::repo("packaging/rules/defense_evasion_symlink_binary_to_writable_dir.toml");
    let (from_file, from_flag) = (dir.path().join("file-rules"), dir.path().join("flag-rules"));
    for d in [&from_file, &from_flag] {
        std::fs::create_dir(d).expect("rules dir");
        std::fs::copy(&seed, d.join("seed.toml")).expect("copy seed rule");
    }
    let conf = dir.path().join("auditsentry.toml");
    std::fs::write(
        &conf,
        format!(
            "[rules]\npaths = [\"{}\"]\n\n[state]\ndir = \"{}\"\n",
            from_file.display(),
            dir.path().join("state").display()
        ),
    )
    .expect("write config");
    let agent = Agent::start(
        &[
            "--source",
            "multicast",
            "--config",
            conf.to_str().expect("utf-8"),
            "--rules",
            from_flag.to_str().expect("utf-8"),
        ],
        &json,
    );
    let from = format!("1 rule(s) from {}:", from_flag.display());
    assert!(
        agent.log().contains(&format!("rules: {from}")),
        "{}",
        agent.log()
    );
    let pid = nix::unistd::Pid::from_raw(agent.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    agent.wait_for_log(&format!("reloaded {from}"), Duration::from_secs(5));
    let log = agent.stop();
    assert!(!log.contains(&from_file.display().to_string()), "{log}");
    assert_kernel_as_found(&before, "");
}

#[test]
#[ignore = "live: needs root, kernel audit and fanotify"]
fn live_fanotify_and_audit_report_one_link_once_and_fanotify_alone_covers_missing_rules() {
    let (_lock, dir, token, json) = begin("live fanotify", "fan");
    let fanotify = auditsentry::source::fanotify::available();
    require(
        "live fanotify",
        fanotify.is_ok(),
        &format!("needs fanotify with FAN_REPORT_DFID_NAME (kernel 5.9+): {fanotify:?}"),
    );
    let before = kernel_state();
    // The test loads the rules itself and the agent leaves them alone (`--no-manage-rules`):
    // otherwise its coverage watchdog would put back at once the link rule removed below.
    let own = TestRules::load();
    let state = dir.path().join("state");
    let agent = Agent::start(
        &[
            "--source",
            "multicast",
            "--extended",
            "--no-manage-rules",
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
        &json,
    );
    assert!(
        agent.log().contains("; fanotify: on (/tmp "),
        "{}",
        agent.log()
    );
    let perl = |name: &str| {
        let status = Command::new("/usr/bin/perl")
            .arg("-e")
            .arg(format!("symlink('/usr/bin/id', '/tmp/{name}') or exit 1"))
            .status()
            .expect("perl");
        assert!(status.success());
    };
    // Both sensors see this one: one extended alert.
    perl(&format!("{token}-both"));
    agent.wait_alert(&format!("{token}-both"), Duration::from_secs(5));

    // Without the link syscall rule, only fanotify sees the next one.
    use auditsentry::source::netlink::Arch;
    let rule = auditsentry::audit::link::link_rules(Arch::X86_64, None).expect("rule");
    AuditSocket::control()
        .and_then(|mut c| c.del_rule(&rule))
        .expect("remove the agent's link rule");
    // From dash, so the new-terms gate (host, parent name) lets it through.
    sh(
        "/usr/bin/dash",
        &format!("/usr/bin/perl -e \"symlink('/usr/bin/id', '/tmp/{token}-fan')\"; true"),
    );
    agent.wait_alert(&format!("{token}-fan"), Duration::from_secs(5));
    AuditSocket::control()
        .and_then(|mut c| c.add_rule(&rule))
        .expect("put the link rule back");
    std::thread::sleep(Duration::from_millis(2_000));
    let log = agent.stop();
    drop(own);

    let all = alerts_in(&json);
    let by = |suffix: &str| -> Vec<&Value> {
        let needle = format!("/tmp/{token}-{suffix}");
        all.iter()
            .filter(|a| a["auditsentry"]["link"]["path"].as_str() == Some(needle.as_str()))
            .collect()
    };
    // The gate would hide a second alert of the same link (same parent): the counters show
    // whether the extended detector matched it twice.
    let stopped = log
        .lines()
        .find(|l| l.contains("stopped:"))
        .unwrap_or_default();
    assert!(
        stopped.contains("matched=2 ") && stopped.contains(" seen=0 "),
        "{stopped}"
    );
    let both = by("both");
    assert_eq!(both.len(), 1, "one alert for one link: {both:?}\n{log}");
    assert_eq!(
        both[0]["rule"]["id"],
        auditsentry::rule::extended::RULE_ID,
        "{both:?}"
    );
    assert_eq!(both[0]["auditsentry"]["link"]["target"], "/usr/bin/id");
    let fan = by("fan");
    assert_eq!(fan.len(), 1, "{fan:?}\n{log}");
    assert_eq!(fan[0]["auditsentry"]["sensor"], "fanotify");
    assert_eq!(fan[0]["process"]["name"], "perl");
    assert_eq!(fan[0]["event"]["action"], "symlink-created");
    assert_kernel_as_found(&before, "");
    for s in ["both", "fan"] {
        let _ = std::fs::remove_file(format!("/tmp/{token}-{s}"));
    }
}
