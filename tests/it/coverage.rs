//! Live tests of the agent's coverage: the watchdog that notices when the kernel stops giving the
//! agent what it needs (rules deleted, audit turned off, records dropped) and restores it, and the
//! journal that lets a restart or `auditsentry cleanup` undo what a killed agent left behind.
//!
//! They change kernel audit state, so they take the kernel lock ([`begin`]) and check the kernel
//! is left as they found it.

use super::live::{
    args_contain, assert_kernel_as_found, begin, kernel_state, require_auditd, sh, Agent,
    PrivateAuditd,
};
use super::{alerts_in, bin, require};
use auditsentry::daemon::kernel::rule_agent_pid;
use auditsentry::source::netlink::{AuditSocket, RuleData};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `auditctl`, from the auditd package (`.ci/run` installs it); the test fails without it.
fn auditctl(test: &str) -> &'static str {
    let path = ["/usr/sbin/auditctl", "/sbin/auditctl"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    require(
        test,
        path.is_some(),
        "needs auditctl (the auditd package; `.ci/run` installs it)",
    );
    path.unwrap_or_default()
}

fn run_auditctl(auditctl: &str, args: &[&str]) {
    let out = Command::new(auditctl)
        .args(args)
        .output()
        .expect("run auditctl");
    assert!(
        out.status.success(),
        "auditctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The registered audit daemon's pid (0: none).
fn daemon_pid() -> Option<u32> {
    AuditSocket::control()
        .and_then(|mut c| c.status())
        .ok()
        .map(|s| s.pid)
}

/// The rules loaded now, decoded.
fn rules() -> Vec<RuleData> {
    AuditSocket::control()
        .and_then(|mut c| c.list_rules())
        .expect("list rules")
}

/// Puts back rules of `before` that a `-D` of the test removed (the machine's own).
fn put_back(before: &[RuleData]) {
    let now = rules();
    let mut ctl = AuditSocket::control().expect("control socket");
    for rule in before.iter().filter(|r| !now.contains(r)) {
        ctl.add_rule(rule).expect("put a rule back");
    }
}

/// The notices (`event.dataset` `auditsentry.notice`) in the JSON output, as their messages.
fn notices(json: &Path) -> Vec<String> {
    alerts_in(json)
        .iter()
        .filter(|v| v["event"]["dataset"] == "auditsentry.notice")
        .filter_map(|v| v["message"].as_str().map(str::to_string))
        .collect()
}

/// Waits until the notices after the first `skip` include a line starting with each of `want`,
/// in order; returns those notices.
fn wait_notices(json: &Path, skip: usize, want: &[&str], log: &dyn Fn() -> String) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(8);
    loop {
        let got: Vec<String> = notices(json).into_iter().skip(skip).collect();
        let mut it = got.iter();
        if want.iter().all(|w| it.any(|l| l.starts_with(w))) {
            return got;
        }
        assert!(
            Instant::now() < end,
            "notices {want:?} not written; got {got:?}; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "live: needs root, kernel audit, auditctl (auditd package) and rsyslogd"]
fn live_coverage_lost_to_a_delete_a_disable_and_a_rules_file_is_reported_and_restored() {
    let test = "live coverage watchdog";
    let (_lock, dir, token, json) = begin(test, "cov");
    let (_syslog, _) = super::outputs::rsyslog(test);
    let auditctl = auditctl(test);
    let before = kernel_state();
    let before_rules = rules();
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    let from = super::outputs::syslog_file_len();
    let agent = Agent::start(
        &[
            "--source",
            "multicast",
            "--syslog=local5",
            "--state-dir",
            state_arg,
        ],
        &json,
    );
    let log = || agent.log();

    // `auditsentry status` shows the agent from the start, not after the first 300 s period (the
    // first status is written just after the `running:` line the start waited for).
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let status = bin()
            .args(["status", "--state-dir", state_arg])
            .output()
            .expect("status");
        let said = String::from_utf8_lossy(&status.stdout).into_owned();
        if said.contains("agent: status: enabled=1 coverage=ok ") {
            break;
        }
        assert!(Instant::now() < end, "{said}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for file in ["status", "kernel-changes"] {
        let mode = std::fs::metadata(state.join(file))
            .expect("state file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is owner-only: {mode:o}");
    }

    // The file auditd's init loads, starting as Debian's does with -D; an unrelated rule of its own.
    let rules_file = dir.path().join("audit.rules");
    std::fs::write(
        &rules_file,
        "-D\n-a always,exit -F arch=b64 -S unlinkat -k auditsentry-test-cov\n",
    )
    .expect("write rules file");
    let rules_arg = rules_file.to_str().expect("utf-8");
    let cases: [(&str, &[&str], &str, &str); 3] = [
        (
            "d",
            &["-D"],
            // auditctl deletes rule by rule: a look in between sees one ABI gone first.
            "coverage lost: no rule audits execve for b",
            "/usr/bin/dash",
        ),
        (
            "e0",
            &["-e", "0"],
            "coverage lost: kernel audit disabled (enabled=0)",
            "/usr/bin/bash",
        ),
        (
            "r",
            &["-R", rules_arg],
            "coverage lost: no rule audits execve for b",
            "/usr/bin/perl",
        ),
    ];
    let mut lost_lines = Vec::new();
    for (tag, args, lost, shell) in cases {
        let seen = notices(&json).len();
        run_auditctl(auditctl, args);
        let got = wait_notices(&json, seen, &[lost, "coverage restored: "], &log);
        let line = got
            .iter()
            .find(|l| l.starts_with(lost))
            .expect("lost line")
            .clone();
        if tag == "e0" {
            // The record names who did it, when it reached the agent before its periodic check
            // did (on a loaded machine the check can come first: then it says when it found it).
            assert!(
                (line.contains("by pid=") && line.contains("comm=\"auditctl\""))
                    || line.contains("(found at "),
                "{line}"
            );
        }
        lost_lines.push(line);
        // The next link alerts (a new parent each time, so the new-terms gate lets it through).
        let name = format!("{token}-{tag}");
        let script = if shell.ends_with("perl") {
            format!("system('ln', '-s', '/usr/bin/id', '/tmp/{name}') == 0 or exit 1")
        } else {
            format!("ln -s /usr/bin/id /tmp/{name}; true")
        };
        let status = Command::new(shell)
            .arg(if shell.ends_with("perl") { "-e" } else { "-c" })
            .arg(&script)
            .current_dir("/tmp")
            .status()
            .expect("run the link");
        assert!(status.success());
        let alert = agent.wait_alert(&name, Duration::from_secs(5));
        assert_eq!(alert["process"]["parent"]["executable"], shell, "{alert}");
    }
    let syslog = super::outputs::messages(agent.child.id(), from);
    for line in &lost_lines {
        assert!(
            syslog.iter().any(|m| m == line),
            "{line:?} not in syslog: {syslog:#?}"
        );
        assert!(log().contains(line.as_str()), "{line:?} not on stderr");
    }

    // Someone deletes the agent's rules just before it stops: no error at exit.
    run_auditctl(auditctl, &["-D"]);
    let stopped = agent.stop();
    assert!(
        !stopped.contains("AUDIT_DEL_RULE") && !stopped.contains("No such file"),
        "{stopped}"
    );
    put_back(&before_rules);
    // Audit as found: off if the agent turned it on at start, else on, though the test's `-e 0`
    // came later and the agent turned audit back on.
    assert_kernel_as_found(&before, "");
    for (tag, ..) in cases {
        let _ = std::fs::remove_file(format!("/tmp/{token}-{tag}"));
    }
}

#[test]
#[ignore = "live: needs root, kernel audit and auditctl (auditd package)"]
fn live_records_the_kernel_drops_are_warned_with_their_counts() {
    let test = "live loss warning";
    let (_lock, dir, _token, json) = begin(test, "loss");
    let auditctl = auditctl(test);
    let before = kernel_state();
    let rate_limit = AuditSocket::control()
        .and_then(|mut c| c.status())
        .expect("status")
        .rate_limit;
    let state = dir.path().join("state");
    let agent = Agent::start(
        &[
            "--source",
            "multicast",
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
        &json,
    );
    // One record a second: the kernel drops (and counts) the rest. Put back even on failure.
    struct RateLimit(&'static str, u32);
    impl Drop for RateLimit {
        fn drop(&mut self) {
            let _ = Command::new(self.0)
                .args(["-r", &self.1.to_string()])
                .output();
        }
    }
    let _restore = RateLimit(auditctl, rate_limit);
    run_auditctl(auditctl, &["-r", "1"]);
    sh(
        "/bin/sh",
        "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done",
    );
    let log = || agent.log();
    let got = wait_notices(&json, 0, &["records lost: the kernel dropped "], &log);
    let line = got
        .iter()
        .find(|l| l.starts_with("records lost: the kernel dropped "))
        .expect("line");
    assert!(
        line.contains("kernel_lost=") && line.contains(" since "),
        "{line}"
    );
    assert!(log().contains(line.as_str()), "on stderr too");
    // One warning a minute at most, however much more is lost.
    sh(
        "/bin/sh",
        "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done",
    );
    std::thread::sleep(Duration::from_millis(2500));
    let kernel_lines = notices(&json)
        .iter()
        .filter(|l| l.starts_with("records lost: the kernel dropped "))
        .count();
    assert_eq!(kernel_lines, 1, "{:?}", notices(&json));
    agent.stop();
    drop(_restore);
    assert_kernel_as_found(&before, "");
}

/// SIGKILL, and wait for the process to be gone.
fn kill_9(mut agent: Agent) -> u32 {
    let pid = agent.child.id();
    agent.child.kill().expect("SIGKILL");
    agent.child.wait().expect("reap");
    pid
}

/// Loaded rules made for agent `pid` (`-F pid!=PID` with the agent's key).
fn rules_for(pid: u32) -> usize {
    rules()
        .iter()
        .filter(|r| rule_agent_pid(r) == Some(pid))
        .count()
}

#[test]
#[ignore = "live: needs root and kernel audit"]
fn live_kill_9_leaves_no_rule_naming_the_dead_pid_after_cleanup_or_restart() {
    let test = "live crash leftovers";
    let (_lock, dir, token, json) = begin(test, "crash");
    let before = kernel_state();
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8");
    let args = ["--source", "multicast", "--state-dir", state_arg];

    // kill -9 leaves the rules (and enabled) behind; `cleanup` (the package's prerm) undoes them.
    let first = kill_9(Agent::start(&args, &json));
    assert_eq!(
        rules_for(first),
        2,
        "the killed agent's rules are still there"
    );
    let out = bin()
        .args(["cleanup", "--state-dir", state_arg])
        .output()
        .expect("cleanup");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("cleanup: removed a rule left by an agent that is gone: -a always,exit -F arch=b64 -S execve,execveat -F pid!="),
        "{said}"
    );
    assert_eq!(kernel_state(), before, "cleanup left the kernel as before");
    let again = bin()
        .args(["cleanup", "--state-dir", state_arg])
        .output()
        .expect("cleanup");
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "cleanup: nothing to undo\n"
    );

    // kill -9, then a restart: the new agent replaces the dead one's rules with its own.
    let second = kill_9(Agent::start(&args, &json));
    assert_eq!(rules_for(second), 2);
    let third = Agent::start(&args, &json);
    assert_eq!(rules_for(second), 0, "a rule still names the dead pid");
    assert_eq!(rules_for(third.child.id()), 2);
    assert!(
        third
            .log()
            .contains("removed a rule left by an agent that is gone"),
        "{}",
        third.log()
    );
    sh(
        "/usr/bin/dash",
        &format!("ln -s /usr/bin/id /tmp/{token}; true"),
    );
    let alert: Value = third.wait_alert(&token, Duration::from_secs(5));
    assert!(args_contain(&alert, &token));
    third.stop();
    assert_kernel_as_found(&before, "");
    assert!(
        !state.join("kernel-changes").exists(),
        "a clean stop leaves no journal"
    );
    let _ = std::fs::remove_file(format!("/tmp/{token}"));
}

#[test]
#[ignore = "live: needs root, kernel audit with multicast (3.16+) and auditd (not running)"]
fn live_a_unicast_agent_makes_way_for_auditd_and_goes_on_alerting() {
    let test = "live unicast makes way";
    let (_lock, dir, token, json) = begin(test, "way");
    require_auditd(test);
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
    let log = || agent.log();
    assert_eq!(daemon_pid(), Some(agent.child.id()));
    assert!(
        log().contains("auditd is installed (") && log().contains("hands the stream over"),
        "the start line says what happens when auditd starts: {}",
        log()
    );

    // auditd starts: the kernel refuses it (the agent is registered) and tells the agent, which
    // says so and makes way.
    let first = dir.path().join("auditd-1");
    std::fs::create_dir(&first).expect("dir");
    assert!(
        PrivateAuditd::start(&first, None).is_none(),
        "auditd registered while the agent held the unicast stream"
    );
    let got = wait_notices(&json, 0, &["auditd (pid "], &log);
    let line = got
        .iter()
        .find(|l| l.starts_with("auditd (pid "))
        .expect("line");
    assert!(line.contains("switched to multicast"), "{line}");
    assert!(log().contains(line.as_str()), "on stderr too");
    let end = Instant::now() + Duration::from_secs(5);
    while daemon_pid() != Some(0) {
        assert!(Instant::now() < end, "the agent did not unregister");
        std::thread::sleep(Duration::from_millis(50));
    }

    // auditd's next start (systemd restarts it) registers; the agent goes on seeing execs.
    let second = dir.path().join("auditd-2");
    std::fs::create_dir(&second).expect("dir");
    let auditd =
        PrivateAuditd::start(&second, None).expect("auditd registers once the agent made way");
    sh(
        "/usr/bin/dash",
        &format!("ln -s /usr/bin/id /tmp/{token}; true"),
    );
    let alert = agent.wait_alert(&token, Duration::from_secs(5));
    assert_eq!(alert["process"]["parent"]["name"], "dash");
    let stopped = agent.stop();
    assert!(
        daemon_pid() == Some(auditd.child.id()),
        "the agent's exit must not unregister auditd: {stopped}"
    );
    drop(auditd);
    assert_kernel_as_found(&before, &format!(" after the agent stopped:\n{stopped}"));
    let _ = std::fs::remove_file(format!("/tmp/{token}"));
}

/// Runs `program args` as the unprivileged user nobody (uid/gid 65534) from /tmp, and waits.
/// Its exit status does not matter: the exec of `ln` is what the agent must see, whether or
/// not the link could be made.
fn as_nobody(program: &str, args: &[&str]) {
    use std::os::unix::process::CommandExt;
    Command::new(program)
        .args(args)
        .current_dir("/tmp")
        .uid(65534)
        .gid(65534)
        .status()
        .expect("run as nobody");
}

/// Removes, on drop, the paths that did not exist when it was made (the links a test makes
/// under fixed names), also when the test fails.
struct RemoveNew(Vec<&'static str>);

impl RemoveNew {
    fn of(paths: &[&'static str]) -> RemoveNew {
        RemoveNew(
            paths
                .iter()
                .copied()
                .filter(|p| std::fs::symlink_metadata(p).is_err())
                .collect(),
        )
    }
}

impl Drop for RemoveNew {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[test]
#[ignore = "live: needs root, kernel audit and process events (proc connector)"]
fn live_links_made_in_a_subshell_or_a_pipe_loop_name_the_shell_as_parent() {
    let test = "live fork-only parents";
    let (_lock, dir, _token, json) = begin(test, "fork");
    let before = kernel_state();
    let state = dir.path().join("state");
    let agent = Agent::start(
        &[
            "--source",
            "multicast",
            "--state-dir",
            state.to_str().expect("utf-8"),
        ],
        &json,
    );
    require(
        test,
        agent.log().contains("process events: on"),
        &format!("needs the proc connector; the agent said:\n{}", agent.log()),
    );
    // The subshell and the loop are forks of the shell that never exec, and have exited before
    // anyone could read /proc: only the fork events name them. The commands are the issue's.
    let _made = RemoveNew::of(&["/tmp/x", "/tmp/y"]);
    as_nobody("/bin/sh", &["-c", "(ln -s /usr/bin/id /tmp/x; :)"]);
    as_nobody(
        "/bin/bash",
        &[
            "-c",
            "echo x | while read l; do ln -s /usr/bin/id /tmp/y; done",
        ],
    );
    let sh = std::fs::canonicalize("/bin/sh").expect("/bin/sh");
    let sh_name = sh.file_name().and_then(|n| n.to_str()).expect("name");
    for (link, parent) in [("/tmp/x", sh_name), ("/tmp/y", "bash")] {
        let alert = agent.wait_alert(link, Duration::from_secs(5));
        assert_eq!(alert["process"]["parent"]["name"], parent, "{alert}");
        assert_eq!(alert["user"]["id"], "65534", "{alert}");
    }
    let log = agent.stop();
    assert!(log.contains("stopped:"), "{log}");
    assert_kernel_as_found(&before, "");
}
