//! Tests against the running kernel: status, rule add/list/delete, multicast and unicast
//! record delivery.
//!
//! They need root (CAP_AUDIT_CONTROL, CAP_AUDIT_READ) and a kernel with audit, so each is
//! `#[ignore]`d with that reason; once run (`--include-ignored`, as `scripts/test-all.sh` does as
//! root or with `CI=true`), a missing prerequisite fails it (docs/testing.md). They take one lock so
//! they never overlap, use a rule key of their own, and guards put back what they changed (rules,
//! enabled flag, daemon pid, backlog limit) even when an assertion fails. Each checks the rule list
//! is as it found it.

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::socket::{
    kernel_version, multicast_supported, AuditSocket, NetlinkError, RECV_BUFFER_LEN,
};
use super::wire::{Arch, RuleData, Status};
use crate::source::Frame;
use nix::libc;

/// The kernel's audit configuration is one global: one test at a time.
static KERNEL: Mutex<()> = Mutex::new(());

/// AUDIT_EXECVE record type.
const EXECVE: u16 = 1309;

fn test_key() -> String {
    format!("auditsentry-test-{}", std::process::id())
}

/// The kernel lock of this process and of every other test process on the machine (another
/// checkout's tests, the integration binary): held until dropped.
struct KernelLock {
    _local: MutexGuard<'static, ()>,
    _machine: nix::fcntl::Flock<std::fs::File>,
}

/// File whose `flock` serialises kernel-changing tests across processes.
const MACHINE_LOCK: &str = "/tmp/auditsentry-kernel-tests.lock";

fn kernel_lock() -> KernelLock {
    let local = KERNEL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(MACHINE_LOCK)
        .expect("open the machine-wide kernel test lock");
    let machine = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock the machine-wide kernel test lock");
    KernelLock {
        _local: local,
        _machine: machine,
    }
}

/// Fails `test`, naming its missing prerequisite: an opted-in live test that cannot run must not
/// pass.
fn missing(test: &str, what: &str) -> ! {
    panic!(
        "{test} cannot run: {what}. It is #[ignore]d by default; run as root with kernel audit, \
         or leave out --include-ignored (docs/testing.md)"
    )
}

/// Takes the lock and a control socket; fails the test when the kernel cannot be tested here.
fn setup(test: &str) -> (KernelLock, AuditSocket, Status) {
    let lock = kernel_lock();
    let mut sock = AuditSocket::control()
        .unwrap_or_else(|e| missing(test, &format!("NETLINK_AUDIT unavailable: {e}")));
    match sock.status() {
        Ok(status) => (lock, sock, status),
        Err(NetlinkError::Kernel { errno, .. })
            if errno == libc::EPERM || errno == libc::ECONNREFUSED =>
        {
            missing(
                test,
                "audit control refused (needs root in the initial namespace)",
            )
        }
        Err(e) => panic!("{test}: AUDIT_GET failed: {e}"),
    }
}

/// Rules this test added; Drop deletes exactly those.
struct AddedRules {
    sock: AuditSocket,
    rules: Vec<RuleData>,
}

impl AddedRules {
    fn new() -> AddedRules {
        AddedRules {
            sock: AuditSocket::control().expect("second control socket"),
            rules: Vec::new(),
        }
    }

    fn add(&mut self, rule: RuleData) {
        self.sock.add_rule(&rule).expect("AUDIT_ADD_RULE");
        self.rules.push(rule);
    }

    fn remove(&mut self, rule: &RuleData) {
        self.sock.del_rule(rule).expect("AUDIT_DEL_RULE");
        self.rules.retain(|r| r != rule);
    }
}

impl Drop for AddedRules {
    fn drop(&mut self) {
        for rule in self.rules.drain(..) {
            if let Err(e) = self.sock.del_rule(&rule) {
                eprintln!("cleanup: could not delete test rule {rule:?}: {e}");
            }
        }
    }
}

/// Turns auditing on for the test and back off afterwards if it was off.
struct EnabledGuard {
    restore_off: bool,
}

impl EnabledGuard {
    fn ensure_on(sock: &mut AuditSocket, status: &Status) -> EnabledGuard {
        if status.enabled == 0 {
            sock.set_enabled(true).expect("AUDIT_SET enabled=1");
            EnabledGuard { restore_off: true }
        } else {
            EnabledGuard { restore_off: false }
        }
    }
}

impl Drop for EnabledGuard {
    fn drop(&mut self) {
        if self.restore_off {
            let result = AuditSocket::control().and_then(|mut s| s.set_enabled(false));
            if let Err(e) = result {
                eprintln!("cleanup: could not turn auditing back off: {e}");
            }
        }
    }
}

/// Runs `/bin/true MARKER` and reads frames from `sock` until an EXECVE record names MARKER.
fn exec_and_find_marker(sock: &mut AuditSocket, marker: &str) -> Vec<Frame> {
    let status = Command::new("/bin/true")
        .arg(marker)
        .status()
        .expect("spawn /bin/true");
    assert!(status.success());
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    let mut frames = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let start = frames.len();
        match sock.recv_frames(&mut buf, &mut frames) {
            Ok(_) => {}
            Err(e) if e.is_transient() => {
                eprintln!("transient receive error: {e}");
                continue;
            }
            Err(e) => panic!("recv_frames: {e}"),
        }
        let found = frames.get(start..).unwrap_or(&[]).iter().any(|f| {
            matches!(f, Frame::Netlink { msg_type: EXECVE, payload }
                if contains(payload, marker.as_bytes()))
        });
        if found {
            return frames;
        }
    }
    panic!(
        "no EXECVE record with {marker} within 5 s; got {} frames",
        frames.len()
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
#[ignore = "live: needs root and kernel audit"]
fn live_status_and_kernel_version() {
    let (_lock, mut sock, status) = setup("live_status_and_kernel_version");
    let version = kernel_version().expect("kernel version");
    eprintln!("kernel {version:?}, status {status:?}");
    assert!(version >= (2, 6, 0));
    assert!(status.enabled <= 2, "enabled {}", status.enabled);
    assert!(status.failure <= 2, "failure {}", status.failure);
    assert!(status.backlog_limit > 0);
    if version >= (3, 14, 0) {
        assert!(status.feature_bitmap.is_some() && status.backlog_wait_time.is_some());
    }
    // Change the backlog limit and put it back.
    let old = status.backlog_limit;
    let new = if old == 8191 { 8192 } else { 8191 };
    sock.set_backlog_limit(new).expect("set backlog limit");
    let changed = sock.status().expect("status after set").backlog_limit;
    sock.set_backlog_limit(old).expect("restore backlog limit");
    assert_eq!(changed, new);
    assert_eq!(
        sock.status().expect("status after restore").backlog_limit,
        old
    );
}

#[test]
#[ignore = "live: needs root and kernel audit"]
fn live_rule_add_list_delete() {
    let (_lock, mut sock, _) = setup("live_rule_add_list_delete");
    let before = sock.list_rules().expect("list rules before");
    let key = test_key();
    let wanted: Vec<RuleData> = Arch::host()
        .iter()
        .map(|&arch| RuleData::exec_rule(arch, Some(std::process::id()), &key).expect("rule"))
        .collect();
    assert!(!wanted.is_empty(), "no audit arch known for this host");
    {
        let mut added = AddedRules::new();
        for rule in &wanted {
            added.add(rule.clone());
        }
        let listed = sock.list_rules().expect("list rules");
        let ours: Vec<&RuleData> = listed
            .iter()
            .filter(|r| r.has_key(key.as_bytes()))
            .collect();
        assert_eq!(ours.len(), wanted.len());
        for (got, want) in ours.iter().zip(&wanted) {
            assert_eq!(
                got.encode().expect("encode listed"),
                want.encode().expect("encode ours")
            );
        }
        for &arch in Arch::host() {
            assert!(listed
                .iter()
                .any(|r| r.has_key(key.as_bytes()) && r.watches_execve(arch)));
        }
        // A duplicate is refused with EEXIST.
        match sock.add_rule(&wanted[0]) {
            Err(NetlinkError::Kernel {
                errno: libc::EEXIST,
                request: "AUDIT_ADD_RULE",
            }) => {}
            other => panic!("duplicate add: {other:?}"),
        }
        added.remove(&wanted[0]);
        let listed = sock.list_rules().expect("list rules after delete");
        assert_eq!(
            listed.iter().filter(|r| r.has_key(key.as_bytes())).count(),
            wanted.len() - 1
        );
        match sock.del_rule(&wanted[0]) {
            Err(NetlinkError::Kernel {
                errno: libc::ENOENT,
                ..
            }) => {}
            other => panic!("second delete: {other:?}"),
        }
    }
    assert_eq!(sock.list_rules().expect("list rules after"), before);
}

#[test]
#[ignore = "live: needs root and kernel audit (3.16+ for multicast)"]
fn live_multicast_sees_exec() {
    let (_lock, mut sock, status) = setup("live_multicast_sees_exec");
    let version = kernel_version().expect("kernel version");
    if !multicast_supported(version) {
        missing(
            "live_multicast_sees_exec",
            &format!("kernel {version:?} has no audit multicast (3.16+)"),
        );
    }
    let before = sock.list_rules().expect("list rules before");
    let key = test_key();
    let marker = format!("unique-marker-{}", std::process::id());
    {
        let mut mc = AuditSocket::multicast().expect("multicast socket");
        let rcvbuf = mc.set_receive_buffer(8 << 20).expect("rcvbuf");
        eprintln!("multicast receive buffer {rcvbuf}");
        let _enabled = EnabledGuard::ensure_on(&mut sock, &status);
        let mut added = AddedRules::new();
        let native = Arch::host()[0];
        added.add(RuleData::exec_rule(native, Some(std::process::id()), &key).expect("rule"));
        let frames = exec_and_find_marker(&mut mc, &marker);
        let key_field = format!("key=\"{key}\"");
        // The first matching rule names the record: only ours can when no other rule audits execve.
        let others_audit_execve = before.iter().any(|r| r.watches_execve(native));
        assert!(
            others_audit_execve
                || frames.iter().any(|f| matches!(f,
            Frame::Netlink { msg_type: 1300, payload } if contains(payload, key_field.as_bytes())))
        );
        for f in &frames {
            if let Frame::Netlink { msg_type, payload } = f {
                assert!(
                    payload.starts_with(b"audit("),
                    "type {msg_type}: {payload:?}"
                );
            }
        }
    }
    assert_eq!(sock.list_rules().expect("list rules after"), before);
    assert_eq!(sock.status().expect("status after").enabled, status.enabled);
}

/// Unregisters the test as audit daemon.
struct PidGuard<'a> {
    sock: &'a mut AuditSocket,
}

impl Drop for PidGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.sock.set_pid(0) {
            eprintln!("cleanup: could not unregister as audit daemon: {e}");
        }
    }
}

#[test]
#[ignore = "live: needs root, kernel audit and no audit daemon running"]
fn live_unicast_sees_exec_and_refuses_second_daemon() {
    let (_lock, mut sock, status) = setup("live_unicast");
    if status.pid != 0 {
        missing(
            "live_unicast",
            &format!(
                "needs no registered audit daemon, but pid {} is (stop auditd)",
                status.pid
            ),
        );
    }
    let before = sock.list_rules().expect("list rules before");
    let key = test_key();
    let marker = format!("unique-marker-uni-{}", std::process::id());
    let me = std::process::id();
    {
        let mut daemon = AuditSocket::control().expect("daemon socket");
        let _enabled = EnabledGuard::ensure_on(&mut sock, &status);
        daemon.set_pid(me).expect("register as audit daemon");
        let daemon = PidGuard { sock: &mut daemon };
        if kernel_version().expect("kernel version") >= (4, 11, 0) {
            match sock.set_pid(me) {
                Err(NetlinkError::DaemonRegistered { pid }) => assert_eq!(pid, me),
                other => panic!("second registration: {other:?}"),
            }
        }
        let mut added = AddedRules::new();
        let native = Arch::host()[0];
        added.add(RuleData::exec_rule(native, Some(me), &key).expect("rule"));
        exec_and_find_marker(daemon.sock, &marker);
    }
    let after = sock.status().expect("status after");
    assert_eq!(after.pid, 0);
    assert_eq!(after.enabled, status.enabled);
    assert_eq!(sock.list_rules().expect("list rules after"), before);
}
