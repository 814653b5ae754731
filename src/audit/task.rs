//! The task a syscall event is about: which event (node, serial, time, arch, syscall), who made the
//! call (pid, ppid, ids, tty, comm, exe), under which rule (key) and from where (cwd). Exec and
//! link events both start from it, so the SYSCALL record is read in one place, in one pass.

use super::reassemble::Event;
use super::record::{decode_value, types, AuditTime, Fields, Record};

/// Who made a syscall, and the event's identity: the `task` of [`super::exec::ExecEvent`] and
/// [`super::link::LinkEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// `node=` name of the records, if any.
    pub node: Option<String>,
    /// Event serial.
    pub serial: u32,
    /// Event timestamp (taken at syscall entry).
    pub time: AuditTime,
    /// `arch=` as a number (AUDIT_ARCH_*), if present and valid hex.
    pub arch: Option<u32>,
    /// Syscall number as recorded (architecture-specific).
    pub syscall: u32,
    /// The calling process (exec keeps its pid).
    pub pid: u32,
    /// Its parent.
    pub ppid: u32,
    /// Real user id.
    pub uid: Option<u32>,
    /// Effective user id (after an exec: set-uid bits applied).
    pub euid: Option<u32>,
    /// Saved set-user id.
    pub suid: Option<u32>,
    /// Real group id.
    pub gid: Option<u32>,
    /// Effective group id (after an exec: set-gid bits applied).
    pub egid: Option<u32>,
    /// Saved set-group id.
    pub sgid: Option<u32>,
    /// auditd's name for `euid` (`EUID=` of an ENRICHED log), when it had one.
    pub euid_name: Option<String>,
    /// auditd's name for `gid` (`GID=` of an ENRICHED log), when it had one.
    pub gid_name: Option<String>,
    /// Login user id; 4294967295 means unset.
    pub auid: Option<u32>,
    /// Login session id; 4294967295 means unset.
    pub ses: Option<u32>,
    /// Controlling terminal (`pts1`); `None` for `(none)`.
    pub tty: Option<Vec<u8>>,
    /// `comm=`: the task name, at most 15 bytes.
    pub comm: Option<Vec<u8>>,
    /// `exe=`: the resolved executable, e.g. /usr/bin/busybox for an `ln` applet.
    pub exe: Option<Vec<u8>>,
    /// `key=` of the audit rule that matched; `None` for `(null)`. Several keys are joined by
    /// 0x01 bytes, as the kernel writes them.
    pub key: Option<Vec<u8>>,
    /// Working directory from the CWD record.
    pub cwd: Option<Vec<u8>>,
}

impl Task {
    /// The task of `event` from its SYSCALL fields `f`; `Err` names the missing or non-numeric
    /// field (`syscall`, `pid` or `ppid`).
    pub(crate) fn from_syscall(event: &Event, f: &SyscallFields<'_>) -> Result<Task, &'static str> {
        let num = |raw: Option<&[u8]>| parse_u64(raw).and_then(|n| u32::try_from(n).ok());
        let cwd = event
            .records
            .iter()
            .find(|r| r.rtype == types::CWD)
            .and_then(|r| string_field(r, b"cwd"));
        let enriched = event
            .records
            .iter()
            .find(|r| r.rtype == types::SYSCALL)
            .filter(|r| !r.enriched.is_empty());
        let name = |key: &[u8]| enriched.and_then(|r| id_name(r.enriched_field(key)?));
        Ok(Task {
            node: event.node.clone(),
            serial: event.serial,
            time: event.time,
            arch: f.arch(),
            syscall: f.syscall().ok_or("syscall")?,
            pid: num(f.pid).ok_or("pid")?,
            ppid: num(f.ppid).ok_or("ppid")?,
            uid: num(f.uid),
            euid: num(f.euid),
            suid: num(f.suid),
            gid: num(f.gid),
            egid: num(f.egid),
            sgid: num(f.sgid),
            euid_name: name(b"EUID"),
            gid_name: name(b"GID"),
            auid: num(f.auid),
            ses: num(f.ses),
            tty: f.tty.filter(|v| !is_absent(v)).map(<[u8]>::to_vec),
            comm: string_value(f.comm),
            exe: string_value(f.exe),
            key: string_value(f.key),
            cwd,
        })
    }
}

/// The raw SYSCALL values a task needs, each the *first* field of its name (as
/// [`Record::field`] would return), found in a single pass over the body.
#[derive(Default)]
pub(crate) struct SyscallFields<'a> {
    pub(crate) arch: Option<&'a [u8]>,
    pub(crate) syscall: Option<&'a [u8]>,
    pub(crate) success: Option<&'a [u8]>,
    pub(crate) pid: Option<&'a [u8]>,
    pub(crate) ppid: Option<&'a [u8]>,
    pub(crate) uid: Option<&'a [u8]>,
    pub(crate) euid: Option<&'a [u8]>,
    pub(crate) suid: Option<&'a [u8]>,
    pub(crate) gid: Option<&'a [u8]>,
    pub(crate) egid: Option<&'a [u8]>,
    pub(crate) sgid: Option<&'a [u8]>,
    pub(crate) auid: Option<&'a [u8]>,
    pub(crate) ses: Option<&'a [u8]>,
    pub(crate) tty: Option<&'a [u8]>,
    pub(crate) comm: Option<&'a [u8]>,
    pub(crate) exe: Option<&'a [u8]>,
    pub(crate) key: Option<&'a [u8]>,
}

impl<'a> SyscallFields<'a> {
    pub(crate) fn scan(sc: &'a Record) -> Self {
        let mut f = SyscallFields::default();
        f.read(&mut sc.fields(), |_| false);
        f
    }

    /// [`SyscallFields::scan`] in two steps: `arch` and `syscall` first (they open the body), so
    /// that a caller can drop a syscall it does not want before reading the rest, then the rest
    /// with [`SyscallFields::read`] on the same `fields`.
    pub(crate) fn scan_head(fields: &mut Fields<'a>) -> Self {
        let mut f = SyscallFields::default();
        f.read(fields, |f| f.arch.is_some() && f.syscall.is_some());
        f
    }

    /// Fills the slots from `fields` until `done` holds after a field, or the fields end. A slot
    /// already filled keeps its first value.
    pub(crate) fn read(&mut self, fields: &mut Fields<'a>, done: fn(&Self) -> bool) {
        let f = self;
        for (k, v) in fields {
            let slot = match k {
                b"arch" => &mut f.arch,
                b"syscall" => &mut f.syscall,
                b"success" => &mut f.success,
                b"pid" => &mut f.pid,
                b"ppid" => &mut f.ppid,
                b"uid" => &mut f.uid,
                b"euid" => &mut f.euid,
                b"suid" => &mut f.suid,
                b"gid" => &mut f.gid,
                b"egid" => &mut f.egid,
                b"sgid" => &mut f.sgid,
                b"auid" => &mut f.auid,
                b"ses" => &mut f.ses,
                b"tty" => &mut f.tty,
                b"comm" => &mut f.comm,
                b"exe" => &mut f.exe,
                b"key" => &mut f.key,
                _ => continue,
            };
            slot.get_or_insert(v);
            if done(f) {
                return;
            }
        }
    }

    /// `arch=` as a number (hex in the record).
    pub(crate) fn arch(&self) -> Option<u32> {
        self.arch
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| u32::from_str_radix(v, 16).ok())
    }

    /// `syscall=` as a number.
    pub(crate) fn syscall(&self) -> Option<u32> {
        parse_u64(self.syscall).and_then(|n| u32::try_from(n).ok())
    }
}

/// Most bytes of a user or group name taken from an ENRICHED section.
const MAX_NAME_BYTES: usize = 256;

/// An ENRICHED id name (`"root"`): `None` for auditd's placeholders (`unset`, `unknown(1234)`),
/// for an empty or over-long value and for one that is not UTF-8.
fn id_name(raw: &[u8]) -> Option<String> {
    let bytes = decode_value(raw);
    let name = String::from_utf8(bytes).ok()?;
    let placeholder = name == "unset" || name.starts_with("unknown(");
    (!name.is_empty() && name.len() <= MAX_NAME_BYTES && !placeholder).then_some(name)
}

/// `(null)` and `(none)` are how the kernel writes "no value".
pub(crate) fn is_absent(raw: &[u8]) -> bool {
    raw == b"(null)" || raw == b"(none)"
}

/// A string field decoded (quotes or hex); `None` when missing or absent.
pub(crate) fn string_field(rec: &Record, key: &[u8]) -> Option<Vec<u8>> {
    string_value(rec.field(key))
}

/// A raw string value decoded (quotes or hex); `None` when missing or absent.
pub(crate) fn string_value(raw: Option<&[u8]>) -> Option<Vec<u8>> {
    raw.filter(|v| !is_absent(v)).map(decode_value)
}

/// A raw value as a decimal number, like [`Record::field_u64`]: what `str::parse::<u64>` accepts
/// (an optional `+`, then digits, no overflow), read from the bytes without a UTF-8 check.
pub(crate) fn parse_u64(raw: Option<&[u8]>) -> Option<u64> {
    let raw = raw?;
    let digits = raw.strip_prefix(b"+").unwrap_or(raw);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = b.wrapping_sub(b'0');
        match d {
            0..=9 => n.checked_mul(10)?.checked_add(u64::from(d)),
            _ => None,
        }
    })
}

/// A syscall table: per AUDIT_ARCH value, (number, kind, name) of the calls a module reads.
pub(crate) type SyscallTable<C> = [(u32, &'static [(u32, C, &'static str)])];

/// The calls of `arch` in `table`.
pub(crate) fn calls_of<C>(
    table: &'static SyscallTable<C>,
    arch: u32,
) -> &'static [(u32, C, &'static str)] {
    table
        .iter()
        .find(|(a, _)| *a == arch)
        .map_or(&[][..], |(_, calls)| *calls)
}

/// Call `nr` of `arch` in `table` (x32 numbers folded onto x86_64's), with its name.
pub(crate) fn lookup<C: Copy>(
    table: &'static SyscallTable<C>,
    arch: u32,
    nr: u32,
) -> Option<(C, &'static str)> {
    let nr = if arch == 0xc000_003e {
        nr & !0x4000_0000
    } else {
        nr
    };
    calls_of(table, arch)
        .iter()
        .find(|(n, _, _)| *n == nr)
        .map(|(_, c, name)| (*c, *name))
}

#[cfg(test)]
mod tests {
    use super::parse_u64;

    #[test]
    fn numbers_read_as_str_parse_reads_them() {
        let max = u64::MAX.to_string();
        let over = "18446744073709551616".to_string();
        let cases: &[&[u8]] = &[
            b"0",
            b"42",
            b"+7",
            b"007",
            b"",
            b"+",
            b"-1",
            b"-0",
            b"1a",
            b" 1",
            b"1 ",
            b"0x10",
            b"4294967295",
            max.as_bytes(),
            over.as_bytes(),
            b"\xff1",
            "\u{661}".as_bytes(),
        ];
        for raw in cases {
            let want = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            assert_eq!(
                parse_u64(Some(raw)),
                want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(parse_u64(None), None);
    }
}
