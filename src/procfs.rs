//! The live process table's view of `/proc`: what a pid runs (`exe`), how it was invoked
//! (`cmdline`) and its kernel name (`comm`), for parents the audit stream never showed exec.
//!
//! Owns the reading of those files and nothing else: [`ProcFs`] implements the
//! [`ProcFallback`] seam of [`crate::proc`], seeds a table at start and probes liveness for its
//! expiry. Every read is bounded (a process may carry megabytes of argv) and every failure is an
//! answer, not a panic: processes exit between two reads, kernel threads have no `exe`, and
//! other users' `exe` links may be unreadable. The root is a field so tests can point it at a
//! fake tree.

use crate::proc::{arg_cost, basename, text, ProcFallback, ProcessInfo, ProcessTable};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the kernel appends to `/proc/PID/exe` when the executable was unlinked after exec.
const DELETED_SUFFIX: &str = " (deleted)";

/// Most bytes read from `/proc/PID/comm` (the kernel's TASK_COMM_LEN is 16, newline included).
const COMM_MAX_BYTES: u64 = 64;

/// A `/proc` file system, at `/proc` or at a test's fake root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::new()
    }
}

impl ProcFs {
    /// The real `/proc`.
    pub fn new() -> Self {
        ProcFs::at("/proc")
    }

    /// A `/proc` laid out under `root` (tests build one in a temporary directory).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    /// The directory read as `/proc`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True while `pid` has a `/proc` entry. Zombies count as alive until reaped: their children
    /// may still name them as parent.
    pub fn is_alive(&self, pid: u32) -> bool {
        fs::symlink_metadata(self.dir(pid)).is_ok()
    }

    /// Fills `table` from every process in `/proc` that it does not already know, stopping at
    /// the table's capacity. Returns how many processes were added. An unreadable `/proc` adds
    /// none: the table then learns from exec events and lookups alone.
    pub fn seed(&self, table: &mut ProcessTable) -> usize {
        let Ok(dir) = fs::read_dir(&self.root) else {
            return 0;
        };
        let mut added = 0;
        for item in dir {
            if table.len() >= table.capacity() {
                break;
            }
            let Ok(item) = item else { continue };
            let Some(pid) = parse_pid(item.file_name().as_bytes()) else {
                continue;
            };
            if table.contains(pid) {
                continue;
            }
            if let Some(info) = self.lookup(pid) {
                table.exec(pid, info);
                added += 1;
            }
        }
        added
    }

    /// When `pid` started, in clock ticks after boot (field 22 of `/proc/PID/stat`): with the
    /// pid, it names one process even across pid reuse.
    pub fn start_time(&self, pid: u32) -> Option<u64> {
        let stat = read_bounded(&self.dir(pid).join("stat"), 4096)?;
        // The name (field 2) is in parentheses and may hold anything: count from its end.
        let after = stat.get(stat.iter().rposition(|&b| b == b')')? + 1..)?;
        let field = after
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .nth(19)?;
        std::str::from_utf8(field).ok()?.parse().ok()
    }

    /// Whether `pid` is a running auditsentry (its task name), started at `start_time` when
    /// that is given.
    pub fn is_agent(&self, pid: u32, start_time: Option<u64>) -> bool {
        let dir = self.dir(pid);
        self.comm(&dir).as_deref() == Some("auditsentry")
            && start_time.is_none_or(|t| self.start_time(pid) == Some(t))
    }

    fn dir(&self, pid: u32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    /// `exe` as text, without the kernel's " (deleted)" mark.
    fn executable(&self, dir: &Path) -> Option<String> {
        let target = fs::read_link(dir.join("exe")).ok()?;
        let mut exe = text(target.as_os_str().as_bytes());
        if exe.ends_with(DELETED_SUFFIX) {
            exe.truncate(exe.len() - DELETED_SUFFIX.len());
        }
        (!exe.is_empty()).then_some(exe)
    }

    /// `cmdline` as argv: whole arguments only, their costs ([`arg_cost`]) within
    /// [`ProcessTable::MAX_ARGS_BYTES`] (so a command line of empty arguments stays small too).
    fn args(&self, dir: &Path) -> Option<Vec<String>> {
        let limit = ProcessTable::MAX_ARGS_BYTES;
        // One byte more than kept tells a cut command line from one that ends exactly there.
        let bytes = read_bounded(&dir.join("cmdline"), limit as u64 + 1)?;
        if bytes.is_empty() {
            // Kernel threads and zombies: no argv at all.
            return Some(Vec::new());
        }
        let cut = bytes.len() > limit;
        let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
        // The piece after the last NUL is empty for a whole command line, partial for a cut one.
        if cut || bytes.last() == Some(&0) {
            pieces.pop();
        }
        let mut cost = 0usize;
        let kept = pieces.into_iter().take_while(|piece| {
            cost = cost.saturating_add(arg_cost(piece.len()));
            cost <= limit
        });
        Some(kept.map(text).collect())
    }

    /// `comm` without its newline: the kernel's 15-byte name of the task.
    fn comm(&self, dir: &Path) -> Option<String> {
        let bytes = read_bounded(&dir.join("comm"), COMM_MAX_BYTES)?;
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        (!bytes.is_empty()).then(|| text(bytes))
    }
}

impl ProcFallback for ProcFs {
    /// Reads `exe`, `cmdline` and (when `exe` is unreadable) `comm` of `pid`. `None` when none
    /// could be read — the process is gone; a process that exits between reads gives what was
    /// read before. A process caught in the middle of execve may show its new `exe` with no args
    /// yet (the kernel sets argv up last); its own exec event, close behind, corrects the table.
    fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
        let dir = self.dir(pid);
        let executable = self.executable(&dir);
        let args = self.args(&dir);
        let name = match &executable {
            Some(exe) => Some(basename(exe).to_string()),
            None => self.comm(&dir),
        };
        if executable.is_none() && name.is_none() && args.is_none() {
            return None;
        }
        Some(ProcessInfo::new(
            executable.as_deref(),
            name.as_deref(),
            args.unwrap_or_default(),
        ))
    }
}

/// A `/proc` directory name as a pid: decimal digits only (not `self`, not `+1`).
fn parse_pid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// At most `limit` bytes of the file at `path`.
fn read_bounded(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)
        .ok()?
        .take(limit)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::NoFallback;
    use crate::proc::ARG_SLOT_COST;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    /// Builds `root/PID` with the given `exe` link target, `cmdline` and `comm` (each optional).
    fn fake(root: &Path, pid: u32, exe: Option<&str>, cmdline: Option<&[u8]>, comm: Option<&str>) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        if let Some(exe) = exe {
            symlink(exe, dir.join("exe")).unwrap();
        }
        if let Some(cmdline) = cmdline {
            fs::write(dir.join("cmdline"), cmdline).unwrap();
        }
        if let Some(comm) = comm {
            fs::write(dir.join("comm"), comm).unwrap();
        }
    }

    #[test]
    fn reads_exe_cmdline_and_names_by_exe() {
        let tmp = tempfile::tempdir().unwrap();
        fake(
            tmp.path(),
            100,
            Some("/usr/bin/busybox"),
            Some(b"ln\0-s\0\0/tmp/a\xffb\0"),
            Some("busybox\n"),
        );
        let info = ProcFs::at(tmp.path()).lookup(100);
        assert_eq!(
            info,
            Some(ProcessInfo::new(
                Some("/usr/bin/busybox"),
                Some("busybox"),
                ["ln", "-s", "", "/tmp/a\u{fffd}b"],
            ))
        );
    }

    #[test]
    fn deleted_exe_loses_the_mark() {
        let tmp = tempfile::tempdir().unwrap();
        fake(
            tmp.path(),
            101,
            Some("/tmp/dropper (deleted)"),
            Some(b"./dropper\0"),
            Some("dropper\n"),
        );
        let info = ProcFs::at(tmp.path()).lookup(101).unwrap();
        assert_eq!(info.executable(), Some("/tmp/dropper"));
        assert_eq!(info.name(), Some("dropper"));
        assert_eq!(info.args().collect::<Vec<_>>(), ["./dropper"]);
    }

    #[test]
    fn unreadable_exe_falls_back_to_comm() {
        let tmp = tempfile::tempdir().unwrap();
        fake(tmp.path(), 2, None, Some(b""), Some("kthreadd\n"));
        let info = ProcFs::at(tmp.path()).lookup(2);
        assert_eq!(
            info,
            Some(ProcessInfo::new::<&str>(None, Some("kthreadd"), []))
        );
    }

    #[test]
    fn missing_process_is_none_and_dead() {
        let tmp = tempfile::tempdir().unwrap();
        fake(tmp.path(), 5, None, None, None);
        let fs = ProcFs::at(tmp.path());
        assert_eq!(fs.lookup(5), None, "a directory emptied by an exit");
        assert_eq!(fs.lookup(6), None);
        assert!(fs.is_alive(5));
        assert!(!fs.is_alive(6));
    }

    #[test]
    fn rewritten_cmdline_without_final_nul_is_kept_whole() {
        let tmp = tempfile::tempdir().unwrap();
        fake(
            tmp.path(),
            7,
            Some("/usr/sbin/sshd"),
            Some(b"sshd: root@pts/0"),
            None,
        );
        let info = ProcFs::at(tmp.path()).lookup(7).unwrap();
        assert_eq!(info.args().collect::<Vec<_>>(), ["sshd: root@pts/0"]);
    }

    #[test]
    fn huge_cmdline_is_bounded_to_whole_args() {
        let tmp = tempfile::tempdir().unwrap();
        let arg = "x".repeat(10_000);
        let mut cmdline = Vec::new();
        for _ in 0..300 {
            cmdline.extend_from_slice(arg.as_bytes());
            cmdline.push(0);
        }
        fake(tmp.path(), 8, Some("/usr/bin/xargs"), Some(&cmdline), None);
        let info = ProcFs::at(tmp.path()).lookup(8).unwrap();
        // 3 whole args (30 003 bytes) fit in 32 KiB; the 4th is cut mid-way and dropped.
        assert_eq!(info.args_len(), 3);
        assert!(info.args().all(|a| *a == arg));
    }

    #[test]
    fn cmdline_exactly_at_the_limit_is_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let exact = ProcessTable::MAX_ARGS_BYTES - ARG_SLOT_COST;
        let mut cmdline = vec![b'y'; exact];
        cmdline.push(0);
        cmdline.extend_from_slice(b"z\0");
        fake(tmp.path(), 9, Some("/bin/y"), Some(&cmdline), None);
        let info = ProcFs::at(tmp.path()).lookup(9).unwrap();
        assert_eq!(info.args_len(), 1);
        assert_eq!(info.args().next().map(str::len), Some(exact));
    }

    #[test]
    fn cmdline_of_empty_arguments_is_charged_a_slot_each() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmdline = b"perl\0-e\0sleep 60\0".to_vec();
        cmdline.extend(std::iter::repeat_n(0u8, 650_000));
        fake(tmp.path(), 10, Some("/usr/bin/perl"), Some(&cmdline), None);
        let info = ProcFs::at(tmp.path()).lookup(10).unwrap();
        // 14 bytes in the first three; as many arguments as 32 KiB of charges allow.
        assert_eq!(info.args_len(), 1023);
        assert_eq!(info.args_cost(), 14 + 1023 * ARG_SLOT_COST);
        assert_eq!(
            info.args().take(4).collect::<Vec<_>>(),
            ["perl", "-e", "sleep 60", ""]
        );
    }

    #[test]
    fn seed_reads_numeric_dirs_up_to_capacity() {
        let tmp = tempfile::tempdir().unwrap();
        fake(
            tmp.path(),
            1,
            Some("/sbin/init"),
            Some(b"/sbin/init\0"),
            None,
        );
        fake(
            tmp.path(),
            20,
            Some("/usr/bin/bash"),
            Some(b"-bash\0"),
            None,
        );
        fake(tmp.path(), 30, Some("/usr/bin/vim"), Some(b"vim\0"), None);
        fs::create_dir_all(tmp.path().join("sys")).unwrap();
        symlink("20", tmp.path().join("self")).unwrap();
        fs::write(tmp.path().join("uptime"), "1.0 1.0\n").unwrap();
        let procfs = ProcFs::at(tmp.path());

        let mut table = ProcessTable::new(10, Box::new(NoFallback));
        let i = procfs.lookup(20).unwrap();
        let args = ["bash", "-c", "exact argv from audit"];
        table.exec(20, ProcessInfo::new(i.executable(), i.name(), args));
        assert_eq!(procfs.seed(&mut table), 2);
        let mut pids: Vec<u32> = table.pids().collect();
        pids.sort_unstable();
        assert_eq!(pids, vec![1, 20, 30]);
        assert_eq!(
            table.get(20).map(|i| i.args_len()),
            Some(3),
            "seed keeps what exec events told"
        );
        assert_eq!(
            table.get(1).and_then(|i| i.name().map(str::to_string)),
            Some("init".to_string())
        );

        let mut small = ProcessTable::new(2, Box::new(NoFallback));
        assert_eq!(procfs.seed(&mut small), 2);
        assert_eq!(small.len(), 2);

        let mut none = ProcessTable::new(2, Box::new(NoFallback));
        assert_eq!(ProcFs::at(tmp.path().join("absent")).seed(&mut none), 0);
    }

    #[test]
    fn start_time_counts_fields_after_the_name() {
        let tmp = tempfile::tempdir().unwrap();
        fake(tmp.path(), 40, None, None, Some("auditsentry\n"));
        // A name with spaces and a parenthesis, as a process may choose.
        let stat = "40 (a) b c) S 1 40 40 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 8123456 1000 1 18446744073709551615\n";
        fs::write(tmp.path().join("40/stat"), stat).unwrap();
        let procfs = ProcFs::at(tmp.path());
        assert_eq!(procfs.start_time(40), Some(8_123_456));
        assert!(procfs.is_agent(40, None));
        assert!(procfs.is_agent(40, Some(8_123_456)));
        assert!(!procfs.is_agent(40, Some(7)), "the pid was reused");
        assert!(!procfs.is_agent(41, None));
        let me = ProcFs::new();
        assert!(me.start_time(std::process::id()).is_some());
        assert!(
            !me.is_agent(std::process::id(), None),
            "a test binary is no agent"
        );
    }

    #[test]
    fn parse_pid_takes_digits_only() {
        assert_eq!(parse_pid(b"1234"), Some(1234));
        assert_eq!(parse_pid(b"self"), None);
        assert_eq!(parse_pid(b"+1"), None);
        assert_eq!(parse_pid(b""), None);
        assert_eq!(parse_pid(b"99999999999"), None);
    }

    #[test]
    fn real_proc_knows_this_test() {
        let info = ProcFs::new().lookup(std::process::id()).unwrap();
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        assert_eq!(info.executable(), Some(exe));
        assert_eq!(info.name(), Some(basename(exe)));
        let args: Vec<String> = std::env::args_os().map(|a| text(a.as_bytes())).collect();
        let mut expected = ProcessInfo::new(Some(exe), Some(basename(exe)), args);
        expected.cut_args();
        assert_eq!(info, expected);
    }

    #[test]
    fn real_proc_knows_pid_1() {
        let procfs = ProcFs::new();
        let info = procfs.lookup(1).unwrap();
        assert!(procfs.is_alive(1));
        // Inside some containers even root may not read pid 1's exe: then comm names it.
        match fs::read_link("/proc/1/exe") {
            Ok(exe) => {
                let exe = text(exe.as_os_str().as_bytes());
                let exe = exe.strip_suffix(DELETED_SUFFIX).unwrap_or(&exe);
                assert_eq!(info.executable(), Some(exe));
                assert_eq!(info.name(), Some(basename(exe)));
            }
            Err(_) => {
                let comm = fs::read_to_string("/proc/1/comm").unwrap();
                assert_eq!(info.executable(), None);
                assert_eq!(info.name(), Some(comm.trim_end_matches('\n')));
            }
        }
    }

    #[test]
    fn real_child_is_read_then_expires_after_it_dies() {
        let procfs = ProcFs::new();
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let pid = child.id();
        // spawn() returns once the child is past the point of no return in execve, which can be
        // before the kernel has set up its argv: until then cmdline reads empty.
        let mut info = procfs.lookup(pid).unwrap();
        for _ in 0..200 {
            if info.args_len() > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            info = procfs.lookup(pid).unwrap();
        }
        assert_eq!(info.name(), Some("sleep"));
        assert_eq!(info.args().collect::<Vec<_>>(), ["sleep", "5"]);
        assert!(procfs.is_alive(pid));

        let mut table = ProcessTable::new(16, Box::new(procfs.clone()));
        assert_eq!(table.get(pid).as_deref(), Some(&info));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!procfs.is_alive(pid));
        assert_eq!(procfs.lookup(pid), None);

        let alive = |p: u32| procfs.is_alive(p);
        for pass in 1..=ProcessTable::EXPIRY_GRACE_PASSES {
            assert_eq!(table.expire(&alive, 16), 0, "pass {pass}: within the grace");
            assert_eq!(
                table.get(pid).as_deref(),
                Some(&info),
                "a dead parent still resolves"
            );
        }
        assert_eq!(table.expire(&alive, 16), 1);
        assert!(!table.contains(pid));
        assert_eq!(table.get(pid), None);
    }
}
