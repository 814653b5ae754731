//! Events → process starts. A reassembled [`Event`] that is a successful execve/execveat becomes
//! an [`ExecEvent`]: who ran what (SYSCALL), with which arguments (EXECVE, possibly split over
//! several records), where (CWD) and on which files (PATH). Everything else is `Ok(None)`.
//!
//! Values stay bytes: arguments and paths are whatever the caller passed, not necessarily UTF-8.
//! Argument counts and lengths in the records come from the traced process's view and are
//! never trusted for allocation; [`ExecLimits`] bounds what one event may cost.

use thiserror::Error;

use super::reassemble::Event;
use super::record::{decode_value, types, Fields, Record};
use super::task::{string_field, SyscallFields, Task};
pub use crate::proc::{arg_cost, ARG_SLOT_COST};

/// The bound on what one event's argv may hold; beyond it arguments are dropped and
/// [`ExecEvent::argv_truncated`] is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// Most bytes one event's argv may be charged: each argument its [`arg_cost`], arguments the
    /// records skip (left empty) included, so neither empty arguments nor a forged index far
    /// beyond the last one can grow argv for free.
    pub max_argv_bytes: usize,
}

impl ExecLimits {
    /// The default budget: 8 MiB, more than the kernel's largest argv (6 MiB of strings and
    /// pointers) charged at [`ARG_SLOT_COST`] for arguments of a dozen bytes or more.
    pub const DEFAULT_ARGV_BYTES: usize = 8 << 20;
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            max_argv_bytes: Self::DEFAULT_ARGV_BYTES,
        }
    }
}

/// A successful execve/execveat, with the facts the ECS document needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEvent {
    /// Who exec'd, the event's identity, and the cwd (`ev.task.pid`).
    pub task: Task,
    /// Arguments as passed (`argv[0]` as invoked). Indices missing from the records are empty.
    pub argv: Vec<Vec<u8>>,
    /// `argc=` as recorded; may exceed `argv.len()` when trailing empty arguments were not logged.
    pub argc: Option<u64>,
    /// Arguments were dropped by [`ExecLimits`], or the event itself lost records to the
    /// reassembler's byte cap: argv may be incomplete.
    pub argv_truncated: bool,
    /// PROCTITLE decoded (arguments separated by NUL, capped at 128 bytes by the kernel).
    pub proctitle: Option<Vec<u8>>,
}

impl ExecEvent {
    /// What argv is charged against [`ExecLimits::max_argv_bytes`] (the sum of [`arg_cost`]).
    pub fn argv_cost(&self) -> usize {
        self.argv.iter().map(|a| arg_cost(a.len())).sum()
    }
}

/// An event that claims to be an exec but cannot be built; the pipeline counts these as partial.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecError {
    /// A successful execve/execveat SYSCALL without any EXECVE record.
    #[error("serial {serial}: successful exec without an EXECVE record")]
    MissingExecve {
        /// Event serial.
        serial: u32,
    },
    /// EXECVE records without the SYSCALL record that gives pid, exe and success.
    #[error("serial {serial}: EXECVE record without a SYSCALL record")]
    MissingSyscall {
        /// Event serial.
        serial: u32,
    },
    /// A SYSCALL field the exec needs is missing or not a number.
    #[error("serial {serial}: SYSCALL field {field} is missing or invalid: {value:?}")]
    BadField {
        /// Event serial.
        serial: u32,
        /// Field name.
        field: &'static str,
        /// The raw value (lossy UTF-8, at most 64 bytes), empty when missing.
        value: String,
    },
}

/// AUDIT_ARCH values and their (execve, execveat) numbers.
const EXEC_SYSCALLS: &[(u32, &[u32])] = &[
    // x86_64, including x32 (numbers with __X32_SYSCALL_BIT).
    (
        0xc000_003e,
        &[59, 322, 0x4000_0000 | 520, 0x4000_0000 | 545],
    ),
    // i386
    (0x4000_0003, &[11, 358]),
    // aarch64
    (0xc000_00b7, &[221, 281]),
    // arm (EABI)
    (0x4000_0028, &[11, 387]),
];

/// Builds the exec of `event`: `Ok(None)` when the event is not a successful execve/execveat,
/// `Err` when it is one but lacks the records to describe it.
///
/// The syscall number decides for the architectures in the table (x86_64 and x32, i386,
/// aarch64, arm); for any other architecture the presence of an EXECVE record decides.
pub fn build(event: &Event, limits: &ExecLimits) -> Result<Option<ExecEvent>, ExecError> {
    let serial = event.serial;
    let (sc, mut fields, mut f, has_execve) = match head(event) {
        Head::Other => return Ok(None),
        Head::Broken(e) => return Err(e),
        Head::Exec {
            sc,
            fields,
            f,
            has_execve,
        } => (sc, fields, f, has_execve),
    };
    f.read(&mut fields, |_| false);
    match f.success {
        Some(b"yes") => {}
        Some(_) => return Ok(None),
        None => return Err(bad_field(sc, serial, "success")),
    }
    if !has_execve {
        return Err(ExecError::MissingExecve { serial });
    }
    let task = Task::from_syscall(event, &f).map_err(|field| bad_field(sc, serial, field))?;

    let mut argv = ArgvBuilder::new(limits);
    let mut proctitle = None;
    for rec in &event.records {
        match rec.rtype {
            types::EXECVE => argv.add_record(rec),
            types::PROCTITLE if proctitle.is_none() => proctitle = string_field(rec, b"proctitle"),
            _ => {}
        }
    }

    Ok(Some(ExecEvent {
        task,
        argc: argv.argc,
        argv_truncated: argv.truncated || event.truncated,
        argv: argv.args,
        proctitle,
    }))
}

/// True when [`build`] would return `Ok(None)` for `event` from its SYSCALL record's `arch` and
/// `syscall` alone: no exec. The cheap first half of `build`, for a reader that drops the many
/// events that are no exec before they travel further. (An exec that failed is not caught here:
/// `build` reads on to `success=`.)
pub fn is_other(event: &Event) -> bool {
    matches!(head(event), Head::Other)
}

/// What [`build`] learns before it reads the SYSCALL record past `arch` and `syscall`.
// Made once per event on the stack and taken apart at once: boxing the large variant would cost
// an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Head<'a> {
    /// Not an exec.
    Other,
    /// Claims to be an exec but cannot be one.
    Broken(ExecError),
    /// An exec syscall: its SYSCALL record, the fields after the ones read so far, and those.
    Exec {
        sc: &'a Record,
        fields: Fields<'a>,
        f: SyscallFields<'a>,
        has_execve: bool,
    },
}

/// The first half of [`build`].
fn head(event: &Event) -> Head<'_> {
    let serial = event.serial;
    let syscall_rec = event.records.iter().find(|r| r.rtype == types::SYSCALL);
    let has_execve = event.records.iter().any(|r| r.rtype == types::EXECVE);
    let Some(sc) = syscall_rec else {
        return if has_execve {
            Head::Broken(ExecError::MissingSyscall { serial })
        } else {
            Head::Other
        };
    };
    // One pass over the SYSCALL body instead of one scan per field: this is the hot path. It
    // stops after arch and syscall for the many syscalls that are not an exec.
    let mut fields = sc.fields();
    let f = SyscallFields::scan_head(&mut fields);
    let Some(syscall) = f.syscall() else {
        return if has_execve {
            Head::Broken(bad_field(sc, serial, "syscall"))
        } else {
            Head::Other
        };
    };
    let is_exec = match f
        .arch()
        .and_then(|a| EXEC_SYSCALLS.iter().find(|(x, _)| *x == a))
    {
        Some((_, numbers)) => numbers.contains(&syscall),
        None => has_execve,
    };
    if !is_exec {
        return Head::Other;
    }
    Head::Exec {
        sc,
        fields,
        f,
        has_execve,
    }
}

/// The error for a missing or non-numeric SYSCALL field, with a bounded excerpt of its value.
fn bad_field(sc: &Record, serial: u32, field: &'static str) -> ExecError {
    let raw = sc.field(field.as_bytes()).unwrap_or_default();
    let cut = raw.get(..raw.len().min(64)).unwrap_or_default();
    ExecError::BadField {
        serial,
        field,
        value: String::from_utf8_lossy(cut).into_owned(),
    }
}

/// How an EXECVE field names part of argv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgField {
    /// `argc=`
    Argc,
    /// `aN=`: the whole argument N.
    Whole(u64),
    /// `aN_len=`: the encoded length of a split argument N (informational, never trusted).
    Len,
    /// `aN[i]=`: the next fragment of argument N (fragments arrive in order).
    Fragment(u64),
    /// An index too large for u64, or anything else: not an argument we can place.
    Unplaceable,
    /// Not an argv field at all.
    Other,
}

/// Classifies an EXECVE field name.
fn arg_field(key: &[u8]) -> ArgField {
    if key == b"argc" {
        return ArgField::Argc;
    }
    let Some(rest) = key.strip_prefix(b"a") else {
        return ArgField::Other;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return ArgField::Other;
    }
    let (num, suffix) = rest.split_at(digits);
    let index = std::str::from_utf8(num)
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let kind: fn(u64) -> ArgField = match suffix {
        b"" => ArgField::Whole,
        b"_len" => return ArgField::Len,
        s if s.first() == Some(&b'[') && s.last() == Some(&b']') => ArgField::Fragment,
        _ => return ArgField::Other,
    };
    match index {
        Some(i) => kind(i),
        None => ArgField::Unplaceable,
    }
}

/// Collects argv over one event's EXECVE records within [`ExecLimits`].
struct ArgvBuilder<'l> {
    limits: &'l ExecLimits,
    args: Vec<Vec<u8>>,
    argc: Option<u64>,
    bytes: usize,
    truncated: bool,
}

impl<'l> ArgvBuilder<'l> {
    fn new(limits: &'l ExecLimits) -> Self {
        ArgvBuilder {
            limits,
            args: Vec::new(),
            argc: None,
            bytes: 0,
            truncated: false,
        }
    }

    fn add_record(&mut self, rec: &Record) {
        // Past the budget nothing more is kept: the rest of the records is not even read, so a
        // flood of arguments costs its first budget's worth of work.
        if self.truncated {
            return;
        }
        for (key, raw) in rec.fields() {
            match arg_field(key) {
                ArgField::Argc => {
                    if self.argc.is_none() {
                        self.argc = std::str::from_utf8(raw).ok().and_then(|s| s.parse().ok());
                        let expected = self.argc.and_then(|n| usize::try_from(n).ok());
                        self.args.reserve(expected.unwrap_or(0).min(1024));
                    }
                }
                ArgField::Whole(i) => self.put(i, raw, false),
                ArgField::Fragment(i) => self.put(i, raw, true),
                ArgField::Unplaceable => self.truncated = true,
                ArgField::Len | ArgField::Other => {}
            }
            if self.truncated {
                return;
            }
        }
    }

    /// Sets (or, for a fragment, extends) argument `index`, padding skipped indices with empty
    /// arguments, each charged like any other. Once the budget is exhausted nothing more is
    /// added, so argv stays a clean prefix.
    fn put(&mut self, index: u64, raw: &[u8], append: bool) {
        if self.truncated {
            return;
        }
        // An index whose slots alone would exceed the budget is refused before any arithmetic.
        let most_slots = self.limits.max_argv_bytes / ARG_SLOT_COST;
        let Some(idx) = usize::try_from(index).ok().filter(|&i| i < most_slots) else {
            self.truncated = true;
            return;
        };
        // A new index costs a slot for itself and for each skipped one before it.
        let slots = (idx + 1).saturating_sub(self.args.len());
        let value = decode_value(raw);
        let replaced = match self.args.get(idx) {
            Some(old) if !append => old.len(),
            _ => 0,
        };
        let bytes = self
            .bytes
            .saturating_sub(replaced)
            .saturating_add(slots * ARG_SLOT_COST)
            .saturating_add(value.len());
        if bytes > self.limits.max_argv_bytes {
            self.truncated = true;
            return;
        }
        self.bytes = bytes;
        if slots > 0 {
            self.args.resize_with(idx + 1, Vec::new);
        }
        if let Some(arg) = self.args.get_mut(idx) {
            if append {
                arg.extend_from_slice(&value);
            } else {
                *arg = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::reassemble::test_support::{read_log, rec, records_of, SAMPLE};
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

    /// The event of `serial` in the repository's sample capture.
    fn sample(serial: u32) -> Event {
        let recs = records_of(SAMPLE, serial);
        assert!(!recs.is_empty(), "serial {serial} not in {SAMPLE}");
        event(recs)
    }

    fn exec(ev: &Event) -> ExecEvent {
        match build(ev, &ExecLimits::default()) {
            Ok(Some(x)) => x,
            other => panic!("serial {} is no exec: {other:?}", ev.serial),
        }
    }

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    const SC: &str = "arch=c000003e syscall=59 success=yes exit=0 ppid=10 pid=11 auid=1000 \
        uid=0 euid=0 ses=3 tty=pts1 comm=\"x\" exe=\"/usr/bin/x\" key=(null)";

    #[test]
    fn sc12_split_argument_is_joined() {
        let x = exec(&sample(44));
        let mut long = b"/tmp/s-sc12_".to_vec();
        long.extend(std::iter::repeat_n(b'L', 8200));
        assert_eq!(x.argv.len(), 4);
        assert_eq!(&x.argv[..3], &args(&["ln", "-s", "/usr/bin/id"])[..]);
        assert_eq!(x.argv[3], long);
        assert_eq!(x.argc, Some(4));
        assert!(!x.argv_truncated);
        assert_eq!(
            (x.task.pid, x.task.ppid, x.task.syscall, x.task.arch),
            (11696, 11677, 59, Some(0xc000_003e))
        );
        assert_eq!(
            (x.task.uid, x.task.euid, x.task.auid, x.task.ses),
            (Some(0), Some(0), Some(u32::MAX), Some(u32::MAX))
        );
        assert_eq!(x.task.tty, None);
        assert_eq!(x.task.comm.as_deref(), Some(&b"ln"[..]));
        assert_eq!(x.task.exe.as_deref(), Some(&b"/usr/bin/ln"[..]));
        assert_eq!(x.task.key.as_deref(), Some(&b"exec"[..]));
        assert_eq!(x.task.cwd.as_deref(), Some(&b"/root"[..]));
        assert_eq!(
            x.task.time,
            AuditTime {
                sec: 1795862048,
                msec: 840
            }
        );
        let title = x.proctitle.unwrap_or_default();
        assert_eq!(title.len(), 128);
        assert!(title.starts_with(b"ln\0-s\0/usr/bin/id\0/tmp/s-sc12_LLL"));
    }

    #[test]
    fn hex_arguments_decode_exactly() {
        assert_eq!(
            exec(&sample(36)).argv[3],
            b"/tmp/s-sc09 has a space".to_vec()
        );
        assert_eq!(
            exec(&sample(38)).argv[3],
            b"/tmp/s-sc10\nFAKE ALERT forged line".to_vec()
        );
        assert_eq!(
            exec(&sample(52)).argv[3],
            "/tmp/s-sc16_ħéłłø_日本".as_bytes().to_vec()
        );
        let sc17 = exec(&sample(54));
        assert_eq!(
            sc17.argv,
            args(&["ln", "-s", "--", "/usr/bin/id", "/tmp/s-sc17'q\"uote"])
        );
    }

    #[test]
    fn non_utf8_bytes_survive() {
        let x = exec(&event(vec![
            rec(1300, 5, 1, 0, SC),
            rec(1309, 5, 1, 0, "argc=2 a0=\"x\" a1=2F746D702FFF00C3"),
        ]));
        assert_eq!(
            x.argv[1],
            vec![b'/', b't', b'm', b'p', b'/', 0xff, 0x00, 0xc3]
        );
        assert_eq!(x.task.tty.as_deref(), Some(&b"pts1"[..]));
        assert_eq!(x.task.key, None);
    }

    #[test]
    fn argument_split_over_three_records() {
        let x = exec(&event(vec![
            rec(1300, 5, 1, 0, SC),
            rec(1309, 5, 1, 0, "argc=3 a0=\"x\" a1_len=12 a1[0]=414243"),
            rec(1309, 5, 1, 0, " a1[1]=444546"),
            rec(1309, 5, 1, 0, " a1[2]=DEADBEEF a2=\"end\""),
        ]));
        assert_eq!(
            x.argv,
            vec![
                b"x".to_vec(),
                b"ABCDEF\xde\xad\xbe\xef".to_vec(),
                b"end".to_vec()
            ]
        );
        assert_eq!(x.argc, Some(3));
    }

    #[test]
    fn missing_arguments_are_empty_up_to_the_highest_index() {
        let x = exec(&event(vec![
            rec(1300, 5, 1, 0, SC),
            rec(1309, 5, 1, 0, "argc=6 a0=\"x\" a3=\"y\""),
        ]));
        assert_eq!(x.argv, args(&["x", "", "", "y"]));
        assert_eq!(x.argc, Some(6));
        assert!(!x.argv_truncated);
    }

    #[test]
    fn failed_execve_is_not_a_process_start() {
        assert_eq!(build(&sample(88), &ExecLimits::default()), Ok(None));
    }

    #[test]
    fn other_syscalls_are_not_execs() {
        // symlinkat (266) from sc11.
        assert_eq!(build(&sample(43), &ExecLimits::default()), Ok(None));
        // A standalone daemon record.
        assert_eq!(build(&sample(2492), &ExecLimits::default()), Ok(None));
    }

    #[test]
    fn every_sample_exec_builds() {
        let mut serials: Vec<u32> = read_log(SAMPLE)
            .iter()
            .filter(|r| r.rtype == types::EXECVE)
            .map(|r| r.serial)
            .collect();
        serials.dedup();
        assert_eq!(serials.len(), 69);
        for s in serials {
            let x = exec(&sample(s));
            assert_eq!(x.argc, Some(x.argv.len() as u64), "serial {s}");
        }
    }

    fn with_arch(arch: &str, syscall: u32, execve: bool) -> Result<Option<ExecEvent>, ExecError> {
        let sc = SC.replace(
            "arch=c000003e syscall=59",
            &format!("arch={arch} syscall={syscall}"),
        );
        let mut recs = vec![rec(1300, 5, 1, 0, &sc)];
        if execve {
            recs.push(rec(1309, 5, 1, 0, "argc=1 a0=\"x\""));
        }
        build(&event(recs), &ExecLimits::default())
    }

    #[test]
    fn syscall_numbers_per_architecture() {
        let is_exec = |arch, nr| matches!(with_arch(arch, nr, true), Ok(Some(_)));
        assert!(is_exec("c000003e", 59) && is_exec("c000003e", 322));
        assert!(is_exec("c000003e", 0x4000_0000 + 520));
        assert!(is_exec("40000003", 11) && is_exec("40000003", 358));
        assert!(is_exec("c00000b7", 221) && is_exec("c00000b7", 281));
        assert!(is_exec("40000028", 11) && is_exec("40000028", 387));
        // Known architectures: the number decides.
        assert!(!is_exec("c00000b7", 59));
        assert!(!is_exec("40000003", 59));
        assert!(!is_exec("c000003e", 11));
        assert_eq!(with_arch("c00000b7", 59, false), Ok(None));
        // Unknown architecture (ppc64le): the EXECVE record decides.
        assert!(is_exec("c0000015", 11));
        assert_eq!(with_arch("c0000015", 11, false), Ok(None));
        let x = with_arch("40000003", 11, true);
        assert_eq!(
            x.ok().flatten().map(|x| (x.task.arch, x.task.syscall)),
            Some((Some(0x4000_0003), 11))
        );
    }

    #[test]
    fn partial_events_are_errors() {
        assert_eq!(
            build(&event(vec![rec(1300, 5, 1, 0, SC)]), &ExecLimits::default()),
            Err(ExecError::MissingExecve { serial: 5 })
        );
        assert_eq!(
            build(
                &event(vec![rec(1309, 6, 1, 0, "argc=1 a0=\"x\"")]),
                &ExecLimits::default()
            ),
            Err(ExecError::MissingSyscall { serial: 6 })
        );
        let no_pid = SC.replace("pid=11 ", "pid=eleven ");
        let err = build(
            &event(vec![
                rec(1300, 7, 1, 0, &no_pid),
                rec(1309, 7, 1, 0, "a0=\"x\""),
            ]),
            &ExecLimits::default(),
        );
        assert_eq!(
            err,
            Err(ExecError::BadField {
                serial: 7,
                field: "pid",
                value: "eleven".into()
            })
        );
        assert_eq!(
            err.map(|_| ()).unwrap_err().to_string(),
            "serial 7: SYSCALL field pid is missing or invalid: \"eleven\""
        );
    }

    #[test]
    fn limits_truncate_argv() {
        let ev = event(vec![
            rec(1300, 5, 1, 0, SC),
            rec(
                1309,
                5,
                1,
                0,
                "argc=4 a0=\"ab\" a1=\"cd\" a2=\"ef\" a3=\"gh\"",
            ),
        ]);
        let within = |max_argv_bytes| {
            let x = build(&ev, &ExecLimits { max_argv_bytes });
            x.ok().flatten().map(|x| (x.argv, x.argv_truncated))
        };
        // Each argument costs its 2 bytes plus a slot.
        let one = 2 + ARG_SLOT_COST;
        assert_eq!(within(2 * one), Some((args(&["ab", "cd"]), true)));
        assert_eq!(within(3 * one - 1), Some((args(&["ab", "cd"]), true)));
        assert_eq!(
            within(4 * one),
            Some((args(&["ab", "cd", "ef", "gh"]), false))
        );
        assert_eq!(within(0), Some((args(&[]), true)));
    }

    #[test]
    fn empty_arguments_are_charged_a_slot_each() {
        let mut body = "argc=100000".to_string();
        for i in 0..100_000 {
            body.push_str(&format!(" a{i}=\"\""));
        }
        let ev = event(vec![rec(1300, 5, 1, 0, SC), rec(1309, 5, 1, 0, &body)]);
        let budget = 1000 * ARG_SLOT_COST;
        let x = build(
            &ev,
            &ExecLimits {
                max_argv_bytes: budget,
            },
        );
        let x = x
            .ok()
            .flatten()
            .map(|x| (x.argv.len(), x.argv_truncated, x.argv_cost()));
        assert_eq!(x, Some((1000, true, budget)));
    }

    #[test]
    fn skipped_indices_are_charged_so_a_forged_far_index_stays_cheap() {
        // The forged event of a flood: 1 048 576 arguments claimed, two written.
        let ev = event(vec![
            rec(1300, 5, 1, 0, SC),
            rec(1309, 5, 1, 0, "argc=1048576 a0=\"x\" a1048575=\"y\""),
        ]);
        let x = exec(&ev);
        assert_eq!((x.argv, x.argv_truncated), (args(&["x"]), true));
        // Within the budget, skipped indices are empty arguments, charged like any.
        let x = build(
            &event(vec![
                rec(1300, 5, 1, 0, SC),
                rec(1309, 5, 1, 0, "argc=6 a0=\"x\" a3=\"y\""),
            ]),
            &ExecLimits {
                max_argv_bytes: 4 * ARG_SLOT_COST + 2,
            },
        );
        let x = x.ok().flatten().map(|x| (x.argv_cost(), x.argv_truncated));
        assert_eq!(x, Some((4 * ARG_SLOT_COST + 2, false)));
    }

    #[test]
    fn hostile_counts_do_not_allocate() {
        let x = exec(&event(vec![
            rec(1300, 5, 1, 0, SC),
            rec(
                1309,
                5,
                1,
                0,
                "argc=18446744073709551615 a0=\"x\" a1_len=99999999999 a1[0]=41 \
                 a4294967295=\"far\" a99999999999999999999999=\"huge\"",
            ),
        ]));
        assert_eq!(x.argv, args(&["x", "A"]));
        assert!(x.argv_truncated);
        assert_eq!(x.argc, Some(u64::MAX));
    }

    #[test]
    fn truncated_event_marks_argv() {
        let mut ev = event(vec![
            rec(1300, 5, 1, 0, SC),
            rec(1309, 5, 1, 0, "argc=1 a0=\"x\""),
        ]);
        ev.truncated = true;
        assert!(exec(&ev).argv_truncated);
    }

    #[test]
    fn arg_field_names() {
        assert_eq!(arg_field(b"argc"), ArgField::Argc);
        assert_eq!(arg_field(b"a0"), ArgField::Whole(0));
        assert_eq!(arg_field(b"a12_len"), ArgField::Len);
        assert_eq!(arg_field(b"a3[17]"), ArgField::Fragment(3));
        assert_eq!(arg_field(b"a99999999999999999999"), ArgField::Unplaceable);
        assert_eq!(arg_field(b"arch"), ArgField::Other);
        assert_eq!(arg_field(b"a"), ArgField::Other);
        assert_eq!(arg_field(b"a1x"), ArgField::Other);
    }

    /// Tests on the shared corpus beside the checkout: ignored by a plain `cargo test`, run by the
    /// corpus step of `scripts/test-all.sh` (docs/testing.md).
    mod shared_corpus {
        use super::super::super::reassemble::test_support::shared;
        use super::*;

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn every_corpus_exec_builds() {
            let raw = shared("corpus/raw.audit.log");
            let mut serials: Vec<u32> = read_log(&raw)
                .iter()
                .filter(|r| r.rtype == types::EXECVE)
                .map(|r| r.serial)
                .collect();
            serials.dedup();
            assert_eq!(serials.len(), 63);
            for s in serials {
                let x = exec(&event(records_of(&raw, s)));
                assert_eq!(x.argc, Some(x.argv.len() as u64), "serial {s}");
            }
        }

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn peer_exec_builds() {
            let normal = shared("peer/go-libaudit/reassembler-normal.log");
            let x = exec(&event(records_of(&normal, 59)));
            assert_eq!(x.argv, args(&["grep", "--color=auto", "mapping"]));
            assert_eq!(x.task.tty.as_deref(), Some(&b"pts1"[..]));
            assert_eq!(x.task.key.as_deref(), Some(&b"user_commands"[..]));
            assert_eq!(x.task.cwd.as_deref(), Some(&b"/home/andrew_kroh"[..]));
            assert_eq!((x.task.auid, x.task.ses), (Some(1000), Some(802)));
            // Serial 58 is a failed connect.
            assert_eq!(
                build(&event(records_of(&normal, 58)), &ExecLimits::default()),
                Ok(None)
            );
        }
    }
}
