//! What the loaders accept: rule paths that must exist and hold rules, the built-in rule only when
//! no rule path is configured. Each test runs the real binary and checks the exit status and the
//! message that names the file.

use super::{bin, repo, summary};
use std::path::{Path, PathBuf};
use std::process::Output;

/// The seed rule as the package installs it.
fn seed() -> PathBuf {
    repo("packaging/rules/defense_evasion_symlink_binary_to_writable_dir.toml")
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    bin().args(args).output().expect("run auditsentry")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` (stdin empty) and returns its output; kills it and fails if it runs over `secs`.
fn output_within(mut cmd: std::process::Command, secs: u64) -> Output {
    use std::process::Stdio;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn auditsentry");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            panic!("{cmd:?} still ran after {secs} s");
        }
    }
}

/// A configuration file whose `rules.paths` is `paths` (and nothing else the tests could touch).
fn config_naming(dir: &Path, paths: &[&Path]) -> PathBuf {
    let list: Vec<String> = paths
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let conf = dir.join("auditsentry.toml");
    std::fs::write(
        &conf,
        format!(
            "[rules]\npaths = [{}]\n\n[state]\ndir = {:?}\n\n[output.syslog]\nenabled = false\n",
            list.join(", "),
            dir.join("state").display().to_string()
        ),
    )
    .expect("write config");
    conf
}

#[test]
fn a_missing_rules_path_fails_config_check_replay_and_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-rules");
    let conf = config_naming(dir.path(), &[&missing]);
    let out = run(&["config".as_ref(), "check".as_ref(), conf.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.starts_with(&format!(
            "error: {}: rules.paths: {}: No such file",
            conf.display(),
            missing.display()
        )),
        "{said}"
    );

    let input = repo("tests/data/plugin-node-split.log");
    let out = run(&[
        "replay".as_ref(),
        "--config".as_ref(),
        conf.as_os_str(),
        input.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&missing.display().to_string()));

    // The agent refuses to start, before it touches the kernel (it needs no root to say so; the
    // kernel lock is only there in case it ever did start); `plugin` reads the same file.
    let _lock = super::live::kernel_lock();
    for mode in [&["run", "--config"][..], &["plugin"][..]] {
        let mut cmd = bin();
        cmd.args(mode).arg(&conf);
        let out = output_within(cmd, 10);
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {}", text(&out));
        let said = text(&out);
        assert!(
            said.contains(&format!("{}: No such file", missing.display())),
            "{mode:?}: {said}"
        );
        assert!(!said.contains("running:"), "{said}");
    }
}

#[test]
fn an_empty_rules_directory_is_an_error_everywhere_naming_the_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("rules");
    std::fs::create_dir(&empty).expect("mkdir");
    std::fs::write(empty.join("README"), "not a rule").expect("write");
    let want = format!(
        "{}: no rules loaded (no *.toml rule files found there)",
        empty.display()
    );

    let out = run(&["rules".as_ref(), "check".as_ref(), empty.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("error: {want}\n")
    );

    let input = repo("tests/data/plugin-node-split.log");
    let out = run(&[
        "replay".as_ref(),
        "--rules".as_ref(),
        empty.as_os_str(),
        input.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&want), "{}", text(&out));

    let conf = config_naming(dir.path(), &[&empty]);
    let out = run(&["config".as_ref(), "check".as_ref(), conf.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&want), "{}", text(&out));
    let _lock = super::live::kernel_lock();
    let mut cmd = bin();
    cmd.args(["run", "--config"]).arg(&conf);
    let out = output_within(cmd, 10);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&want), "{}", text(&out));
    drop(_lock);

    // Two paths, one of them holding a rule: rules were loaded, so that is fine.
    let out = run(&[
        "rules".as_ref(),
        "check".as_ref(),
        empty.as_os_str(),
        seed().as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn replay_without_rule_paths_runs_the_built_in_rule_and_with_a_config_its_rules() {
    let input = repo("tests/data/plugin-node-split.log");
    let out = run(&[
        "replay".as_ref(),
        "--all-matches".as_ref(),
        input.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(summary(&out)["alerts"], 1);

    // A config file without `rules.paths` is no rule path either: the built-in rule.
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("bare.toml");
    std::fs::write(&conf, "[output.syslog]\nenabled = false\n").expect("write");
    let out = run(&["config".as_ref(), "check".as_ref(), conf.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&[
        "replay".as_ref(),
        "--all-matches".as_ref(),
        "--config".as_ref(),
        conf.as_os_str(),
        input.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(summary(&out)["alerts"], 1);
}

/// Regression: `replay --config FILE` without `state.dir` kept its new-terms memory in the
/// installed agent's /var/lib/auditsentry. Without `state.dir` (or `--state-dir`) it is in
/// memory, as without a file, so two runs alert alike; with one, the second run remembers.
#[test]
fn replay_with_a_config_keeps_state_only_where_the_file_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("bare.toml");
    let log = repo("samples/sample.audit.log");
    let replay = || {
        let out = run(&[
            "replay".as_ref(),
            "--config".as_ref(),
            conf.as_os_str(),
            log.as_os_str(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        summary(&out)["alerts"]
    };
    std::fs::write(&conf, "[output.syslog]\nenabled = false\n").expect("write");
    assert_eq!((replay(), replay()), (5, 5), "in memory: each run alerts");
    let state = dir.path().join("state");
    std::fs::write(
        &conf,
        format!(
            "[output.syslog]\nenabled = false\n\n[state]\ndir = {:?}\n",
            state.display().to_string()
        ),
    )
    .expect("write");
    assert_eq!(
        (replay(), replay()),
        (5, 0),
        "the file's state.dir remembers"
    );
    assert!(state.is_dir());
}

/// Regression: `--max-in-flight` had no bound while `reassembly.max_in_flight` had one. A flag
/// out of its key's range stops the run, naming the flag; the same value in the file names the
/// file, line and key.
#[test]
fn numeric_flags_pass_the_config_keys_range_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = repo("samples/sample.audit.log");
    let out = run(&[
        "replay".as_ref(),
        "--max-in-flight".as_ref(),
        "0".as_ref(),
        log.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out)
            .contains("auditsentry: error: --max-in-flight: 0 is out of range (1 to 16777216)"),
        "{}",
        text(&out)
    );
    let conf = dir.path().join("c.toml");
    std::fs::write(&conf, "[reassembly]\nmax_in_flight = 0\n").expect("write");
    let out = run(&[
        "replay".as_ref(),
        "--config".as_ref(),
        conf.as_os_str(),
        log.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "{}:2: reassembly.max_in_flight: 0 is out of range (1 to 16777216)",
            conf.display()
        )),
        "{}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Signals: auditd starts (and restarts) its plugins with HUP, TERM and others blocked.
// ---------------------------------------------------------------------------------------------

/// The signals auditd 3.0.9's dispatcher thread blocks, which a plugin it starts inherits
/// (`SigBlk: 0000000000034a01`).
const AUDITD_BLOCKED: [nix::sys::signal::Signal; 6] = {
    use nix::sys::signal::Signal::*;
    [SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGCHLD, SIGCONT]
};

/// The blocked-signal mask of process `pid`'s main thread, from `/proc/PID/status`.
fn blocked_mask(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .expect("SigBlk line")
        .trim();
    u64::from_str_radix(hex, 16).expect("hex mask")
}

/// Starts `auditsentry ARGS` with [`AUDITD_BLOCKED`] blocked, as auditd would, and waits for its
/// `running:` line. Its stdin is a pipe the caller may write plugin lines to.
fn start_blocked(
    args: &[&std::ffi::OsStr],
    json: &Path,
) -> (super::live::Agent, std::process::ChildStdin) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut cmd = bin();
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: between fork and exec the closure only calls sigprocmask, which is async-signal-safe
    // (the standard library clears the mask just before it runs the closure).
    unsafe {
        cmd.pre_exec(|| {
            let mut set = nix::sys::signal::SigSet::empty();
            for sig in AUDITD_BLOCKED {
                set.add(sig);
            }
            set.thread_block().map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().expect("spawn auditsentry");
    let stdin = child.stdin.take().expect("stdin pipe");
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let pipe = child.stderr.take().expect("stderr pipe");
    let lines = stderr.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.lock().expect("lock").push(line);
        }
    });
    let agent = super::live::Agent {
        child,
        stderr,
        json: json.to_path_buf(),
    };
    agent.wait_for_log("running:", std::time::Duration::from_secs(10));
    (agent, stdin)
}

/// Started with HUP and TERM blocked (by hand here, by auditd in production), the agent still
/// reopens its JSON file on SIGHUP (after a logrotate-style rename) and stops on SIGTERM within
/// its drain time, as a plugin fed on stdin and as the multicast daemon.
#[test]
#[ignore = "live: needs root and kernel audit"]
fn started_with_hup_and_term_blocked_the_agent_reopens_on_hup_and_stops_on_term() {
    use std::io::Write;
    use std::time::Duration;
    let (_lock, dir, token, json) = super::live::begin("blocked signals", "sig");
    let before = super::live::kernel_state();
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[state]\ndir = {:?}\n\n[output.syslog]\nenabled = false\n\n[output.json]\npath = {:?}\n",
            dir.path().join("state").display().to_string(),
            json.display().to_string()
        ),
    )
    .expect("write config");
    let plugin_lines = std::fs::read(repo("tests/data/plugin-node-split.log")).expect("read");
    // The plugin first: if the mask were kept, it ends at end of its input, whereas a multicast
    // agent that ignores TERM would outlive the test.
    for mode in ["plugin", "multicast"] {
        let args: Vec<&std::ffi::OsStr> = match mode {
            "plugin" => vec!["plugin".as_ref(), conf.as_os_str()],
            _ => vec![
                "run".as_ref(),
                "--source".as_ref(),
                "multicast".as_ref(),
                "--config".as_ref(),
                conf.as_os_str(),
            ],
        };
        let (agent, mut stdin) = start_blocked(&args, &json);
        let pid = agent.child.id();
        assert!(
            agent.log().contains(&format!(
                "rules: 1 rule(s) built in (no rule path configured): {}",
                super::SEED_RULE_ID
            )),
            "{}",
            agent.log()
        );
        let mut wanted = 0u64;
        for sig in AUDITD_BLOCKED {
            wanted |= 1 << (sig as i32 - 1);
        }
        assert_eq!(wanted, 0x34a01, "the mask auditd leaves its plugins");
        assert_eq!(
            blocked_mask(pid),
            0,
            "{mode}: the agent kept the inherited mask"
        );

        // logrotate: rename, then SIGHUP; the next alert goes to a new file.
        let rotated = dir.path().join(format!("alerts.json.{mode}"));
        std::fs::rename(&json, &rotated).expect("rotate");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP");
        agent.wait_for_log("reloaded 1 rule(s)", Duration::from_secs(5));
        let needle = if mode == "plugin" {
            stdin.write_all(&plugin_lines).expect("plugin lines");
            stdin.flush().expect("flush");
            "/tmp/split-".to_string()
        } else {
            super::live::sh(
                "/usr/bin/dash",
                &format!("ln -s /usr/bin/id /tmp/{token}; true"),
            );
            token.clone()
        };
        agent.wait_alert(&needle, Duration::from_secs(5));
        assert!(
            super::alerts_in(&rotated)
                .iter()
                .all(|a| !super::live::args_contain(a, &needle)),
            "{mode}: the alert went to the rotated file"
        );
        // Stops within its drain time (the helper allows 5 s and wants exit status 0).
        let log = agent.stop();
        assert!(log.contains("stop requested; draining"), "{mode}: {log}");
        drop(stdin);
        let _ = std::fs::remove_file(format!("/tmp/{token}"));
        assert_eq!(
            super::live::kernel_state(),
            before,
            "{mode}: kernel audit state changed"
        );
    }
}

/// Kernel audit turned on while it lives, and back off on drop if it was off.
struct AuditOn(bool);

impl AuditOn {
    fn new() -> AuditOn {
        use auditsentry::source::netlink::AuditSocket;
        let mut ctl = AuditSocket::control().expect("audit control socket");
        let off = ctl.status().expect("audit status").enabled == 0;
        if off {
            ctl.set_enabled(true).expect("enable audit");
        }
        AuditOn(off)
    }
}

impl Drop for AuditOn {
    fn drop(&mut self) {
        if self.0 {
            let _ = auditsentry::source::netlink::AuditSocket::control()
                .and_then(|mut c| c.set_enabled(false));
        }
    }
}

/// The pid of the `auditsentry` child of `parent` other than `not`, if one runs.
fn plugin_child(parent: u32, not: Option<u32>) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...
        let (comm, rest) = stat.split_once(") ")?;
        let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
        (ppid == parent && comm.ends_with("(auditsentry") && Some(pid) != not).then_some(pid)
    })
}

/// A plugin that auditd restarts after `kill -9` gets the dispatcher thread's blocked mask; the
/// restarted agent clears it, so it reopens its JSON file on SIGHUP and stops on SIGTERM. Under
/// a private auditd; the plugin leaves the kernel's rules alone (`manage_rules = false`), so its
/// kill leaves nothing behind.
#[test]
#[ignore = "live: needs root, kernel audit and auditd (not running)"]
fn a_plugin_restarted_by_auditd_reopens_on_hup_and_stops_on_term() {
    use std::time::{Duration, Instant};
    let (_lock, dir, _token, json) = super::live::begin("plugin restarted", "rst");
    super::live::require_auditd("plugin restarted");
    let before = super::live::kernel_state();
    // Audit on for the length of the test (the plugin itself is told to change nothing).
    let _on = AuditOn::new();
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[source]\nmanage_rules = false\n\n[state]\ndir = {:?}\n\n[output.syslog]\nenabled = false\n\n[output.json]\npath = {:?}\n",
            dir.path().join("state").display().to_string(),
            json.display().to_string()
        ),
    )
    .expect("write config");
    let plugin = format!(
        "active = yes\ndirection = out\npath = {}\ntype = always\nargs = plugin {}\nformat = string\n",
        env!("CARGO_BIN_EXE_auditsentry"),
        conf.display()
    );
    let mut auditd = super::live::PrivateAuditd::start(dir.path(), Some(&plugin))
        .expect("private auditd registered");
    let auditd_pid = auditd.child.id();
    let err_log = || std::fs::read_to_string(dir.path().join("auditd.err")).unwrap_or_default();
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let end = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < end, "{what}; auditd said:\n{}", err_log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("the plugin never ran", &|| {
        plugin_child(auditd_pid, None).is_some() && err_log().contains("running:")
    });
    let first = plugin_child(auditd_pid, None).expect("plugin");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    // auditd notices a dead plugin when it next writes to it: a user message is an event.
    wait("auditd did not restart the plugin", &|| {
        let _ = std::process::Command::new("auditctl")
            .args(["-m", "auditsentry test: plugin restart"])
            .output();
        plugin_child(auditd_pid, Some(first)).is_some()
            && err_log().matches("running:").count() >= 2
    });
    let second = plugin_child(auditd_pid, Some(first)).expect("restarted plugin");
    assert_eq!(
        blocked_mask(second),
        0,
        "the restarted plugin kept auditd's mask"
    );

    let rotated = dir.path().join("alerts.json.1");
    std::fs::rename(&json, &rotated).expect("rotate");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait("SIGHUP did not reopen the JSON file", &|| {
        json.exists() && err_log().contains("reloaded 1 rule(s)")
    });
    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    wait("SIGTERM did not stop the restarted plugin", &|| {
        !std::path::Path::new(&format!("/proc/{second}")).exists()
            || std::fs::read_to_string(format!("/proc/{second}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        sent.elapsed()
    );
    assert!(
        err_log().contains("stop requested; draining"),
        "{}",
        err_log()
    );
    auditd.stop();
    drop(_on);
    assert_eq!(
        super::live::kernel_state(),
        before,
        "kernel audit state changed"
    );
}

// ---------------------------------------------------------------------------------------------
// Bounded loaders: only regular files, of bounded size; nothing blocks on a FIFO.
// ---------------------------------------------------------------------------------------------

/// `config check` and `rules check` on `/dev/zero` (directly and through a symlink), a FIFO with
/// no writer, a directory of rules holding a FIFO, and files over the size limits: each ends at
/// once (a watchdog kills it after 5 s) with exit 1 and a message naming the file. Before the
/// bound, `/dev/zero` grew the checker to gigabytes and a FIFO hung it forever.
#[test]
fn config_and_rules_check_refuse_devices_fifos_and_oversize_files_at_once() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let zero_link = dir.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &zero_link).expect("symlink");
    let big_config = dir.path().join("big-config.toml");
    let padding = format!("# padding\n#{}\n", "x".repeat(1 << 20));
    std::fs::write(&big_config, &padding).expect("write");
    let big_rule = dir.path().join("big-rule.toml");
    std::fs::write(&big_rule, &padding).expect("write");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("mkdir");
    std::fs::copy(seed(), rules_dir.join("a.toml")).expect("copy seed");
    let dir_fifo = rules_dir.join("b.toml");
    nix::unistd::mkfifo(&dir_fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");

    let zero = Path::new("/dev/zero");
    let cases: Vec<(&str, &Path, String)> = vec![
        (
            "config",
            zero,
            "/dev/zero: cannot read: not a regular file (a character device)".into(),
        ),
        (
            "config",
            &zero_link,
            format!(
                "{}: cannot read: not a regular file (a character device)",
                zero_link.display()
            ),
        ),
        (
            "config",
            &fifo,
            format!(
                "{}: cannot read: not a regular file (a FIFO)",
                fifo.display()
            ),
        ),
        (
            "config",
            &big_config,
            format!(
                "{}: cannot read: {} bytes, over the 1048576-byte limit",
                big_config.display(),
                padding.len()
            ),
        ),
        (
            "rules",
            zero,
            "/dev/zero: not a regular file (a character device)".into(),
        ),
        (
            "rules",
            &zero_link,
            format!(
                "{}: not a regular file (a character device)",
                zero_link.display()
            ),
        ),
        (
            "rules",
            &fifo,
            format!("{}: not a regular file (a FIFO)", fifo.display()),
        ),
        (
            "rules",
            &big_rule,
            format!(
                "{}: {} bytes, over the 1048576-byte limit",
                big_rule.display(),
                padding.len()
            ),
        ),
        (
            "rules",
            &rules_dir,
            format!("{}: not a regular file (a FIFO)", dir_fifo.display()),
        ),
    ];
    for (what, path, want) in cases {
        let mut cmd = bin();
        cmd.args([what, "check"]).arg(path);
        let t0 = Instant::now();
        let out = output_within(cmd, 5);
        let took = t0.elapsed();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what} check {}: {}",
            path.display(),
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("error: {want}\n")),
            "{what} check {}: {}",
            path.display(),
            text(&out)
        );
        // Not a timing test: a watchdog bound far above the few milliseconds this takes.
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    // The same loaders serve replay's --config and --rules.
    let input = repo("tests/data/plugin-node-split.log");
    let mut cmd = bin();
    cmd.arg("replay").arg("--rules").arg(&fifo).arg(&input);
    let out = output_within(cmd, 5);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not a regular file (a FIFO)"),
        "{}",
        text(&out)
    );
}

/// The query inside a rule file has bounds of its own: a long `or` list and a pattern of many
/// wildcards (a 10 MB one took 2.8 GiB to compile) are refused with the file and the place.
#[test]
fn rules_check_refuses_queries_over_their_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed_text = std::fs::read_to_string(seed()).expect("seed");
    let with_query = |name: &str, query: &str| -> PathBuf {
        let start = seed_text.find("query = '''").expect("query key");
        let end = start + seed_text[start..].find("\n'''\n").expect("query end") + 5;
        let path = dir.path().join(name);
        let text = format!(
            "{}query = '''\n{query}\n'''\n{}",
            &seed_text[..start],
            &seed_text[end..]
        );
        std::fs::write(&path, text).expect("write");
        path
    };
    let long_or: Vec<String> = (0..5000).map(|i| format!("process.name:p{i}")).collect();
    let all = long_or.join(" or ");
    // A value list: each value is a field test of its own.
    let short: Vec<String> = (0..4097).map(|i| format!("p{i}")).collect();
    // TOML keeps the newline before the closing quotes.
    let over = format!(
        "the query is {} bytes, over the 65536-byte limit",
        all.len() + 1
    );
    let cases = [
        (with_query("or.toml", &all), over.as_str()),
        (
            with_query(
                "list.toml",
                &format!("process.name:({})", short.join(" or ")),
            ),
            "the query has more than 4096 field tests",
        ),
        (
            with_query("stars.toml", &format!("process.args:{}", "*a".repeat(65))),
            "a value with 65 wildcards (at most 64)",
        ),
    ];
    for (path, want) in cases {
        let out = run(&["rules".as_ref(), "check".as_ref(), path.as_os_str()]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.starts_with(&format!("error: {}: query line ", path.display()))
                && said.contains(want),
            "{said}"
        );
    }
}

/// 30 plugin lines of 10 MB each are 30 malformed records in the agent's counters (before, a
/// counter nobody printed took them: `malformed=0`), and the lines around them still alert.
#[test]
#[ignore = "live: needs root and kernel audit"]
fn oversize_plugin_lines_are_counted_as_malformed() {
    use std::io::Write;
    use std::time::Duration;
    let (_lock, dir, _token, json) = super::live::begin("oversize plugin lines", "big");
    let before = super::live::kernel_state();
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[state]\ndir = {:?}\n\n[output.syslog]\nenabled = false\n\n[output.json]\npath = {:?}\n",
            dir.path().join("state").display().to_string(),
            json.display().to_string()
        ),
    )
    .expect("write config");
    let (agent, mut stdin) = start_blocked(&["plugin".as_ref(), conf.as_os_str()], &json);
    let mut line = b"node=web1 type=EXECVE msg=audit(1700000000.300:600): argc=1 a0=".to_vec();
    line.resize(10 << 20, b'A');
    line.push(b'\n');
    for _ in 0..30 {
        stdin.write_all(&line).expect("oversize line");
    }
    stdin
        .write_all(&std::fs::read(repo("tests/data/plugin-node-split.log")).expect("read"))
        .expect("plugin lines");
    drop(stdin);
    agent.wait_for_log("stopped:", Duration::from_secs(30));
    let log = agent.log();
    let stopped = log
        .lines()
        .find(|l| l.contains("stopped:"))
        .unwrap_or_default();
    assert!(stopped.contains(" malformed=30 "), "{stopped}");
    assert!(stopped.contains(" alerts=1 "), "{stopped}");
    assert!(
        log.contains("skipped malformed record: stdin: line 1 is 10485760 bytes, over the 1048576 byte limit; skipped"),
        "{log}"
    );
    assert_eq!(
        super::live::kernel_state(),
        before,
        "kernel audit state changed"
    );
}

// ---------------------------------------------------------------------------------------------
// Replay input: text that starts like a netlink header, and gzip.
// ---------------------------------------------------------------------------------------------

/// `replay --all-matches` of `input`: its stdout (the alerts) and the summary counters.
fn replay_all(input: &Path) -> (String, std::collections::HashMap<String, u64>) {
    let out = super::replay(&["--all-matches"], input);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        summary(&out),
    )
}

/// A log cut with `tail` (or rotated) can start with `type=EXECVE msg=audit(`, whose first 16
/// bytes read as a netlink header of length 1701869940 followed by `audit(`: it was taken for a
/// capture and gave no alert. It is text, and replays to the whole log's 30 alerts.
#[test]
fn a_log_cut_to_start_at_an_execve_line_is_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = repo("samples/sample.audit.log");
    let text = std::fs::read_to_string(&whole).expect("sample");
    let cut: String = text.split_inclusive('\n').skip(12).collect();
    assert!(cut.starts_with("type=EXECVE msg=audit("), "{}", &cut[..40]);
    let path = dir.path().join("x.log");
    std::fs::write(&path, &cut).expect("write");
    let (alerts, s) = replay_all(&path);
    let (want, _) = replay_all(&whole);
    assert_eq!(s["malformed"], 0);
    assert_eq!(alerts.lines().count(), 30);
    assert_eq!(alerts, want);
    // The same with a node= prefix (auditd's plugin lines, a forwarded log).
    let noded: String = cut
        .split_inclusive('\n')
        .map(|l| format!("node=web1 {l}"))
        .collect();
    std::fs::write(&path, noded).expect("write");
    let (alerts, s) = replay_all(&path);
    assert_eq!(s["malformed"], 0);
    assert_eq!(alerts.lines().count(), 30);
}

/// A gzip-compressed log (logrotate's `compress`) is read through a decoder, whatever its name;
/// several members (concatenated files) are read as one; a cut-off one ends the run with exit 1
/// naming the file and gzip, after the alerts of what was read.
#[test]
fn gzip_logs_replay_like_the_plain_ones() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = repo("samples/sample.audit.log");
    let bytes = std::fs::read(&plain).expect("sample");
    let gzip = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("compress");
        enc.finish().expect("compress")
    };
    let packed = gzip(&bytes);
    // No .gz in the name: the magic bytes decide.
    let path = dir.path().join("audit.log.1");
    std::fs::write(&path, &packed).expect("write");
    let (want, _) = replay_all(&plain);
    let (got, s) = replay_all(&path);
    assert_eq!(s["malformed"], 0);
    assert_eq!(got, want);

    // Two members: the log's first half and its second.
    let mid = bytes.len() / 2
        + bytes[bytes.len() / 2..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("newline")
        + 1;
    let two = [gzip(&bytes[..mid]), gzip(&bytes[mid..])].concat();
    std::fs::write(&path, two).expect("write");
    let (got, _) = replay_all(&path);
    assert_eq!(got, want);

    // Cut off: what was read alerts, then the error.
    std::fs::write(&path, &packed[..packed.len() / 2]).expect("write");
    let out = bin()
        .args(["replay", "--all-matches"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("error: {}: gzip: ", path.display())),
        "{err}"
    );
    assert!(
        !out.stdout.is_empty(),
        "the alerts before the cut were lost"
    );
}

/// Regression: an error that carried the OS error in its message and also as its cause printed
/// it twice (`cannot write alerts to X: No such file or directory (os error 2): No such file or
/// directory (os error 2)`), a missing rule file three times. Each bad input names itself and
/// the OS error once.
#[test]
fn bad_paths_print_the_os_error_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gone = dir.path().join("gone");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let log = repo("samples/sample.audit.log");
    let at = |p: &Path, name: &str| p.join(name).display().to_string();
    let cases: [(&str, Vec<String>); 7] = [
        ("--json", vec!["--json".into(), at(&gone, "x.json")]),
        ("--events", vec!["--events".into(), at(&gone, "x.json")]),
        ("--rules", vec!["--rules".into(), at(&gone, "r.toml")]),
        ("--config", vec!["--config".into(), at(&gone, "c.toml")]),
        (
            "--state-dir",
            vec!["--state-dir".into(), at(&file, "state")],
        ),
        ("input", vec![at(&gone, "x.log")]),
        ("input directory", vec![dir.path().display().to_string()]),
    ];
    for (what, args) in cases {
        let mut argv: Vec<&std::ffi::OsStr> = vec!["replay".as_ref(), "-q".as_ref()];
        argv.extend(args.iter().map(|a| a.as_ref() as &std::ffi::OsStr));
        if what != "input" && what != "input directory" {
            argv.push(log.as_os_str());
        }
        let out = run(&argv);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert_eq!(stderr.matches("(os error").count(), 1, "{what}: {stderr}");
        assert!(stderr.contains(&args[args.len() - 1]), "{what}: {stderr}");
    }
    for check in [["config", "check"], ["rules", "check"]] {
        let missing = at(&gone, "x.toml");
        let out = run(&[check[0].as_ref(), check[1].as_ref(), missing.as_ref()]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{check:?}: {all}");
        assert_eq!(all.matches("(os error").count(), 1, "{check:?}: {all}");
    }
}
