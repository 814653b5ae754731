//! The ECS documents of links seen by the syscall and watcher sensors, shaped like an exec's so
//! the same new-terms fields apply.

use serde_json::{json, Map, Value};

use super::paths::LinkPair;
use crate::audit::link::LinkEvent;
use crate::audit::AuditTime;
use crate::event;
use crate::event::Host;
use crate::proc::ProcessInfo;
use crate::source::fanotify::{FanEvent, Watcher};

/// The ECS document of a symlink creation a link watcher saw: [`link_document`]'s shape without
/// the audit facts fanotify does not have (serial, auid, session, tty); `event.action` is
/// `symlink-created`, `auditsentry.sensor` the watcher (`fanotify` or `inotify`).
pub fn fanotify_document(
    ev: &FanEvent,
    me: Option<&ProcessInfo>,
    parent: Option<&ProcessInfo>,
    host: &Host,
    pair: &LinkPair,
) -> Value {
    let time = AuditTime {
        sec: ev.time_ms / 1000,
        msec: u32::try_from(ev.time_ms % 1000).unwrap_or_default(),
    };
    let sensor = match ev.watcher {
        Watcher::Fanotify => Sensor::Fanotify,
        Watcher::Inotify => Sensor::Inotify,
    };
    let mut process = Map::new();
    process.insert("pid".into(), json!(ev.pid));
    if let Some(me) = me {
        if let Some(name) = me.name() {
            process.insert("name".into(), json!(name));
        }
        if let Some(exe) = me.executable() {
            process.insert("executable".into(), json!(exe));
        }
        event::insert_args(&mut process, me);
    }
    if let Some(cwd) = &ev.cwd {
        process.insert("working_directory".into(), json!(cwd));
    }
    process.insert(
        "parent".into(),
        event::parent_object(ev.ppid.unwrap_or_default(), parent),
    );
    let mut doc = json!({
        "@timestamp": event::timestamp(time),
        "event": {
            "kind": "event",
            "category": ["file"],
            "type": ["creation"],
            "action": "symlink-created",
            "id": format!("{}:{}.{:03}:{}", sensor.as_str(), time.sec, time.msec, ev.pid),
        },
        "host": { "os": { "type": "linux" }, "id": host.id, "name": host.name },
        "process": Value::Object(process),
        "file": { "path": pair.path, "target_path": pair.target },
        "user": event::user_object(ev.uid, ev.euid),
    });
    annotate(&mut doc, sensor, pair);
    doc
}

/// Adds `auditsentry.sensor` and `auditsentry.link.{target,path}` to a document.
pub(super) fn annotate(doc: &mut Value, sensor: Sensor, pair: &LinkPair) {
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "auditsentry".into(),
            json!({
                "sensor": sensor.as_str(),
                "link": { "target": pair.target, "path": pair.path },
            }),
        );
    }
}

/// The ECS document of a link syscall (event.category `file`, event.type `creation`,
/// event.action the call's name), shaped like [`event::document`] for the process fields so the
/// same new-terms fields apply: `process.*` from the SYSCALL record and the process table,
/// `process.parent.*` from the table, `file.path`/`file.target_path` for the link.
pub fn link_document(
    ev: &LinkEvent,
    me: Option<&ProcessInfo>,
    parent: Option<&ProcessInfo>,
    host: &Host,
    pair: &LinkPair,
) -> Value {
    let mut process = Map::new();
    process.insert("pid".into(), json!(ev.task.pid));
    let executable = ev
        .task
        .exe
        .as_deref()
        .map(event::text)
        .or_else(|| me.and_then(ProcessInfo::executable).map(str::to_string));
    let name = match &executable {
        Some(exe) => Some(event::basename(exe).to_string()),
        None => ev.task.comm.as_deref().map(event::text),
    };
    if let Some(name) = name {
        process.insert("name".into(), json!(name));
    }
    if let Some(exe) = executable {
        process.insert("executable".into(), json!(exe));
    }
    if let Some(me) = me {
        event::insert_args(&mut process, me);
    }
    if let Some(cwd) = &ev.task.cwd {
        process.insert("working_directory".into(), json!(event::text(cwd)));
    }
    process.insert("parent".into(), event::parent_object(ev.task.ppid, parent));
    let auditd = event::auditd_object(&event::AuditFacts::of(&ev.task));
    let id = event::event_id(ev.task.node.as_deref(), ev.task.time, ev.task.serial);
    let mut doc = json!({
        "@timestamp": event::timestamp(ev.task.time),
        "event": {
            "kind": "event",
            "category": ["file"],
            "type": ["creation"],
            "action": ev.call.name(),
            "id": id,
        },
        "host": { "os": { "type": "linux" }, "id": host.id, "name": host.name },
        "process": Value::Object(process),
        "file": { "path": pair.path, "target_path": pair.target },
        "user": event::user_object(ev.task.uid, ev.task.euid),
        "auditd": Value::Object(auditd),
    });
    annotate(&mut doc, Sensor::Syscall, pair);
    doc
}

/// Which sensor saw a link (`auditsentry.sensor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensor {
    /// Worked out from an exec of ln / cp -s / busybox ln.
    Exec,
    /// Reported by a symlink/symlinkat/link/linkat audit record.
    Syscall,
    /// Reported by fanotify (`FAN_CREATE` of a symlink in a watched directory).
    Fanotify,
    /// Reported by inotify (`IN_CREATE` of a symlink in a directory fanotify cannot watch); the
    /// creator is the newest recent exec whose arguments name the link.
    Inotify,
}

impl Sensor {
    /// The field value: `exec`, `syscall`, `fanotify` or `inotify`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sensor::Exec => "exec",
            Sensor::Syscall => "syscall",
            Sensor::Fanotify => "fanotify",
            Sensor::Inotify => "inotify",
        }
    }
}
