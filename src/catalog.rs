//! The one list of what the agent's documents can hold: for each kind of event it makes (keyed
//! by ECS `event.category`), every field path its documents may carry. Rules are checked against
//! it when they load: a rule that reads a field no event of its kind can hold would never match
//! (or never exclude) what Elastic's would, so it is refused with the fields named, rather than
//! loaded to stay silent.
//!
//! A new kind of event adds its category and fields to [`KINDS`]; a field added to a document
//! is added here too (a test compares every document of the corpus with this list).

/// One kind of event the agent makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKind {
    /// Its `event.category`, as EQL names it (`process where …`).
    pub category: &'static str,
    /// Every field path its documents may hold, in parts (a field may still be absent from one
    /// document: a parent the agent did not know, a name the host did not have).
    pub fields: &'static [&'static [&'static str]],
}

/// Every field of a process (exec) document (`crate::event::document`). Each kind lists all of
/// its fields, `@timestamp`, `event.*` and `host.*` included.
pub const PROCESS: &[&str] = &[
    "@timestamp",
    "event.kind",
    "event.category",
    "event.type",
    "event.action",
    "event.outcome",
    "event.id",
    "host.os.type",
    "host.id",
    "host.name",
    "process.pid",
    "process.entity_id",
    "process.name",
    "process.executable",
    "process.args",
    "process.args_count",
    "process.command_line",
    "process.working_directory",
    "process.title",
    "process.interactive",
    "process.user.id",
    "process.real_user.id",
    "process.saved_user.id",
    "process.group.id",
    "process.real_group.id",
    "process.saved_group.id",
    "process.parent.pid",
    "process.parent.entity_id",
    "process.parent.name",
    "process.parent.executable",
    "process.parent.args",
    "process.parent.args_count",
    "process.parent.command_line",
    "process.parent.user.id",
    "process.parent.group.id",
    "user.id",
    "user.name",
    "user.effective.id",
    "user.Ext.real.id",
    "group.id",
    "group.name",
    "group.Ext.real.id",
    "auditd.serial",
    "auditd.key",
    "auditd.auid",
    "auditd.session",
    "auditd.tty",
    "auditd.node",
    "auditd.args_truncated",
];

/// Fields a file document (`crate::event::syscall`) can hold besides [`COMMON_FIELDS`].
pub const FILE_FIELDS: &[&str] = &[
    "file.path",
    "file.name",
    "file.extension",
    "file.directory",
    "file.target_path",
    "file.Ext.original.path",
    "file.Ext.original.name",
    "file.Ext.original.extension",
    "auditd.path_unresolved",
];

/// Fields a network document can hold besides [`COMMON_FIELDS`].
pub const NETWORK_FIELDS: &[&str] = &[
    "destination.ip",
    "destination.port",
    "source.ip",
    "source.port",
    "network.transport",
    "network.type",
    "network.direction",
];

/// Fields every file and network document can hold.
pub const COMMON_FIELDS: &[&str] = &[
    "@timestamp",
    "event.kind",
    "event.category",
    "event.type",
    "event.action",
    "event.id",
    "host.os.type",
    "host.id",
    "host.name",
    "process.pid",
    "process.entity_id",
    "process.name",
    "process.executable",
    "process.args",
    "process.args_count",
    "process.command_line",
    "process.working_directory",
    "process.parent.pid",
    "process.parent.entity_id",
    "process.parent.name",
    "process.parent.executable",
    "process.parent.args",
    "user.id",
    "user.effective.id",
    "user.Ext.real.id",
    "auditd.serial",
    "auditd.key",
    "auditd.auid",
    "auditd.session",
    "auditd.tty",
    "auditd.node",
    "auditd.syscall",
];

/// Every kind of event the agent makes, by category.
pub const KINDS: &[EventKind] = &[
    EventKind {
        category: "process",
        fields: &[PROCESS],
    },
    EventKind {
        category: "file",
        fields: &[COMMON_FIELDS, FILE_FIELDS],
    },
    EventKind {
        category: "network",
        fields: &[COMMON_FIELDS, NETWORK_FIELDS],
    },
];

/// The number of a field path among every path the agent's documents can hold ([`paths`]): rules
/// resolve their fields to it once when they load, and typed documents answer by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(u16);

impl FieldId {
    /// Its place in [`paths`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Every field path of every kind, sorted, each once: what a [`FieldId`] numbers.
pub fn paths() -> &'static [&'static str] {
    static PATHS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let mut all: Vec<&'static str> = KINDS
            .iter()
            .flat_map(|k| k.fields.iter().flat_map(|p| p.iter().copied()))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    })
}

/// The number of `path` in [`paths`], if some kind of document can hold it.
pub fn field_id(path: &str) -> Option<FieldId> {
    let index = paths().binary_search(&path).ok()?;
    u16::try_from(index).ok().map(FieldId)
}

/// The kind of event of `category`, if the agent makes it.
pub fn kind(category: &str) -> Option<&'static EventKind> {
    KINDS.iter().find(|k| k.category == category)
}

/// The categories the agent makes, in [`KINDS`] order.
pub fn categories() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.category)
}

/// Whether documents of `category` (any kind for `None`: `any where`, or a KQL query) may hold
/// `field`. A field pattern with `*` (KQL allows them) counts when it matches one.
pub fn provides(category: Option<&str>, field: &str) -> bool {
    let holds = |k: &EventKind| {
        k.fields
            .iter()
            .flat_map(|p| p.iter())
            .any(|f| field_matches(field, f))
    };
    match category {
        Some(c) => kind(c).is_some_and(holds),
        None => KINDS.iter().any(holds),
    }
}

/// The fields of `fields` that no document of `category` can hold, in the order given.
pub fn missing<'a>(category: Option<&str>, fields: &'a [String]) -> Vec<&'a str> {
    fields
        .iter()
        .map(String::as_str)
        .filter(|f| !provides(category, f))
        .collect()
}

/// `pattern` (a field name, `*` standing for any run of characters) against `field`.
fn field_matches(pattern: &str, field: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == field;
    };
    let Some(mut left) = field.strip_prefix(head) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return left.ends_with(part);
        }
        match left.find(part) {
            Some(at) => left = &left[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_events_hold_the_exec_fields_and_not_defends_own() {
        assert!(provides(Some("process"), "process.entity_id"));
        assert!(provides(Some("process"), "user.name"));
        assert!(provides(None, "process.parent.command_line"));
        assert!(!provides(Some("process"), "process.Ext.ancestry"));
        assert!(!provides(Some("process"), "process.code_signature.trusted"));
        assert!(provides(Some("file"), "file.path"));
        assert!(provides(Some("network"), "destination.port"));
        assert!(!provides(Some("file"), "destination.port"));
        assert!(
            !provides(Some("file"), "event.outcome"),
            "set on execs only"
        );
        let fields = ["process.name", "process.Ext.x", "file.path"].map(String::from);
        assert_eq!(
            missing(Some("process"), &fields),
            ["process.Ext.x", "file.path"]
        );
        assert_eq!(
            categories().collect::<Vec<_>>(),
            ["process", "file", "network"]
        );
    }

    #[test]
    fn kql_field_patterns_count_when_they_name_a_field() {
        assert!(provides(None, "process.parent.*"));
        assert!(provides(None, "*.entity_id"));
        assert!(provides(None, "process.*.args_count"));
        assert!(!provides(None, "process.Ext.*"));
        assert!(!provides(None, "*.code_signature.*"));
    }

    #[test]
    fn every_kind_lists_the_fields_of_every_document() {
        for k in KINDS {
            for f in ["@timestamp", "event.category", "host.id", "host.os.type"] {
                assert!(
                    k.fields.iter().any(|p| p.contains(&f)),
                    "{}: {f}",
                    k.category
                );
            }
        }
    }
}
