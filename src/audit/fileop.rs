//! Events → file changes. A reassembled [`Event`] that is a successful creat, open/openat that
//! created its file, rename/renameat/renameat2, unlink/unlinkat, symlink/symlinkat, link/linkat,
//! chmod/fchmodat or truncate becomes a [`FileEvent`]: who (SYSCALL), where from (CWD) and which
//! names (PATH records, by their `nametype`). The daemon's audit rules record the calls of
//! [`file_syscalls`] while a loaded rule needs file events.
//!
//! Names are logged as the caller passed them. A relative name is joined to the cwd when its
//! directory descriptor was `AT_FDCWD` (or the call has none); otherwise the directory is not in
//! the records and the name stays relative ([`FileEvent::resolved`] is false).

use super::reassemble::Event;
use super::record::{types, Record};
use super::task::{calls_of, lookup, string_field, SyscallFields, SyscallTable, Task};
use crate::source::netlink::Arch;

/// `O_CREAT` (the same on x86, arm and aarch64).
pub const O_CREAT: u32 = 0o100;
/// `AT_FDCWD` as the kernel logs a 32-bit argument.
const AT_FDCWD: u32 = (-100_i32) as u32;

/// What happened to the file, named as Elastic Defend names its file events (`event.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    /// A new name: a created file, a symbolic or hard link.
    Creation,
    /// A name removed.
    Deletion,
    /// A name moved ([`FileEvent::original`] is the old one).
    Rename,
    /// Contents or attributes changed (truncate, chmod).
    Modification,
}

impl FileAction {
    /// `event.action`.
    pub fn action(self) -> &'static str {
        match self {
            FileAction::Creation => "creation",
            FileAction::Deletion => "deletion",
            FileAction::Rename => "rename",
            FileAction::Modification => "modification",
        }
    }

    /// `event.type` (ECS allowed values for the file category).
    pub fn event_type(self) -> &'static str {
        match self {
            FileAction::Creation => "creation",
            FileAction::Deletion => "deletion",
            FileAction::Rename | FileAction::Modification => "change",
        }
    }
}

/// The file system calls this module reads, by the shape of their arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `creat(path, mode)`.
    Creat,
    /// `open(path, flags, mode)`.
    Open,
    /// `openat(dirfd, path, flags, mode)`.
    Openat,
    /// `rename(old, new)`.
    Rename,
    /// `renameat(olddirfd, old, newdirfd, new)` and renameat2.
    Renameat,
    /// `unlink(path)`.
    Unlink,
    /// `unlinkat(dirfd, path, flags)`.
    Unlinkat,
    /// `symlink(target, path)`.
    Symlink,
    /// `symlinkat(target, dirfd, path)`.
    Symlinkat,
    /// `link(old, new)`.
    Link,
    /// `linkat(olddirfd, old, newdirfd, new, flags)`.
    Linkat,
    /// `chmod(path, mode)`, `truncate(path, len)`.
    PathOnly,
    /// `fchmodat(dirfd, path, mode)`.
    Fchmodat,
}

/// AUDIT_ARCH values and their (number, call, name) triples.
#[rustfmt::skip]
const FILE_SYSCALLS: &SyscallTable<Call> = &[
    // x86_64 (x32 numbers are these plus __X32_SYSCALL_BIT).
    (0xc000_003e, &[
        (85, Call::Creat, "creat"), (2, Call::Open, "open"), (257, Call::Openat, "openat"),
        (82, Call::Rename, "rename"), (264, Call::Renameat, "renameat"),
        (316, Call::Renameat, "renameat2"), (87, Call::Unlink, "unlink"),
        (263, Call::Unlinkat, "unlinkat"), (88, Call::Symlink, "symlink"),
        (266, Call::Symlinkat, "symlinkat"), (86, Call::Link, "link"),
        (265, Call::Linkat, "linkat"), (90, Call::PathOnly, "chmod"),
        (268, Call::Fchmodat, "fchmodat"), (452, Call::Fchmodat, "fchmodat2"),
        (76, Call::PathOnly, "truncate"),
    ]),
    // i386
    (0x4000_0003, &[
        (8, Call::Creat, "creat"), (5, Call::Open, "open"), (295, Call::Openat, "openat"),
        (38, Call::Rename, "rename"), (302, Call::Renameat, "renameat"),
        (353, Call::Renameat, "renameat2"), (10, Call::Unlink, "unlink"),
        (301, Call::Unlinkat, "unlinkat"), (83, Call::Symlink, "symlink"),
        (304, Call::Symlinkat, "symlinkat"), (9, Call::Link, "link"),
        (303, Call::Linkat, "linkat"), (15, Call::PathOnly, "chmod"),
        (306, Call::Fchmodat, "fchmodat"), (452, Call::Fchmodat, "fchmodat2"),
        (92, Call::PathOnly, "truncate"), (193, Call::PathOnly, "truncate64"),
    ]),
    // aarch64 has only the *at calls.
    (0xc000_00b7, &[
        (56, Call::Openat, "openat"), (38, Call::Renameat, "renameat"),
        (276, Call::Renameat, "renameat2"), (35, Call::Unlinkat, "unlinkat"),
        (36, Call::Symlinkat, "symlinkat"), (37, Call::Linkat, "linkat"),
        (53, Call::Fchmodat, "fchmodat"), (452, Call::Fchmodat, "fchmodat2"),
        (45, Call::PathOnly, "truncate"),
    ]),
    // arm (EABI)
    (0x4000_0028, &[
        (8, Call::Creat, "creat"), (5, Call::Open, "open"), (322, Call::Openat, "openat"),
        (38, Call::Rename, "rename"), (329, Call::Renameat, "renameat"),
        (382, Call::Renameat, "renameat2"), (10, Call::Unlink, "unlink"),
        (328, Call::Unlinkat, "unlinkat"), (83, Call::Symlink, "symlink"),
        (331, Call::Symlinkat, "symlinkat"), (9, Call::Link, "link"),
        (330, Call::Linkat, "linkat"), (15, Call::PathOnly, "chmod"),
        (333, Call::Fchmodat, "fchmodat"), (452, Call::Fchmodat, "fchmodat2"),
        (92, Call::PathOnly, "truncate"), (193, Call::PathOnly, "truncate64"),
    ]),
];

/// The name of file syscall `nr` of `arch`, if it is one (for describing rules).
pub fn syscall_name(arch: Arch, nr: u32) -> Option<&'static str> {
    lookup(FILE_SYSCALLS, arch.audit_arch(), nr).map(|(_, name)| name)
}

/// The file calls of `arch`, as its audit rules record them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCalls {
    /// Calls that always change a name or a file.
    pub always: Vec<u32>,
    /// Open calls, each with the index of its flags argument: only an open with [`O_CREAT`]
    /// makes a file.
    pub opens: Vec<(u32, u32)>,
}

/// The file calls of `arch` (none for an ABI this module does not know).
pub fn file_syscalls(arch: Arch) -> FileCalls {
    let mut calls = FileCalls::default();
    for (nr, call, _) in calls_of(FILE_SYSCALLS, arch.audit_arch()) {
        match call {
            Call::Open => calls.opens.push((*nr, 1)),
            Call::Openat => calls.opens.push((*nr, 2)),
            _ => calls.always.push(*nr),
        }
    }
    calls
}

/// A successful change of a file's name, contents or attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEvent {
    /// Who made the call, the event's identity and the cwd (`ev.task.pid`).
    pub task: Task,
    /// What happened.
    pub action: FileAction,
    /// The system call's name.
    pub call: &'static str,
    /// The file's path: absolute when [`FileEvent::resolved`], else the name as passed.
    pub path: Vec<u8>,
    /// For a rename, the old path (resolved like `path`).
    pub original: Option<Vec<u8>>,
    /// For a symbolic link, its text; for a hard link, the existing file's path.
    pub target: Option<Vec<u8>>,
    /// The path could be made absolute (the name was, or its directory was the cwd).
    pub resolved: bool,
}

/// Builds the file change of `event`: `None` when it is no successful file call of a known
/// architecture, or when its records do not name the file (an open that created nothing).
pub fn build(event: &Event) -> Option<FileEvent> {
    let sc = event.records.iter().find(|r| r.rtype == types::SYSCALL)?;
    let f = SyscallFields::scan(sc);
    let (call, name) = lookup(FILE_SYSCALLS, f.arch()?, f.syscall()?)?;
    if f.success != Some(b"yes") {
        return None;
    }
    let task = Task::from_syscall(event, &f).ok()?;
    let item = |nametype: &[u8]| -> Option<Vec<u8>> {
        event
            .records
            .iter()
            .filter(|r| r.rtype == types::PATH)
            .find(|r| r.field(b"nametype") == Some(nametype))
            .and_then(|r| string_field(r, b"name"))
    };
    // Which argument holds each name's directory descriptor (None: the cwd).
    let arg_dir = |i: usize| dirfd(sc, i);
    let (action, name_type, dir, original, target) = match call {
        Call::Creat | Call::Open => (FileAction::Creation, "CREATE", None, None, None),
        Call::Openat => (FileAction::Creation, "CREATE", arg_dir(0), None, None),
        Call::Rename => (
            FileAction::Rename,
            "CREATE",
            None,
            Some((item(b"DELETE")?, None)),
            None,
        ),
        Call::Renameat => (
            FileAction::Rename,
            "CREATE",
            arg_dir(2),
            Some((item(b"DELETE")?, arg_dir(0))),
            None,
        ),
        Call::Unlink => (FileAction::Deletion, "DELETE", None, None, None),
        Call::Unlinkat => (FileAction::Deletion, "DELETE", arg_dir(0), None, None),
        Call::Symlink => (FileAction::Creation, "CREATE", None, None, item(b"UNKNOWN")),
        Call::Symlinkat => (
            FileAction::Creation,
            "CREATE",
            arg_dir(1),
            None,
            item(b"UNKNOWN"),
        ),
        Call::Link | Call::Linkat => {
            let old_dir = if call == Call::Linkat {
                arg_dir(0)
            } else {
                None
            };
            let old = item(b"NORMAL").map(|n| resolve(&n, old_dir, task.cwd.as_deref()).0);
            let dir = if call == Call::Linkat {
                arg_dir(2)
            } else {
                None
            };
            (FileAction::Creation, "CREATE", dir, None, old)
        }
        Call::PathOnly => (FileAction::Modification, "NORMAL", None, None, None),
        Call::Fchmodat => (FileAction::Modification, "NORMAL", arg_dir(0), None, None),
    };
    let raw = item(name_type.as_bytes())?;
    let cwd = task.cwd.as_deref();
    let (path, resolved) = resolve(&raw, dir, cwd);
    let original = original.map(|(old, old_dir)| resolve(&old, old_dir, cwd).0);
    Some(FileEvent {
        task,
        action,
        call: name,
        path,
        original,
        target,
        resolved,
    })
}

/// Where a relative name of argument `i`'s directory descriptor resolves: `None` when the
/// descriptor is AT_FDCWD (the cwd), `Some(())` when it is another directory.
fn dirfd(sc: &Record, i: usize) -> Option<()> {
    let key = [b'a', b'0' + i as u8];
    let value = sc
        .field(&key)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| u64::from_str_radix(v, 16).ok());
    match value {
        Some(v) if v as u32 == AT_FDCWD => None,
        _ => Some(()),
    }
}

/// `name` made absolute against `cwd` when it is relative to the cwd (`dir` is `None`), with
/// `.` and `..` removed lexically; whether that succeeded.
fn resolve(name: &[u8], dir: Option<()>, cwd: Option<&[u8]>) -> (Vec<u8>, bool) {
    if name.first() == Some(&b'/') {
        return (normalize(name), true);
    }
    match (dir, cwd) {
        (None, Some(cwd)) if cwd.first() == Some(&b'/') => {
            let mut joined = cwd.to_vec();
            joined.push(b'/');
            joined.extend_from_slice(name);
            (normalize(&joined), true)
        }
        _ => (name.to_vec(), false),
    }
}

/// An absolute path without empty, `.` and `..` components (`..` of `/` is `/`).
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for p in &parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// `file.name`: the last component of a path.
pub fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

/// `file.extension`: what follows the last dot of the name, unless the name starts with it or
/// ends with it.
pub fn file_extension(path: &[u8]) -> Option<&[u8]> {
    let name = file_name(path);
    let dot = name.iter().rposition(|&b| b == b'.')?;
    (dot > 0 && dot + 1 < name.len()).then(|| &name[dot + 1..])
}

/// File and network calls captured from a real kernel (see tests/data/filenet/README.md).
#[cfg(test)]
pub(crate) const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/filenet/captured.audit.log"
);

#[cfg(test)]
mod tests {
    use super::super::reassemble::test_support::read_log;
    use super::super::reassemble::EventEnd;
    use super::super::record::AuditTime;
    use super::*;

    fn event_of(serial: u32) -> Event {
        let records: Vec<Record> = read_log(CAPTURE)
            .into_iter()
            .filter(|r| r.serial == serial)
            .collect();
        assert!(!records.is_empty(), "serial {serial} not in {CAPTURE}");
        Event {
            node: None,
            serial,
            time: records.first().map_or(AuditTime::default(), |r| r.time),
            records,
            end: EventEnd::Eoe,
            truncated: false,
        }
    }

    fn file(serial: u32) -> FileEvent {
        build(&event_of(serial)).unwrap_or_else(|| panic!("serial {serial}: no file event"))
    }

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap_or("<invalid>")
    }

    #[test]
    fn captured_calls_become_file_events() {
        type Case<'a> = (
            u32,
            &'a str,
            FileAction,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            // python open('a.txt','w') in /tmp/filenet: openat(AT_FDCWD, "a.txt", O_CREAT|..)
            (
                332102,
                "openat",
                FileAction::Creation,
                "/tmp/filenet/a.txt",
                None,
                None,
            ),
            (
                332103,
                "openat",
                FileAction::Creation,
                "/tmp/filenet/b.sh",
                None,
                None,
            ),
            (
                332104,
                "rename",
                FileAction::Rename,
                "/tmp/filenet/c.txt",
                Some("/tmp/filenet/a.txt"),
                None,
            ),
            (
                332105,
                "chmod",
                FileAction::Modification,
                "/tmp/filenet/c.txt",
                None,
                None,
            ),
            (
                332106,
                "truncate",
                FileAction::Modification,
                "/tmp/filenet/c.txt",
                None,
                None,
            ),
            (
                332107,
                "symlink",
                FileAction::Creation,
                "/tmp/filenet/lnk",
                None,
                Some("/usr/bin/id"),
            ),
            (
                332108,
                "link",
                FileAction::Creation,
                "/tmp/filenet/hard",
                None,
                Some("/tmp/filenet/c.txt"),
            ),
            (
                332109,
                "unlink",
                FileAction::Deletion,
                "/tmp/filenet/hard",
                None,
                None,
            ),
            (
                332111,
                "unlink",
                FileAction::Deletion,
                "/tmp/filenet/b.sh",
                None,
                None,
            ),
            // coreutils: touch, mv (renameat2), chmod (fchmodat), ln -s (symlinkat), rm (unlinkat)
            (
                332136,
                "openat",
                FileAction::Creation,
                "/tmp/filenet/t1",
                None,
                None,
            ),
            (
                332137,
                "renameat2",
                FileAction::Rename,
                "/tmp/filenet/t2",
                Some("/tmp/filenet/t1"),
                None,
            ),
            (
                332138,
                "fchmodat",
                FileAction::Modification,
                "/tmp/filenet/t2",
                None,
                None,
            ),
            (
                332140,
                "symlinkat",
                FileAction::Creation,
                "/tmp/filenet/s2",
                None,
                Some("t2"),
            ),
            (
                332141,
                "unlinkat",
                FileAction::Deletion,
                "/tmp/filenet/s2",
                None,
                None,
            ),
        ];
        for &(serial, call, action, path, original, target) in cases {
            let ev = file(serial);
            assert_eq!(ev.call, call, "serial {serial}");
            assert_eq!(ev.action, action, "serial {serial}");
            assert_eq!(s(&ev.path), path, "serial {serial}");
            assert_eq!(ev.original.as_deref().map(s), original, "serial {serial}");
            assert_eq!(ev.target.as_deref().map(s), target, "serial {serial}");
            assert!(ev.resolved);
        }
        assert_eq!(file(332136).task.comm.as_deref(), Some(&b"touch"[..]));
        assert_eq!(
            file(332102).task.exe.as_deref(),
            Some(&b"/usr/bin/python3.11"[..])
        );
    }

    #[test]
    fn an_open_that_created_nothing_is_no_event() {
        // truncate(1) opens t2 with O_CREAT, but t2 exists: the PATH item is NORMAL.
        assert_eq!(build(&event_of(332139)), None);
        // socket calls are not file calls.
        assert_eq!(build(&event_of(332146)), None);
    }

    #[test]
    fn directory_descriptors_other_than_the_cwd_leave_the_name_relative() {
        let mut ev = event_of(332141);
        let sc = ev.records.iter_mut().find(|r| r.rtype == types::SYSCALL);
        let sc = sc.expect("syscall record");
        let body = String::from_utf8_lossy(&sc.body).replace("a0=ffffff9c", "a0=3");
        sc.body = body.into_bytes();
        let ev = build(&ev).expect("event");
        assert_eq!((s(&ev.path), ev.resolved), ("s2", false));
    }

    #[test]
    fn names_and_extensions() {
        assert_eq!(normalize(b"/a/./b//../c"), b"/a/c");
        assert_eq!(normalize(b"/../.."), b"/");
        assert_eq!(
            resolve(b"../x", None, Some(b"/tmp/d")),
            (b"/tmp/x".to_vec(), true)
        );
        assert_eq!(file_name(b"/etc/cron.d/job.sh"), b"job.sh");
        assert_eq!(file_extension(b"/etc/cron.d/job.sh"), Some(&b"sh"[..]));
        assert_eq!(file_extension(b"/root/.bashrc"), None);
        assert_eq!(file_extension(b"/tmp/x."), None);
        assert_eq!(file_extension(b"/tmp/a.b/c"), None);
    }
}
