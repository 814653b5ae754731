//! The process table: pid → what that process last exec'd, so an exec event can name its parent.
//!
//! Every exec event updates the table (a pid can exec several times; the newest image wins). A
//! lookup that misses can fall back to another source of truth — `/proc` in live mode — through the
//! [`ProcFallback`] seam; replay uses [`NoFallback`] so its results depend on the input alone.
//!
//! Where the live daemon has the kernel's process events (the proc connector), forks, execs and
//! exits reach the table too: a fork gives the child its parent's entry (a subshell that never
//! execs is its shell), and an exit removes the entry once the audit stream has passed it
//! ([`ProcessTable::fork`], [`ProcessTable::exec_started`], [`ProcessTable::exited`],
//! [`ProcessTable::reap`]). Without them, the daemon calls [`ProcessTable::expire`] now and then
//! to forget exited processes. Expiry is deliberately slow: a parent may exit before its child's
//! exec event reaches us, and that event must still find the parent. So an entry goes only when
//! two checks, at least [`ProcessTable::EXPIRY_GRACE_PASSES`] calls of `expire` apart, both saw
//! its pid dead. Replay has neither, so its table changes only with the input.

use crate::keyhash::KeyHasher;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// What one argument is charged against an argument budget besides its bytes: the memory of its
/// slot wherever argv is held (a vector's header and allocation in an exec event, an offset in the process
/// table, a JSON value in an alert), so that empty arguments are not free.
pub const ARG_SLOT_COST: usize = 32;

/// The charge of one argument of `len` bytes: its bytes plus [`ARG_SLOT_COST`].
pub fn arg_cost(len: usize) -> usize {
    len.saturating_add(ARG_SLOT_COST)
}

/// Bytes the kernel logged, as ECS text: invalid UTF-8 becomes U+FFFD.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Basename of a path, the way ECS `process.name` is derived from `process.executable`.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What the table knows of one process: its current image and how it was invoked, as text.
///
/// The executable, the name and every argument live back to back in one string, so an entry
/// costs two allocations however many arguments it has: a replay makes one per exec, and the
/// table frees as many as it takes in.
#[derive(Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Executable, name and arguments, back to back.
    text: String,
    /// End of each part in `text`: the executable, the name, then each argument.
    ends: Vec<usize>,
    /// Whether the executable (`exe=`) is known; an unknown one is an empty part.
    has_executable: bool,
    /// Whether the name is known.
    has_name: bool,
    /// The effective user and group ids it ran with, when known (ECS `process.parent.user.id`
    /// and `.group.id` of its children).
    ids: (Option<u32>, Option<u32>),
}

/// Index in [`ProcessInfo`]'s `ends` of the first argument.
const FIRST_ARG: usize = 2;

impl ProcessInfo {
    /// A process running `executable` (absolute path), named `name` (its basename, ECS
    /// `process.name`), invoked with `args` (argv as passed).
    pub fn new<A: AsRef<str>>(
        executable: Option<&str>,
        name: Option<&str>,
        args: impl IntoIterator<Item = A>,
    ) -> Self {
        let (executable, name) = (executable.map(str::as_bytes), name.map(str::as_bytes));
        let mut info = ProcessInfo::with_image(executable, name, 0, 0);
        for arg in args {
            info.push_arg(arg.as_ref().as_bytes());
        }
        info
    }

    /// The same from the bytes the kernel logged: invalid UTF-8 becomes U+FFFD, as in every ECS
    /// text field. One pass, no intermediate strings.
    pub fn from_bytes<A: AsRef<[u8]>>(
        executable: Option<&[u8]>,
        name: Option<&[u8]>,
        args: &[A],
    ) -> Self {
        let len = args.iter().map(|a| a.as_ref().len()).sum::<usize>();
        let mut info = ProcessInfo::with_image(executable, name, len, args.len());
        for arg in args {
            info.push_arg(arg.as_ref());
        }
        info
    }

    /// An entry with the executable and name and room for `argc` arguments of `args_len` bytes.
    fn with_image(
        executable: Option<&[u8]>,
        name: Option<&[u8]>,
        args_len: usize,
        argc: usize,
    ) -> Self {
        let image = executable.map_or(0, <[u8]>::len) + name.map_or(0, <[u8]>::len);
        let mut info = ProcessInfo {
            text: String::with_capacity(image + args_len),
            ends: Vec::with_capacity(FIRST_ARG + argc),
            has_executable: executable.is_some(),
            has_name: name.is_some(),
            ids: (None, None),
        };
        info.push_arg(executable.unwrap_or_default());
        info.push_arg(name.unwrap_or_default());
        info
    }

    /// Appends one part (as lossy UTF-8) and records where it ends.
    fn push_arg(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(s) => self.text.push_str(s),
            Err(_) => self.text.push_str(&String::from_utf8_lossy(bytes)),
        }
        self.ends.push(self.text.len());
    }

    /// Part `i` of the text (0 the executable, 1 the name, then the arguments).
    fn part(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = match i.checked_sub(1) {
            Some(prev) => self.ends.get(prev).copied().unwrap_or(0),
            None => 0,
        };
        self.text.get(start..end)
    }

    /// Absolute path of the executable (`exe=`), when known.
    pub fn executable(&self) -> Option<&str> {
        self.part(0).filter(|_| self.has_executable)
    }

    /// The same process, running with effective user id `euid` and group id `egid`.
    pub fn with_ids(mut self, euid: Option<u32>, egid: Option<u32>) -> Self {
        self.ids = (euid, egid);
        self
    }

    /// The effective user id, when known.
    pub fn euid(&self) -> Option<u32> {
        self.ids.0
    }

    /// The effective group id, when known.
    pub fn egid(&self) -> Option<u32> {
        self.ids.1
    }

    /// Basename of the executable (ECS `process.name`), when known.
    pub fn name(&self) -> Option<&str> {
        self.part(1).filter(|_| self.has_name)
    }

    /// argv as passed, possibly cut to [`ProcessTable::MAX_ARGS_BYTES`] (or by the table's budget)
    /// for memory's sake.
    pub fn args(&self) -> Args<'_> {
        Args {
            info: self,
            next: FIRST_ARG,
        }
    }

    /// Number of arguments.
    pub fn args_len(&self) -> usize {
        self.ends.len().saturating_sub(FIRST_ARG)
    }

    /// The arguments joined by spaces (ECS `process.command_line`).
    pub fn command_line(&self) -> String {
        self.args().collect::<Vec<_>>().join(" ")
    }

    /// What the arguments are charged against an argument budget: their bytes plus
    /// [`ARG_SLOT_COST`] each (see [`arg_cost`]).
    pub fn args_cost(&self) -> usize {
        let args_start = self.ends.get(FIRST_ARG - 1).copied().unwrap_or(0);
        let args_end = self.ends.last().copied().unwrap_or(0);
        (args_end - args_start.min(args_end)).saturating_add(self.args_len() * ARG_SLOT_COST)
    }

    /// What the process table charges for this entry against its budget: a fixed
    /// [`ProcessTable::ENTRY_COST`], the executable and name, and the arguments' cost.
    pub fn cost(&self) -> usize {
        let image = self.ends.get(FIRST_ARG - 1).copied().unwrap_or(0);
        ProcessTable::ENTRY_COST + image + self.args_cost()
    }

    /// Cuts the arguments to the whole ones whose costs fit in [`ProcessTable::MAX_ARGS_BYTES`]
    /// together, giving the memory of the rest back (the table does this to every entry). True
    /// when something was cut.
    pub fn cut_args(&mut self) -> bool {
        self.cut_args_to(ProcessTable::MAX_ARGS_BYTES)
    }

    /// Cuts the arguments to the whole ones whose costs fit in `budget` together; true when
    /// something was cut.
    pub fn cut_args_to(&mut self, budget: usize) -> bool {
        if self.args_cost() <= budget {
            return false;
        }
        let args_start = self.ends.get(FIRST_ARG - 1).copied().unwrap_or(0);
        let Some(over) = self
            .ends
            .iter()
            .skip(FIRST_ARG)
            .enumerate()
            .position(|(i, &end)| {
                arg_cost(end - args_start).saturating_add(i * ARG_SLOT_COST) > budget
            })
        else {
            return false;
        };
        self.ends.truncate(FIRST_ARG + over);
        let kept = self.ends.last().copied().unwrap_or(0);
        self.text.truncate(kept);
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
        true
    }

    /// The same process without its arguments (what the table keeps of an entry over its budget).
    pub fn without_args(&self) -> ProcessInfo {
        let (executable, name) = (self.part(0), self.part(1));
        ProcessInfo::with_image(
            executable
                .map(str::as_bytes)
                .filter(|_| self.has_executable),
            name.map(str::as_bytes).filter(|_| self.has_name),
            0,
            0,
        )
        .with_ids(self.ids.0, self.ids.1)
    }
}

impl std::fmt::Debug for ProcessInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessInfo")
            .field("executable", &self.executable())
            .field("name", &self.name())
            .field("args", &self.args().collect::<Vec<_>>())
            .finish()
    }
}

/// The arguments of a [`ProcessInfo`], in order.
#[derive(Clone)]
pub struct Args<'a> {
    info: &'a ProcessInfo,
    next: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let arg = self.info.part(self.next)?;
        self.next += 1;
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.info.ends.len().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Args<'_> {}

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
    /// Table clock when this process got its entry (its fork, or the first exec or `/proc`
    /// answer for its pid); an exec of the same process keeps it. With the pid, it names one
    /// process even when the pid is reused.
    born: u64,
    /// The kernel said this process exec'd ([`ProcessTable::exec_started`]); its audit exec
    /// event, which brings the new image, has not arrived yet.
    exec_pending: bool,
    /// Forked while the parent's exec was pending: the image is the parent's new one, once it
    /// arrives (see [`ProcessTable::fork`]).
    origin: Option<Origin>,
    /// Which process this is ([`Instance::stamp`]): kept by its execs, new for a new process.
    stamp: u64,
}

/// One process instance as the table knows it: its pid and a stamp taken when the table first
/// knew the process (its fork, its first exec, or a `/proc` answer). The stamp is the audit time
/// of that moment in microseconds, raised to one more than the previous stamp when it would not
/// be larger, so no two instances of one table share it; an exec of the same process keeps it.
/// The ECS `process.entity_id` is derived from it (see `crate::event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Instance {
    /// The process id.
    pub pid: u32,
    /// When the table first knew the process (µs of audit time, made unique).
    pub stamp: u64,
}

impl Instance {
    fn of(pid: u32, entry: &Entry) -> Instance {
        Instance {
            pid,
            stamp: entry.stamp,
        }
    }
}

/// The parent a forked entry takes its image from: its pid, birth and last update at the fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    parent: u32,
    born: u64,
    updated: u64,
}

/// How [`ProcessTable::put`] makes an entry.
enum Put {
    /// A new image (exec or `/proc`): of the same process if the pid has an entry, else of a new
    /// one stamped as given (or with a new stamp).
    Image(Option<u64>),
    /// A fork: a new process, with the parent's image (and its pending exec, if any).
    Fork(Option<Origin>),
}

/// Bounded pid → [`ProcessInfo`] map: at most `capacity` entries (the least recently updated go
/// first when full), each entry's arguments within [`ProcessTable::MAX_ARGS_BYTES`], and all
/// entries together within a memory budget ([`ProcessInfo::cost`]). Over the budget, the
/// arguments of the least recently updated entries are dropped first (their executable and name,
/// which rules ask of a parent, stay); only if that is not enough do whole entries go. Both are
/// counted.
pub struct ProcessTable {
    entries: HashMap<u32, Entry, KeyHasher>,
    clock: u64,
    passes: u64,
    capacity: usize,
    /// Most bytes all entries may be charged together.
    budget: usize,
    /// What all entries are charged now.
    cost: usize,
    /// Entries whose arguments were cut (per-entry bound or budget).
    cut: u64,
    /// Entries dropped for room (capacity or budget), not because their process exited.
    evicted: u64,
    /// Exits waiting for the audit stream to pass them: (wall time in ms, pid, birth).
    exits: VecDeque<(u64, u32, u64)>,
    /// Every update as (clock, pid), oldest first: the eviction order without a sort. Records of
    /// entries updated again or removed since are skipped, and dropped when they pile up.
    order: VecDeque<(u64, u32)>,
    /// No entry updated at or before this clock has arguments (shedding cut them, or they had
    /// none): shedding cuts arguments from here on.
    bare_until: u64,
    /// The latest audit time (ms) of an exec handled.
    audit_ms: u64,
    /// The last [`Instance::stamp`] given out.
    last_stamp: u64,
    fallback: Box<dyn ProcFallback + Send>,
}

impl ProcessTable {
    /// Arguments kept per process, charged as [`arg_cost`] each; the rest is cut (parents'
    /// argv only feeds display fields and the rare rule on `process.parent.args`).
    pub const MAX_ARGS_BYTES: usize = 32 * 1024;

    /// What an entry is charged besides its text and arguments: the map slot, the shared
    /// [`ProcessInfo`] and its two allocations.
    pub const ENTRY_COST: usize = 192;

    /// The default memory budget of the whole table.
    pub const DEFAULT_BUDGET: usize = 20 << 20;

    /// Calls of [`ProcessTable::expire`] that must separate the first and the last check finding
    /// a pid dead before its entry goes. Called every 10 s, a dead process stays resolvable for at
    /// least 30 s after it exited — ample for its children's exec events still in flight.
    pub const EXPIRY_GRACE_PASSES: u64 = 3;

    /// An exited process's entry goes once an exec this much later in audit time was handled:
    /// the exec events of its children, which happened before it exited, are behind us then,
    /// and so are the fanotify sensor's reports, which wait 1.5 s before they are handled.
    pub const EXIT_AUDIT_MARGIN_MS: u64 = 5_000;

    /// ... or, when audit is idle, this long after the exit.
    pub const EXIT_LINGER_MS: u64 = 10_000;

    /// A table holding at most `capacity` processes within [`ProcessTable::DEFAULT_BUDGET`],
    /// asking `fallback` on a miss.
    pub fn new(capacity: usize, fallback: Box<dyn ProcFallback + Send>) -> Self {
        ProcessTable {
            entries: HashMap::with_hasher(KeyHasher::new()),
            clock: 0,
            passes: 0,
            capacity: capacity.max(1),
            budget: Self::DEFAULT_BUDGET,
            cost: 0,
            cut: 0,
            evicted: 0,
            exits: VecDeque::new(),
            order: VecDeque::new(),
            bare_until: 0,
            audit_ms: 0,
            last_stamp: 0,
            fallback,
        }
    }

    /// Sets the memory budget of all entries together (see [`ProcessInfo::cost`]); entries over
    /// it are shed at once.
    pub fn set_budget(&mut self, bytes: usize) {
        self.budget = bytes;
        self.shed();
    }

    /// The memory budget of all entries together.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// What all entries are charged now (at most [`ProcessTable::budget`] after each change).
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// Entries whose arguments were cut, by the per-entry bound or the budget.
    pub fn args_cut(&self) -> u64 {
        self.cut
    }

    /// Entries dropped for room (capacity or budget) while their process may still run.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Looks `pid` up, asking the fallback (and remembering its answer) on a miss.
    pub fn get(&mut self, pid: u32) -> Option<Arc<ProcessInfo>> {
        self.lookup(pid).map(|(info, _)| info)
    }

    /// [`ProcessTable::get`] with the process instance the entry stands for.
    pub fn lookup(&mut self, pid: u32) -> Option<(Arc<ProcessInfo>, Instance)> {
        if let Some(origin) = self.entries.get(&pid).and_then(|e| e.origin) {
            self.resolve(pid, origin);
        }
        if let Some(entry) = self.entries.get(&pid) {
            return Some((Arc::clone(&entry.info), Instance::of(pid, entry)));
        }
        let info = self.fallback.lookup(pid)?;
        self.insert(pid, info, None);
        let entry = self.entries.get(&pid)?;
        Some((Arc::clone(&entry.info), Instance::of(pid, entry)))
    }

    /// Records that `pid` now runs `info` (called for every exec, success only).
    pub fn exec(&mut self, pid: u32, info: ProcessInfo) {
        self.insert(pid, info, None);
    }

    /// The instance an exec of `pid` belongs to, before the exec is recorded: the process the
    /// table knows under `pid` (an exec keeps the process), or a new one, whose stamp
    /// [`ProcessTable::exec_as`] then gives the entry. The stamp comes from the latest audit
    /// time noted ([`ProcessTable::note_audit_time`]).
    pub fn instance_for_exec(&mut self, pid: u32) -> Instance {
        match self.entries.get(&pid) {
            Some(entry) => Instance::of(pid, entry),
            None => Instance {
                pid,
                stamp: self.next_stamp(),
            },
        }
    }

    /// [`ProcessTable::exec`] of the instance [`ProcessTable::instance_for_exec`] returned.
    pub fn exec_as(&mut self, instance: Instance, info: ProcessInfo) {
        self.insert(instance.pid, info, Some(instance.stamp));
    }

    /// A stamp for a new process instance: the latest audit time in µs, or one more than the
    /// last stamp when that is not smaller.
    fn next_stamp(&mut self) -> u64 {
        let stamp = self
            .audit_ms
            .saturating_mul(1000)
            .max(self.last_stamp.saturating_add(1));
        self.last_stamp = stamp;
        stamp
    }

    /// The kernel's process events (live, with the proc connector): process `child` was forked
    /// by process `parent`. The child runs the parent's image until it execs, so it gets the
    /// parent's entry (shared; charged like its own). If the parent's own exec is pending (the
    /// kernel said it exec'd, its audit event has not come yet), the child follows it: it takes
    /// the parent's new image when that arrives, so a shell's subshell is the shell, not what
    /// ran before the shell. A parent nobody knows is asked of the fallback (`/proc`).
    pub fn fork(&mut self, parent: u32, child: u32) {
        let Some(info) = self.get(parent) else {
            return;
        };
        let origin = self.entries.get(&parent).and_then(|p| {
            if p.exec_pending {
                Some(Origin {
                    parent,
                    born: p.born,
                    updated: p.updated,
                })
            } else {
                p.origin
            }
        });
        self.put(child, info, Put::Fork(origin));
    }

    /// The kernel's process events: process `pid` exec'd. Its audit exec event brings the new
    /// image; until then, forks of it wait for that image (see [`ProcessTable::fork`]).
    pub fn exec_started(&mut self, pid: u32) {
        if let Some(entry) = self.entries.get_mut(&pid) {
            entry.exec_pending = true;
        }
    }

    /// The kernel's process events: process `pid` exited at wall time `at_ms`. Its entry goes
    /// once the audit stream is past that moment (see [`ProcessTable::reap`]), so the exec events
    /// of its children still name it; a later fork that reuses the pid makes a new entry, which
    /// this exit never removes.
    pub fn exited(&mut self, pid: u32, at_ms: u64) {
        if let Some(entry) = self.entries.get(&pid) {
            self.exits.push_back((at_ms, pid, entry.born));
        }
        // Bounded like the table: beyond it, the oldest exits are applied now.
        while self.exits.len() > self.capacity {
            if let Some((_, pid, born)) = self.exits.pop_front() {
                self.remove_born(pid, born);
            }
        }
    }

    /// Notes that an exec of audit time `ms` was handled (the detector calls this).
    pub fn note_audit_time(&mut self, ms: u64) {
        self.audit_ms = self.audit_ms.max(ms);
    }

    /// Removes the entries of processes that exited before the audit stream's latest exec by
    /// [`ProcessTable::EXIT_AUDIT_MARGIN_MS`], or more than [`ProcessTable::EXIT_LINGER_MS`]
    /// before wall time `now_ms`. Returns how many went.
    pub fn reap(&mut self, now_ms: u64) -> usize {
        let mut removed = 0;
        while let Some(&(at, pid, born)) = self.exits.front() {
            let passed = self.audit_ms > at.saturating_add(Self::EXIT_AUDIT_MARGIN_MS);
            if !passed && now_ms <= at.saturating_add(Self::EXIT_LINGER_MS) {
                break;
            }
            self.exits.pop_front();
            removed += usize::from(self.remove_born(pid, born));
        }
        removed
    }

    /// Removes `pid`'s entry if it is still the process born at `born`.
    fn remove_born(&mut self, pid: u32, born: u64) -> bool {
        if self.entries.get(&pid).is_some_and(|e| e.born == born) {
            self.remove(pid);
            return true;
        }
        false
    }

    /// A forked entry whose parent's exec was pending: takes the parent's new image if it has
    /// arrived, keeps waiting while it is still pending, and otherwise (parent gone, pid reused)
    /// keeps the image it was forked with.
    fn resolve(&mut self, pid: u32, origin: Origin) {
        let parent = self
            .entries
            .get(&origin.parent)
            .filter(|p| p.born == origin.born);
        let new = match parent {
            Some(p) if p.updated > origin.updated => Some(Arc::clone(&p.info)),
            Some(p) if p.exec_pending => return,
            _ => None,
        };
        let Some(entry) = self.entries.get_mut(&pid) else {
            return;
        };
        entry.origin = None;
        if let Some(info) = new {
            self.cost = (self.cost + info.cost()).saturating_sub(entry.info.cost());
            if info.args_len() > 0 && entry.updated <= self.bare_until {
                self.bare_until = entry.updated.saturating_sub(1);
            }
            entry.info = info;
        }
        self.shed();
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
                    self.remove(pid);
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
        if let Some(entry) = self.entries.remove(&pid) {
            self.cost = self.cost.saturating_sub(entry.info.cost());
        }
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

    /// Inserts (or replaces) `pid`'s entry, its arguments cut to the per-entry bound, then
    /// makes room if the table is over its capacity or budget. A new process gets `stamp`, or a
    /// new one.
    fn insert(&mut self, pid: u32, mut info: ProcessInfo, stamp: Option<u64>) {
        if info.cut_args() {
            self.cut += 1;
        }
        self.put(pid, Arc::new(info), Put::Image(stamp));
    }

    /// Puts `info` as `pid`'s entry (see [`Put`]), then makes room if the table is over its
    /// capacity or budget.
    fn put(&mut self, pid: u32, info: Arc<ProcessInfo>, how: Put) {
        self.clock += 1;
        let old = self.entries.get(&pid).map(|e| (e.born, e.stamp));
        let (born, origin, stamp) = match (how, old) {
            (Put::Image(_), Some((born, stamp))) => (born, None, stamp),
            (Put::Image(stamp), None) => {
                (self.clock, None, stamp.unwrap_or_else(|| self.next_stamp()))
            }
            (Put::Fork(origin), _) => (self.clock, origin, self.next_stamp()),
        };
        let entry = Entry {
            updated: self.clock,
            seen: self.passes,
            dead_since: None,
            info,
            born,
            exec_pending: false,
            origin,
            stamp,
        };
        self.cost += entry.info.cost();
        if let Some(old) = self.entries.insert(pid, entry) {
            self.cost = self.cost.saturating_sub(old.info.cost());
        }
        self.order.push_back((self.clock, pid));
        if self.entries.len() > self.capacity {
            // Drop the older half (and one) in one sweep: amortised O(1) per insert.
            let half = self.entries.len() / 2 + 1;
            (0..half).all(|_| self.evict_oldest());
        }
        self.shed();
        if self.order.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.order
                .retain(|&(at, pid)| entries.get(&pid).is_some_and(|e| e.updated == at));
        }
    }

    /// Drops the least recently updated entry (stale records of the order go on the way), counted
    /// as evicted; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((at, pid)) = self.order.pop_front() {
            if self.entries.get(&pid).is_some_and(|e| e.updated == at) {
                self.remove(pid);
                self.evicted += 1;
                return true;
            }
        }
        false
    }

    /// Brings the table back within its budget when it is over: down to three quarters of it
    /// (so a sweep is paid for by a quarter of the budget taken in since), first by dropping the
    /// arguments of the least recently updated entries, then, if that is not enough, whole
    /// entries in the same order.
    fn shed(&mut self) {
        if self.cost <= self.budget {
            return;
        }
        let target = self.budget / 4 * 3;
        // Arguments first, oldest first, from where the last shedding stopped.
        let from = self.order.partition_point(|&(at, _)| at <= self.bare_until);
        for i in from..self.order.len() {
            if self.cost <= target {
                return;
            }
            let Some(&(at, pid)) = self.order.get(i) else {
                break;
            };
            self.bare_until = at;
            let Some(entry) = self.entries.get_mut(&pid).filter(|e| e.updated == at) else {
                continue;
            };
            if entry.info.args_len() == 0 {
                continue;
            }
            let bare = entry.info.without_args();
            self.cost = self.cost - entry.info.cost() + bare.cost();
            entry.info = Arc::new(bare);
            self.cut += 1;
        }
        while self.cost > target && self.evict_oldest() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(exe: &str) -> ProcessInfo {
        ProcessInfo::new(Some(exe), exe.rsplit('/').next(), [exe])
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
            t.get(5).and_then(|i| i.name().map(str::to_string)),
            Some("perl".to_string())
        );
        assert_eq!(t.get(6), None);
    }

    #[test]
    fn fallback_answers_misses_and_is_remembered() {
        let mut t = ProcessTable::new(10, Box::new(Fixed));
        assert_eq!(
            t.get(1).and_then(|i| i.executable().map(str::to_string)),
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
            t.get(7).and_then(|i| i.name().map(str::to_string)),
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
                Some(ProcessInfo::new(
                    None,
                    None,
                    ["a".repeat(30_000), "b".repeat(3_000)],
                ))
            }
        }
        let mut t = ProcessTable::new(4, Box::new(Long));
        assert_eq!(t.get(1).map(|i| i.args_len()), Some(1));
    }

    #[test]
    fn huge_args_are_cut() {
        let mut t = ProcessTable::new(4, Box::new(NoFallback));
        let args = ["a".repeat(20_000), "b".repeat(20_000), "c".to_string()];
        t.exec(1, ProcessInfo::new(Some("/bin/x"), Some("x"), &args));
        let got = t.get(1).unwrap();
        assert_eq!(got.args().collect::<Vec<_>>(), [args[0].as_str()]);
        assert_eq!(got.executable(), Some("/bin/x"));
        assert_eq!(got.name(), Some("x"));
    }

    #[test]
    fn parts_round_trip() {
        let i = ProcessInfo::new(Some("/bin/ln"), Some("ln"), ["ln", "", "-s", "/tmp/é"]);
        assert_eq!(i.executable(), Some("/bin/ln"));
        assert_eq!(i.name(), Some("ln"));
        assert_eq!(i.args().collect::<Vec<_>>(), ["ln", "", "-s", "/tmp/é"]);
        assert_eq!(i.args().len(), 4);
        assert_eq!(i.args_len(), 4);
        assert_eq!(i.command_line(), "ln  -s /tmp/é");
        let with_ids = i.clone().with_ids(Some(1000), None);
        assert_eq!((with_ids.euid(), with_ids.egid()), (Some(1000), None));
        assert_eq!(
            with_ids.without_args().euid(),
            Some(1000),
            "kept without arguments"
        );
        let none = ProcessInfo::new::<&str>(None, None, []);
        assert_eq!(
            (none.executable(), none.name(), none.args_len()),
            (None, None, 0)
        );
        // An empty name is a known one; absent parts read as None, not "".
        let empty = ProcessInfo::new(Some(""), None, [""]);
        assert_eq!((empty.executable(), empty.name()), (Some(""), None));
        assert_eq!(empty.args().collect::<Vec<_>>(), [""]);
        let bytes = ProcessInfo::from_bytes(Some(b"/x\xff"), Some(b"\xff"), &[b"a\xffb".to_vec()]);
        assert_eq!(bytes.executable(), Some("/x\u{fffd}"));
        assert_eq!(bytes.name(), Some("\u{fffd}"));
        assert_eq!(bytes.args().collect::<Vec<_>>(), ["a\u{fffd}b"]);
        assert_eq!(
            format!("{bytes:?}"),
            "ProcessInfo { executable: Some(\"/x\u{fffd}\"), name: Some(\"\u{fffd}\"), \
             args: [\"a\u{fffd}b\"] }"
        );
    }

    #[test]
    fn cut_keeps_whole_args_up_to_the_bound() {
        let max = ProcessTable::MAX_ARGS_BYTES;
        let fits = max - 2 * ARG_SLOT_COST - 1;
        let mut exact = ProcessInfo::new(Some("/e"), Some("e"), ["a".repeat(fits), "b".into()]);
        assert!(!exact.cut_args());
        assert_eq!(exact.args_len(), 2, "exactly MAX_ARGS_BYTES is kept");
        assert_eq!(exact.args_cost(), max);
        let mut over = ProcessInfo::new(Some("/e"), Some("e"), ["a".repeat(fits + 1), "b".into()]);
        assert!(over.cut_args());
        assert_eq!(over.args().collect::<Vec<_>>(), ["a".repeat(fits + 1)]);
        let mut first = ProcessInfo::new(Some("/e"), Some("e"), ["a".repeat(max)]);
        assert!(first.cut_args());
        assert_eq!((first.args_len(), first.name()), (0, Some("e")));
        assert_eq!(first.cost(), ProcessTable::ENTRY_COST + 3);
    }

    #[test]
    fn empty_arguments_are_charged_a_slot_each() {
        let mut t = ProcessTable::new(4, Box::new(NoFallback));
        let args = vec![""; 650_000];
        t.exec(1, ProcessInfo::new(Some("/bin/x"), Some("x"), &args));
        let kept = ProcessTable::MAX_ARGS_BYTES / ARG_SLOT_COST;
        assert_eq!(t.get(1).map(|i| i.args_len()), Some(kept));
        assert_eq!(t.args_cut(), 1);
        assert_eq!(
            t.cost(),
            ProcessTable::ENTRY_COST + 7 + kept * ARG_SLOT_COST
        );
    }

    #[test]
    fn over_its_budget_the_table_drops_the_oldest_arguments_first() {
        let mut t = ProcessTable::new(1000, Box::new(NoFallback));
        let args = vec!["x".repeat(1000); 30];
        let one = ProcessInfo::new(Some("/bin/sh"), Some("sh"), &args).cost();
        t.set_budget(10 * one);
        for pid in 1..=10 {
            t.exec(pid, ProcessInfo::new(Some("/bin/sh"), Some("sh"), &args));
        }
        assert_eq!((t.cost(), t.args_cut(), t.evicted()), (10 * one, 0, 0));
        // The eleventh is over: the oldest lose their arguments until 3/4 of the budget is left.
        t.exec(11, ProcessInfo::new(Some("/bin/sh"), Some("sh"), &args));
        assert!(
            t.cost() <= t.budget() / 4 * 3,
            "{} > {}",
            t.cost(),
            t.budget()
        );
        assert_eq!(t.evicted(), 0);
        let cut = t.args_cut();
        assert!((3..=4).contains(&cut), "{cut}");
        for pid in 1..=cut as u32 {
            let info = t.get(pid).unwrap();
            assert_eq!((info.name(), info.args_len()), (Some("sh"), 0), "pid {pid}");
        }
        assert_eq!(
            t.get(11).map(|i| i.args_len()),
            Some(30),
            "the newest keeps its own"
        );
        // Entries alone over the budget: the oldest go whole.
        t.set_budget(3 * ProcessTable::ENTRY_COST);
        assert!(t.cost() <= t.budget());
        assert!(
            t.len() <= 3 && t.evicted() >= 8,
            "{} {}",
            t.len(),
            t.evicted()
        );
        assert!(t.contains(11));
        // Replacing and removing keep the charge exact.
        let total: usize = t
            .pids()
            .collect::<Vec<_>>()
            .into_iter()
            .map(|p| t.get(p).map_or(0, |i| i.cost()))
            .sum();
        assert_eq!(t.cost(), total);
        t.remove(11);
        t.exec(11, ProcessInfo::new(Some("/bin/x"), Some("x"), ["x"]));
        let total: usize = t
            .pids()
            .collect::<Vec<_>>()
            .into_iter()
            .map(|p| t.get(p).map_or(0, |i| i.cost()))
            .sum();
        assert_eq!(t.cost(), total);
    }

    #[test]
    fn shedding_goes_on_where_it_stopped_and_the_eviction_order_stays_bounded() {
        let mut t = ProcessTable::new(1000, Box::new(NoFallback));
        let args = vec!["x".repeat(1000); 30];
        let sh = || ProcessInfo::new(Some("/bin/sh"), Some("sh"), &args);
        let one = sh().cost();
        t.set_budget(10 * one);
        for pid in 1..=15 {
            t.exec(pid, sh());
        }
        // Pid 11 runs again, newer than 12..15: sheddings go on oldest first, past the record of
        // its old image, so 12 loses its arguments before 11 does.
        t.exec(11, sh());
        let mut pid = 16;
        while t.get(12).is_some_and(|i| i.args_len() > 0) {
            t.exec(pid, sh());
            pid += 1;
        }
        assert_eq!(
            t.get(11).map(|i| i.args_len()),
            Some(30),
            "re-exec'd: newer"
        );
        for pid in 1..=10 {
            assert_eq!(t.get(pid).map(|i| i.args_len()), Some(0), "pid {pid}");
        }
        assert_eq!(t.evicted(), 0);
        // Re-execs of a few pids leave stale records behind; they never pile up.
        for round in 0..10_000u32 {
            t.exec(
                round % 4 + 100,
                ProcessInfo::new(Some("/bin/x"), Some("x"), ["x"]),
            );
        }
        assert!(t.order.len() <= 2 * t.len() + 1024, "{}", t.order.len());
    }

    fn name(t: &mut ProcessTable, pid: u32) -> Option<String> {
        t.get(pid).and_then(|i| i.name().map(str::to_string))
    }

    #[test]
    fn a_fork_runs_its_parents_image_until_it_execs() {
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        t.exec(10, info("/usr/bin/bash"));
        t.fork(10, 11);
        assert_eq!(
            name(&mut t, 11).as_deref(),
            Some("bash"),
            "a subshell is its shell"
        );
        t.fork(11, 12);
        assert_eq!(name(&mut t, 12).as_deref(), Some("bash"));
        t.exec(12, info("/usr/bin/ln"));
        assert_eq!(name(&mut t, 12).as_deref(), Some("ln"));
        assert_eq!(name(&mut t, 11).as_deref(), Some("bash"));
        t.fork(99, 13);
        assert!(!t.contains(13), "an unknown parent gives nothing to copy");
    }

    #[test]
    fn a_fork_right_after_its_parents_exec_takes_the_new_image() {
        // sh -c "(ln ...; :)": the test forks sh (which inherits the test's image), sh execs
        // /bin/sh and forks the subshell before sh's audit exec event has been handled.
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        t.exec(1, info("/opt/test-runner"));
        t.fork(1, 10);
        t.exec_started(10);
        t.fork(10, 11);
        t.fork(11, 12);
        assert_eq!(
            name(&mut t, 11).as_deref(),
            Some("test-runner"),
            "until sh's exec arrives, the old image"
        );
        t.exec(10, info("/usr/bin/dash"));
        assert_eq!(name(&mut t, 11).as_deref(), Some("dash"));
        assert_eq!(
            name(&mut t, 12).as_deref(),
            Some("dash"),
            "a fork of the fork too"
        );
        // Once resolved, a later exec of the parent changes nothing for the child.
        t.exec(10, info("/usr/bin/perl"));
        assert_eq!(name(&mut t, 11).as_deref(), Some("dash"));
    }

    #[test]
    fn an_exit_removes_the_entry_once_the_audit_stream_is_past_it() {
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        t.exec(20, info("/usr/bin/bash"));
        t.exited(20, 50_000);
        assert_eq!(t.reap(50_000), 0);
        assert!(
            t.contains(20),
            "its children's exec events may still be on their way"
        );
        t.note_audit_time(54_900);
        assert_eq!(t.reap(54_900), 0);
        t.note_audit_time(55_001);
        assert_eq!(t.reap(55_001), 1);
        assert!(!t.contains(20));
        // With audit idle, wall time does it.
        t.exec(21, info("/usr/bin/bash"));
        t.exited(21, 60_000);
        assert_eq!(t.reap(69_000), 0);
        assert_eq!(t.reap(70_001), 1);
        // A process whose audit exec arrives after its exit still goes.
        t.fork(1, 22);
        t.exec(1, info("/usr/bin/dash"));
        t.fork(1, 22);
        t.exited(22, 80_000);
        t.exec(22, info("/usr/bin/ln"));
        assert_eq!(t.reap(90_001), 1);
        assert!(!t.contains(22));
    }

    #[test]
    fn a_pid_reused_by_a_fork_is_a_new_process_and_its_predecessors_exit_spares_it() {
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        t.exec(30, info("/usr/sbin/sshd"));
        t.exec(40, info("/usr/bin/bash"));
        t.exited(30, 1_000);
        t.fork(40, 30);
        assert_eq!(
            name(&mut t, 30).as_deref(),
            Some("bash"),
            "not the stale sshd"
        );
        t.note_audit_time(10_000);
        assert_eq!(t.reap(10_000), 0);
        assert_eq!(name(&mut t, 30).as_deref(), Some("bash"));
    }

    #[test]
    fn a_fork_whose_parent_left_keeps_the_image_it_was_forked_with() {
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        t.exec(50, info("/usr/bin/bash"));
        t.exec_started(50);
        t.fork(50, 51);
        t.exited(50, 0);
        assert_eq!(t.reap(20_000), 1);
        assert_eq!(name(&mut t, 51).as_deref(), Some("bash"));
    }

    fn instance(t: &mut ProcessTable, pid: u32) -> Option<Instance> {
        t.lookup(pid).map(|(_, i)| i)
    }

    #[test]
    fn a_process_keeps_its_instance_across_execs_and_its_children_name_it() {
        let mut t = ProcessTable::new(10, Box::new(NoFallback));
        t.note_audit_time(5_000);
        // The parent's exec: a new process, stamped with the audit time.
        let bash = t.instance_for_exec(10);
        assert_eq!(
            bash,
            Instance {
                pid: 10,
                stamp: 5_000_000
            }
        );
        t.exec_as(bash, info("/usr/bin/bash"));
        // A child's exec names it as parent with the same instance.
        assert_eq!(instance(&mut t, 10), Some(bash));
        // Two new processes in the same millisecond still differ.
        let child = t.instance_for_exec(11);
        assert_eq!(
            child,
            Instance {
                pid: 11,
                stamp: 5_000_001
            }
        );
        t.exec_as(child, info("/usr/bin/ln"));
        // Re-exec of the same process: same instance.
        t.note_audit_time(6_000);
        assert_eq!(t.instance_for_exec(10), bash);
        let again = t.instance_for_exec(10);
        t.exec_as(again, info("/usr/bin/perl"));
        assert_eq!(instance(&mut t, 10), Some(bash));
        // A fork is a new process (even with a reused pid); its exec keeps the fork's instance.
        t.fork(10, 11);
        let forked = instance(&mut t, 11).unwrap();
        assert_ne!(forked, child);
        assert_eq!(forked.stamp, 6_000_000);
        assert_eq!(t.instance_for_exec(11), forked);
        // Gone and back: a new instance.
        t.remove(11);
        assert_ne!(t.instance_for_exec(11), forked);
        // An audit time that went back never repeats a stamp.
        t.note_audit_time(1);
        let late = t.instance_for_exec(12);
        assert!(late.stamp > forked.stamp);
    }

    #[test]
    fn exits_wait_in_a_queue_no_longer_than_the_table() {
        let mut t = ProcessTable::new(4, Box::new(NoFallback));
        for pid in 1..=4 {
            t.exec(pid, info("/bin/x"));
            t.exited(pid, 0);
        }
        assert_eq!(t.len(), 4, "all still waiting for the audit stream");
        t.exited(4, 0); // a fifth exit (the kernel repeats nothing, but a flood may be faster)
        assert!(!t.contains(1), "the oldest exit was applied at once");
        assert!(t.contains(2));
    }
}
