//! The process table: pid → what that process last exec'd, so an exec event can name its parent.
//!
//! Every exec event updates the table (a pid can exec several times; the newest image wins). A
//! lookup that misses can fall back to another source of truth — `/proc` in live mode — through the
//! [`ProcFallback`] seam; replay uses [`NoFallback`] so its results depend on the input alone.

use std::collections::HashMap;

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

/// Bounded pid → [`ProcessInfo`] map; the least recently updated entries go first when full.
pub struct ProcessTable {
    entries: HashMap<u32, (u64, ProcessInfo)>,
    clock: u64,
    capacity: usize,
    fallback: Box<dyn ProcFallback + Send>,
}

impl ProcessTable {
    /// Parent args kept per process; the rest is cut (parents' argv only feeds display fields).
    pub const MAX_ARGS_BYTES: usize = 32 * 1024;

    /// A table holding at most `capacity` processes, asking `fallback` on a miss.
    pub fn new(capacity: usize, fallback: Box<dyn ProcFallback + Send>) -> Self {
        ProcessTable {
            entries: HashMap::new(),
            clock: 0,
            capacity: capacity.max(1),
            fallback,
        }
    }

    /// Looks `pid` up, asking the fallback (and remembering its answer) on a miss.
    pub fn get(&mut self, pid: u32) -> Option<ProcessInfo> {
        if let Some((_, info)) = self.entries.get(&pid) {
            return Some(info.clone());
        }
        let info = self.fallback.lookup(pid)?;
        self.insert(pid, info.clone());
        Some(info)
    }

    /// Records that `pid` now runs `info` (called for every exec, success only).
    pub fn exec(&mut self, pid: u32, mut info: ProcessInfo) {
        let mut used = 0usize;
        let keep = info
            .args
            .iter()
            .take_while(|a| {
                used = used.saturating_add(a.len());
                used <= Self::MAX_ARGS_BYTES
            })
            .count();
        info.args.truncate(keep);
        self.insert(pid, info);
    }

    /// Forgets `pid` (the live daemon calls this when a process exits).
    pub fn remove(&mut self, pid: u32) {
        self.entries.remove(&pid);
    }

    /// Number of processes known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no process is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, pid: u32, info: ProcessInfo) {
        self.clock += 1;
        self.entries.insert(pid, (self.clock, info));
        if self.entries.len() > self.capacity {
            // Drop the older half in one sweep: amortised O(1) per insert.
            let mut ages: Vec<u64> = self.entries.values().map(|(t, _)| *t).collect();
            let mid = ages.len() / 2;
            let (_, cut, _) = ages.select_nth_unstable(mid);
            let cut = *cut;
            self.entries.retain(|_, (t, _)| *t > cut);
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
        assert_eq!(t.get(5).and_then(|i| i.name), Some("perl".to_string()));
        assert_eq!(t.get(6), None);
    }

    #[test]
    fn fallback_answers_misses_and_is_remembered() {
        let mut t = ProcessTable::new(10, Box::new(Fixed));
        assert_eq!(
            t.get(1).and_then(|i| i.executable),
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
    fn huge_args_are_cut() {
        let mut t = ProcessTable::new(4, Box::new(NoFallback));
        let mut i = info("/bin/x");
        i.args = vec!["a".repeat(20_000), "b".repeat(20_000), "c".to_string()];
        t.exec(1, i);
        assert_eq!(t.get(1).map(|i| i.args.len()), Some(1));
    }
}
