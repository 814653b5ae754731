//! The process table: pid → what that process last exec'd, so an exec event can name its parent.
//!
//! Every exec event updates the table (a pid can exec several times; the newest image wins). A
//! lookup that misses can fall back to another source of truth — `/proc` in live mode — through the
//! [`ProcFallback`] seam; replay uses [`NoFallback`] so its results depend on the input alone.
//!
//! The live daemon also calls [`ProcessTable::expire`] now and then to forget exited processes.
//! Expiry is deliberately slow: a parent may exit before its child's exec event reaches us, and
//! that event must still find the parent. So an entry goes only when two checks, at least
//! [`ProcessTable::EXPIRY_GRACE_PASSES`] calls of `expire` apart, both saw its pid dead. Replay
//! never calls `expire`, so its table changes only with the input.

use std::collections::HashMap;
use std::sync::Arc;

/// What the table knows of one process: its current image and how it was invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Absolute path of the executable (`exe=`), when known.
    pub executable: Option<String>,
    /// Basename of the executable (ECS `process.name`).
    pub name: Option<String>,
    /// argv as passed, possibly cut to [`ProcessTable::MAX_ARGS_BYTES`] for memory's sake.
    pub args: Vec<String>,
}

/// A source of process facts for pids the table has not seen exec (started before us, or forked
/// without exec). Implemented over `/proc` by the live daemon.
pub trait ProcFallback {
    /// Facts about `pid`, if it can still be found.
    fn lookup(&self, pid: u32) -> Option<ProcessInfo>;
}

/// The replay fallback: knows nothing, so results depend only on the input.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFallback;

impl ProcFallback for NoFallback {
    fn lookup(&self, _pid: u32) -> Option<ProcessInfo> {
        None
    }
}

/// One remembered process, with the bookkeeping of eviction and expiry.
struct Entry {
    /// Table clock at the last update (exec or fallback answer): eviction order.
    updated: u64,
    /// Expiry pass at insertion or at the last check: expiry visits the smallest first.
    seen: u64,
    /// Expiry pass that first found the pid dead; cleared when a later check finds it alive.
    dead_since: Option<u64>,
    /// Shared so a lookup (once per exec, for the parent) costs a reference count, not a copy.
    info: Arc<ProcessInfo>,
}

/// Bounded pid → [`ProcessInfo`] map; the least recently updated entries go first when full.
pub struct ProcessTable {
    entries: HashMap<u32, Entry>,
    clock: u64,
    passes: u64,
    capacity: usize,
    fallback: Box<dyn ProcFallback + Send>,
}

impl ProcessTable {
    /// Parent args kept per process; the rest is cut (parents' argv only feeds display fields).
    pub const MAX_ARGS_BYTES: usize = 32 * 1024;

    /// Calls of [`ProcessTable::expire`] that must separate the first and the last check finding
    /// a pid dead before its entry goes. Called every 10 s, a dead process stays resolvable for at
    /// least 30 s after it exited — ample for its children's exec events still in flight.
    pub const EXPIRY_GRACE_PASSES: u64 = 3;

    /// A table holding at most `capacity` processes, asking `fallback` on a miss.
    pub fn new(capacity: usize, fallback: Box<dyn ProcFallback + Send>) -> Self {
        ProcessTable {
            entries: HashMap::new(),
            clock: 0,
            passes: 0,
            capacity: capacity.max(1),
            fallback,
        }
    }

    /// Cuts `args` to the whole arguments that fit in [`ProcessTable::MAX_ARGS_BYTES`] together.
    pub fn cut_args(args: &mut Vec<String>) {
        let mut used = 0usize;
        let keep = args
            .iter()
            .take_while(|a| {
                used = used.saturating_add(a.len());
                used <= Self::MAX_ARGS_BYTES
            })
            .count();
        args.truncate(keep);
    }

    /// Looks `pid` up, asking the fallback (and remembering its answer) on a miss.
    pub fn get(&mut self, pid: u32) -> Option<Arc<ProcessInfo>> {
        if let Some(entry) = self.entries.get(&pid) {
            return Some(Arc::clone(&entry.info));
        }
        let mut info = self.fallback.lookup(pid)?;
        Self::cut_args(&mut info.args);
        let info = Arc::new(info);
        self.insert(pid, Arc::clone(&info));
        Some(info)
    }

    /// Records that `pid` now runs `info` (called for every exec, success only).
    pub fn exec(&mut self, pid: u32, mut info: ProcessInfo) {
        Self::cut_args(&mut info.args);
        self.insert(pid, Arc::new(info));
    }

    /// Forgets exited processes, checking at most `max_checks` entries with `alive` (the daemon
    /// passes a `/proc` probe and calls this periodically; replay never does).
    ///
    /// Each call is one pass. It visits the entries least recently checked (or inserted) first,
    /// the least recently updated among those, so repeated calls sweep the whole table round
    /// robin however many entries stay alive. A visited pid found dead is marked; a marked entry
    /// goes when a check at least [`ProcessTable::EXPIRY_GRACE_PASSES`] passes later still finds
    /// it dead, so a parent that exits just before its child's exec event is processed is still
    /// resolvable. A mark is cleared when the pid is alive again (re-exec replaces the entry and
    /// its mark). A pid reused by a new process that has not exec'd keeps the old entry: without
    /// start times the table cannot tell. Returns the number of entries removed.
    pub fn expire(&mut self, alive: &dyn Fn(u32) -> bool, max_checks: usize) -> usize {
        if max_checks == 0 || self.entries.is_empty() {
            return 0;
        }
        self.passes += 1;
        let pass = self.passes;
        let mut order: Vec<(u64, u64, u32)> = self
            .entries
            .iter()
            .map(|(&pid, e)| (e.seen, e.updated, pid))
            .collect();
        if order.len() > max_checks {
            order.select_nth_unstable(max_checks - 1);
            order.truncate(max_checks);
        }
        let mut removed = 0;
        for (_, _, pid) in order {
            let is_alive = alive(pid);
            let Some(entry) = self.entries.get_mut(&pid) else {
                continue;
            };
            entry.seen = pass;
            if is_alive {
                entry.dead_since = None;
                continue;
            }
            match entry.dead_since {
                Some(since) if pass - since >= Self::EXPIRY_GRACE_PASSES => {
                    self.entries.remove(&pid);
                    removed += 1;
                }
                Some(_) => {}
                None => entry.dead_since = Some(pass),
            }
        }
        removed
    }

    /// Forgets `pid` (the live daemon calls this when a process exits).
    pub fn remove(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }

    /// Number of processes known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Most processes the table holds before evicting (seeding from `/proc` stops there).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True when `pid` has an entry (without asking the fallback).
    pub fn contains(&self, pid: u32) -> bool {
        self.entries.contains_key(&pid)
    }

    /// The pids known, in no particular order.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.keys().copied()
    }

    /// True when no process is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, pid: u32, info: Arc<ProcessInfo>) {
        self.clock += 1;
        let entry = Entry {
            updated: self.clock,
            seen: self.passes,
            dead_since: None,
            info,
        };
        self.entries.insert(pid, entry);
        if self.entries.len() > self.capacity {
            // Drop the older half in one sweep: amortised O(1) per insert.
            let mut ages: Vec<u64> = self.entries.values().map(|e| e.updated).collect();
            let mid = ages.len() / 2;
            let (_, cut, _) = ages.select_nth_unstable(mid);
            let cut = *cut;
            self.entries.retain(|_, e| e.updated > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(exe: &str) -> ProcessInfo {
        ProcessInfo {
            executable: Some(exe.to_string()),
            name: exe.rsplit('/').next().map(str::to_string),
            args: vec![exe.to_string()],
        }
    }

    struct Fixed;
    impl ProcFallback for Fixed {
        fn lookup(&self, pid: u32) -> Option<ProcessInfo> {
            (pid == 1).then(|| info("/sbin/init"))
        }
    }

    #[test]
    fn newest_exec_wins() {
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        t.exec(5, info("/usr/bin/bash"));
        t.exec(5, info("/usr/bin/perl"));
        assert_eq!(
            t.get(5).and_then(|i| i.name.clone()),
            Some("perl".to_string())
        );
        assert_eq!(t.get(6), None);
    }

    #[test]
    fn fallback_answers_misses_and_is_remembered() {
        let mut t = ProcessTable::new(10, Box::new(Fixed));
        assert_eq!(
            t.get(1).and_then(|i| i.executable.clone()),
            Some("/sbin/init".to_string())
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(2), None);
    }

    #[test]
    fn capacity_evicts_oldest() {
        let mut t = ProcessTable::new(4, Box::new(NoFallback));
        for pid in 1..=5 {
            t.exec(pid, info("/bin/x"));
        }
        assert!(t.len() <= 4);
        assert!(t.get(5).is_some(), "the newest entry survives");
        assert!(t.get(1).is_none(), "the oldest entry went first");
    }

    #[test]
    fn expiry_waits_for_the_grace_period() {
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        t.exec(7, info("/bin/dead"));
        t.exec(8, info("/bin/live"));
        let alive = |pid: u32| pid == 8;
        // Pass 1 marks pid 7 dead; passes 2 and 3 keep it (a child's exec may still be in flight).
        assert_eq!(t.expire(&alive, 10), 0);
        assert_eq!(t.expire(&alive, 10), 0);
        assert_eq!(t.expire(&alive, 10), 0);
        assert_eq!(
            t.get(7).and_then(|i| i.name.clone()),
            Some("dead".to_string())
        );
        // Pass 4 is EXPIRY_GRACE_PASSES after the mark: gone.
        assert_eq!(t.expire(&alive, 10), 1);
        assert!(!t.contains(7));
        assert!(t.contains(8));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn expiry_checks_a_bounded_number_round_robin() {
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        for pid in 1..=4 {
            t.exec(pid, info("/bin/x"));
        }
        let checked = std::cell::RefCell::new(Vec::new());
        let alive = |pid: u32| {
            checked.borrow_mut().push(pid);
            true
        };
        assert_eq!(t.expire(&alive, 3), 0);
        let mut first = checked.take();
        first.sort_unstable();
        assert_eq!(first, vec![1, 2, 3], "least recently updated first");
        t.expire(&alive, 3);
        let mut second = checked.take();
        second.sort_unstable();
        assert_eq!(second, vec![1, 2, 4], "pid 4, never checked, comes next");
        assert_eq!(t.expire(&alive, 0), 0);
        assert!(checked.take().is_empty());
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn expiry_mark_is_cleared_by_life_and_by_reexec() {
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        t.exec(3, info("/bin/a"));
        t.exec(4, info("/bin/b"));
        let dead = |_: u32| false;
        let live = |_: u32| true;
        assert_eq!(t.expire(&dead, 10), 0);
        // Pid 3 is seen alive (a transient failure of the probe); pid 4 re-execs.
        t.exec(4, info("/bin/c"));
        assert_eq!(t.expire(&live, 1), 0);
        assert_eq!(t.expire(&dead, 10), 0);
        assert_eq!(t.expire(&dead, 10), 0);
        assert_eq!(t.expire(&dead, 10), 0);
        assert_eq!(t.len(), 2, "both marks restarted at pass 3");
        assert_eq!(t.expire(&dead, 10), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn pids_and_capacity() {
        let mut t = ProcessTable::new(0, Box::new(NoFallback));
        assert_eq!(t.capacity(), 1);
        t.exec(9, info("/bin/x"));
        assert_eq!(t.pids().collect::<Vec<_>>(), vec![9]);
    }

    #[test]
    fn fallback_answers_are_cut_too() {
        struct Long;
        impl ProcFallback for Long {
            fn lookup(&self, _pid: u32) -> Option<ProcessInfo> {
                Some(ProcessInfo {
                    executable: None,
                    name: None,
                    args: vec!["a".repeat(30_000), "b".repeat(3_000)],
                })
            }
        }
        let mut t = ProcessTable::new(4, Box::new(Long));
        assert_eq!(t.get(1).map(|i| i.args.len()), Some(1));
    }

    #[test]
    fn huge_args_are_cut() {
        let mut t = ProcessTable::new(4, Box::new(NoFallback));
        let mut i = info("/bin/x");
        i.args = vec!["a".repeat(20_000), "b".repeat(20_000), "c".to_string()];
        t.exec(1, i);
        assert_eq!(t.get(1).map(|i| i.args.len()), Some(1));
    }
}
