//! Events → link creations. A reassembled [`Event`] that is a successful symlink, symlinkat,
//! link or linkat becomes a [`LinkEvent`]: who made the link (SYSCALL), from where (CWD), what it
//! points to and where it was made (PATH records). This is the syscall sensor of the path-aware
//! detector: it sees links made by any program, not only by ln.
//!
//! The kernel logs the names as the caller passed them. A relative link name is relative to the
//! cwd only when the directory file descriptor was `AT_FDCWD`; otherwise the directory is not in
//! the records (the PARENT item then shows the cwd, which is wrong), so [`LinkEvent::link_dir_known`]
//! says whether the name can be resolved. The daemon's audit rules record the calls of
//! [`link_syscalls`].

use thiserror::Error;

use super::reassemble::Event;
use super::record::types;
use super::task::{string_field, SyscallFields, Task};
use crate::source::netlink::Arch;

/// Which link system call made the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkCall {
    /// `symlink(target, linkpath)`.
    Symlink,
    /// `symlinkat(target, newdirfd, linkpath)`.
    Symlinkat,
    /// `link(oldpath, newpath)`.
    Link,
    /// `linkat(olddirfd, oldpath, newdirfd, newpath, flags)`.
    Linkat,
}

impl LinkCall {
    /// The system call's name (ECS `event.action`).
    pub fn name(self) -> &'static str {
        match self {
            LinkCall::Symlink => "symlink",
            LinkCall::Symlinkat => "symlinkat",
            LinkCall::Link => "link",
            LinkCall::Linkat => "linkat",
        }
    }

    /// Whether the call makes a symbolic (not a hard) link.
    pub fn is_symbolic(self) -> bool {
        matches!(self, LinkCall::Symlink | LinkCall::Symlinkat)
    }
}

/// AUDIT_ARCH values and their (number, call) pairs.
const LINK_SYSCALLS: &[(u32, &[(u32, LinkCall)])] = &[
    // x86_64, and x32 with __X32_SYSCALL_BIT (same numbers for these calls).
    (
        0xc000_003e,
        &[
            (86, LinkCall::Link),
            (88, LinkCall::Symlink),
            (265, LinkCall::Linkat),
            (266, LinkCall::Symlinkat),
            (0x4000_0000 | 86, LinkCall::Link),
            (0x4000_0000 | 88, LinkCall::Symlink),
            (0x4000_0000 | 265, LinkCall::Linkat),
            (0x4000_0000 | 266, LinkCall::Symlinkat),
        ],
    ),
    // i386
    (
        0x4000_0003,
        &[
            (9, LinkCall::Link),
            (83, LinkCall::Symlink),
            (303, LinkCall::Linkat),
            (304, LinkCall::Symlinkat),
        ],
    ),
    // aarch64 has only the *at calls.
    (
        0xc000_00b7,
        &[(36, LinkCall::Symlinkat), (37, LinkCall::Linkat)],
    ),
    // arm (EABI)
    (
        0x4000_0028,
        &[
            (9, LinkCall::Link),
            (83, LinkCall::Symlink),
            (330, LinkCall::Linkat),
            (331, LinkCall::Symlinkat),
        ],
    ),
];

/// The link calls of `arch` (no x32 numbers: a rule's mask holds numbers below 2048).
pub fn link_syscalls(arch: Arch) -> Vec<u32> {
    let calls = LINK_SYSCALLS
        .iter()
        .find(|(a, _)| *a == arch.audit_arch())
        .map_or(&[][..], |(_, calls)| *calls);
    calls
        .iter()
        .map(|(nr, _)| *nr)
        .filter(|nr| *nr < 0x4000_0000)
        .collect()
}

/// The name of link syscall `nr` of `arch`, if it is one.
pub fn syscall_name(arch: Arch, nr: u32) -> Option<&'static str> {
    LINK_SYSCALLS
        .iter()
        .find(|(a, _)| *a == arch.audit_arch())
        .and_then(|(_, calls)| calls.iter().find(|(n, _)| *n == nr))
        .map(|(_, call)| call.name())
}

/// A successful link creation, with the names as the kernel logged them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// Who made the link, the event's identity, and the cwd (`ev.task.pid`).
    pub task: Task,
    /// Which call made the link.
    pub call: LinkCall,
    /// What the link points to: the symlink's text (PATH nametype=UNKNOWN) or, for a hard link,
    /// the existing file's name (PATH nametype=NORMAL).
    pub target: Vec<u8>,
    /// The new link's name (PATH nametype=CREATE), as passed.
    pub link: Vec<u8>,
    /// A relative [`LinkEvent::link`] is relative to the cwd (its dirfd was AT_FDCWD or the call
    /// has none); false when it is relative to a directory descriptor the records do not name.
    pub link_dir_known: bool,
    /// For a hard link: a relative [`LinkEvent::target`] is relative to the cwd.
    pub target_dir_known: bool,
}

/// A successful link call whose records do not say what was linked; counted, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    /// No PATH record with the link's name (nametype=CREATE).
    #[error("serial {serial}: {call} without a CREATE PATH record")]
    MissingLink {
        /// Event serial.
        serial: u32,
        /// The call's name.
        call: &'static str,
    },
    /// No PATH record with the link's target (UNKNOWN for symlinks, NORMAL for hard links).
    #[error("serial {serial}: {call} without a PATH record for the target")]
    MissingTarget {
        /// Event serial.
        serial: u32,
        /// The call's name.
        call: &'static str,
    },
    /// pid or ppid missing or not a number.
    #[error("serial {serial}: SYSCALL field {field} is missing or invalid")]
    BadField {
        /// Event serial.
        serial: u32,
        /// Field name.
        field: &'static str,
    },
}

/// Builds the link creation of `event`: `Ok(None)` when the event is not a successful link call
/// of a known architecture, `Err` when it is one but its PATH records are missing.
pub fn build(event: &Event) -> Result<Option<LinkEvent>, LinkError> {
    let serial = event.serial;
    let Some(sc) = event.records.iter().find(|r| r.rtype == types::SYSCALL) else {
        return Ok(None);
    };
    let f = SyscallFields::scan(sc);
    let Some(nr) = f.syscall() else {
        return Ok(None);
    };
    let call = f
        .arch()
        .and_then(|a| LINK_SYSCALLS.iter().find(|(x, _)| *x == a))
        .and_then(|(_, calls)| calls.iter().find(|(n, _)| *n == nr))
        .map(|(_, c)| *c);
    let Some(call) = call else {
        return Ok(None);
    };
    if f.success != Some(b"yes") {
        return Ok(None);
    }
    let task =
        Task::from_syscall(event, &f).map_err(|field| LinkError::BadField { serial, field })?;

    let mut link = None;
    let mut target = None;
    let target_type: &[u8] = if call.is_symbolic() {
        b"UNKNOWN"
    } else {
        b"NORMAL"
    };
    for rec in event.records.iter().filter(|r| r.rtype == types::PATH) {
        let nametype = rec.field(b"nametype");
        if nametype == Some(b"CREATE") && link.is_none() {
            link = string_field(rec, b"name");
        } else if nametype == Some(target_type) && target.is_none() {
            target = string_field(rec, b"name");
        }
    }
    let name = call.name();
    let link = link.ok_or(LinkError::MissingLink { serial, call: name })?;
    let target = target.ok_or(LinkError::MissingTarget { serial, call: name })?;
    // Directory descriptors: symlinkat(target, newdirfd, ..) → a1; linkat(olddirfd, .., newdirfd, ..)
    // → a0 and a2. The plain calls resolve against the cwd.
    let (link_dir_known, target_dir_known) = match call {
        LinkCall::Symlink | LinkCall::Link => (true, true),
        LinkCall::Symlinkat => (is_at_fdcwd(sc.field(b"a1")), true),
        LinkCall::Linkat => (is_at_fdcwd(sc.field(b"a2")), is_at_fdcwd(sc.field(b"a0"))),
    };

    Ok(Some(LinkEvent {
        task,
        call,
        target,
        link,
        link_dir_known,
        target_dir_known,
    }))
}

/// Whether a hex syscall argument is AT_FDCWD (-100), as a 32-bit or a sign-extended 64-bit value.
fn is_at_fdcwd(raw: Option<&[u8]>) -> bool {
    raw.and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .is_some_and(|v| v as u32 == (-100_i32) as u32)
}

#[cfg(test)]
mod tests {
    use super::super::reassemble::test_support::{rec, records_of, SAMPLE};
    use super::super::reassemble::EventEnd;
    use super::super::record::{AuditTime, Record};
    use super::*;

    fn event(records: Vec<Record>) -> Event {
        Event {
            node: None,
            serial: records.first().map_or(0, |r| r.serial),
            time: records.first().map_or(AuditTime::default(), |r| r.time),
            records,
            end: EventEnd::Eoe,
            truncated: false,
        }
    }

    /// The link of `serial` in the repository's sample capture, if it is one.
    fn sample(serial: u32) -> Option<LinkEvent> {
        let recs = records_of(SAMPLE, serial);
        assert!(!recs.is_empty(), "serial {serial} not in {SAMPLE}");
        build(&event(recs)).unwrap()
    }

    #[test]
    fn python_symlink_from_the_sample() {
        // sc41: os.symlink('/usr/bin/id', '/tmp/s-sc41') → symlink(2), syscall 88.
        let ev = sample(81).unwrap();
        assert_eq!(ev.call, LinkCall::Symlink);
        assert_eq!(ev.task.pid, 11715);
        assert_eq!(ev.task.ppid, 11677);
        assert_eq!(ev.target, b"/usr/bin/id");
        assert_eq!(ev.link, b"/tmp/s-sc41");
        assert_eq!(ev.task.cwd.as_deref(), Some(&b"/root"[..]));
        assert_eq!(ev.task.exe.as_deref(), Some(&b"/usr/bin/python3.11"[..]));
        assert!(ev.link_dir_known);
    }

    #[test]
    fn relative_symlinkat_at_fdcwd_from_the_sample() {
        // sc37: (cd /tmp && ln -s /usr/bin/id s-sc37) → symlinkat(.., AT_FDCWD, "s-sc37").
        let ev = sample(76).unwrap();
        assert_eq!(ev.call, LinkCall::Symlinkat);
        assert_eq!(ev.link, b"s-sc37");
        assert_eq!(ev.task.cwd.as_deref(), Some(&b"/tmp"[..]));
        assert!(ev.link_dir_known);
    }

    #[test]
    fn symlinkat_into_a_directory_fd_is_not_resolvable() {
        // sc11: ln into a directory opens it and passes its fd (a1=3).
        let ev = sample(41).unwrap();
        assert_eq!(ev.link, b"id");
        assert!(!ev.link_dir_known);
    }

    #[test]
    fn hard_link_uses_the_normal_item() {
        // sc13: ln /usr/bin/id /tmp/s-sc13hard → linkat(AT_FDCWD, .., AT_FDCWD, ..).
        let ev = sample(47).unwrap();
        assert_eq!(ev.call, LinkCall::Linkat);
        assert_eq!(ev.target, b"/usr/bin/id");
        assert_eq!(ev.link, b"/tmp/s-sc13hard");
        assert!(ev.link_dir_known && ev.target_dir_known);
    }

    #[test]
    fn failed_calls_and_execs_are_not_links() {
        // sc12: symlinkat failed with ENAMETOOLONG.
        assert_eq!(sample(45), None);
        // An execve.
        assert_eq!(sample(46), None);
    }

    #[test]
    fn missing_create_item_is_an_error() {
        let sc = rec(
            1300,
            7,
            1,
            0,
            "arch=40000003 syscall=83 success=yes exit=0 a0=1 a1=2 ppid=1 pid=2 comm=\"x\"",
        );
        let target = rec(
            1302,
            7,
            1,
            0,
            "item=1 name=\"/usr/bin/id\" nametype=UNKNOWN",
        );
        assert_eq!(
            build(&event(vec![sc, target])),
            Err(LinkError::MissingLink {
                serial: 7,
                call: "symlink"
            })
        );
    }

    #[test]
    fn at_fdcwd_in_both_widths() {
        assert!(is_at_fdcwd(Some(b"ffffff9c")));
        assert!(is_at_fdcwd(Some(b"ffffffffffffff9c")));
        assert!(!is_at_fdcwd(Some(b"3")));
        assert!(!is_at_fdcwd(None));
    }

    #[test]
    fn syscall_numbers_per_abi() {
        assert_eq!(link_syscalls(Arch::X86_64), vec![86, 88, 265, 266]);
        assert_eq!(link_syscalls(Arch::I386), vec![9, 83, 303, 304]);
        assert_eq!(link_syscalls(Arch::Aarch64), vec![36, 37]);
        assert_eq!(link_syscalls(Arch::Arm), vec![9, 83, 330, 331]);
    }
}
