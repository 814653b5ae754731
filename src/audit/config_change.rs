//! Events → changes of the kernel's audit configuration. A CONFIG_CHANGE record (1305) says what
//! changed (`op=remove_rule key="auditsentry"`, `op=set audit_enabled=0 old=1`, ...); the SYSCALL
//! record of the same event, when audit was on, says who did it (pid, comm, exe). The live agent's
//! coverage watchdog reads these to react at once and to name the culprit in its warning.

use super::reassemble::Event;
use super::record::{types, AuditTime, Record};
use super::task::{parse_u64, string_field};
use std::fmt;

/// `auid` and `ses` of a task that never logged in.
const UNSET: u32 = u32::MAX;

/// One change of the kernel's audit configuration, and who made it when the records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    /// Event time.
    pub time: AuditTime,
    /// Event serial.
    pub serial: u32,
    /// `op=`: `add_rule`, `remove_rule`, `set`, ...
    pub op: Option<String>,
    /// `key=` of an added or removed rule.
    pub key: Option<Vec<u8>>,
    /// Settings changed by `op=set`, in record order: (`audit_enabled`, new value, `old=`).
    pub set: Vec<(String, u64, Option<u64>)>,
    /// `res=`: 1 when the change was made, 0 when the kernel refused it.
    pub res: Option<u64>,
    /// Login uid of the changer (CONFIG_CHANGE or SYSCALL record).
    pub auid: Option<u32>,
    /// Process that made the change (from `pid=` of either record).
    pub pid: Option<u32>,
    /// `comm=` of the SYSCALL record.
    pub comm: Option<Vec<u8>>,
    /// `exe=` of the SYSCALL record.
    pub exe: Option<Vec<u8>>,
}

impl ConfigChange {
    /// The change in `event`, if it holds a CONFIG_CHANGE record.
    pub fn from_event(event: &Event) -> Option<ConfigChange> {
        let cc = event
            .records
            .iter()
            .find(|r| r.rtype == types::CONFIG_CHANGE)?;
        let sc = event.records.iter().find(|r| r.rtype == types::SYSCALL);
        let num = |r: &Record, k: &[u8]| parse_u64(r.field(k)).and_then(|n| u32::try_from(n).ok());
        let either = |k: &[u8]| num(cc, k).or_else(|| sc.and_then(|s| num(s, k)));
        let mut set = Vec::new();
        let mut fields = cc.fields().peekable();
        while let Some((k, v)) = fields.next() {
            // `op=set NAME=NEW old=OLD`: each setting is followed by its old value.
            if matches!(
                k,
                b"op" | b"auid" | b"ses" | b"res" | b"pid" | b"uid" | b"subj" | b"key"
            ) || k == b"old"
            {
                continue;
            }
            let Some(new) = parse_u64(Some(v)) else {
                continue;
            };
            let old = match fields.peek() {
                Some((b"old", o)) => parse_u64(Some(o)),
                _ => None,
            };
            set.push((String::from_utf8_lossy(k).into_owned(), new, old));
        }
        Some(ConfigChange {
            time: event.time,
            serial: event.serial,
            op: string_field(cc, b"op").map(|v| String::from_utf8_lossy(&v).into_owned()),
            key: string_field(cc, b"key"),
            set,
            res: parse_u64(cc.field(b"res")),
            auid: either(b"auid"),
            pid: either(b"pid"),
            comm: sc.and_then(|s| string_field(s, b"comm")),
            exe: sc.and_then(|s| string_field(s, b"exe")),
        })
    }

    /// The new value of setting `name` (`audit_enabled`, `audit_pid`, ...) if this change set it.
    pub fn new_value(&self, name: &str) -> Option<u64> {
        self.set.iter().find(|(k, _, _)| k == name).map(|s| s.1)
    }

    /// Whether the kernel carried the change out (`res=1`); unknown counts as done.
    pub fn succeeded(&self) -> bool {
        self.res != Some(0)
    }

    /// Who made the change, as far as the records say: `pid=… auid=… comm="…" exe="…"`.
    pub fn who(&self) -> String {
        let mut out = Vec::new();
        if let Some(pid) = self.pid {
            out.push(format!("pid={pid}"));
        }
        match self.auid {
            Some(UNSET) => out.push("auid=unset".into()),
            Some(auid) => out.push(format!("auid={auid}")),
            None => {}
        }
        if let Some(comm) = &self.comm {
            out.push(format!("comm={}", quoted(comm)));
        }
        if let Some(exe) = &self.exe {
            out.push(format!("exe={}", quoted(exe)));
        }
        if out.is_empty() {
            "an unknown process".into()
        } else {
            out.join(" ")
        }
    }
}

/// Bytes as one quoted, escaped token: control and format characters (newlines, bidi controls)
/// are written as escapes, so a crafted name cannot break or reorder a log line.
pub fn quoted(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

impl fmt::Display for ConfigChange {
    /// `op=set audit_enabled=0 old=1` or `op=remove_rule key="auditsentry"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op={}", self.op.as_deref().unwrap_or("?"))?;
        for (k, new, old) in &self.set {
            write!(f, " {k}={new}")?;
            if let Some(old) = old {
                write!(f, " old={old}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, " key={}", quoted(key))?;
        }
        if self.res == Some(0) {
            f.write_str(" res=0")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::reassemble::test_support::parse_line;
    use crate::audit::reassemble::EventEnd;

    fn event(lines: &[&str]) -> Event {
        let records: Vec<Record> = lines
            .iter()
            .map(|l| parse_line(l.as_bytes()).expect("test line"))
            .collect();
        Event {
            node: None,
            serial: records[0].serial,
            time: records[0].time,
            records,
            end: EventEnd::Eoe,
            truncated: false,
        }
    }

    /// `auditctl -e 0` on Linux 6.18, as the multicast group delivered it.
    #[test]
    fn disable_names_the_setting_and_the_process() {
        let ev = event(&[
            "type=CONFIG_CHANGE msg=audit(1796470075.811:6324): op=set audit_enabled=0 old=1 auid=4294967295 ses=4294967295 res=1",
            "type=SYSCALL msg=audit(1796470075.811:6324): arch=c000003e syscall=44 success=yes exit=60 a0=4 a1=7ffe4747ccb0 a2=3c a3=0 items=0 ppid=17946 pid=18075 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"auditctl\" exe=\"/usr/sbin/auditctl\" key=(null)",
        ]);
        let c = ConfigChange::from_event(&ev).expect("a config change");
        assert_eq!(c.op.as_deref(), Some("set"));
        assert_eq!(c.new_value("audit_enabled"), Some(0));
        assert_eq!(c.set, vec![("audit_enabled".to_string(), 0, Some(1))]);
        assert_eq!(c.pid, Some(18075));
        assert!(c.succeeded());
        assert_eq!(c.to_string(), "op=set audit_enabled=0 old=1");
        assert_eq!(
            c.who(),
            "pid=18075 auid=unset comm=\"auditctl\" exe=\"/usr/sbin/auditctl\""
        );
    }

    /// One of the records `auditctl -D` makes: one per rule removed.
    #[test]
    fn rule_removal_keeps_the_key() {
        let ev = event(&[
            "type=CONFIG_CHANGE msg=audit(1796470075.271:6322): auid=0 ses=3 op=remove_rule key=\"auditsentry\" list=4 res=1",
        ]);
        let c = ConfigChange::from_event(&ev).expect("a config change");
        assert_eq!(c.op.as_deref(), Some("remove_rule"));
        assert_eq!(c.key.as_deref(), Some(&b"auditsentry"[..]));
        assert_eq!(c.set, vec![("list".to_string(), 4, None)]);
        assert_eq!(c.who(), "auid=0");
        assert_eq!(c.pid, None);
    }

    #[test]
    fn crafted_names_stay_one_line() {
        let ev = event(&[
            "type=CONFIG_CHANGE msg=audit(1.0:1): op=set audit_enabled=0 old=1 res=0",
            "type=SYSCALL msg=audit(1.0:1): arch=c000003e syscall=44 pid=5 comm=6C6E0A7820E280AE exe=\"/x\"",
        ]);
        let c = ConfigChange::from_event(&ev).expect("a config change");
        assert!(!c.succeeded());
        let who = c.who();
        assert!(!who.contains('\n') && !who.contains('\u{202e}'), "{who}");
        assert!(who.contains("\\n") && who.contains("\\u{202e}"), "{who}");
    }

    #[test]
    fn events_without_config_change_are_none() {
        let ev = event(&["type=SYSCALL msg=audit(1.0:1): arch=c000003e syscall=59 pid=5"]);
        assert_eq!(ConfigChange::from_event(&ev), None);
    }
}
