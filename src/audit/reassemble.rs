//! Records → events. The kernel writes one event as several records sharing a serial; this stage
//! groups them by `(node, serial)` — never by time, since timestamps are taken at syscall entry
//! and arrive out of order — and hands each finished [`Event`] to a callback. It knows nothing of
//! what the events mean (see [`super::exec`] for that).
//!
//! An event is finished by, in order of preference:
//! - its EOE record (netlink streams; auditd's log never contains EOE),
//! - its PROCTITLE record, which the kernel always writes last before EOE (switchable),
//! - the audit clock (the newest record time seen, or a clock the caller advances) passing
//!   `timeout_ms` beyond the moment the event opened,
//! - the caps on open events and on bytes held, which finish the oldest event first,
//! - the end of input ([`Reassembler::flush`]).
//!
//! Memory is bounded: by `max_in_flight` open events, `max_event_bytes` per event (later records
//! are dropped and the event is marked truncated), `max_total_bytes` overall, a fixed ring of
//! recently finished keys (to recognise late records), a fixed list of serial gaps, and a fixed
//! number of distinct `node=` names. Every record that is dropped is counted in
//! [`ReassembleStats`].

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;

use super::record::{types, AuditTime, Record};
use crate::keyhash::KeyHasher;

/// How many recently finished `(node, serial)` keys are remembered to recognise late records.
pub const RECENT_KEYS: usize = 4096;

/// How many distinct `node=` names are tracked; records from further nodes are dropped and
/// counted (node names come from auditd's configuration, so a handful is normal).
pub const MAX_NODES: usize = 1024;

/// Serial distance beyond which two serials are not compared as "before/after" but treated as a
/// discontinuity (reboot, concatenated logs): the same range go-libaudit uses for rollover.
pub const SERIAL_WINDOW: u32 = (1 << 24) - 1;

/// How many open serial gaps are remembered per node so that a serial arriving late can be taken
/// back out of the lost count; older gaps stay counted.
const MAX_GAPS: usize = 256;

/// Events larger than this many records switch duplicate detection from a scan to a hash index.
const DEDUP_SCAN_LIMIT: usize = 32;

/// Records an open event has room for before its vector grows: an execve event's usual count.
const EVENT_RECORDS_HINT: usize = 8;

/// Tuning for [`Reassembler`]; the defaults suit a busy host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassembleConfig {
    /// Finish an event once the audit clock is more than this many milliseconds past the moment
    /// it opened. Needed because auditd's log (and some rule sets) carry no EOE.
    pub timeout_ms: u64,
    /// Most events open at once; beyond it the oldest (by arrival) is finished.
    pub max_in_flight: usize,
    /// Most bytes (see [`record_cost`]) one event may hold; later records are dropped.
    pub max_event_bytes: usize,
    /// Most bytes all open events may hold together; beyond it the oldest are finished.
    pub max_total_bytes: usize,
    /// Finish an event on its PROCTITLE record (the kernel writes it last, before EOE). Makes
    /// events from auditd's log file complete without waiting for the timeout.
    pub complete_on_proctitle: bool,
}

impl Default for ReassembleConfig {
    fn default() -> Self {
        ReassembleConfig {
            timeout_ms: 2000,
            max_in_flight: 4096,
            max_event_bytes: 16 << 20,
            // Part of the live agent's memory budget (see docs/memory.md).
            max_total_bytes: 16 << 20,
            complete_on_proctitle: true,
        }
    }
}

/// Why an event was handed on; kept so that operators can see how complete events are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventEnd {
    /// The kernel's EOE record closed it (the EOE record itself is not kept).
    Eoe,
    /// Its PROCTITLE record, the last the kernel writes, closed it.
    Proctitle,
    /// The audit clock passed `timeout_ms` beyond the moment it opened.
    Timeout,
    /// More than `max_in_flight` events were open; it was the oldest.
    Evicted,
    /// Open events held more than `max_total_bytes`; it was the oldest.
    OverBudget,
    /// [`Reassembler::flush`] at the end of input.
    EndOfInput,
    /// A record type that is an event on its own (see [`is_standalone`]).
    Standalone,
}

/// A group of records sharing `(node, serial)`, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `node=` name of the records, if any.
    pub node: Option<String>,
    /// The serial shared by all records.
    pub serial: u32,
    /// Time of the first record that arrived.
    pub time: AuditTime,
    /// The records in arrival order: never empty, EOE not included.
    pub records: Vec<Record>,
    /// What finished the event.
    pub end: EventEnd,
    /// Records were dropped because the event reached `max_event_bytes`.
    pub truncated: bool,
}

/// Counters of the reassembler; every dropped record lands in one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReassembleStats {
    /// Records pushed.
    pub records_in: u64,
    /// Events handed to the callback (sum of the `events_*` finish counters below).
    pub events_out: u64,
    /// Events finished by EOE.
    pub events_eoe: u64,
    /// Events finished by PROCTITLE.
    pub events_proctitle: u64,
    /// Events finished by the timeout.
    pub events_timeout: u64,
    /// Events finished because too many were open.
    pub events_evicted: u64,
    /// Events finished because open events held too many bytes.
    pub events_over_budget: u64,
    /// Events finished by [`Reassembler::flush`].
    pub events_flushed: u64,
    /// Standalone single-record events.
    pub events_standalone: u64,
    /// Events that lost records to `max_event_bytes`.
    pub events_truncated: u64,
    /// Records dropped as exact copies (type and body) of a record already in their event.
    pub records_duplicate: u64,
    /// Records dropped because their event had already been handed on.
    pub records_late: u64,
    /// Records dropped because they named a node beyond [`MAX_NODES`].
    pub records_node_overflow: u64,
    /// EOE records with no open or recent event.
    pub eoe_orphan: u64,
    /// EOE records for an event already finished (e.g. by PROCTITLE): expected, ignored.
    pub eoe_after_complete: u64,
    /// Bytes (see [`record_cost`]) of records dropped by `max_event_bytes`.
    pub bytes_dropped: u64,
    /// Kernel serials never seen: gaps in each node's serial sequence, like go-libaudit's
    /// lost-events count. A serial that arrives after its gap was counted is taken back out.
    pub serial_gaps: u64,
    /// Events open now.
    pub in_flight: usize,
    /// Bytes held by open events now.
    pub bytes_in_flight: usize,
}

/// Whether records of this type are events on their own and are handed on at once:
/// user-space messages 1100–1199 (USER_*, LOGIN via PAM, …) and 2100–2999 (ANOM_LOGIN_*, USER
/// MAC/crypto/integrity messages), auditd's own DAEMON_* records 1200–1299, and AUDIT_KERNEL 2000
/// ("initialized"). None of them is part of a SYSCALL event. Their key is not remembered, so a
/// SYSCALL that happens to share the serial still forms its own event.
pub fn is_standalone(rtype: u16) -> bool {
    matches!(rtype, 1100..=1299 | 2000 | 2100..=2999)
}

/// Whether the type is written by auditd itself (DAEMON_* 1200–1299) with auditd's own serial
/// counter; those serials say nothing about lost kernel records.
fn is_daemon(rtype: u16) -> bool {
    (1200..=1299).contains(&rtype)
}

/// What a record counts against the byte caps: its body and node name plus the fixed size of a
/// [`Record`], so that floods of tiny records are bounded too.
pub fn record_cost(rec: &Record) -> usize {
    rec.body.len() + rec.node.as_ref().map_or(0, String::len) + std::mem::size_of::<Record>()
}

/// Groups records into events; see the module documentation for when an event is finished.
pub struct Reassembler {
    cfg: ReassembleConfig,
    stats: ReassembleStats,
    /// Newest record time seen (or clock advanced to), in milliseconds.
    clock_ms: u64,
    next_id: u64,
    /// Open events by key (see [`Reassembler::key`]).
    open: HashMap<u64, Open, KeyHasher>,
    /// Arrival id → (key, opening clock) of each open event. Opening times never decrease with
    /// arrival, so the first entry is both the oldest and the first to time out.
    order: BTreeMap<u64, (u64, u64)>,
    /// Recently finished keys → (time of the event, generation in `recent_fifo`).
    recent: HashMap<u64, (AuditTime, u64), KeyHasher>,
    recent_fifo: VecDeque<(u64, u64)>,
    recent_gen: u64,
    /// `node=` name → id (1-based; 0 is "no node").
    nodes: HashMap<String, u32>,
    /// Serial-gap tracking per node id (index 0: records without a node).
    serials: Vec<SerialTracker>,
    hasher: RandomState,
}

/// One open event.
struct Open {
    id: u64,
    node_id: u32,
    event: Event,
    bytes: usize,
    /// Hash of (type, body) → index of the first record with it, built once the event is large.
    index: Option<HashMap<u64, usize>>,
}

impl Reassembler {
    /// A reassembler with no open events.
    pub fn new(cfg: ReassembleConfig) -> Self {
        Reassembler {
            cfg,
            stats: ReassembleStats::default(),
            clock_ms: 0,
            next_id: 0,
            open: HashMap::with_hasher(KeyHasher::new()),
            order: BTreeMap::new(),
            recent: HashMap::with_hasher(KeyHasher::new()),
            recent_fifo: VecDeque::new(),
            recent_gen: 0,
            nodes: HashMap::new(),
            serials: vec![SerialTracker::default()],
            hasher: RandomState::new(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReassembleStats {
        &self.stats
    }

    /// Adds one record; any events it finishes (its own, timed-out or evicted ones) are passed
    /// to `emit`, oldest first.
    pub fn push(&mut self, rec: Record, emit: &mut dyn FnMut(Event)) {
        self.stats.records_in += 1;
        self.clock_ms = self.clock_ms.max(rec.time.as_millis());
        let node_id = self.node_id(rec.node.as_deref());

        if is_standalone(rec.rtype) {
            if let (Some(id), false) = (node_id, is_daemon(rec.rtype)) {
                self.note_serial(id, rec.serial);
            }
            self.stats.events_out += 1;
            self.stats.events_standalone += 1;
            emit(Event {
                node: rec.node.clone(),
                serial: rec.serial,
                time: rec.time,
                records: vec![rec],
                end: EventEnd::Standalone,
                truncated: false,
            });
        } else if let Some(node_id) = node_id {
            self.push_grouped(node_id, rec, emit);
        } else {
            self.stats.records_node_overflow += 1;
        }
        self.enforce_caps(emit);
        self.expire(emit);
    }

    /// Advances the audit clock to `now` (never backwards) and finishes timed-out events. A live
    /// source calls it when idle, so that events without EOE do not wait for the next record.
    pub fn advance_clock(&mut self, now: AuditTime, emit: &mut dyn FnMut(Event)) {
        self.clock_ms = self.clock_ms.max(now.as_millis());
        self.expire(emit);
    }

    /// End of input: finishes every open event, oldest first.
    pub fn flush(&mut self, emit: &mut dyn FnMut(Event)) {
        while self.finish_oldest(EventEnd::EndOfInput, emit) {}
    }

    /// A non-standalone record: EOE, a record of an open event, a late one, or a new event.
    fn push_grouped(&mut self, node_id: u32, rec: Record, emit: &mut dyn FnMut(Event)) {
        let key = key(node_id, rec.serial);
        if rec.rtype == types::EOE {
            if self.finish(key, EventEnd::Eoe, emit) {
                return;
            }
            if self.recent.get(&key).is_some_and(|(t, _)| *t == rec.time) {
                self.stats.eoe_after_complete += 1;
            } else {
                self.stats.eoe_orphan += 1;
            }
            return;
        }
        let closes = rec.rtype == types::PROCTITLE && self.cfg.complete_on_proctitle;
        if let Entry::Occupied(mut entry) = self.open.entry(key) {
            let open = entry.get_mut();
            let cost = record_cost(&rec);
            if is_duplicate(open, &rec, &self.hasher) {
                self.stats.records_duplicate += 1;
                return;
            }
            if open.event.truncated || open.bytes.saturating_add(cost) > self.cfg.max_event_bytes {
                if !open.event.truncated {
                    open.event.truncated = true;
                    self.stats.events_truncated += 1;
                }
                self.stats.bytes_dropped += cost as u64;
            } else {
                open.bytes += cost;
                self.stats.bytes_in_flight += cost;
                if let Some(index) = open.index.as_mut() {
                    let h = self.hasher.hash_one((rec.rtype, &rec.body));
                    index.entry(h).or_insert(open.event.records.len());
                }
                open.event.records.push(rec);
            }
            if closes {
                let open = entry.remove();
                self.finish_removed(key, open, EventEnd::Proctitle, emit);
            }
            return;
        }
        if self.recent.get(&key).is_some_and(|(t, _)| *t == rec.time) {
            self.stats.records_late += 1;
            return;
        }
        // A new event. Its first record is always kept, whatever its size. Room for a typical
        // execve event (SYSCALL, BPRM_FCAPS, EXECVE, CWD, two PATH, PROCTITLE) from the start
        // spares the vector two regrowths.
        let cost = record_cost(&rec);
        let mut records = Vec::with_capacity(EVENT_RECORDS_HINT);
        let (node, serial, time) = (rec.node.clone(), rec.serial, rec.time);
        records.push(rec);
        let id = self.next_id;
        self.next_id += 1;
        self.order.insert(id, (key, self.clock_ms));
        self.stats.bytes_in_flight += cost;
        self.open.insert(
            key,
            Open {
                id,
                node_id,
                event: Event {
                    node,
                    serial,
                    time,
                    records,
                    end: EventEnd::EndOfInput,
                    truncated: false,
                },
                bytes: cost,
                index: None,
            },
        );
        self.stats.in_flight = self.open.len();
        if closes {
            self.finish(key, EventEnd::Proctitle, emit);
        }
    }

    /// Finishes the oldest events while the count or byte caps are exceeded.
    fn enforce_caps(&mut self, emit: &mut dyn FnMut(Event)) {
        while self.open.len() > self.cfg.max_in_flight {
            if !self.finish_oldest(EventEnd::Evicted, emit) {
                break;
            }
        }
        while self.stats.bytes_in_flight > self.cfg.max_total_bytes {
            if !self.finish_oldest(EventEnd::OverBudget, emit) {
                break;
            }
        }
    }

    /// Finishes the oldest events while the clock is more than `timeout_ms` past their opening.
    fn expire(&mut self, emit: &mut dyn FnMut(Event)) {
        while let Some((_, &(key, anchor_ms))) = self.order.first_key_value() {
            if self.clock_ms.saturating_sub(anchor_ms) <= self.cfg.timeout_ms {
                break;
            }
            if !self.finish(key, EventEnd::Timeout, emit) {
                // Cannot happen (order and open change together); drop the stray entry.
                self.order.pop_first();
            }
        }
    }

    /// Finishes the oldest open event; false when none is open.
    fn finish_oldest(&mut self, end: EventEnd, emit: &mut dyn FnMut(Event)) -> bool {
        match self.order.first_key_value() {
            Some((_, &(key, _))) => {
                if !self.finish(key, end, emit) {
                    self.order.pop_first();
                }
                true
            }
            None => false,
        }
    }

    /// Removes the open event `key`, remembers it as recent, counts and emits it.
    fn finish(&mut self, key: u64, end: EventEnd, emit: &mut dyn FnMut(Event)) -> bool {
        let Some(open) = self.open.remove(&key) else {
            return false;
        };
        self.finish_removed(key, open, end, emit);
        true
    }

    /// [`Reassembler::finish`] for an event already taken out of `open`.
    fn finish_removed(&mut self, key: u64, open: Open, end: EventEnd, emit: &mut dyn FnMut(Event)) {
        self.order.remove(&open.id);
        self.stats.in_flight = self.open.len();
        self.stats.bytes_in_flight = self.stats.bytes_in_flight.saturating_sub(open.bytes);
        self.remember(key, open.event.time);
        self.note_serial(open.node_id, open.event.serial);
        let s = &mut self.stats;
        s.events_out += 1;
        match end {
            EventEnd::Eoe => s.events_eoe += 1,
            EventEnd::Proctitle => s.events_proctitle += 1,
            EventEnd::Timeout => s.events_timeout += 1,
            EventEnd::Evicted => s.events_evicted += 1,
            EventEnd::OverBudget => s.events_over_budget += 1,
            EventEnd::EndOfInput => s.events_flushed += 1,
            EventEnd::Standalone => s.events_standalone += 1,
        }
        let mut event = open.event;
        event.end = end;
        emit(event);
    }

    /// Adds a finished key to the bounded ring of recent keys.
    fn remember(&mut self, key: u64, time: AuditTime) {
        self.recent_gen += 1;
        self.recent.insert(key, (time, self.recent_gen));
        self.recent_fifo.push_back((key, self.recent_gen));
        while self.recent_fifo.len() > RECENT_KEYS {
            if let Some((old, gen)) = self.recent_fifo.pop_front() {
                if let Entry::Occupied(entry) = self.recent.entry(old) {
                    if entry.get().1 == gen {
                        entry.remove();
                    }
                }
            }
        }
    }

    /// Feeds a finished kernel serial to its node's gap tracker.
    fn note_serial(&mut self, node_id: u32, serial: u32) {
        if let Some(tracker) = self.serials.get_mut(node_id as usize) {
            match tracker.note(serial) {
                GapChange::Lost(n) => self.stats.serial_gaps += u64::from(n),
                GapChange::Found => {
                    self.stats.serial_gaps = self.stats.serial_gaps.saturating_sub(1)
                }
                GapChange::None => {}
            }
        }
    }

    /// The id of a node name, interning new ones; `None` beyond [`MAX_NODES`].
    fn node_id(&mut self, node: Option<&str>) -> Option<u32> {
        let Some(name) = node else {
            return Some(0);
        };
        if let Some(&id) = self.nodes.get(name) {
            return Some(id);
        }
        if self.nodes.len() >= MAX_NODES {
            return None;
        }
        let id = u32::try_from(self.nodes.len() + 1).ok()?;
        self.nodes.insert(name.to_owned(), id);
        self.serials.push(SerialTracker::default());
        Some(id)
    }
}

/// The grouping key: node id in the high half, serial in the low half.
fn key(node_id: u32, serial: u32) -> u64 {
    (u64::from(node_id) << 32) | u64::from(serial)
}

/// Whether `rec` equals (type and body) a record already in `open`. Small events are scanned;
/// large ones get a hash index on first use so that a flood stays linear.
fn is_duplicate(open: &mut Open, rec: &Record, hasher: &RandomState) -> bool {
    let same = |r: &Record| r.rtype == rec.rtype && r.body == rec.body;
    if open.index.is_none() {
        let records = &open.event.records;
        if records.len() < DEDUP_SCAN_LIMIT {
            return records.iter().any(same);
        }
        let mut index = HashMap::with_capacity(records.len() * 2);
        for (i, r) in records.iter().enumerate() {
            index
                .entry(hasher.hash_one((r.rtype, &r.body)))
                .or_insert(i);
        }
        open.index = Some(index);
    }
    let h = hasher.hash_one((rec.rtype, &rec.body));
    match open.index.as_ref().and_then(|ix| ix.get(&h)) {
        Some(&i) => open.event.records.get(i).is_some_and(same),
        None => false,
    }
}

/// What finishing one serial did to the lost count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GapChange {
    None,
    /// This many serials were skipped.
    Lost(u32),
    /// A serial counted as lost turned up after all.
    Found,
}

/// Per-node gap tracking over the u32 serial sequence, wrap-around aware.
#[derive(Debug, Default)]
struct SerialTracker {
    /// Highest serial finished so far (in wrapping order).
    highest: Option<u32>,
    /// Gaps counted as lost: (first serial, length), oldest first.
    gaps: VecDeque<(u32, u32)>,
}

impl SerialTracker {
    fn note(&mut self, serial: u32) -> GapChange {
        let Some(high) = self.highest else {
            self.highest = Some(serial);
            return GapChange::None;
        };
        let ahead = serial.wrapping_sub(high);
        let behind = high.wrapping_sub(serial);
        if ahead == 0 {
            GapChange::None
        } else if ahead <= SERIAL_WINDOW {
            self.highest = Some(serial);
            let lost = ahead - 1;
            if lost == 0 {
                return GapChange::None;
            }
            if self.gaps.len() >= MAX_GAPS {
                self.gaps.pop_front();
            }
            self.gaps.push_back((high.wrapping_add(1), lost));
            GapChange::Lost(lost)
        } else if behind <= SERIAL_WINDOW {
            self.take_back(serial)
        } else {
            // A jump no kernel counter makes between two events we saw: a reboot or spliced
            // logs. Start over rather than count billions of lost events.
            self.highest = Some(serial);
            self.gaps.clear();
            GapChange::None
        }
    }

    /// Removes `serial` from the gap that counted it, if any.
    fn take_back(&mut self, serial: u32) -> GapChange {
        let Some(i) = self
            .gaps
            .iter()
            .rposition(|&(start, len)| serial.wrapping_sub(start) < len)
        else {
            return GapChange::None;
        };
        let Some((start, len)) = self.gaps.remove(i) else {
            return GapChange::None;
        };
        let before = serial.wrapping_sub(start);
        let after = len - before - 1;
        if after > 0 {
            self.gaps.insert(i, (serial.wrapping_add(1), after));
        }
        if before > 0 {
            self.gaps.insert(i, (start, before));
        }
        GapChange::Found
    }
}

/// Record builders for tests in this module and in [`super::exec`]: a small splitter for
/// `type=NAME msg=audit(SEC.MSEC:SERIAL): body` lines that knows the handful of type names
/// the test files use.
#[cfg(test)]
pub(crate) mod test_support {
    use super::super::record::{AuditTime, Record};

    /// A record from its parts.
    pub fn rec(rtype: u16, serial: u32, sec: u64, msec: u32, body: &str) -> Record {
        Record {
            node: None,
            rtype,
            time: AuditTime { sec, msec },
            serial,
            body: body.as_bytes().to_vec(),
            enriched: Vec::new(),
        }
    }

    /// One log line as a record (the agent's own parser); `None` for a line it refuses.
    pub fn parse_line(line: &[u8]) -> Option<Record> {
        super::super::record::parse_text(line).ok()
    }

    /// The repository's own capture (samples/capture.sh): the labelled cases of samples/labels.tsv.
    pub const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sample.audit.log");

    /// A file of the shared corpus beside the checkout (`../shared`); tests that read one sit in a
    /// `shared_corpus` module, ignored by a plain `cargo test` and run by the corpus step of
    /// `scripts/test-all.sh` (docs/testing.md).
    pub fn shared(rel: &str) -> String {
        format!("{}/../shared/{rel}", env!("CARGO_MANIFEST_DIR"))
    }

    /// Every known record of a log file; a file that cannot be read fails the test, naming it.
    pub fn read_log(path: &str) -> Vec<Record> {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        data.split(|b| *b == b'\n').filter_map(parse_line).collect()
    }

    /// The records of one serial in a log file.
    pub fn records_of(path: &str, serial: u32) -> Vec<Record> {
        read_log(path)
            .into_iter()
            .filter(|r| r.serial == serial)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{read_log, rec, SAMPLE};
    use super::*;

    fn run(cfg: ReassembleConfig, records: Vec<Record>) -> (Vec<Event>, ReassembleStats) {
        let mut r = Reassembler::new(cfg);
        let mut out = Vec::new();
        for record in records {
            r.push(record, &mut |e| out.push(e));
        }
        r.flush(&mut |e| out.push(e));
        (out, r.stats().clone())
    }

    fn shape(events: &[Event]) -> Vec<(u32, usize)> {
        events.iter().map(|e| (e.serial, e.records.len())).collect()
    }

    #[test]
    fn sample_log_completes_on_proctitle() {
        let recs = read_log(SAMPLE);
        let n = recs.len() as u64;
        let (events, stats) = run(ReassembleConfig::default(), recs);
        assert_eq!(stats.records_in, n);
        assert_eq!(n, 845);
        assert_eq!(stats.events_standalone, 2); // DAEMON_START, DAEMON_END
        assert_eq!(stats.events_proctitle, 137);
        assert_eq!(stats.events_timeout + stats.events_flushed, 0);
        assert_eq!(stats.events_out, 139);
        assert_eq!(
            stats.records_late + stats.records_duplicate + stats.eoe_orphan,
            0
        );
        // Kernel serials 3..=139, none missing.
        assert_eq!(stats.serial_gaps, 0);
        let sc12 = events
            .iter()
            .find(|e| e.serial == 44)
            .map(|e| e.records.len());
        assert_eq!(sc12, Some(9));
    }

    #[test]
    fn eoe_completes_and_is_not_kept() {
        let recs = vec![
            rec(1300, 7, 100, 0, "syscall=59"),
            rec(1309, 7, 100, 0, "argc=1 a0=\"x\""),
            rec(1320, 7, 100, 0, ""),
            rec(1320, 7, 100, 0, ""),
            rec(1320, 8, 100, 0, ""),
        ];
        let mut r = Reassembler::new(ReassembleConfig::default());
        let mut out = Vec::new();
        for x in recs {
            r.push(x, &mut |e| out.push(e));
        }
        assert_eq!(shape(&out), vec![(7, 2)]);
        assert_eq!(out[0].end, EventEnd::Eoe);
        assert_eq!(out[0].time, AuditTime { sec: 100, msec: 0 });
        let s = r.stats();
        assert_eq!(
            (s.events_eoe, s.eoe_after_complete, s.eoe_orphan),
            (1, 1, 1)
        );
    }

    #[test]
    fn eoe_after_proctitle_is_expected() {
        let (events, stats) = run(
            ReassembleConfig::default(),
            vec![
                rec(1300, 9, 1, 0, "a"),
                rec(1327, 9, 1, 0, "p"),
                rec(1320, 9, 1, 0, ""),
            ],
        );
        assert_eq!(shape(&events), vec![(9, 2)]);
        assert_eq!(events[0].end, EventEnd::Proctitle);
        assert_eq!((stats.eoe_after_complete, stats.eoe_orphan), (1, 0));
    }

    #[test]
    fn proctitle_switch_off_waits_for_eoe() {
        let cfg = ReassembleConfig {
            complete_on_proctitle: false,
            ..Default::default()
        };
        let (events, stats) = run(
            cfg,
            vec![
                rec(1300, 9, 1, 0, "a"),
                rec(1327, 9, 1, 0, "p"),
                rec(1302, 9, 1, 0, "late"),
                rec(1320, 9, 1, 0, ""),
            ],
        );
        assert_eq!(shape(&events), vec![(9, 3)]);
        assert_eq!(stats.events_eoe, 1);
    }

    #[test]
    fn timeout_counts_from_opening_not_from_entry_timestamp() {
        // Serial 2 is a long syscall: stamped at entry (t=1.000) but written at exit, after
        // serial 3 (t=5.000). It must not time out on arrival.
        let cfg = ReassembleConfig {
            complete_on_proctitle: false,
            ..Default::default()
        };
        let mut r = Reassembler::new(cfg);
        let mut out = Vec::new();
        r.push(rec(1300, 3, 5, 0, "three"), &mut |e| out.push(e));
        r.push(rec(1300, 2, 1, 0, "two"), &mut |e| out.push(e));
        r.push(rec(1302, 2, 1, 0, "two-path"), &mut |e| out.push(e));
        assert!(out.is_empty());
        // Clock 7.000: both opened at 5.000, exactly 2000 ms ago: not yet.
        r.push(rec(1300, 4, 7, 0, "four"), &mut |e| out.push(e));
        assert!(out.is_empty());
        // Clock 7.001: both expire, in arrival order; the clock never goes backwards.
        r.push(rec(1300, 5, 6, 0, "five"), &mut |e| out.push(e));
        assert!(out.is_empty());
        r.push(rec(1300, 6, 7, 1, "six"), &mut |e| out.push(e));
        assert_eq!(shape(&out), vec![(3, 1), (2, 2)]);
        assert_eq!(r.stats().events_timeout, 2);
        r.advance_clock(AuditTime { sec: 9, msec: 2 }, &mut |e| out.push(e));
        assert_eq!(shape(&out), vec![(3, 1), (2, 2), (4, 1), (5, 1), (6, 1)]);
        assert_eq!(r.stats().in_flight, 0);
    }

    #[test]
    fn in_flight_cap_evicts_oldest_by_arrival() {
        let cfg = ReassembleConfig {
            max_in_flight: 2,
            ..Default::default()
        };
        let mut r = Reassembler::new(cfg);
        let mut out = Vec::new();
        for serial in [30u32, 10, 20, 40] {
            r.push(rec(1300, serial, 1, 0, "s"), &mut |e| out.push(e));
        }
        assert_eq!(shape(&out), vec![(30, 1), (10, 1)]);
        assert!(out.iter().all(|e| e.end == EventEnd::Evicted));
        assert_eq!(r.stats().events_evicted, 2);
        assert_eq!(r.stats().in_flight, 2);
        r.flush(&mut |e| out.push(e));
        assert_eq!(shape(&out), vec![(30, 1), (10, 1), (20, 1), (40, 1)]);
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let (events, stats) = run(
            ReassembleConfig::default(),
            vec![
                rec(1300, 5, 1, 0, "same"),
                rec(1300, 5, 1, 0, "same"),
                rec(1302, 5, 1, 0, "same"),
                rec(1302, 5, 1, 0, "other"),
                rec(1302, 5, 1, 0, "other"),
            ],
        );
        assert_eq!(shape(&events), vec![(5, 3)]);
        assert_eq!(stats.records_duplicate, 2);
    }

    #[test]
    fn duplicates_in_large_events_use_the_index() {
        let mut recs: Vec<Record> = (0..100)
            .map(|i| rec(1302, 5, 1, 0, &format!("item={i}")))
            .collect();
        recs.push(rec(1302, 5, 1, 0, "item=3"));
        recs.push(rec(1302, 5, 1, 0, "item=99"));
        recs.push(rec(1302, 5, 1, 0, "item=100"));
        recs.push(rec(1302, 5, 1, 0, "item=100"));
        let (events, stats) = run(ReassembleConfig::default(), recs);
        assert_eq!(shape(&events), vec![(5, 101)]);
        assert_eq!(stats.records_duplicate, 3);
    }

    #[test]
    fn late_records_are_dropped_but_reused_serials_start_over() {
        let (events, stats) = run(
            ReassembleConfig::default(),
            vec![
                rec(1300, 5, 1, 0, "a"),
                rec(1320, 5, 1, 0, ""),
                rec(1302, 5, 1, 0, "late"),
                // Same serial, another time: a new event (counter reset), not a late record.
                rec(1300, 5, 2, 500, "again"),
            ],
        );
        assert_eq!(shape(&events), vec![(5, 1), (5, 1)]);
        assert_eq!(events[1].time, AuditTime { sec: 2, msec: 500 });
        assert_eq!(stats.records_late, 1);
    }

    #[test]
    fn recent_ring_is_bounded() {
        let mut recs = Vec::new();
        for serial in 0..(RECENT_KEYS as u32 + 10) {
            recs.push(rec(1300, serial, 1, 0, "a"));
            recs.push(rec(1320, serial, 1, 0, ""));
        }
        // Serial 0 has left the ring: its record starts a new event; serial 20 is still known.
        recs.push(rec(1302, 0, 1, 0, "b"));
        recs.push(rec(1302, 20, 1, 0, "b"));
        let mut r = Reassembler::new(ReassembleConfig::default());
        let mut n = 0;
        for x in recs {
            r.push(x, &mut |_| n += 1);
        }
        assert_eq!(r.stats().records_late, 1);
        assert_eq!(r.stats().in_flight, 1);
        assert_eq!(r.recent.len(), RECENT_KEYS);
        assert_eq!(r.recent_fifo.len(), RECENT_KEYS);
        assert_eq!(n, RECENT_KEYS + 10);
    }

    #[test]
    fn standalone_records_pass_at_once() {
        let mut r = Reassembler::new(ReassembleConfig::default());
        let mut out = Vec::new();
        r.push(rec(1300, 40, 1, 0, "open"), &mut |e| out.push(e));
        r.push(rec(1112, 41, 1, 0, "user login"), &mut |e| out.push(e));
        r.push(rec(1200, 8692, 1, 0, "daemon"), &mut |e| out.push(e));
        r.push(rec(2100, 42, 1, 0, "anom"), &mut |e| out.push(e));
        assert_eq!(shape(&out), vec![(41, 1), (8692, 1), (42, 1)]);
        assert!(out.iter().all(|e| e.end == EventEnd::Standalone));
        assert_eq!(r.stats().in_flight, 1);
        r.flush(&mut |e| out.push(e));
        // 40, 41, 42 in the kernel serial space; auditd's 8692 is not a gap.
        assert_eq!(r.stats().serial_gaps, 0);
        assert!(is_standalone(1100) && is_standalone(1299) && is_standalone(2999));
        assert!(!is_standalone(1300) && !is_standalone(1400) && !is_standalone(1006));
    }

    #[test]
    fn nodes_keep_serials_apart() {
        let mut a = rec(1300, 5, 1, 0, "a");
        a.node = Some("alpha".into());
        let mut b = rec(1300, 5, 1, 0, "b");
        b.node = Some("beta".into());
        let mut b2 = rec(1302, 5, 1, 0, "b-path");
        b2.node = Some("beta".into());
        let (events, stats) = run(ReassembleConfig::default(), vec![a, b, b2]);
        let got: Vec<(Option<&str>, usize)> = events
            .iter()
            .map(|e| (e.node.as_deref(), e.records.len()))
            .collect();
        assert_eq!(got, vec![(Some("alpha"), 1), (Some("beta"), 2)]);
        assert_eq!(stats.serial_gaps, 0);
    }

    #[test]
    fn event_byte_cap_truncates() {
        let one = record_cost(&rec(1302, 1, 1, 0, "0123456789"));
        let cfg = ReassembleConfig {
            max_event_bytes: 2 * one,
            ..Default::default()
        };
        let (events, stats) = run(
            cfg,
            vec![
                rec(1300, 1, 1, 0, "0123456789"),
                rec(1302, 1, 1, 0, "abcdefghij"),
                rec(1302, 1, 1, 0, "ABCDEFGHIJ"),
                rec(1302, 1, 1, 0, "x"),
                rec(1300, 2, 1, 0, "0123456789"),
            ],
        );
        assert_eq!(shape(&events), vec![(1, 2), (2, 1)]);
        assert!(events[0].truncated);
        assert!(!events[1].truncated);
        assert_eq!(stats.events_truncated, 1);
        let x = record_cost(&rec(1302, 1, 1, 0, "x"));
        assert_eq!(stats.bytes_dropped, (one + x) as u64);
    }

    #[test]
    fn total_byte_cap_finishes_oldest() {
        let one = record_cost(&rec(1300, 1, 1, 0, "0123456789"));
        let cfg = ReassembleConfig {
            max_total_bytes: 3 * one,
            ..Default::default()
        };
        let mut r = Reassembler::new(cfg);
        let mut out = Vec::new();
        for (serial, body) in [(1, "0123456789"), (2, "0123456789"), (1, "abcdefghij")] {
            r.push(rec(1300, serial, 1, 0, body), &mut |e| out.push(e));
        }
        assert!(out.is_empty());
        assert_eq!(r.stats().bytes_in_flight, 3 * one);
        r.push(rec(1300, 3, 1, 0, "0123456789"), &mut |e| out.push(e));
        assert_eq!(shape(&out), vec![(1, 2)]);
        assert_eq!(out[0].end, EventEnd::OverBudget);
        assert_eq!(r.stats().bytes_in_flight, 2 * one);
        assert_eq!(r.stats().events_over_budget, 1);
    }

    #[test]
    fn serial_gaps_take_back_late_serials() {
        let mut t = SerialTracker::default();
        assert_eq!(t.note(10), GapChange::None);
        assert_eq!(t.note(15), GapChange::Lost(4)); // 11..=14
        assert_eq!(t.note(12), GapChange::Found);
        assert_eq!(t.note(12), GapChange::None);
        assert_eq!(t.note(11), GapChange::Found);
        assert_eq!(t.note(14), GapChange::Found);
        assert_eq!(t.gaps, VecDeque::from(vec![(13, 1)]));
        assert_eq!(t.note(9), GapChange::None); // before tracking began
        assert_eq!(t.note(3_000_000_000), GapChange::None); // far jump: start over
        assert_eq!(t.gaps, VecDeque::new());
        assert_eq!(t.note(3_000_000_001), GapChange::None);

        let mut w = SerialTracker::default();
        assert_eq!(w.note(u32::MAX - 5), GapChange::None);
        assert_eq!(w.note(1), GapChange::Lost(6)); // MAX-4..=MAX, 0
        assert_eq!(w.note(0), GapChange::Found);
        assert_eq!(w.note(u32::MAX - 6), GapChange::None); // before tracking began
        assert_eq!(w.gaps, VecDeque::from(vec![(u32::MAX - 4, 5)]));
    }

    #[test]
    fn out_of_order_eoe_completion_is_not_loss() {
        let (_, stats) = run(
            ReassembleConfig::default(),
            vec![
                rec(1300, 100, 1, 0, "a"),
                rec(1300, 101, 1, 0, "b"),
                rec(1300, 102, 1, 0, "c"),
                rec(1320, 100, 1, 0, ""),
                rec(1320, 102, 1, 0, ""),
                rec(1320, 101, 1, 0, ""),
            ],
        );
        assert_eq!(stats.serial_gaps, 0);
        assert_eq!(stats.events_eoe, 3);
    }

    #[test]
    fn zero_in_flight_cap_does_not_spin() {
        let cfg = ReassembleConfig {
            max_in_flight: 0,
            max_total_bytes: 0,
            ..Default::default()
        };
        let (events, stats) = run(cfg, vec![rec(1300, 1, 1, 0, "a"), rec(1302, 1, 1, 0, "b")]);
        // Every event is finished as soon as it opens; its second record comes too late.
        assert_eq!(shape(&events), vec![(1, 1)]);
        assert_eq!(stats.records_late, 1);
    }

    /// Tests on the shared corpus beside the checkout: ignored by a plain `cargo test`, run by the
    /// corpus step of `scripts/test-all.sh` (docs/testing.md).
    mod shared_corpus {
        use super::super::test_support::shared;
        use super::*;

        fn peer(name: &str) -> Vec<Record> {
            read_log(&shared(&format!("peer/go-libaudit/{name}")))
        }

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn peer_normal_gives_five_events() {
            let (events, stats) = run(ReassembleConfig::default(), peer("reassembler-normal.log"));
            assert_eq!(
                shape(&events),
                vec![(58, 2), (59, 5), (60, 5), (61, 4), (62, 1)]
            );
            let ends: Vec<EventEnd> = events.iter().map(|e| e.end).collect();
            use EventEnd::*;
            assert_eq!(
                ends,
                vec![Timeout, Timeout, Timeout, EndOfInput, EndOfInput]
            );
            assert_eq!(stats.serial_gaps, 0);
            assert_eq!(stats.records_in, 17);
            assert_eq!(stats.events_out, 5);
            assert_eq!(stats.in_flight, 0);
            assert_eq!(stats.bytes_in_flight, 0);
        }

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn peer_lost_messages_counts_nine() {
            let (events, stats) = run(
                ReassembleConfig::default(),
                peer("reassembler-lost_messages.log"),
            );
            assert_eq!(
                shape(&events),
                vec![(49, 2), (59, 5), (60, 5), (61, 4), (62, 1)]
            );
            assert_eq!(stats.serial_gaps, 9);
        }

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn peer_out_of_order_same_events_as_normal() {
            // The late PATH of serial 60 arrives 7.8 s of audit time after the event opened, so a
            // timeout longer than that keeps the event open for it.
            let cfg = ReassembleConfig {
                timeout_ms: 10_000,
                ..ReassembleConfig::default()
            };
            let (events, stats) = run(cfg, peer("reassembler-out_of_order.log"));
            assert_eq!(
                shape(&events),
                vec![(58, 2), (59, 5), (60, 5), (61, 4), (62, 1)]
            );
            let (normal, _) = run(ReassembleConfig::default(), peer("reassembler-normal.log"));
            for (a, b) in events.iter().zip(&normal) {
                let mut x: Vec<&Record> = a.records.iter().collect();
                let mut y: Vec<&Record> = b.records.iter().collect();
                x.sort_by(|p, q| p.body.cmp(&q.body));
                y.sort_by(|p, q| p.body.cmp(&q.body));
                assert_eq!(x, y);
            }
            assert_eq!(stats.serial_gaps, 0);
            assert_eq!(stats.records_late, 0);
        }

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn peer_out_of_order_default_timeout_drops_the_late_record() {
            let (events, stats) = run(
                ReassembleConfig::default(),
                peer("reassembler-out_of_order.log"),
            );
            assert_eq!(
                shape(&events),
                vec![(58, 2), (59, 5), (60, 4), (61, 4), (62, 1)]
            );
            assert_eq!(stats.records_late, 1);
            assert_eq!(stats.serial_gaps, 0);
        }

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn peer_rollover_wraps_without_loss() {
            let (events, stats) = run(
                ReassembleConfig::default(),
                peer("reassembler-rollover.log"),
            );
            assert_eq!(
                shape(&events),
                vec![(4294967294, 1), (4294967295, 1), (0, 1), (1, 1), (2, 1)]
            );
            assert_eq!(stats.serial_gaps, 0);
        }

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn corpus_log_completes_on_proctitle() {
            let recs = read_log(&shared("corpus/raw.audit.log"));
            let n = recs.len() as u64;
            let (events, stats) = run(ReassembleConfig::default(), recs);
            assert_eq!(stats.records_in, n);
            assert_eq!(stats.events_standalone, 2); // DAEMON_START, DAEMON_END
            assert_eq!(stats.events_proctitle, 123);
            assert_eq!(stats.events_timeout + stats.events_flushed, 0);
            assert_eq!(stats.events_out, 125);
            assert_eq!(
                stats.records_late + stats.records_duplicate + stats.eoe_orphan,
                0
            );
            // Kernel serials 30177..=30319 hold 123 events: the corpus removed 20 unrelated ones.
            assert_eq!(stats.serial_gaps, 20);
            let sc12 = events
                .iter()
                .find(|e| e.serial == 30210)
                .map(|e| e.records.len());
            assert_eq!(sc12, Some(9));
        }
    }
}
