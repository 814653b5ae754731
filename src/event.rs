//! The contract between audit/ and rule/: an [`ExecEvent`] plus what the process table knows of its
//! parent and who the host is, turned into an ECS document shaped like Elastic Defend's
//! `logs-endpoint.events.process` (nested objects), which is what the detection rules query.
//!
//! Most execs match no rule, so the rules first see an [`ExecView`]: the same fields, answered
//! straight from the event without building JSON. The JSON [`document`] is built for the execs
//! that alert (or when an events output asks for every document).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt::Write;
use std::sync::Arc;

use crate::audit::exec::ExecEvent;
use crate::audit::task::Task;
use crate::audit::AuditTime;
use crate::document::{Scalar, SlotTable, Slotted};
pub use crate::proc::{basename, text};
use crate::proc::{Instance, ProcessInfo};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

pub mod syscall;

/// Who this host is, as ECS `host.*` says it. Fixed for a run so documents are reproducible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `host.id`: /etc/machine-id, or a stable fallback derived from the host name.
    pub id: String,
    /// `host.name`: the kernel's host name.
    pub name: String,
}

impl Host {
    /// Reads the identity of the running host.
    pub fn detect() -> Host {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        let id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| fallback_id(&name));
        Host { id, name }
    }
}

/// A stable host id for hosts without a machine-id: FNV-1a 128-bit-ish of the host name, as hex.
fn fallback_id(name: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in name.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        b = (b ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3 ^ 0x2);
    }
    format!("{a:016x}{b:016x}")
}

/// What the process table should remember about the process an exec event started, copied out
/// of it as text (the exec's arguments are packed into one string on the way).
pub fn process_info(ev: &ExecEvent) -> ProcessInfo {
    // The basename of the bytes is the basename of their text: `/` is never part of a
    // multi-byte sequence, so the lossy conversion treats the pieces alike.
    let name = match ev.task.exe.as_deref() {
        Some(exe) => exe.rsplit(|&b| b == b'/').next(),
        None => ev.task.comm.as_deref(),
    };
    ProcessInfo::from_bytes(ev.task.exe.as_deref(), name, &ev.argv)
        .with_ids(ev.task.euid, ev.task.egid)
}

/// Milliseconds since the epoch as RFC 3339 UTC, as [`timestamp`] writes audit time.
pub fn timestamp_ms(ms: u64) -> String {
    timestamp(AuditTime {
        sec: ms / 1000,
        msec: (ms % 1000) as u32,
    })
}

/// `SEC.MSEC` audit time as RFC 3339 UTC with milliseconds (`2026-11-28T10:26:55.123Z`).
pub fn timestamp(t: AuditTime) -> String {
    let days = (t.sec / 86_400) as i64;
    let rem = t.sec % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        t.msec.min(999)
    )
}

/// A stable id for an event: node, audit time and serial identify it uniquely on one host.
pub fn event_id(node: Option<&str>, time: AuditTime, serial: u32) -> String {
    match node {
        Some(node) => format!("{node}:{}.{:03}:{}", time.sec, time.msec, serial),
        None => format!("{}.{:03}:{}", time.sec, time.msec, serial),
    }
}

/// What the agent knows of an exec beyond its records: which process instances the process and
/// its parent are (from the process table), and the names of its user and group (from the
/// records' ENRICHED section, else, live, from the host's user database).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    /// The process (`process.entity_id`).
    pub process: Option<Instance>,
    /// Its parent, when the process table knew it (`process.parent.entity_id`).
    pub parent: Option<Instance>,
    /// `user.name`: the name of the effective user id (`user.id`).
    pub user_name: Option<Arc<str>>,
    /// `group.name`: the name of the real group id.
    pub group_name: Option<Arc<str>>,
}

/// ECS `process.entity_id` of a process instance on `host`: the first 16 bytes, in hex, of the
/// SHA-256 of `HOST_ID/PID/STAMP` (see [`Instance`] and docs/fields.md).
pub fn entity_id(host: &Host, instance: Instance) -> String {
    let digest = Sha256::digest(format!("{}/{}/{}", host.id, instance.pid, instance.stamp));
    let mut out = String::with_capacity(32);
    for byte in digest.iter().take(16) {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `process.interactive`: the process has a controlling terminal.
fn interactive(ev: &ExecEvent) -> bool {
    ev.task.tty.is_some()
}

/// The process's ids as ECS puts them under `process.*`: (object, id), present ones only.
fn process_ids(ev: &ExecEvent) -> [(&'static str, Option<u32>); 6] {
    let [user, real_user, saved_user, group, real_group, saved_group] = PROCESS_ID_OBJECTS;
    let t = &ev.task;
    [
        (user, t.euid),
        (real_user, t.uid),
        (saved_user, t.suid),
        (group, t.egid),
        (real_group, t.gid),
        (saved_group, t.sgid),
    ]
}

/// Builds the ECS document for one exec. `me` is [`process_info`] of `ev`; `parent` is what the
/// process table knew of `ev.ppid` *before* this exec was recorded; `known` the rest.
pub fn document(
    ev: &ExecEvent,
    me: &ProcessInfo,
    parent: Option<&ProcessInfo>,
    host: &Host,
    known: &Known,
) -> Value {
    let mut process = Map::new();
    process.insert("pid".into(), Value::from(ev.task.pid));
    if let Some(instance) = known.process {
        process.insert("entity_id".into(), Value::String(entity_id(host, instance)));
    }
    if let Some(name) = me.name() {
        process.insert("name".into(), Value::from(name));
    }
    if let Some(exe) = me.executable() {
        process.insert("executable".into(), Value::from(exe));
    }
    insert_args(&mut process, me);
    if let Some(cwd) = &ev.task.cwd {
        process.insert("working_directory".into(), Value::String(text(cwd)));
    }
    if let Some(title) = &ev.proctitle {
        process.insert("title".into(), Value::String(text(&spaced(title))));
    }
    process.insert("interactive".into(), Value::Bool(interactive(ev)));
    for (object, id) in process_ids(ev) {
        if let Some(id) = id {
            process.insert(
                object.into(),
                object_of("id", Value::String(id.to_string())),
            );
        }
    }
    let mut par = parent_object(ev.task.ppid, parent);
    if let (Some(instance), Value::Object(par)) =
        (known.parent.filter(|_| parent.is_some()), &mut par)
    {
        par.insert("entity_id".into(), Value::String(entity_id(host, instance)));
    }
    process.insert("parent".into(), par);
    let mut user = user_object(ev.task.uid, ev.task.euid);
    if let Value::Object(user) = &mut user {
        if let Some(name) = &known.user_name {
            user.insert("name".into(), Value::from(&**name));
        }
    }
    let mut group = Map::new();
    if let Some(gid) = ev.task.gid {
        group.insert("id".into(), Value::String(gid.to_string()));
        group.insert("Ext".into(), real_id(gid));
    }
    if let Some(name) = &known.group_name {
        group.insert("name".into(), Value::from(&**name));
    }
    let mut auditd = auditd_object(&AuditFacts::of(&ev.task));
    if ev.argv_truncated {
        auditd.insert("args_truncated".into(), Value::Bool(true));
    }

    object([
        ("@timestamp", Value::String(timestamp(ev.task.time))),
        (
            "event",
            object([
                ("kind", Value::from("event")),
                ("category", Value::Array(vec![Value::from("process")])),
                ("type", Value::Array(vec![Value::from("start")])),
                ("action", Value::from("exec")),
                ("outcome", Value::from("success")),
                (
                    "id",
                    Value::String(event_id(
                        ev.task.node.as_deref(),
                        ev.task.time,
                        ev.task.serial,
                    )),
                ),
            ]),
        ),
        ("host", host_object(host)),
        ("process", Value::Object(process)),
        ("user", user),
        ("group", Value::Object(group)),
        ("auditd", Value::Object(auditd)),
    ])
}

/// ECS `host` of every document: `os.type`, `id`, `name`.
pub fn host_object(host: &Host) -> Value {
    object([
        ("os", object([("type", Value::from("linux"))])),
        ("id", Value::String(host.id.clone())),
        ("name", Value::String(host.name.clone())),
    ])
}

/// One exec as the rules see it: the event, what it runs, what the process table knew of its
/// parent, and the host. Its field lookups give exactly the values [`document`] would hold.
#[derive(Clone)]
pub struct ExecView<'a> {
    /// The exec event.
    pub ev: &'a ExecEvent,
    /// [`process_info`] of `ev`.
    pub me: &'a ProcessInfo,
    /// What the process table knew of `ev.ppid` before this exec.
    pub parent: Option<&'a ProcessInfo>,
    /// `host.*`.
    pub host: &'a Host,
    /// Instances and names ([`Known`]).
    pub known: &'a Known,
    /// The command lines of the process and its parent, joined once when a rule first reads them.
    command_lines: [OnceCell<String>; 2],
}

impl<'a> ExecView<'a> {
    /// The view of `ev`, whose process facts are `me`, child of `parent`.
    pub fn new(
        ev: &'a ExecEvent,
        me: &'a ProcessInfo,
        parent: Option<&'a ProcessInfo>,
        host: &'a Host,
        known: &'a Known,
    ) -> Self {
        ExecView {
            ev,
            me,
            parent,
            host,
            known,
            command_lines: Default::default(),
        }
    }

    /// `process.command_line`.
    fn command_line(&self) -> &str {
        self.command_lines[0].get_or_init(|| self.me.command_line())
    }

    /// `process.parent.command_line`, when the parent is known.
    fn parent_command_line(&self) -> Option<&str> {
        let parent = self.parent?;
        Some(self.command_lines[1].get_or_init(|| parent.command_line()))
    }

    /// The ECS document of this exec (built on each call).
    pub fn document(&self) -> Value {
        document(self.ev, self.me, self.parent, self.host, self.known)
    }
}

/// Every field path an [`ExecView`] can answer (those [`document`] can hold): the process
/// event's list in [`crate::catalog`].
pub const FIELDS: &[&str] = crate::catalog::PROCESS;

/// One field an [`ExecView`] answers: its paths are matched once per field, when a rule's
/// `Field` is first read (through a [`SlotTable`]), not on every lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Timestamp,
    Const(&'static str),
    EventId,
    HostId,
    HostName,
    Name,
    Executable,
    Args,
    CommandLine,
    WorkingDirectory,
    Title,
    ParentName,
    ParentExecutable,
    ParentArgs,
    ParentCommandLine,
    ParentUserId,
    ParentGroupId,
    EntityId,
    ParentEntityId,
    Interactive,
    UserName,
    GroupId,
    RealUserId,
    GroupName,
    UserId,
    Key,
    Tty,
    Node,
    ArgsTruncated,
    /// `process.<object>.id`: its place among `process.user`, `.real_user`, … (`PROCESS_ID_OBJECTS`).
    ProcessId(usize),
    Pid,
    ArgsCount,
    ParentArgsCount,
    ParentPid,
    Serial,
    Auid,
    Session,
}

/// The `process.*` objects of [`process_ids`], in its order.
const PROCESS_ID_OBJECTS: [&str; 6] = [
    "user",
    "real_user",
    "saved_user",
    "group",
    "real_group",
    "saved_group",
];

impl Slotted for ExecView<'_> {
    type Slot = Slot;

    fn slot(path: &str) -> Option<Slot> {
        Some(match path {
            "@timestamp" => Slot::Timestamp,
            "event.kind" => Slot::Const("event"),
            "event.category" => Slot::Const("process"),
            "event.type" => Slot::Const("start"),
            "event.action" => Slot::Const("exec"),
            "event.outcome" => Slot::Const("success"),
            "event.id" => Slot::EventId,
            "host.os.type" => Slot::Const("linux"),
            "host.id" => Slot::HostId,
            "host.name" => Slot::HostName,
            "process.name" => Slot::Name,
            "process.executable" => Slot::Executable,
            "process.args" => Slot::Args,
            "process.command_line" => Slot::CommandLine,
            "process.working_directory" => Slot::WorkingDirectory,
            "process.title" => Slot::Title,
            "process.parent.name" => Slot::ParentName,
            "process.parent.executable" => Slot::ParentExecutable,
            "process.parent.args" => Slot::ParentArgs,
            "process.parent.command_line" => Slot::ParentCommandLine,
            "process.parent.user.id" => Slot::ParentUserId,
            "process.parent.group.id" => Slot::ParentGroupId,
            "process.entity_id" => Slot::EntityId,
            "process.parent.entity_id" => Slot::ParentEntityId,
            "process.interactive" => Slot::Interactive,
            "user.name" => Slot::UserName,
            "group.id" | "group.Ext.real.id" => Slot::GroupId,
            "user.Ext.real.id" => Slot::RealUserId,
            "group.name" => Slot::GroupName,
            "user.id" | "user.effective.id" => Slot::UserId,
            "auditd.key" => Slot::Key,
            "auditd.tty" => Slot::Tty,
            "auditd.node" => Slot::Node,
            "auditd.args_truncated" => Slot::ArgsTruncated,
            "process.pid" => Slot::Pid,
            "process.args_count" => Slot::ArgsCount,
            "process.parent.args_count" => Slot::ParentArgsCount,
            "process.parent.pid" => Slot::ParentPid,
            "auditd.serial" => Slot::Serial,
            "auditd.auid" => Slot::Auid,
            "auditd.session" => Slot::Session,
            _ => {
                let object = path.strip_prefix("process.")?.strip_suffix(".id")?;
                let place = PROCESS_ID_OBJECTS.iter().position(|o| *o == object)?;
                Slot::ProcessId(place)
            }
        })
    }

    fn table() -> &'static SlotTable<Slot> {
        static SLOTS: SlotTable<Slot> = SlotTable::new();
        &SLOTS
    }

    fn read(&self, slot: Slot, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
        let ev = self.ev;
        let mut text = |s: &str| f(Scalar::Str(s));
        let number = match slot {
            Slot::Timestamp => return text(&timestamp(ev.task.time)),
            Slot::Const(value) => return text(value),
            Slot::EventId => {
                return text(&event_id(
                    ev.task.node.as_deref(),
                    ev.task.time,
                    ev.task.serial,
                ))
            }
            Slot::HostId => return text(&self.host.id),
            Slot::HostName => return text(&self.host.name),
            Slot::Name => return self.me.name().is_some_and(text),
            Slot::Executable => return self.me.executable().is_some_and(text),
            Slot::Args => return self.me.args().any(text),
            Slot::CommandLine => return text(self.command_line()),
            Slot::WorkingDirectory => {
                return ev.task.cwd.as_deref().is_some_and(|c| text(&lossy(c)))
            }
            Slot::Title => {
                return ev
                    .proctitle
                    .as_deref()
                    .is_some_and(|t| text(&lossy(&spaced(t))))
            }
            Slot::ParentName => return self.parent.and_then(ProcessInfo::name).is_some_and(text),
            Slot::ParentExecutable => {
                return self
                    .parent
                    .and_then(ProcessInfo::executable)
                    .is_some_and(text)
            }
            Slot::ParentArgs => return self.parent.is_some_and(|p| p.args().any(text)),
            Slot::ParentCommandLine => {
                return self.parent_command_line().is_some_and(text);
            }
            Slot::ParentUserId => {
                return self
                    .parent
                    .and_then(ProcessInfo::euid)
                    .is_some_and(|id| text(&id.to_string()))
            }
            Slot::ParentGroupId => {
                return self
                    .parent
                    .and_then(ProcessInfo::egid)
                    .is_some_and(|id| text(&id.to_string()))
            }
            Slot::EntityId => {
                return self
                    .known
                    .process
                    .is_some_and(|i| text(&entity_id(self.host, i)))
            }
            Slot::ParentEntityId => {
                return self
                    .known
                    .parent
                    .filter(|_| self.parent.is_some())
                    .is_some_and(|i| text(&entity_id(self.host, i)))
            }
            Slot::Interactive => return f(Scalar::Bool(interactive(ev))),
            Slot::UserName => return self.known.user_name.as_deref().is_some_and(text),
            Slot::GroupId => return ev.task.gid.is_some_and(|g| text(&g.to_string())),
            Slot::RealUserId => return ev.task.uid.is_some_and(|u| text(&u.to_string())),
            Slot::GroupName => return self.known.group_name.as_deref().is_some_and(text),
            Slot::UserId => return ev.task.euid.is_some_and(|u| text(&u.to_string())),
            Slot::Key => return ev.task.key.as_deref().is_some_and(|k| text(&lossy(k))),
            Slot::Tty => return ev.task.tty.as_deref().is_some_and(|t| text(&lossy(t))),
            Slot::Node => return ev.task.node.as_deref().is_some_and(text),
            Slot::ArgsTruncated => return ev.argv_truncated && f(Scalar::Bool(true)),
            Slot::ProcessId(place) => {
                return process_ids(ev)
                    .get(place)
                    .and_then(|(_, id)| *id)
                    .is_some_and(|id| text(&id.to_string()))
            }
            Slot::Pid => Some(Number::from(ev.task.pid)),
            Slot::ArgsCount => Some(Number::from(self.me.args_len())),
            Slot::ParentArgsCount => self.parent.map(|p| Number::from(p.args_len())),
            Slot::ParentPid => Some(Number::from(ev.task.ppid)),
            Slot::Serial => Some(Number::from(ev.task.serial)),
            Slot::Auid => ev.task.auid.map(Number::from),
            Slot::Session => ev.task.ses.map(Number::from),
        };
        number.is_some_and(|n| f(Scalar::Num(n)))
    }
}

/// Bytes as text without copying when they are valid UTF-8.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// PROCTITLE is argv with NUL separators (cut at 128 bytes): spaces make it a command line.
fn spaced(title: &[u8]) -> Vec<u8> {
    title
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect()
}

/// A JSON object from literal keys. Built directly rather than with `json!`, which goes through
/// serde's serializer for every interpolated value: this runs once per exec event.
fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// `{"real": {"id": ID}}`: Elastic Defend's `user.Ext` / `group.Ext`, the real id.
fn real_id(id: u32) -> Value {
    object_of("real", object_of("id", Value::String(id.to_string())))
}

/// `{key: value}`.
fn object_of(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.into(), value);
    Value::Object(map)
}

/// A JSON array of strings.
fn strings<'a>(values: impl Iterator<Item = &'a str>) -> Value {
    Value::Array(values.map(Value::from).collect())
}

/// `args`, `args_count` and `command_line` of `me` into a `process` object.
pub fn insert_args(process: &mut Map<String, Value>, me: &ProcessInfo) {
    process.insert("args".into(), strings(me.args()));
    process.insert("args_count".into(), Value::from(me.args_len()));
    process.insert("command_line".into(), Value::String(me.command_line()));
}

/// `process.parent`: the pid always, the rest when the process table knew the parent.
pub fn parent_object(ppid: u32, parent: Option<&ProcessInfo>) -> Value {
    let mut par = Map::new();
    par.insert("pid".into(), Value::from(ppid));
    if let Some(p) = parent {
        if let Some(name) = p.name() {
            par.insert("name".into(), Value::from(name));
        }
        if let Some(exe) = p.executable() {
            par.insert("executable".into(), Value::from(exe));
        }
        par.insert("args".into(), strings(p.args()));
        par.insert("args_count".into(), Value::from(p.args_len()));
        par.insert("command_line".into(), Value::String(p.command_line()));
        if let Some(euid) = p.euid() {
            par.insert(
                "user".into(),
                object_of("id", Value::String(euid.to_string())),
            );
        }
        if let Some(egid) = p.egid() {
            par.insert(
                "group".into(),
                object_of("id", Value::String(egid.to_string())),
            );
        }
    }
    Value::Object(par)
}

/// `user`: `id` is the effective uid, as Elastic Defend fills it; the real uid is
/// `Ext.real.id`. ECS ids are strings.
pub fn user_object(uid: Option<u32>, euid: Option<u32>) -> Value {
    let mut user = Map::new();
    if let Some(euid) = euid {
        user.insert("id".into(), Value::String(euid.to_string()));
        user.insert(
            "effective".into(),
            object([("id", Value::String(euid.to_string()))]),
        );
    }
    if let Some(uid) = uid {
        user.insert("Ext".into(), real_id(uid));
    }
    Value::Object(user)
}

/// The audit facts of a syscall event that have no ECS home, kept under `auditd.*`.
pub struct AuditFacts<'a> {
    /// Event serial.
    pub serial: u32,
    /// `key=` of the matching rule.
    pub key: Option<&'a [u8]>,
    /// Login uid.
    pub auid: Option<u32>,
    /// Login session.
    pub ses: Option<u32>,
    /// Controlling terminal.
    pub tty: Option<&'a [u8]>,
    /// `node=` name.
    pub node: Option<&'a str>,
}

impl<'a> AuditFacts<'a> {
    /// The facts of the syscall that `task` made (an exec's, a link call's).
    pub fn of(task: &'a Task) -> Self {
        AuditFacts {
            serial: task.serial,
            key: task.key.as_deref(),
            auid: task.auid,
            ses: task.ses,
            tty: task.tty.as_deref(),
            node: task.node.as_deref(),
        }
    }
}

/// `auditd.*` from [`AuditFacts`] (a map, so callers can add their own facts).
pub fn auditd_object(f: &AuditFacts<'_>) -> Map<String, Value> {
    let mut auditd = Map::new();
    auditd.insert("serial".into(), Value::from(f.serial));
    if let Some(key) = f.key {
        auditd.insert("key".into(), Value::String(text(key)));
    }
    if let Some(auid) = f.auid {
        auditd.insert("auid".into(), Value::from(auid));
    }
    if let Some(ses) = f.ses {
        auditd.insert("session".into(), Value::from(ses));
    }
    if let Some(tty) = f.tty {
        auditd.insert("tty".into(), Value::String(text(tty)));
    }
    if let Some(node) = f.node {
        auditd.insert("node".into(), Value::String(node.to_string()));
    }
    auditd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            timestamp(AuditTime { sec: 0, msec: 0 }),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            timestamp(AuditTime {
                sec: 1795858582,
                msec: 851
            }),
            "2026-11-28T09:36:22.851Z"
        );
        assert_eq!(
            timestamp(AuditTime {
                sec: 951782400,
                msec: 5
            }),
            "2000-02-29T00:00:00.005Z"
        );
    }

    #[test]
    fn basename_and_lossy_text() {
        assert_eq!(basename("/usr/bin/busybox"), "busybox");
        assert_eq!(basename("ln"), "ln");
        assert_eq!(text(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn fallback_id_is_stable_and_distinct() {
        assert_eq!(fallback_id("web1"), fallback_id("web1"));
        assert_ne!(fallback_id("web1"), fallback_id("web2"));
        assert_eq!(fallback_id("web1").len(), 32);
    }
}
