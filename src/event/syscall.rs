//! File and network events as ECS documents shaped like Elastic Defend's
//! `logs-endpoint.events.file` and `logs-endpoint.events.network`: the change or connection, the
//! acting process (from the SYSCALL record, completed by what the process table knows of it and
//! its parent), the user and the host. They are only made while a loaded rule needs them; the
//! rules see them through a [`FileView`] or [`NetView`], and the JSON document is built for an
//! alert or an events output.

use serde_json::{Map, Value};

use super::{auditd_object, host_object, object, parent_object, strings, user_object};
use super::{entity_id, event_id, text, timestamp, AuditFacts, Host};
use crate::audit::fileop::{file_extension, file_name, FileEvent};
use crate::audit::netconn::{Endpoint, NetAction, NetEvent};
use crate::audit::task::Task;
use crate::proc::{Instance, ProcessInfo};

mod view;
pub use view::{Acting, FileView, NetView, Slot};

/// Adds `process.entity_id` and `process.parent.entity_id` to a file or network `doc` from the
/// process table's entries for the acting process and its parent (see [`super::entity_id`]), so
/// sequences joined on them can mix exec, file and network stages.
pub fn add_entity_ids<T>(
    doc: &mut Value,
    host: &Host,
    me: Option<(T, Instance)>,
    parent: Option<(T, Instance)>,
) {
    let Some(process) = doc.get_mut("process").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some((_, instance)) = me {
        process.insert("entity_id".into(), Value::String(entity_id(host, instance)));
    }
    if let (Some((_, instance)), Some(Value::Object(par))) = (parent, process.get_mut("parent")) {
        par.insert("entity_id".into(), Value::String(entity_id(host, instance)));
    }
}

/// The ECS document of a file change by the process `me` (what the table knows of `ev.pid`),
/// child of `parent`.
pub fn file_document(
    ev: &FileEvent,
    me: Option<&ProcessInfo>,
    parent: Option<&ProcessInfo>,
    host: &Host,
) -> Value {
    let mut file = Map::new();
    let path = text(&ev.path);
    file.insert("name".into(), Value::String(text(file_name(&ev.path))));
    if let Some(ext) = file_extension(&ev.path) {
        file.insert("extension".into(), Value::String(text(ext)));
    }
    if ev.resolved {
        if let Some((dir, _)) = path.rsplit_once('/') {
            let dir = if dir.is_empty() { "/" } else { dir };
            file.insert("directory".into(), Value::from(dir));
        }
    }
    file.insert("path".into(), Value::String(path));
    if let Some(target) = &ev.target {
        file.insert("target_path".into(), Value::String(text(target)));
    }
    if let Some(old) = &ev.original {
        let mut original = Map::new();
        original.insert("path".into(), Value::String(text(old)));
        original.insert("name".into(), Value::String(text(file_name(old))));
        if let Some(ext) = file_extension(old) {
            original.insert("extension".into(), Value::String(text(ext)));
        }
        file.insert(
            "Ext".into(),
            object([("original", Value::Object(original))]),
        );
    }
    let mut auditd = auditd_object(&AuditFacts::of(&ev.task));
    auditd.insert("syscall".into(), Value::from(ev.call));
    if !ev.resolved {
        auditd.insert("path_unresolved".into(), Value::Bool(true));
    }
    let mut doc = common(&ev.task, &file_kind(ev), me, parent, host, auditd);
    doc.insert("file".into(), Value::Object(file));
    Value::Object(doc)
}

/// The ECS document of a connection, accept or bind by the process `me`, child of `parent`.
pub fn network_document(
    ev: &NetEvent,
    me: Option<&ProcessInfo>,
    parent: Option<&ProcessInfo>,
    host: &Host,
) -> Value {
    let mut network = Map::new();
    if let Some(t) = ev.transport {
        network.insert("transport".into(), Value::from(t));
    }
    network.insert("type".into(), Value::from(ev.ip_type()));
    if let Some(d) = direction(ev.action) {
        network.insert("direction".into(), Value::from(d));
    }
    let mut auditd = auditd_object(&AuditFacts::of(&ev.task));
    auditd.insert("syscall".into(), Value::from(ev.call));
    let mut doc = common(&ev.task, &net_kind(ev), me, parent, host, auditd);
    if let Some(d) = ev.destination {
        doc.insert("destination".into(), endpoint(d));
    }
    if let Some(s) = ev.source {
        doc.insert("source".into(), endpoint(s));
    }
    doc.insert("network".into(), Value::Object(network));
    Value::Object(doc)
}

/// `{ip, port}`.
fn endpoint((ip, port): Endpoint) -> Value {
    object([
        ("ip", Value::String(ip.to_string())),
        ("port", Value::from(port)),
    ])
}

/// `network.direction` of a connection or accept; a bind has none.
fn direction(action: NetAction) -> Option<&'static str> {
    match action {
        NetAction::Attempted => Some("egress"),
        NetAction::Accepted => Some("ingress"),
        NetAction::Bind => None,
    }
}

/// `event.category`, `event.type` and `event.action` of a document.
struct Kind {
    category: &'static str,
    event_type: &'static str,
    action: &'static str,
}

/// The [`Kind`] of a file document.
fn file_kind(ev: &FileEvent) -> Kind {
    Kind {
        category: "file",
        event_type: ev.action.event_type(),
        action: ev.action.action(),
    }
}

/// The [`Kind`] of a network document.
fn net_kind(ev: &NetEvent) -> Kind {
    Kind {
        category: "network",
        event_type: match ev.action {
            NetAction::Bind => "info",
            _ => "start",
        },
        action: ev.action.action(),
    }
}

/// The fields every file and network document has: time, event, host, process, user, auditd.
fn common(
    task: &Task,
    kind: &Kind,
    me: Option<&ProcessInfo>,
    parent: Option<&ProcessInfo>,
    host: &Host,
    auditd: Map<String, Value>,
) -> Map<String, Value> {
    let mut process = Map::new();
    process.insert("pid".into(), Value::from(task.pid));
    // The kernel's exe= is the truth about what runs; the table adds the arguments.
    let exe = task.exe.as_deref().map(text);
    let name = match &exe {
        Some(exe) => Some(super::basename(exe).to_string()),
        None => task.comm.as_deref().map(text),
    };
    if let Some(name) = name {
        process.insert("name".into(), Value::String(name));
    }
    if let Some(exe) = exe {
        process.insert("executable".into(), Value::String(exe));
    }
    if let Some(me) = me {
        process.insert("args".into(), strings(me.args()));
        process.insert("args_count".into(), Value::from(me.args_len()));
        process.insert("command_line".into(), Value::String(me.command_line()));
    }
    if let Some(cwd) = &task.cwd {
        process.insert("working_directory".into(), Value::String(text(cwd)));
    }
    process.insert("parent".into(), parent_object(task.ppid, parent));
    let event = object([
        ("kind", Value::from("event")),
        ("category", Value::Array(vec![Value::from(kind.category)])),
        ("type", Value::Array(vec![Value::from(kind.event_type)])),
        ("action", Value::from(kind.action)),
        (
            "id",
            Value::String(event_id(task.node.as_deref(), task.time, task.serial)),
        ),
    ]);
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), Value::String(timestamp(task.time)));
    doc.insert("event".into(), event);
    doc.insert("host".into(), host_object(host));
    doc.insert("process".into(), Value::Object(process));
    doc.insert("user".into(), user_object(task.uid, task.euid));
    doc.insert("auditd".into(), Value::Object(auditd));
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::fileop::FileAction;
    use crate::audit::record::AuditTime;
    use serde_json::json;

    /// A `mv` task with some facts unknown (also the generated views' starting point).
    pub(super) fn task() -> Task {
        Task {
            node: None,
            serial: 9,
            time: AuditTime { sec: 0, msec: 5 },
            arch: Some(0xc000_003e),
            syscall: 82,
            pid: 20,
            ppid: 10,
            uid: Some(1000),
            euid: Some(0),
            suid: None,
            gid: None,
            egid: None,
            sgid: None,
            euid_name: None,
            gid_name: None,
            auid: None,
            ses: None,
            tty: None,
            comm: Some(b"mv".to_vec()),
            exe: Some(b"/usr/bin/mv".to_vec()),
            key: Some(b"auditsentry-file".to_vec()),
            cwd: Some(b"/root".to_vec()),
        }
    }

    #[test]
    fn file_and_network_documents_name_the_process_instances_as_execs_do() {
        let mut doc = json!({"process": {"pid": 20, "parent": {"pid": 10}}});
        let me = Instance { pid: 20, stamp: 7 };
        let parent = Instance { pid: 10, stamp: 3 };
        add_entity_ids(&mut doc, &host(), Some(((), me)), Some(((), parent)));
        assert_eq!(doc["process"]["entity_id"], json!(entity_id(&host(), me)));
        assert_eq!(
            doc["process"]["parent"]["entity_id"],
            json!(entity_id(&host(), parent))
        );
        let mut unknown = json!({"process": {"pid": 20, "parent": {"pid": 10}}});
        add_entity_ids::<()>(&mut unknown, &host(), None, None);
        assert!(unknown["process"].get("entity_id").is_none());
    }

    fn host() -> Host {
        Host {
            id: "h1".into(),
            name: "web1".into(),
        }
    }

    #[test]
    fn a_rename_document() {
        let ev = FileEvent {
            task: task(),
            action: FileAction::Rename,
            call: "rename",
            path: b"/etc/cron.d/job".to_vec(),
            original: Some(b"/tmp/job.sh".to_vec()),
            target: None,
            resolved: true,
        };
        let me = ProcessInfo::from_bytes(Some(b"/usr/bin/mv"), Some(b"mv"), &[b"mv".to_vec()]);
        let doc = file_document(&ev, Some(&me), None, &host());
        assert_eq!(
            doc,
            json!({
                "@timestamp": "1970-01-01T00:00:00.005Z",
                "event": {"kind": "event", "category": ["file"], "type": ["change"],
                          "action": "rename", "id": "0.005:9"},
                "host": {"os": {"type": "linux"}, "id": "h1", "name": "web1"},
                "process": {"pid": 20, "name": "mv", "executable": "/usr/bin/mv",
                            "args": ["mv"], "args_count": 1, "command_line": "mv",
                            "working_directory": "/root", "parent": {"pid": 10}},
                "user": {"id": "0", "effective": {"id": "0"}, "Ext": {"real": {"id": "1000"}}},
                "auditd": {"serial": 9, "key": "auditsentry-file", "syscall": "rename"},
                "file": {"path": "/etc/cron.d/job", "name": "job", "directory": "/etc/cron.d",
                         "Ext": {"original": {"path": "/tmp/job.sh", "name": "job.sh",
                                              "extension": "sh"}}}
            })
        );
    }

    #[test]
    fn a_connection_document() {
        let ev = NetEvent {
            task: task(),
            action: NetAction::Attempted,
            call: "connect",
            destination: Some(("10.1.2.3".parse().unwrap(), 4444)),
            source: None,
            transport: Some("tcp"),
        };
        let doc = network_document(&ev, None, None, &host());
        assert_eq!(doc["event"]["category"], json!(["network"]));
        assert_eq!(doc["event"]["action"], json!("connection_attempted"));
        assert_eq!(doc["destination"], json!({"ip": "10.1.2.3", "port": 4444}));
        assert_eq!(
            doc["network"],
            json!({"transport": "tcp", "type": "ipv4", "direction": "egress"})
        );
        assert_eq!(doc.get("source"), None);
        assert_eq!(doc["process"].get("args"), None);
    }
}
