//! Hardening: what the agent does when it is killed, when its state is damaged, and when its input
//! is hostile. Every test runs the real binary and checks exit status, alerts and the summary
//! counters; the memory test also bounds peak RSS.

use super::{alerts, bin, parents, summary};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Replay flags that make documents independent of the machine.
const HOST: [&str; 4] = [
    "--host-id",
    "00000000000000000000000000000001",
    "--host-name",
    "testhost",
];

/// One exec event as auditd's plugin stream shows it (SYSCALL, EXECVE, CWD, PATH, EOE).
/// `args` are hex-encoded the way the kernel does for anything unusual, one `aN=` each.
fn exec_event(serial: u32, ms: u64, pid: u32, ppid: u32, exe: &str, args: &[&[u8]]) -> String {
    let stamp = format!("{}.{:03}:{serial}", ms / 1000, ms % 1000);
    let mut s = format!(
        "type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 \
         a2=3 a3=4 items=1 ppid={ppid} pid={pid} auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 \
         fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm=\"x\" exe=\"{exe}\" key=\"exec\"\n"
    );
    s.push_str(&format!(
        "type=EXECVE msg=audit({stamp}): argc={}",
        args.len()
    ));
    for (i, a) in args.iter().enumerate() {
        s.push_str(&format!(" a{i}={}", hex(a)));
    }
    s.push('\n');
    s.push_str(&format!("type=CWD msg=audit({stamp}): cwd=\"/root\"\n"));
    s.push_str(&format!(
        "type=PATH msg=audit({stamp}): item=0 name=\"{exe}\" inode=1 dev=fe:00 mode=0100755 \
         ouid=0 ogid=0 rdev=00:00 nametype=NORMAL\n"
    ));
    s.push_str(&format!("type=EOE msg=audit({stamp}): \n"));
    s
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A parent shell exec followed by `ln -s /usr/bin/id /tmp/<name>` from it: one seed-rule match.
fn ln_case(serial: u32, ms: u64, parent: &str, name: &str) -> String {
    let ppid = 10_000 + serial;
    let pid = 20_000 + serial;
    let mut s = exec_event(
        serial,
        ms,
        ppid,
        1,
        &format!("/usr/bin/{parent}"),
        &[parent.as_bytes()],
    );
    let link = format!("/tmp/{name}");
    s.push_str(&exec_event(
        serial + 1,
        ms + 1,
        pid,
        ppid,
        "/usr/bin/ln",
        &[b"ln", b"-s", b"/usr/bin/id", link.as_bytes()],
    ));
    s
}

/// Five cases with five different parents: five new-terms alerts on a fresh state.
fn five_cases() -> Vec<String> {
    ["bash", "dash", "perl", "zsh", "ksh"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let serial = 100 + 10 * i as u32;
            ln_case(
                serial,
                1_700_000_000_000 + 100 * i as u64,
                p,
                &format!("l{i}"),
            )
        })
        .collect()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn replay_cmd(extra: &[&str]) -> Command {
    let mut c = bin();
    c.arg("replay").args(HOST).args(extra);
    c
}

/// Replays `input` (a file) with `extra` flags; the run must succeed.
fn replay_file(extra: &[&str], input: &Path) -> Output {
    let out = replay_cmd(extra)
        .arg(input)
        .output()
        .expect("run auditsentry");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write input");
    p
}

// ---------------------------------------------------------------------------------------------
// Crash survival

/// The alerts of `input` replayed on a fresh state directory under `dir`.
fn clean_alerts(dir: &Path, input: &Path) -> Vec<Value> {
    let state = dir.join("clean");
    alerts(&replay_file(
        &["--state-dir", &state.to_string_lossy()],
        input,
    ))
}

/// Kill -9 after the first case was read and alerted, restart on the same state, replay
/// everything: the union of alerts must be exactly the clean run's, none twice.
///
/// Regression: the gate used to flush the tuple to sled *before* the (buffered) alert was written,
/// so a kill in between lost that alert for good. The alert is now flushed before the tuple is
/// recorded.
#[test]
fn kill_9_after_first_alert_then_restart_neither_duplicates_nor_misses() {
    let d = tmp();
    let cases = five_cases();
    let all = write(d.path(), "all.log", cases.concat().as_bytes());
    let clean = clean_alerts(d.path(), &all);
    assert_eq!(clean.len(), 5);

    let state = d.path().join("state");
    let mut child = replay_cmd(&["--state-dir", &state.to_string_lossy(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(cases[0].as_bytes())
        .expect("feed first case");
    stdin.flush().expect("flush");
    // The slow feed: the agent has read, evaluated and alerted on the first case; more is to come.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("SIGKILL");
    let before = child.wait_with_output().expect("wait");
    drop(stdin);
    let before = alerts(&before);

    let after = alerts(&replay_file(
        &["--state-dir", &state.to_string_lossy()],
        &all,
    ));
    let mut union = before.clone();
    union.extend(after);
    assert_eq!(
        parents(&union),
        parents(&clean),
        "before kill: {}",
        before.len()
    );
}

/// The same contract for a kill between runs (the common crash: power loss after a flush).
#[test]
fn restart_on_the_same_state_alerts_each_tuple_once() {
    let d = tmp();
    let cases = five_cases();
    let first = write(d.path(), "first.log", cases[..2].concat().as_bytes());
    let all = write(d.path(), "all.log", cases.concat().as_bytes());
    let state = d.path().join("state").to_string_lossy().into_owned();
    let a = alerts(&replay_file(&["--state-dir", &state], &first));
    let b = alerts(&replay_file(&["--state-dir", &state], &all));
    assert_eq!(parents(&a), ["bash", "dash"]);
    assert_eq!(parents(&b), ["ksh", "perl", "zsh"]);
}

/// Kill -9 at varying points of a slow feed (after 0 to 5 cases, at once or seconds later), then
/// restart on the same state and replay everything: what alerted before the kill and after the
/// restart covers the clean run. The state is made durable in batches after its alerts left, so a
/// repeat is allowed; a miss is not.
#[test]
fn kill_9_at_varying_points_never_loses_an_alert() {
    let d = tmp();
    let cases = five_cases();
    let all = write(d.path(), "all.log", cases.concat().as_bytes());
    let clean = clean_alerts(d.path(), &all);
    let mut want = parents(&clean);
    want.dedup();
    assert_eq!(want.len(), 5);
    for (round, (fed, wait_ms)) in [
        (0, 300),
        (1, 0),
        (1, 700),
        (2, 40),
        (3, 1500),
        (5, 200),
        (5, 1200),
    ]
    .into_iter()
    .enumerate()
    {
        let state = d.path().join(format!("state-{round}"));
        let mut child = replay_cmd(&["--state-dir", &state.to_string_lossy(), "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        for case in &cases[..fed] {
            stdin.write_all(case.as_bytes()).expect("feed a case");
            stdin.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(wait_ms / 5));
        }
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().expect("SIGKILL");
        let before = alerts(&child.wait_with_output().expect("wait"));
        drop(stdin);
        let after = alerts(&replay_file(
            &["--state-dir", &state.to_string_lossy()],
            &all,
        ));
        let mut union = parents(&before);
        union.extend(parents(&after));
        union.sort();
        union.dedup();
        assert_eq!(
            union, want,
            "round {round}: fed {fed}, killed after {wait_ms} ms; before the kill: {before:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Bounded new-terms state

/// Flags of a replay that lets every new-terms alert through the rate cap.
const UNCAPPED: [&str; 2] = ["--max-signals", "1000000"];

/// `n` cases, 10 ms apart from `start_ms`, each from its own throwaway parent `t<i>`.
fn throwaway_parents(n: u32, start_ms: u64) -> String {
    (0..n)
        .map(|i| {
            ln_case(
                100 + 10 * i,
                start_ms + 10 * u64::from(i),
                &format!("t{i:05}"),
                "l",
            )
        })
        .collect()
}

/// Bytes of the files under `dir` (sled's layout: files, one level of subdirectories).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("list state") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("stat");
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Regression: no code deleted a new-terms tuple, so attacker-chosen parent names grew the state
/// forever (~680 B each). 10,000 throwaway parents under a cap of 100 tuples: every one alerts,
/// at most 100 stay, the rest are counted as evicted, and the directory stays small (4.2 MB
/// without the cap, 1.6 MB with it, measured).
#[test]
fn ten_thousand_throwaway_parents_leave_the_state_bounded() {
    let d = tmp();
    let input = write(
        d.path(),
        "flood.log",
        throwaway_parents(10_000, 1_700_000_000_000).as_bytes(),
    );
    let state = d.path().join("state");
    let state_arg = state.to_string_lossy().into_owned();
    let mut flags = vec!["--state-dir", &state_arg, "--max-terms-per-rule", "100"];
    flags.extend(UNCAPPED);
    let out = replay_file(&flags, &input);
    let s = summary(&out);
    assert_eq!(s["alerts"], 10_000);
    assert!(s["terms_stored"] <= 100, "{s:?}");
    assert_eq!(s["terms_stored"] + s["terms_evicted"], 10_000, "{s:?}");
    let bytes = dir_bytes(&state);
    assert!(bytes < 3 << 20, "state directory holds {bytes} bytes");
    // What is stored is the newest: the last parent is still known, the first alerts again.
    let again = write(
        d.path(),
        "again.log",
        (ln_case(200_000, 1_700_000_200_000, "t09999", "l")
            + &ln_case(200_010, 1_700_000_200_010, "t00000", "l"))
            .as_bytes(),
    );
    let out = replay_file(&flags, &again);
    assert_eq!(parents(&alerts(&out)), ["t00000"]);
}

/// Tuples last seen longer than the rule's window (10 days) ago no longer count: a later replay
/// whose events (none of them a match) are past the window deletes them all, for good.
#[test]
fn a_replay_past_the_window_leaves_no_tuple() {
    let d = tmp();
    let t0 = 1_700_000_000_000;
    let first = write(d.path(), "first.log", throwaway_parents(50, t0).as_bytes());
    let state = d.path().join("state");
    let state_arg = state.to_string_lossy().into_owned();
    let out = replay_file(&["--state-dir", &state_arg], &first);
    assert_eq!(summary(&out)["terms_stored"], 50);
    // Nine days on: still within the window, nothing goes.
    let day = 86_400_000;
    let other = |ms: u64| exec_event(9_000, ms, 30_000, 1, "/usr/bin/true", &[b"true"]);
    let nine = write(d.path(), "nine.log", other(t0 + 9 * day).as_bytes());
    let s = summary(&replay_file(&["--state-dir", &state_arg], &nine));
    assert_eq!((s["terms_stored"], s["terms_pruned"]), (50, 0));
    let later = write(d.path(), "later.log", other(t0 + 11 * day).as_bytes());
    let s = summary(&replay_file(&["--state-dir", &state_arg], &later));
    assert_eq!((s["terms_stored"], s["terms_pruned"]), (0, 50));
    // Gone from the disk too: the next start finds an empty store.
    let empty = write(d.path(), "empty.log", b"");
    let s = summary(&replay_file(&["--state-dir", &state_arg], &empty));
    assert_eq!(s["terms_stored"], 0);
}

// ---------------------------------------------------------------------------------------------
// Damaged state

/// Builds a state directory with history, then lets `damage` loose on its files.
fn damaged_state(damage: impl Fn(&Path)) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tmp();
    let input = write(d.path(), "all.log", five_cases().concat().as_bytes());
    let state = d.path().join("state");
    let out = replay_file(&["--state-dir", &state.to_string_lossy()], &input);
    assert_eq!(alerts(&out).len(), 5);
    damage(&state);
    (d, state, input)
}

fn assert_recovers(d: &Path, state: &Path, input: &Path) {
    let out = replay_file(&["--state-dir", &state.to_string_lossy()], input);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("moved it to").count(),
        1,
        "the quarantine is logged exactly once: {err}"
    );
    // A fresh store: every tuple is new again.
    assert_eq!(alerts(&out).len(), 5, "{err}");
    let moved: Vec<String> = std::fs::read_dir(d)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "damaged store kept aside: {moved:?}");
    // The next start is an ordinary one on the rebuilt store.
    let again = replay_file(&["--state-dir", &state.to_string_lossy()], input);
    assert!(!String::from_utf8_lossy(&again.stderr).contains("moved it to"));
    assert_eq!(alerts(&again).len(), 0);
}

#[test]
fn garbage_over_the_sled_files_is_moved_aside_once() {
    let (d, state, input) = damaged_state(|dir| {
        for name in ["conf", "db"] {
            std::fs::write(dir.join(name), vec![0xA5u8; 4096]).expect("overwrite");
        }
    });
    assert_recovers(d.path(), &state, &input);
}

#[test]
fn truncated_sled_files_are_moved_aside_once() {
    let (d, state, input) = damaged_state(|dir| {
        for name in ["conf", "db"] {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join(name))
                .expect("open");
            f.set_len(7).expect("truncate");
        }
    });
    assert_recovers(d.path(), &state, &input);
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/// Replays `input` from a file and returns (alerts, counters).
fn hostile(name: &str, input: &[u8], extra: &[&str]) -> (Vec<Value>, HashMap<String, u64>) {
    let d = tmp();
    let p = write(d.path(), name, input);
    let out = replay_file(extra, &p);
    (alerts(&out), summary(&out))
}

/// 100k arguments the way the kernel logs them: many EXECVE records of at most ~7.5 KB each.
#[test]
fn hundred_thousand_arguments() {
    let mut args: Vec<Vec<u8>> = vec![
        b"ln".to_vec(),
        b"-s".to_vec(),
        b"/usr/bin/id".to_vec(),
        b"/tmp/many".to_vec(),
    ];
    args.extend((0..100_000).map(|i| format!("x{i}").into_bytes()));
    let stamp = "1700000000.001:2";
    let mut log = exec_event(1, 1_700_000_000_000, 50, 1, "/usr/bin/bash", &[b"bash"]);
    log.push_str(&format!(
        "type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 items=1 \
         ppid=50 pid=51 auid=0 uid=0 euid=0 tty=pts0 ses=3 comm=\"ln\" exe=\"/usr/bin/ln\" key=\"exec\"\n"
    ));
    let mut line = format!("type=EXECVE msg=audit({stamp}): argc={}", args.len());
    for (i, a) in args.iter().enumerate() {
        let field = format!(" a{i}={}", hex(a));
        if line.len() + field.len() > 7500 {
            log.push_str(&line);
            log.push('\n');
            line = format!("type=EXECVE msg=audit({stamp}):");
        }
        line.push_str(&field);
    }
    log.push_str(&line);
    log.push('\n');
    log.push_str(&format!("type=EOE msg=audit({stamp}): \n"));
    let (alerts, c) = hostile("many.log", log.as_bytes(), &["--all-matches"]);
    assert_eq!(c["exec"], 2);
    assert_eq!(c["malformed"], 0);
    assert_eq!(c["truncated"], 0);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["process"]["args_count"], 100_004);
    assert_eq!(alerts[0]["process"]["args"][100_003], "x99999");
}

/// The same 100k arguments on one 2 MB line, which no kernel writes: the line is over the
/// reader's limit, skipped and counted; the event without its EXECVE is partial, not a crash.
#[test]
fn one_two_megabyte_record_line_is_skipped_and_counted() {
    let many: Vec<Vec<u8>> = (0..100_000).map(|i| format!("x{i}").into_bytes()).collect();
    let mut args: Vec<&[u8]> = vec![b"ln", b"-s", b"/usr/bin/id", b"/tmp/many"];
    args.extend(many.iter().map(Vec::as_slice));
    let mut log = exec_event(1, 1_700_000_000_000, 50, 1, "/usr/bin/bash", &[b"bash"]);
    log.push_str(&exec_event(
        2,
        1_700_000_000_001,
        51,
        50,
        "/usr/bin/ln",
        &args,
    ));
    let (alerts, c) = hostile("long-line.log", log.as_bytes(), &["--all-matches"]);
    assert!(alerts.is_empty());
    assert_eq!(c["malformed"], 1);
    assert_eq!(c["exec"], 1);
    assert_eq!(c["partial"], 1);
}

#[test]
fn invalid_utf8_and_group_separators_stay_one_json_line() {
    let mut log = exec_event(1, 1_700_000_000_000, 60, 1, "/usr/bin/bash", &[b"bash"]);
    log.push_str(&exec_event(
        2,
        1_700_000_000_001,
        61,
        60,
        "/usr/bin/ln",
        &[b"ln", b"-s", b"/usr/bin/id", b"/tmp/\xff\xfe\x1d\n\"x"],
    ));
    let mut bytes = log.into_bytes();
    // Raw (unencoded) hostile bytes in a record no one should trust: invalid UTF-8 and 0x1d.
    bytes.extend_from_slice(
        b"type=PATH msg=audit(1700000000.005:3): name=\xff\xfe\x1d\x1d item=0\n",
    );
    bytes.extend_from_slice(b"\x1d\x1d\x1d\n\xff\n");
    let (alerts, c) = hostile("utf8.log", &bytes, &["--all-matches"]);
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0]["process"]["args"][3],
        "/tmp/\u{fffd}\u{fffd}\u{1d}\n\"x"
    );
    assert_eq!(c["malformed"], 2);
    assert_eq!(c["exec"], 2);
}

#[test]
fn lone_eoes_are_events_of_nothing() {
    let mut log = String::new();
    for serial in 1..=10_000u32 {
        log.push_str(&format!(
            "type=EOE msg=audit(1700000000.{:03}:{serial}): \n",
            serial % 1000
        ));
    }
    let (alerts, c) = hostile("eoe.log", log.as_bytes(), &[]);
    assert!(alerts.is_empty());
    assert_eq!(c["records"], 10_000);
    assert_eq!(c["exec"], 0);
    assert_eq!(c["malformed"], 0);
    assert_eq!(c["partial"], 0);
}

#[test]
fn serial_wrap_around_keeps_grouping() {
    let mut log = String::new();
    let serials = [u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2];
    for (i, s) in serials.iter().enumerate() {
        let ms = 1_700_000_000_000 + i as u64;
        log.push_str(&exec_event(
            *s,
            ms,
            70 + i as u32,
            1,
            "/usr/bin/true",
            &[b"true"],
        ));
    }
    let (_, c) = hostile("wrap.log", log.as_bytes(), &[]);
    assert_eq!(c["events"], 6);
    assert_eq!(c["exec"], 6);
    assert_eq!(c["partial"], 0);
    assert_eq!(c["duplicate"], 0);
    assert_eq!(c["lost_serials"], 0, "wrapping is not a gap of 4 billion");
}

/// A netlink capture whose frames claim a user-space sender (nlmsg_pid != 0). Captures are not
/// checked for the sender (live sockets are); the point is no panic and the events still count.
#[test]
fn netlink_capture_with_spoofed_sender_pid() {
    let mut cap = Vec::new();
    let text = exec_event(5, 1_700_000_000_000, 80, 1, "/usr/bin/true", &[b"true"]);
    for line in text.lines() {
        let (ty, rest) = line.split_once(" msg=").expect("msg=");
        let num: u16 = match ty {
            "type=SYSCALL" => 1300,
            "type=EXECVE" => 1309,
            "type=CWD" => 1307,
            "type=PATH" => 1302,
            _ => 1320,
        };
        let payload = rest.as_bytes();
        let len = u32::try_from(16 + payload.len()).expect("small");
        cap.extend_from_slice(&len.to_le_bytes());
        cap.extend_from_slice(&num.to_le_bytes());
        cap.extend_from_slice(&0u16.to_le_bytes());
        cap.extend_from_slice(&7u32.to_le_bytes());
        cap.extend_from_slice(&4242u32.to_le_bytes()); // spoofed: not the kernel (0)
        cap.extend_from_slice(payload);
    }
    // And a frame whose length lies (longer than what is left).
    cap.extend_from_slice(&u32::MAX.to_le_bytes());
    cap.extend_from_slice(&[0u8; 12]);
    let (_, c) = hostile("spoof.netlink.bin", &cap, &["--format", "netlink"]);
    assert_eq!(c["exec"], 1);
    assert_eq!(c["records"], 5);
}

/// The peak RSS (VmHWM, KiB) of a running process, 0 once it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `child` to its end, feeding its stdin with `feed` if given, and returns its peak RSS
/// (KiB, sampled every 5 ms) with its output.
fn run_watching_hwm(
    mut child: Child,
    feed: Option<Box<dyn FnOnce(std::process::ChildStdin) + Send>>,
) -> (u64, Output) {
    let pid = child.id();
    let feeder = feed.map(|feed| {
        let stdin = child.stdin.take().expect("stdin");
        std::thread::spawn(move || feed(stdin))
    });
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let collect = std::thread::spawn(move || {
        use std::io::Read;
        let (mut o, mut e) = (Vec::new(), Vec::new());
        if let Some(mut s) = stdout {
            let _ = s.read_to_end(&mut o);
        }
        if let Some(mut s) = stderr {
            let _ = s.read_to_end(&mut e);
        }
        (o, e)
    });
    let start = Instant::now();
    let mut hwm = 0u64;
    loop {
        hwm = hwm.max(peak_rss_kib(pid));
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "replay did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(feeder) = feeder {
        feeder.join().expect("feeder");
    }
    let status = child.wait().expect("wait");
    let (stdout, stderr) = collect.join().expect("collector");
    (
        hwm,
        Output {
            status,
            stdout,
            stderr,
        },
    )
}

const FLOOD_EVENTS: u32 = 48;

/// 48 events, each with three 1 MiB arguments split the kernel's way (`aN_len`, `aN[i]` over
/// ~7.5 KB EXECVE records), interleaved four at a time and closed by EOE: ~300 MB of log.
fn write_flood(out: &mut dyn Write) -> std::io::Result<()> {
    const ARGS: usize = 3;
    const ARG_BYTES: usize = 1 << 20;
    const CHUNK: usize = 3750; // bytes per fragment: 7500 hex digits, as the kernel splits them
    let arg: Vec<u8> = (0..ARG_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    let hex_arg = hex(&arg);
    let mut w = std::io::BufWriter::new(out);
    for group in 0..FLOOD_EVENTS / 4 {
        let serials: Vec<u32> = (0..4).map(|k| 1000 + group * 4 + k).collect();
        let stamp = |s: u32| format!("1700000000.{:03}:{s}", s % 1000);
        for &s in &serials {
            writeln!(
                w,
                "type=SYSCALL msg=audit({}): arch=c000003e syscall=59 success=yes exit=0 \
                 items=1 ppid=1 pid={s} auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 \
                 sgid=0 fsgid=0 tty=(none) ses=1 comm=\"big\" exe=\"/usr/bin/big\" key=(null)",
                stamp(s)
            )?;
            writeln!(w, "type=EXECVE msg=audit({}): argc={}", stamp(s), ARGS + 1)?;
        }
        for a in 1..=ARGS {
            for (i, frag) in hex_arg.as_bytes().chunks(CHUNK * 2).enumerate() {
                // Interleave the four events fragment by fragment: all four are in flight.
                for &s in &serials {
                    let head = if i == 0 {
                        format!(" a{a}_len={}", ARG_BYTES * 2)
                    } else {
                        String::new()
                    };
                    write!(w, "type=EXECVE msg=audit({}):{head} a{a}[{i}]=", stamp(s))?;
                    w.write_all(frag)?;
                    w.write_all(b"\n")?;
                }
            }
        }
        for &s in &serials {
            writeln!(w, "type=EOE msg=audit({}): ", stamp(s))?;
        }
        w.flush()?;
    }
    Ok(())
}

/// Every flood event is counted and the peak RSS stays far below the input size.
fn check_flood(how: &str, hwm_kib: u64, out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = summary(out);
    assert_eq!(c["events"], u64::from(FLOOD_EVENTS));
    assert_eq!(c["exec"], u64::from(FLOOD_EVENTS));
    assert_eq!(c["malformed"], 0);
    assert!(
        hwm_kib < 96 * 1024,
        "peak RSS {} MiB for a 1 MiB-argument flood ({how})",
        hwm_kib / 1024
    );
    eprintln!(
        "1 MiB-argument flood ({how}): peak RSS {} MiB",
        hwm_kib / 1024
    );
}

/// The flood streamed on stdin (one thread, record by record).
#[test]
fn flood_of_one_mebibyte_arguments_stays_bounded() {
    let child = replay_cmd(&["--all-matches", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let feed = |mut stdin: std::process::ChildStdin| {
        let _ = write_flood(&mut stdin);
    };
    let (hwm_kib, out) = run_watching_hwm(child, Some(Box::new(feed)));
    check_flood("stdin", hwm_kib, &out);
}

/// The flood as a file: replayed by the three threaded stages with batches between them.
#[test]
fn flood_in_a_file_stays_bounded_across_the_replay_stages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flood.log");
    let mut file = std::fs::File::create(&path).expect("create");
    write_flood(&mut file).expect("write flood");
    drop(file);
    let child = replay_cmd(&["--all-matches", &path.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (hwm_kib, out) = run_watching_hwm(child, None);
    check_flood("file", hwm_kib, &out);
}

/// `n` exec events of 7.9 KB each that claim `far + 1` arguments and write two, `a0` and
/// `a<far>` (the rest of the line padding of no argument field): what a forged log can say.
fn write_forged(out: &mut dyn Write, n: u32, far: u64) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(out);
    let pad = "x".repeat(7_700);
    for i in 0..n {
        let serial = 10 + i;
        let stamp = format!("1700000000.{:03}:{serial}", i % 1000);
        writeln!(
            w,
            "type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 items=1 \
             ppid=1 pid={} auid=0 uid=0 euid=0 tty=(none) ses=1 comm=\"f\" exe=\"/usr/bin/f\" \
             key=(null)",
            100_000 + i
        )?;
        writeln!(
            w,
            "type=EXECVE msg=audit({stamp}): argc={} a0=\"x\" a{far}=\"y\" pad={pad}",
            far + 1
        )?;
        writeln!(w, "type=EOE msg=audit({stamp}): ")?;
    }
    w.flush()
}

/// The peak RSS bound the live agent keeps by default, which a replay keeps too.
const BUDGET_KIB: u64 = 64 * 1024;

/// Replays `n` forged events (see [`write_forged`]) from a file through the two stages and returns
/// the peak RSS (KiB) with the counters.
fn forged_replay(n: u32, far: u64) -> (u64, HashMap<String, u64>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("forged.log");
    let mut file = std::fs::File::create(&path).expect("create");
    write_forged(&mut file, n, far).expect("write forged events");
    drop(file);
    let child = replay_cmd(&["--all-matches", &path.to_string_lossy()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (hwm_kib, out) = run_watching_hwm(child, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (hwm_kib, summary(&out))
}

/// Regression: `argc=1048575 a0="x" a1048575="y"` made argv 1 048 576 slots long (the skipped
/// ones padded in for free): 20 such events of 7.9 KB peaked at 661 MB, 2,000 at 24 GB. A
/// skipped index now costs its slot against the argument budget, so the far one is cut at once.
#[test]
fn forged_far_argument_indices_stay_within_the_memory_budget() {
    let (hwm_kib, c) = forged_replay(2_000, 1_048_575);
    assert_eq!((c["exec"], c["truncated"]), (2_000, 2_000));
    assert!(
        hwm_kib < BUDGET_KIB,
        "peak RSS {} MiB for 2,000 forged events",
        hwm_kib / 1024
    );
    eprintln!("2,000 forged events: peak RSS {} MiB", hwm_kib / 1024);
}

/// The same with the far index just within the default budget (8 MiB at 32 bytes a slot): every
/// event really is 262 101 arguments long, and the replay's detecting stage builds its batches in
/// parts bounded by argument cost instead of 30-odd such events at once.
#[test]
fn forged_events_just_within_the_argument_budget_are_built_a_few_at_a_time() {
    let (hwm_kib, c) = forged_replay(500, 262_100);
    assert_eq!((c["exec"], c["truncated"]), (500, 0));
    assert!(
        hwm_kib < BUDGET_KIB,
        "peak RSS {} MiB for 500 forged events of 262 101 arguments",
        hwm_kib / 1024
    );
    eprintln!(
        "500 forged events of 262 101 arguments: peak RSS {} MiB",
        hwm_kib / 1024
    );
}

/// Regression: under umask 022 the state directory was 0755 and its files 0644 (the new-terms
/// history says which programs ran). Now the agent's files are owner-only whatever the umask,
/// and the JSON output is exactly 0640.
#[test]
fn state_and_outputs_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmp();
    let input = write(d.path(), "all.log", five_cases().concat().as_bytes());
    let state = d.path().join("state");
    let json = d.path().join("alerts.json");
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("umask 022; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_auditsentry"))
        .arg("replay")
        .args(HOST)
        .arg("--state-dir")
        .arg(&state)
        .arg("--json")
        .arg(&json)
        .arg(&input)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for entry in std::fs::read_dir(&state).expect("list") {
        let path = entry.expect("entry").path();
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{}", path.display());
    }
    assert_eq!(mode(&json), 0o640);
    assert_eq!(super::alerts_in(&json).len(), 5);
}
