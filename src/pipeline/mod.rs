//! The only module that knows every stage. It reads frames from the sources, parses them into
//! records, lets the reassembler group them, builds exec events and documents, asks the rules and
//! the new-terms gate and the rate cap, and hands alerts (and, when an events output wants them,
//! every exec document) to the sinks — counting everything on the way.

mod detect;
mod replay;

pub use detect::{DetectOptions, Detector};
pub use replay::replay;

use crate::audit::reassemble::{Event, Reassembler};
use crate::audit::record::{AuditTime, Record};
use crate::rule::new_terms::TermStore;
use crate::sink::{Sink, SinkError};
use crate::source::file::SourceError;
use crate::stats::Stats;
use std::fmt;

/// How many malformed records are described on stderr before only counting.
const MALFORMED_REPORTED: u64 = 10;

/// A fatal pipeline failure: the input could not be read or the alerts could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// An input could not be opened or read.
    #[error(transparent)]
    Source(SourceError),
    /// A sink failed.
    #[error(transparent)]
    Sink(SinkError),
}

/// Adds one to the malformed count, describing the first [`MALFORMED_REPORTED`] on stderr.
fn count_malformed(count: &mut u64, what: &dyn fmt::Display) {
    *count += 1;
    if *count <= MALFORMED_REPORTED {
        eprintln!("auditsentry: skipped malformed record: {what}");
    } else if *count == MALFORMED_REPORTED + 1 {
        eprintln!("auditsentry: more malformed records; only counting from now on");
    }
}

/// Frames → records → reassembler → detector, for any source of frames.
pub struct Pipeline<S: TermStore> {
    reassembler: Reassembler,
    detector: Detector<S>,
    malformed: u64,
    unstamped: u64,
    parsed: u64,
}

impl<S: TermStore> Pipeline<S> {
    /// A pipeline ending in `detector`.
    pub fn new(detector: Detector<S>) -> Self {
        let reassembler = Reassembler::new(detector.opts.reassemble.clone());
        Pipeline {
            reassembler,
            detector,
            malformed: 0,
            unstamped: 0,
            parsed: 0,
        }
    }

    /// Feeds one parsed record.
    pub fn push(&mut self, rec: Record, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.parsed += 1;
        self.reassemble(sink, |r, emit| r.push(rec, emit))
    }

    /// Runs one reassembler step, handing each event it completes to the detector. After a sink
    /// failure the remaining events of the step are dropped; the first failure is returned.
    fn reassemble(
        &mut self,
        sink: &mut dyn Sink,
        step: impl FnOnce(&mut Reassembler, &mut dyn FnMut(Event)),
    ) -> Result<(), SinkError> {
        let Pipeline {
            reassembler,
            detector,
            ..
        } = self;
        let mut failed = None;
        step(reassembler, &mut |ev: Event| {
            if failed.is_none() {
                failed = detector.on_event(ev, sink).err();
            }
        });
        failed.map_or(Ok(()), Err)
    }

    /// Counts a frame that was not a record, describing the first few on stderr.
    pub fn malformed(&mut self, what: &dyn fmt::Display) {
        count_malformed(&mut self.malformed, what);
    }

    /// Completes every event still in flight, flushes state and sink, and returns the counters.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Result<Stats, SinkError> {
        let flushed = self.reassemble(sink, |r, emit| r.flush(emit));
        let found = self.detector.finish_stateful(sink);
        self.detector.finish();
        let closed = self.detector.close_windows(sink);
        sink.flush()?;
        closed?;
        flushed?;
        found?;
        Ok(self.stats())
    }

    /// Counters so far, the reassembler's included.
    pub fn stats(&self) -> Stats {
        let mut s = self.detector.stats();
        let r = self.reassembler.stats();
        s.records_parsed = self.parsed;
        s.records_malformed = self.malformed;
        s.records_unstamped = self.unstamped;
        s.events_evicted = r.events_evicted;
        s.records_late = r.records_late;
        s.records_duplicate = r.records_duplicate;
        s.serials_lost = r.serial_gaps;
        s
    }
}

impl<S: TermStore> Pipeline<S> {
    /// Live sources: audit time has reached `now` even if no record says so, so events without EOE
    /// that are past the reassembly timeout complete now.
    pub fn advance_clock(&mut self, now: AuditTime, sink: &mut dyn Sink) -> Result<(), SinkError> {
        self.reassemble(sink, |r, emit| r.advance_clock(now, emit))
    }

    /// The detector, for the live daemon's process-table upkeep.
    pub fn detector_mut(&mut self) -> &mut Detector<S> {
        &mut self.detector
    }

    /// Events currently waiting in the reassembler.
    pub fn in_flight(&self) -> usize {
        self.reassembler.stats().in_flight
    }
}
