//! The extended detector itself: one decision for the three sensors (exec, link syscall, link
//! watcher), a bounded memory of recent links so each link alerts once, and of recent execs to
//! attribute a watched link to its creator.

use std::collections::VecDeque;

use serde_json::Value;
use thiserror::Error;

use super::coreutils::links_of_exec;
use super::document::{annotate, fanotify_document, link_document, Sensor};
use super::paths::{dirname, normalize, LinkPair};
use super::policy::{PolicyError, SeedPolicy};
use super::{DEDUPE_WINDOW_MS, RULE_ID, RULE_NAME};
use crate::audit::link::LinkEvent;
use crate::event::{self, ExecView, Host};
use crate::proc::ProcessInfo;
use crate::rule::file::{self, Rule};
use crate::rule::kql::{self, KqlError};
use crate::source::fanotify::{FanEvent, Watcher};

/// Most remembered recent links (bounded memory whatever the input).
const DEDUPE_CAPACITY: usize = 4096;

/// Most remembered recent execs (pid, parent pid, time), for the link watchers' attribution:
/// inotify's report reaches the detector 1.5 s after the link was made, so at 2,000 exec/s the
/// creator is among the last 3,000.
pub const PARENTS_CAPACITY: usize = 4096;

/// Why the detector cannot be built from a seed rule.
#[derive(Debug, Error)]
pub enum DetectorError {
    /// Its own query failed to compile.
    #[error("the path-aware rule's query: {0}")]
    Query(#[from] KqlError),
    /// The seed's query does not give the path lists.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// The link a syscall made, resolved: the name against the cwd (when its directory is known),
/// a symlink's text against the link's directory, a hard link's source against the cwd.
pub fn link_pair(ev: &LinkEvent) -> LinkPair {
    let cwd = ev.task.cwd.as_deref().map(event::text).unwrap_or_default();
    let link = event::text(&ev.link);
    let target = event::text(&ev.target);
    let path = if ev.link_dir_known {
        normalize(&cwd, &link)
    } else {
        normalize("", &link)
    };
    let target = if ev.call.is_symbolic() {
        normalize(dirname(&path), &target)
    } else if ev.target_dir_known {
        normalize(&cwd, &target)
    } else {
        normalize("", &target)
    };
    LinkPair { target, path }
}

/// A link recently alerted on (or deduplicated), for the one-alert-per-link rule.
#[derive(Debug, Clone)]
struct Recent {
    time_ms: u64,
    pid: u32,
    path: String,
}

/// Whether two link paths name the same link; a relative one (directory unknown) matches an
/// absolute one ending in it.
fn same_link(a: &str, b: &str) -> bool {
    let suffix = |abs: &str, rel: &str| {
        abs.strip_suffix(rel)
            .is_some_and(|head| head.ends_with('/'))
    };
    a == b
        || (!a.starts_with('/') && b.starts_with('/') && suffix(b, a))
        || (!b.starts_with('/') && a.starts_with('/') && suffix(a, b))
}

/// The extended detector: decides on resolved links from both sensors and deduplicates them.
/// It returns alert documents; the pipeline gates them with [`ExtendedDetector::rule`].
#[derive(Debug)]
pub struct ExtendedDetector {
    rule: Rule,
    policy: SeedPolicy,
    recent: VecDeque<Recent>,
    parents: VecDeque<RecentExec>,
}

/// An exec the link watchers may attribute a link to.
#[derive(Debug, Clone, Copy)]
struct RecentExec {
    pid: u32,
    ppid: u32,
    time_ms: u64,
}

impl ExtendedDetector {
    /// The detector with its built-in rule (id [`RULE_ID`]), deciding with the built-in seed
    /// rule's lists ([`Self::from_seed`]).
    pub fn new() -> Result<Self, DetectorError> {
        Self::from_seed(&file::builtin())
    }

    /// The detector for `seed`: its path lists come from the seed's query ([`SeedPolicy`]), and
    /// its rule has the seed's severity, risk score, new-terms fields and window, and schedule.
    pub fn from_seed(seed: &Rule) -> Result<Self, DetectorError> {
        let policy = SeedPolicy::from_rule(seed)?;
        let query_text = "host.os.type:linux";
        Ok(ExtendedDetector {
            rule: Rule {
                id: RULE_ID.to_string(),
                name: RULE_NAME.to_string(),
                description: "A system binary linked into a suspicious location (or the \
                    reverse), worked out from resolved paths of ln / cp -s / busybox ln execs and \
                    of link system calls."
                    .to_string(),
                severity: seed.severity,
                risk_score: seed.risk_score,
                language: "kuery".to_string(),
                query_text: query_text.to_string(),
                query: kql::parse(query_text)?.into(),
                kind: seed.kind.clone(),
                max_signals: seed.max_signals,
                from: seed.from.clone(),
                interval: seed.interval.clone(),
                source: file::BUILTIN_SOURCE.to_string(),
            },
            policy,
            recent: VecDeque::new(),
            parents: VecDeque::new(),
        })
    }

    /// The seed's path lists the detector decides with.
    pub fn policy(&self) -> &SeedPolicy {
        &self.policy
    }

    /// The rule its alerts carry and the new-terms gate keys on.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Whether the link at `path` by `pid` (by any process, with `any_pid`) was already seen
    /// within [`DEDUPE_WINDOW_MS`]; if not, remembers it.
    fn seen(&mut self, pid: u32, any_pid: bool, path: &str, time_ms: u64) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|r| time_ms.saturating_sub(r.time_ms) > DEDUPE_WINDOW_MS)
            || self.recent.len() >= DEDUPE_CAPACITY
        {
            self.recent.pop_front();
        }
        let hit = self.recent.iter().any(|r| {
            (any_pid || r.pid == pid)
                && r.time_ms.abs_diff(time_ms) <= DEDUPE_WINDOW_MS
                && same_link(&r.path, path)
        });
        if !hit {
            self.recent.push_back(Recent {
                time_ms,
                pid,
                path: path.to_string(),
            });
        }
        hit
    }

    /// Exec sensor: reads the exec's process.name, .args and .working_directory. Returns the alert
    /// document — the exec's document plus `auditsentry.sensor` = `exec` and the first new
    /// suspicious link — or `None`.
    pub fn on_exec(&mut self, view: &ExecView<'_>, time_ms: u64) -> Option<Value> {
        let pid = view.ev.task.pid;
        self.remember_exec(pid, view.ev.task.ppid, time_ms);
        let name = view.me.name()?;
        let cwd = view
            .ev
            .task
            .cwd
            .as_deref()
            .map(event::text)
            .unwrap_or_default();
        let args: Vec<String> = view.me.args().map(String::from).collect();
        let mut first = None;
        for pair in links_of_exec(name, &args, &cwd, &self.policy) {
            if self.policy.is_suspicious_pair(&pair)
                && !self.seen(pid, false, &pair.path, time_ms)
                && first.is_none()
            {
                first = Some(pair);
            }
        }
        let pair = first?;
        let mut out = view.document();
        annotate(&mut out, Sensor::Exec, &pair);
        Some(out)
    }

    /// Syscall sensor: `me` and `parent` are what the process table knows of the caller and its
    /// parent. Returns the alert document of a new suspicious link, or `None`.
    pub fn on_link(
        &mut self,
        ev: &LinkEvent,
        me: Option<&ProcessInfo>,
        parent: Option<&ProcessInfo>,
        host: &Host,
    ) -> Option<Value> {
        let pair = link_pair(ev);
        if !self.policy.is_suspicious_pair(&pair)
            || self.seen(ev.task.pid, false, &pair.path, ev.task.time.as_millis())
        {
            return None;
        }
        Some(link_document(ev, me, parent, host, &pair))
    }

    /// Remembers a recent exec (bounded, oldest forgotten first; lookups take the newest of a
    /// pid).
    fn remember_exec(&mut self, pid: u32, ppid: u32, time_ms: u64) {
        if self.parents.len() >= PARENTS_CAPACITY {
            self.parents.pop_front();
        }
        self.parents.push_back(RecentExec { pid, ppid, time_ms });
    }

    /// The parent pid of `pid` as its latest exec event said, if among the last
    /// [`PARENTS_CAPACITY`] execs: fanotify reads `/proc` after the fact, when a short-lived
    /// creator may already be gone.
    pub fn parent_of(&self, pid: u32) -> Option<u32> {
        self.parents
            .iter()
            .rev()
            .find(|e| e.pid == pid)
            .map(|e| e.ppid)
    }

    /// The creator of a link inotify saw at `path` at `seen_ms`: the newest of the last
    /// [`PARENTS_CAPACITY`] execs before then whose arguments name the link (its file name), as
    /// `(pid, parent pid)` (a later exec naming it — `ls`, a log search — looked at it, it did not
    /// make it). `lookup` gives what the process table knows of a pid. None when no recent exec
    /// names it (a program that makes the link from a name it built or read is not found).
    pub fn creator_of(
        &self,
        path: &str,
        seen_ms: u64,
        mut lookup: impl FnMut(u32) -> Option<std::sync::Arc<ProcessInfo>>,
    ) -> Option<(u32, u32)> {
        let name = path.rsplit('/').next().filter(|n| !n.is_empty())?;
        self.parents
            .iter()
            .rev()
            .filter(|e| e.time_ms <= seen_ms)
            .find(|e| lookup(e.pid).is_some_and(|info| info.args().skip(1).any(|a| names(a, name))))
            .map(|e| (e.pid, e.ppid))
    }

    /// fanotify sensor: a new symlink at `ev.path` (absolute) made by `ev.pid`. The pair is
    /// resolved as [`link_pair`] resolves a symlink call's, so the dedupe key (pid, link path)
    /// is the same whichever sensor reports first. `me` and `parent` as in [`Self::on_link`].
    pub fn on_fanotify(
        &mut self,
        ev: &FanEvent,
        me: Option<&ProcessInfo>,
        parent: Option<&ProcessInfo>,
        host: &Host,
    ) -> Option<Value> {
        let path = normalize("", &ev.path);
        let target = normalize(dirname(&path), &event::text(&ev.target));
        let pair = LinkPair { target, path };
        let inotify = ev.watcher == Watcher::Inotify;
        if !self.policy.is_suspicious_pair(&pair)
            || self.seen(ev.pid, inotify, &pair.path, ev.time_ms)
        {
            return None;
        }
        Some(fanotify_document(ev, me, parent, host, &pair))
    }
}

/// Whether `text` (an argument) names the file `name`: `name` occurs in it as a whole word, not
/// inside a longer file name (`/dev/shm/x`, `'x'` and `x` name `x`; `xy` and `.x` do not).
fn names(text: &str, name: &str) -> bool {
    let part_of_name = |c: char| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '+');
    text.match_indices(name).any(|(at, _)| {
        let before = text.get(..at).and_then(|t| t.chars().next_back());
        let after = text.get(at + name.len()..).and_then(|t| t.chars().next());
        !before.is_some_and(part_of_name) && !after.is_some_and(part_of_name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::link::LinkCall;
    use crate::audit::AuditTime;
    use crate::rule::file::Severity;
    use serde_json::json;
    use std::sync::Arc;

    /// The exec sensor's answer to `name` (run as /usr/bin/NAME by `pid`, child of `ppid`) with
    /// `args` in `cwd`.
    fn on_exec(
        det: &mut ExtendedDetector,
        (pid, ppid): (u32, u32),
        name: &str,
        args: &[&str],
        cwd: &str,
    ) -> Option<Value> {
        let mut task = link_event(pid, 1, "", "", cwd).task;
        task.ppid = ppid;
        task.exe = Some(format!("/usr/bin/{name}").into_bytes());
        let ev = crate::audit::exec::ExecEvent {
            task,
            argv: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            argc: Some(args.len() as u64),
            argv_truncated: false,
            proctitle: None,
        };
        let me = event::process_info(&ev);
        let host = host();
        let known = event::Known::default();
        let view = ExecView::new(&ev, &me, None, &host, &known);
        det.on_exec(&view, 1_000 + u64::from(pid))
    }

    fn link_event(pid: u32, sec: u64, target: &str, link: &str, cwd: &str) -> LinkEvent {
        LinkEvent {
            task: crate::audit::task::Task {
                node: None,
                serial: 9,
                time: AuditTime { sec, msec: 5 },
                arch: Some(0xc000_003e),
                syscall: 266,
                pid,
                ppid: 1,
                uid: Some(0),
                euid: Some(0),
                suid: Some(0),
                gid: Some(0),
                egid: Some(0),
                sgid: Some(0),
                euid_name: None,
                gid_name: None,
                auid: None,
                ses: None,
                tty: None,
                comm: Some(b"python3".to_vec()),
                exe: Some(b"/usr/bin/python3.11".to_vec()),
                key: Some(b"auditsentry-link".to_vec()),
                cwd: Some(cwd.as_bytes().to_vec()),
            },
            call: LinkCall::Symlinkat,
            target: target.as_bytes().to_vec(),
            link: link.as_bytes().to_vec(),
            link_dir_known: true,
            target_dir_known: true,
        }
    }

    fn host() -> Host {
        Host {
            id: "h".to_string(),
            name: "n".to_string(),
        }
    }

    #[test]
    fn exec_alert_carries_sensor_and_resolved_link() {
        let mut det = ExtendedDetector::new().unwrap();
        let out = on_exec(
            &mut det,
            (10, 1),
            "ln",
            &["ln", "-s", "/usr/bin/id", "x"],
            "/tmp",
        )
        .unwrap();
        assert_eq!(
            out["auditsentry"],
            json!({"sensor": "exec", "link": {"target": "/usr/bin/id", "path": "/tmp/x"}})
        );
        assert_eq!(
            out["process"]["args"],
            json!(["ln", "-s", "/usr/bin/id", "x"])
        );
        assert_eq!(out["process"]["working_directory"], "/tmp");
        assert_eq!(out["event"]["action"], "exec");
        assert_eq!(det.rule().id, RULE_ID);
        assert_eq!(det.rule().name, RULE_NAME);
        assert_eq!(det.rule().risk_score, 21);
        assert_eq!(det.rule().severity, Severity::Low);
    }

    #[test]
    fn exec_then_syscall_of_the_same_link_alerts_once() {
        let mut det = ExtendedDetector::new().unwrap();
        let args = ["ln", "-s", "/usr/bin/id", "x"];
        assert!(on_exec(&mut det, (10, 1), "ln", &args, "/tmp").is_some());
        let ev = link_event(10, 1, "/usr/bin/id", "x", "/tmp");
        assert_eq!(det.on_link(&ev, None, None, &host()), None);
        // Another pid making the same path is another link.
        let other = link_event(11, 1, "/usr/bin/id", "x", "/tmp");
        assert!(det.on_link(&other, None, None, &host()).is_some());
        // Past the window the same pid and path alert again.
        let later = link_event(10, 7, "/usr/bin/id", "x", "/tmp");
        assert!(det.on_link(&later, None, None, &host()).is_some());
    }

    #[test]
    fn syscall_link_in_unknown_directory_dedupes_by_name() {
        let mut det = ExtendedDetector::new().unwrap();
        let args = ["ln", "-s", "/usr/bin/id", "/tmp/d/"];
        assert!(on_exec(&mut det, (10, 1), "ln", &args, "/").is_some());
        assert!(det.seen(10, false, "id", 1_001));
        assert!(same_link("/tmp/d/id", "id"));
        assert!(!same_link("/tmp/d/xid", "id"));
    }

    #[test]
    fn syscall_document_shape() {
        let mut det = ExtendedDetector::new().unwrap();
        let me = ProcessInfo::new(
            Some("/usr/bin/python3.11"),
            Some("python3.11"),
            ["python3", "-c", "x"],
        );
        let parent = ProcessInfo::new(Some("/usr/bin/bash"), Some("bash"), ["bash"]);
        let ev = link_event(12, 1_795_858_584, "../usr/bin/id", "x", "/tmp");
        let doc = det.on_link(&ev, Some(&me), Some(&parent), &host()).unwrap();
        assert_eq!(
            doc,
            json!({
                "@timestamp": "2026-11-28T09:36:24.005Z",
                "event": {"kind": "event", "category": ["file"], "type": ["creation"],
                          "action": "symlinkat", "id": "1795858584.005:9"},
                "host": {"os": {"type": "linux"}, "id": "h", "name": "n"},
                "process": {
                    "pid": 12, "name": "python3.11", "executable": "/usr/bin/python3.11",
                    "args": ["python3", "-c", "x"], "args_count": 3,
                    "command_line": "python3 -c x", "working_directory": "/tmp",
                    "parent": {"pid": 1, "name": "bash", "executable": "/usr/bin/bash",
                               "args": ["bash"], "args_count": 1, "command_line": "bash"},
                },
                "file": {"path": "/tmp/x", "target_path": "/usr/bin/id"},
                "user": {"id": "0", "effective": {"id": "0"}, "Ext": {"real": {"id": "0"}}},
                "auditd": {"serial": 9, "key": "auditsentry-link"},
                "auditsentry": {"sensor": "syscall",
                                "link": {"target": "/usr/bin/id", "path": "/tmp/x"}},
            })
        );
    }

    #[test]
    fn benign_links_do_not_alert() {
        let mut det = ExtendedDetector::new().unwrap();
        let args = ["ln", "-s", "/usr/bin/id", "/opt/x"];
        assert_eq!(on_exec(&mut det, (10, 1), "ln", &args, "/"), None);
        let ev = link_event(12, 1, "/tmp/a", "/tmp/b", "/");
        assert_eq!(det.on_link(&ev, None, None, &host()), None);
    }

    fn fan_event(pid: u32, time_ms: u64, target: &str, path: &str) -> FanEvent {
        FanEvent {
            watcher: Watcher::Fanotify,
            path: path.to_string(),
            target: target.as_bytes().to_vec(),
            pid,
            ppid: Some(1),
            uid: Some(1000),
            euid: Some(0),
            cwd: Some("/home/u".to_string()),
            me: None,
            time_ms,
        }
    }

    #[test]
    fn fanotify_and_syscall_reports_of_one_link_alert_once() {
        let mut det = ExtendedDetector::new().unwrap();
        let ev = link_event(10, 1, "../usr/bin/id", "x", "/tmp");
        assert!(det.on_link(&ev, None, None, &host()).is_some());
        // The same link by the same pid, fanotify's clock a little later.
        let fan = fan_event(10, 1_060, "../usr/bin/id", "/tmp/x");
        assert_eq!(det.on_fanotify(&fan, None, None, &host()), None);
        // fanotify first, then audit.
        let fan = fan_event(11, 2_000, "/usr/bin/id", "/tmp/y");
        assert!(det.on_fanotify(&fan, None, None, &host()).is_some());
        let ev = link_event(11, 1, "/usr/bin/id", "/tmp/y", "/");
        assert_eq!(det.on_link(&ev, None, None, &host()), None);
    }

    #[test]
    fn an_inotify_report_dedupes_with_any_pid_and_names_its_sensor() {
        let mut det = ExtendedDetector::new().unwrap();
        let mut ino = fan_event(0, 1_000, "/usr/bin/id", "/dev/shm/x");
        ino.watcher = Watcher::Inotify;
        // Audit's report of the same link (its pid, which inotify does not know) comes first.
        let call = link_event(77, 1, "/usr/bin/id", "/dev/shm/x", "/");
        assert!(det.on_link(&call, None, None, &host()).is_some());
        assert_eq!(det.on_fanotify(&ino, None, None, &host()), None);
        // Alone, it alerts, as the inotify sensor.
        let mut alone = fan_event(0, 1_000, "/usr/bin/id", "/dev/shm/y");
        alone.watcher = Watcher::Inotify;
        let doc = det.on_fanotify(&alone, None, None, &host()).expect("alert");
        assert_eq!(doc["auditsentry"]["sensor"], "inotify");
        assert_eq!(
            doc["event"]["id"]
                .as_str()
                .map(|s| s.starts_with("inotify:")),
            Some(true)
        );
    }

    #[test]
    fn the_creator_of_an_inotify_link_is_the_newest_exec_naming_it() {
        let mut det = ExtendedDetector::new().unwrap();
        let shell = [
            "dash",
            "-c",
            "perl -e 'symlink q(/usr/bin/id), q(/dev/shm/evil)'",
        ];
        let perl = ["perl", "-e", "symlink q(/usr/bin/id), q(/dev/shm/evil)"];
        let mut table = std::collections::HashMap::new();
        for (pid, ppid, args) in [
            (20, 1, &shell[..]),
            (21, 20, &perl[..]),
            (22, 1, &["true"][..]),
        ] {
            on_exec(&mut det, (pid, ppid), args[0], args, "/");
            table.insert(pid, Arc::new(ProcessInfo::new(None, Some(args[0]), args)));
        }
        let lookup = |pid| table.get(&pid).cloned();
        // (The helper execs pid N at 1,000 + N ms.)
        assert_eq!(
            det.creator_of("/dev/shm/evil", 1_030, lookup),
            Some((21, 20))
        );
        // argv[0] does not count, a name inside a longer word is not named, and a name no exec
        // gave is nobody's.
        assert_eq!(det.creator_of("/dev/shm/true", 1_030, lookup), None);
        assert_eq!(det.creator_of("/dev/shm/sym", 1_030, lookup), None);
        assert_eq!(det.creator_of("/dev/shm/other", 1_030, lookup), None);
        assert_eq!(det.creator_of("/dev/shm/", 1_030, lookup), None);
        // A name only the shell's command line holds is the shell's.
        assert_eq!(det.creator_of("/tmp/perl", 1_030, lookup), Some((20, 1)));
        // Seen before perl's exec: the shell's (perl came later, it only looked).
        assert_eq!(
            det.creator_of("/dev/shm/evil", 1_020, lookup),
            Some((20, 1))
        );
        assert_eq!(det.creator_of("/dev/shm/evil", 1_019, lookup), None);
    }

    #[test]
    fn names_is_a_whole_word_match() {
        for (text, name, want) in [
            ("/dev/shm/x", "x", true),
            ("symlink 'id', 'x';", "x", true),
            ("x", "x", true),
            ("/dev/shm/xy", "x", false),
            ("/dev/shm/.x", "x", false),
            ("a-x", "x", false),
            ("é x", "x", true),
            ("xéx", "é", false),
        ] {
            assert_eq!(names(text, name), want, "{text:?} names {name:?}");
        }
    }

    #[test]
    fn exec_documents_teach_parents_for_fanotify() {
        let mut det = ExtendedDetector::new().unwrap();
        assert_eq!(on_exec(&mut det, (500, 77), "perl", &["perl"], "/"), None);
        assert_eq!(det.parent_of(500), Some(77));
        assert_eq!(det.parent_of(501), None);
        for pid in 0..PARENTS_CAPACITY as u32 {
            det.remember_exec(1_000 + pid, 1, 2_000);
        }
        assert_eq!(det.parent_of(500), None, "the oldest is forgotten");
        assert_eq!(det.parent_of(1_000), Some(1));
    }

    #[test]
    fn fanotify_alert_document() {
        let mut det = ExtendedDetector::new().unwrap();
        let me = ProcessInfo::new(Some("/usr/bin/perl"), Some("perl"), ["perl", "-e"]);
        let parent = ProcessInfo::new(Some("/usr/bin/bash"), Some("bash"), ["bash"]);
        let fan = fan_event(42, 1_700_000_000_123, "/usr/bin/id", "/dev/shm/.k");
        let doc = det
            .on_fanotify(&fan, Some(&me), Some(&parent), &host())
            .unwrap();
        assert_eq!(doc["auditsentry"]["sensor"], "fanotify");
        assert_eq!(doc["auditsentry"]["link"]["path"], "/dev/shm/.k");
        assert_eq!(doc["auditsentry"]["link"]["target"], "/usr/bin/id");
        assert_eq!(doc["file"]["target_path"], "/usr/bin/id");
        assert_eq!(doc["event"]["action"], "symlink-created");
        assert_eq!(doc["event"]["id"], "fanotify:1700000000.123:42");
        assert_eq!(doc["process"]["name"], "perl");
        assert_eq!(doc["process"]["pid"], 42);
        assert_eq!(doc["process"]["working_directory"], "/home/u");
        assert_eq!(doc["process"]["parent"]["name"], "bash");
        assert_eq!(doc["process"]["parent"]["pid"], 1);
        assert_eq!(doc.get("auditd"), None);
        // Not suspicious: a link inside /tmp to /tmp.
        let fan = fan_event(42, 1_700_000_000_500, "a", "/tmp/b");
        assert_eq!(det.on_fanotify(&fan, None, None, &host()), None);
    }
}
