//! Live tests on the real kernel (root): the daemon's sources, rule management and parity with replay.
//!
//! They change kernel audit state (rules, enabled, daemon pid), so they hold one lock and check that
//! the kernel is left exactly as they found it. Skipped, loudly, when not root.

use super::{alerts_in, bin, replay};
use auditsentry::source::netlink::AuditSocket;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One kernel, one test at a time.
pub static KERNEL: Mutex<()> = Mutex::new(());

/// The kernel's audit rules (as bytes) and enabled flag and daemon pid, to compare before/after.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelState {
    rules: Vec<Vec<u8>>,
    enabled: u32,
    pid: u32,
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

pub fn live_ok(test: &str) -> bool {
    if !nix::unistd::Uid::effective().is_root() || kernel_state().is_none() {
        eprintln!("SKIP {test}: needs root and kernel audit (NETLINK_AUDIT)");
        return false;
    }
    true
}

/// A running `auditsentry run` with its stderr collected.
pub struct Agent {
    pub child: Child,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub json: PathBuf,
}

impl Agent {
    pub fn start(args: &[&str], json: &Path) -> Agent {
        let mut child = bin()
            .arg("run")
            .arg("--no-syslog")
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
fn live_multicast_alerts_once_per_parent_leaves_the_kernel_as_found_and_replays_the_same() {
    let _lock = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if !live_ok("live multicast") {
        return;
    }
    let before = kernel_state();
    let dir = tempfile::tempdir().expect("tempdir");
    let token = format!("as-live-mc-{}", std::process::id());
    let json = dir.path().join("alerts.ndjson");
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
    assert_eq!(kernel_state(), before, "kernel audit state changed");

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
fn live_unicast_registers_alerts_and_releases_the_kernel() {
    let _lock = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if !live_ok("live unicast") {
        return;
    }
    let before = kernel_state();
    if before.as_ref().is_some_and(|s| s.pid != 0) {
        eprintln!("SKIP live unicast: an audit daemon is registered");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let token = format!("as-live-uc-{}", std::process::id());
    let json = dir.path().join("alerts.ndjson");
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
