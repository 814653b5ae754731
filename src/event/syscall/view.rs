//! File and network events as the rules see them: each field path answered from the typed event,
//! the acting process's table entries and the host, with exactly the values the JSON document
//! ([`super::file_document`], [`super::network_document`]) holds, without building it. Values
//! that cost work (entity ids, timestamps, event ids, addresses) are made only when read.

use serde_json::{Number, Value};

use super::{direction, file_kind, net_kind, Kind};
use crate::audit::fileop::{file_extension, file_name, FileEvent};
use crate::audit::netconn::{Endpoint, NetEvent};
use crate::audit::task::Task;
use crate::document::{Scalar, SlotTable, Slotted};
use crate::event::{entity_id, event_id, timestamp, Host};
use crate::proc::{Instance, ProcessInfo};

/// One field a file or network document can hold: a path of [`crate::catalog::COMMON_FIELDS`],
/// [`crate::catalog::FILE_FIELDS`] or [`crate::catalog::NETWORK_FIELDS`], or a field of the
/// parent the JSON document holds beyond them. Each variant is named after its path (see
/// [`FileView::slot`], [`NetView::slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Timestamp,
    EventKind,
    EventCategory,
    EventType,
    EventAction,
    EventId,
    HostOsType,
    HostId,
    HostName,
    Pid,
    EntityId,
    Name,
    Executable,
    Args,
    ArgsCount,
    CommandLine,
    WorkingDirectory,
    ParentPid,
    ParentEntityId,
    ParentName,
    ParentExecutable,
    ParentArgs,
    ParentArgsCount,
    ParentCommandLine,
    ParentUserId,
    ParentGroupId,
    UserId,
    UserEffectiveId,
    UserRealId,
    Serial,
    Key,
    Auid,
    Session,
    Tty,
    Node,
    Syscall,
    FilePath,
    FileName,
    FileExtension,
    FileDirectory,
    FileTargetPath,
    OriginalPath,
    OriginalName,
    OriginalExtension,
    PathUnresolved,
    DestinationIp,
    DestinationPort,
    SourceIp,
    SourcePort,
    Transport,
    NetworkType,
    Direction,
}

/// The slot of a field every file and network document can hold.
fn common_slot(path: &str) -> Option<Slot> {
    Some(match path {
        "@timestamp" => Slot::Timestamp,
        "event.kind" => Slot::EventKind,
        "event.category" => Slot::EventCategory,
        "event.type" => Slot::EventType,
        "event.action" => Slot::EventAction,
        "event.id" => Slot::EventId,
        "host.os.type" => Slot::HostOsType,
        "host.id" => Slot::HostId,
        "host.name" => Slot::HostName,
        "process.pid" => Slot::Pid,
        "process.entity_id" => Slot::EntityId,
        "process.name" => Slot::Name,
        "process.executable" => Slot::Executable,
        "process.args" => Slot::Args,
        "process.args_count" => Slot::ArgsCount,
        "process.command_line" => Slot::CommandLine,
        "process.working_directory" => Slot::WorkingDirectory,
        "process.parent.pid" => Slot::ParentPid,
        "process.parent.entity_id" => Slot::ParentEntityId,
        "process.parent.name" => Slot::ParentName,
        "process.parent.executable" => Slot::ParentExecutable,
        "process.parent.args" => Slot::ParentArgs,
        "process.parent.args_count" => Slot::ParentArgsCount,
        "process.parent.command_line" => Slot::ParentCommandLine,
        "process.parent.user.id" => Slot::ParentUserId,
        "process.parent.group.id" => Slot::ParentGroupId,
        "user.id" => Slot::UserId,
        "user.effective.id" => Slot::UserEffectiveId,
        "user.Ext.real.id" => Slot::UserRealId,
        "auditd.serial" => Slot::Serial,
        "auditd.key" => Slot::Key,
        "auditd.auid" => Slot::Auid,
        "auditd.session" => Slot::Session,
        "auditd.tty" => Slot::Tty,
        "auditd.node" => Slot::Node,
        "auditd.syscall" => Slot::Syscall,
        _ => return None,
    })
}

/// The acting process of a file or network event: the task that made the call, and what the
/// process table knows of it and of its parent (their entries and instances), on `host`.
#[derive(Clone, Copy)]
pub struct Acting<'a> {
    /// The call's task (pid, ids, exe, cwd, audit facts).
    pub task: &'a Task,
    /// The table's entry for `task.pid`.
    pub me: Option<(&'a ProcessInfo, Instance)>,
    /// The table's entry for `task.ppid`.
    pub parent: Option<(&'a ProcessInfo, Instance)>,
    /// `host.*`.
    pub host: &'a Host,
}

/// A file change as the rules see it (the fields of [`super::file_document`]).
#[derive(Clone, Copy)]
pub struct FileView<'a> {
    /// The file change.
    pub ev: &'a FileEvent,
    /// Who made it.
    pub acting: Acting<'a>,
}

/// A connection, accept or bind as the rules see it (the fields of [`super::network_document`]).
#[derive(Clone, Copy)]
pub struct NetView<'a> {
    /// The connection.
    pub ev: &'a NetEvent,
    /// Who made it.
    pub acting: Acting<'a>,
}

/// Passes a string to `f`.
fn str(f: &mut dyn FnMut(Scalar<'_>) -> bool, s: &str) -> bool {
    f(Scalar::Str(s))
}

/// Passes a number to `f`.
fn num(f: &mut dyn FnMut(Scalar<'_>) -> bool, n: impl Into<Number>) -> bool {
    f(Scalar::Num(n.into()))
}

/// Passes bytes as text (lossy, as the document's `text`) to `f`.
fn bytes(f: &mut dyn FnMut(Scalar<'_>) -> bool, b: &[u8]) -> bool {
    f(Scalar::Str(&String::from_utf8_lossy(b)))
}

/// Passes an id as its decimal string (ECS ids are strings) to `f`.
fn id(f: &mut dyn FnMut(Scalar<'_>) -> bool, id: Option<u32>) -> bool {
    id.is_some_and(|id| f(Scalar::Str(&id.to_string())))
}

impl Acting<'_> {
    /// Reads a field every file and network document can hold; false for any other slot.
    fn read(&self, kind: &Kind, slot: Slot, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
        let t = self.task;
        let me = self.me.map(|(p, _)| p);
        let parent = self.parent.map(|(p, _)| p);
        match slot {
            Slot::Timestamp => str(f, &timestamp(t.time)),
            Slot::EventKind => str(f, "event"),
            Slot::EventCategory => str(f, kind.category),
            Slot::EventType => str(f, kind.event_type),
            Slot::EventAction => str(f, kind.action),
            Slot::EventId => str(f, &event_id(t.node.as_deref(), t.time, t.serial)),
            Slot::HostOsType => str(f, "linux"),
            Slot::HostId => str(f, &self.host.id),
            Slot::HostName => str(f, &self.host.name),
            Slot::Pid => num(f, t.pid),
            Slot::EntityId => self
                .me
                .is_some_and(|(_, i)| str(f, &entity_id(self.host, i))),
            // The kernel's exe= is the truth about what runs, as in the document. Its last
            // part is the last part of its text: `/` is never inside a replaced sequence.
            Slot::Name => match t.exe.as_deref() {
                Some(exe) => bytes(f, file_name(exe)),
                None => t.comm.as_deref().is_some_and(|c| bytes(f, c)),
            },
            Slot::Executable => t.exe.as_deref().is_some_and(|e| bytes(f, e)),
            Slot::Args => me.is_some_and(|m| m.args().any(|a| str(f, a))),
            Slot::ArgsCount => me.is_some_and(|m| num(f, m.args_len())),
            Slot::CommandLine => me.is_some_and(|m| str(f, &m.command_line())),
            Slot::WorkingDirectory => t.cwd.as_deref().is_some_and(|c| bytes(f, c)),
            Slot::ParentPid => num(f, t.ppid),
            Slot::ParentEntityId => self
                .parent
                .is_some_and(|(_, i)| str(f, &entity_id(self.host, i))),
            Slot::ParentName => parent
                .and_then(ProcessInfo::name)
                .is_some_and(|n| str(f, n)),
            Slot::ParentExecutable => parent
                .and_then(ProcessInfo::executable)
                .is_some_and(|e| str(f, e)),
            Slot::ParentArgs => parent.is_some_and(|p| p.args().any(|a| str(f, a))),
            Slot::ParentArgsCount => parent.is_some_and(|p| num(f, p.args_len())),
            Slot::ParentCommandLine => parent.is_some_and(|p| str(f, &p.command_line())),
            Slot::ParentUserId => id(f, parent.and_then(ProcessInfo::euid)),
            Slot::ParentGroupId => id(f, parent.and_then(ProcessInfo::egid)),
            Slot::UserId | Slot::UserEffectiveId => id(f, t.euid),
            Slot::UserRealId => id(f, t.uid),
            Slot::Serial => num(f, t.serial),
            Slot::Key => t.key.as_deref().is_some_and(|k| bytes(f, k)),
            Slot::Auid => t.auid.is_some_and(|a| num(f, a)),
            Slot::Session => t.ses.is_some_and(|s| num(f, s)),
            Slot::Tty => t.tty.as_deref().is_some_and(|tty| bytes(f, tty)),
            Slot::Node => t.node.as_deref().is_some_and(|n| str(f, n)),
            _ => false,
        }
    }

    /// The JSON document `build` makes of `ev` made by this process, entity ids included.
    fn document<E>(
        &self,
        ev: &E,
        build: fn(&E, Option<&ProcessInfo>, Option<&ProcessInfo>, &Host) -> Value,
    ) -> Value {
        let (me, parent) = (self.me.map(|(p, _)| p), self.parent.map(|(p, _)| p));
        let mut doc = build(ev, me, parent, self.host);
        super::add_entity_ids(&mut doc, self.host, self.me, self.parent);
        doc
    }
}

impl Slotted for FileView<'_> {
    type Slot = Slot;

    /// The slot of `path` in a file document, if a file document can hold it.
    fn slot(path: &str) -> Option<Slot> {
        Some(match path {
            "file.path" => Slot::FilePath,
            "file.name" => Slot::FileName,
            "file.extension" => Slot::FileExtension,
            "file.directory" => Slot::FileDirectory,
            "file.target_path" => Slot::FileTargetPath,
            "file.Ext.original.path" => Slot::OriginalPath,
            "file.Ext.original.name" => Slot::OriginalName,
            "file.Ext.original.extension" => Slot::OriginalExtension,
            "auditd.path_unresolved" => Slot::PathUnresolved,
            _ => return common_slot(path),
        })
    }

    /// Calls `f` on each value of `slot` until it returns true; true if one did.
    fn read(&self, slot: Slot, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
        let ev = self.ev;
        match slot {
            Slot::Syscall => str(f, ev.call),
            Slot::FilePath => bytes(f, &ev.path),
            Slot::FileName => bytes(f, file_name(&ev.path)),
            Slot::FileExtension => file_extension(&ev.path).is_some_and(|e| bytes(f, e)),
            Slot::FileDirectory => {
                let path = String::from_utf8_lossy(&ev.path);
                match path.rsplit_once('/').filter(|_| ev.resolved) {
                    Some(("", _)) => str(f, "/"),
                    Some((dir, _)) => str(f, dir),
                    None => false,
                }
            }
            Slot::FileTargetPath => ev.target.as_deref().is_some_and(|t| bytes(f, t)),
            Slot::OriginalPath => ev.original.as_deref().is_some_and(|o| bytes(f, o)),
            Slot::OriginalName => ev
                .original
                .as_deref()
                .is_some_and(|o| bytes(f, file_name(o))),
            Slot::OriginalExtension => ev
                .original
                .as_deref()
                .and_then(file_extension)
                .is_some_and(|e| bytes(f, e)),
            Slot::PathUnresolved => !ev.resolved && f(Scalar::Bool(true)),
            _ => self.acting.read(&file_kind(ev), slot, f),
        }
    }

    fn table() -> &'static SlotTable<Slot> {
        static SLOTS: SlotTable<Slot> = SlotTable::new();
        &SLOTS
    }
}

impl FileView<'_> {
    /// The JSON document of this file change, entity ids included (built on each call).
    pub fn document(&self) -> Value {
        self.acting.document(self.ev, super::file_document)
    }
}

impl Slotted for NetView<'_> {
    type Slot = Slot;

    /// The slot of `path` in a network document, if a network document can hold it.
    fn slot(path: &str) -> Option<Slot> {
        Some(match path {
            "destination.ip" => Slot::DestinationIp,
            "destination.port" => Slot::DestinationPort,
            "source.ip" => Slot::SourceIp,
            "source.port" => Slot::SourcePort,
            "network.transport" => Slot::Transport,
            "network.type" => Slot::NetworkType,
            "network.direction" => Slot::Direction,
            _ => return common_slot(path),
        })
    }

    /// Calls `f` on each value of `slot` until it returns true; true if one did.
    fn read(&self, slot: Slot, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
        let ev = self.ev;
        let ip = |e: Option<Endpoint>, f: &mut dyn FnMut(Scalar<'_>) -> bool| {
            e.is_some_and(|(ip, _)| str(f, &ip.to_string()))
        };
        match slot {
            Slot::Syscall => str(f, ev.call),
            Slot::DestinationIp => ip(ev.destination, f),
            Slot::DestinationPort => ev.destination.is_some_and(|(_, p)| num(f, p)),
            Slot::SourceIp => ip(ev.source, f),
            Slot::SourcePort => ev.source.is_some_and(|(_, p)| num(f, p)),
            Slot::Transport => ev.transport.is_some_and(|t| str(f, t)),
            Slot::NetworkType => str(f, ev.ip_type()),
            Slot::Direction => direction(ev.action).is_some_and(|d| str(f, d)),
            _ => self.acting.read(&net_kind(ev), slot, f),
        }
    }

    fn table() -> &'static SlotTable<Slot> {
        static SLOTS: SlotTable<Slot> = SlotTable::new();
        &SLOTS
    }
}

impl NetView<'_> {
    /// The JSON document of this connection, entity ids included (built on each call).
    pub fn document(&self) -> Value {
        self.acting.document(self.ev, super::network_document)
    }
}

#[cfg(test)]
mod tests;
