//! Replaying audit files: reading, parsing and reassembling on one thread and detecting on
//! another, with bounded batches and record buffers recycled back to the reader.

use super::detect::Built;
use super::{count_malformed, Pipeline, PipelineError};
use crate::audit::exec::{self};
use crate::audit::reassemble::{Event, Reassembler};
use crate::audit::record::{parse_frame_owned, Record, UNSTAMPED};
use crate::rule::new_terms::TermStore;
use crate::sink::{Sink, SinkError};
use crate::source::file::{self, Format, SourceError};
use crate::stats::Stats;

/// Replays audit files (or `-` for stdin) in order through `pipeline` into `sink`.
///
/// Malformed records are counted and skipped. An input that cannot be opened or read ends the run
/// with an error naming it — after everything already read has been evaluated and flushed.
///
/// When every input is a regular file the work runs in two stages, each on its own thread — read,
/// parse and reassemble; build and detect — so a replay keeps both cores of a small machine busy
/// (three stages on two cores waited on each other more than they worked in parallel). Batches
/// between them are bounded in count, and the bytes in flight by a budget, so memory stays
/// bounded however long the lines; record buffers flow back to the reader, which copies new lines
/// into them. Order, counters and error messages are those of a single-threaded run. Stdin and
/// pipes are read on this thread, record by record: a batch would hold back the alerts of a
/// stream that pauses.
pub fn replay<S: TermStore>(
    inputs: &[String],
    format: Format,
    pipeline: &mut Pipeline<S>,
    sink: &mut dyn Sink,
) -> Result<Stats, PipelineError> {
    let all_files = inputs
        .iter()
        .all(|i| i != "-" && std::fs::metadata(i).is_ok_and(|m| m.is_file()));
    let ended = match all_files {
        true => replay_staged(inputs, format, pipeline, sink),
        false => None,
    };
    let (fatal, failed) = ended.unwrap_or_else(|| {
        let (mut fatal, mut failed) = (None, None);
        read_inputs(inputs, format, 1, None, &mut |batch| {
            match take_batch(batch, pipeline, sink) {
                Ok(None) => return true,
                Ok(Some(e)) => fatal = Some(e),
                Err(e) => failed = Some(e),
            }
            false
        });
        (fatal, failed)
    });
    if let Some(e) = failed {
        return Err(PipelineError::Sink(e));
    }
    let stats = pipeline.finish(sink).map_err(PipelineError::Sink)?;
    match fatal {
        Some(e) => Err(PipelineError::Source(e)),
        None => Ok(stats),
    }
}

/// How a replay's input ended early: a read failure, or a sink failure.
type Ended = (Option<SourceError>, Option<SinkError>);

/// The two-stage replay; `None` (nothing read) when its thread cannot be started.
fn replay_staged<S: TermStore>(
    inputs: &[String],
    format: Format,
    pipeline: &mut Pipeline<S>,
    sink: &mut dyn Sink,
) -> Option<Ended> {
    let (limits, keep_other) = pipeline.detector.build_options();
    let Pipeline {
        reassembler,
        detector,
        malformed,
        unstamped,
        parsed,
    } = pipeline;
    let intake = Intake {
        reassembler,
        parsed,
        unstamped,
        malformed,
    };
    std::thread::scope(|scope| {
        let (ev_tx, ev_rx) = crossbeam_channel::bounded::<Gathered>(BATCHES_IN_FLIGHT);
        // Record buffers flow back to the reader, which copies new lines into them.
        let (spare_tx, spare_rx) = crossbeam_channel::bounded(RETURNS_IN_FLIGHT);
        // The byte budget between the stages: a batch takes one token per BATCH_BYTES it holds
        // (all of them at most) and the detecting stage gives them back when it is done with it.
        let (token_tx, token_rx) = crossbeam_channel::bounded::<()>(TOKENS);
        for _ in 0..TOKENS {
            token_tx.try_send(()).ok()?;
        }
        std::thread::Builder::new()
            .name("replay-read".into())
            .spawn_scoped(scope, move || {
                let out = Gather {
                    events: &ev_tx,
                    tokens: &token_rx,
                };
                read_and_reassemble(inputs, format, intake, keep_other, &spare_rx, &out);
            })
            .ok()?;
        let (mut fatal, mut failed) = (None, None);
        let mut spare = Vec::with_capacity(2 * BATCH_RECORDS);
        let mut built = Vec::with_capacity(BATCH_RECORDS);
        'batches: for (batch, others, tokens, read_error) in ev_rx {
            detector.count_others(others);
            // Build the batch, then detect on it: each loop stays in its own code. Built
            // arguments can be far larger than their records (empty or skipped arguments), so
            // the batch is built in parts of at most BUILT_ARGV_BYTES of argv (or one event).
            let mut events = batch.into_iter().peekable();
            while events.peek().is_some() {
                built.clear();
                let mut argv_bytes = 0;
                while argv_bytes < BUILT_ARGV_BYTES {
                    let Some(ev) = events.next() else { break };
                    let one = Built::new(ev, &limits, keep_other, Some(&mut spare));
                    argv_bytes += one.argv_cost();
                    built.push(one);
                }
                for one in &built {
                    if let Err(e) = detector.on_built(one, sink) {
                        failed = Some(e);
                        break 'batches;
                    }
                }
            }
            built.clear();
            for _ in 0..tokens {
                let _ = token_tx.try_send(());
            }
            if spare.len() >= BATCH_RECORDS {
                // The reader may be full of spares already: then these are just freed.
                let fresh = Vec::with_capacity(2 * BATCH_RECORDS);
                let _ = spare_tx.try_send(std::mem::replace(&mut spare, fresh));
            }
            if read_error.is_some() {
                fatal = read_error;
                break;
            }
        }
        Some((fatal, failed))
    })
}

/// Most records in one batch of the reader, and most events in one batch to the detecting stage.
const BATCH_RECORDS: usize = 512;
/// Most argv bytes (charged as [`exec::arg_cost`]) the detecting stage builds before it detects
/// on them: one part of a batch, or one event alone if it is larger.
const BUILT_ARGV_BYTES: usize = 4 << 20;
/// Bytes of record bodies one token of the budget between the stages stands for.
const BATCH_BYTES: usize = 1 << 18;
/// Tokens of the budget: what a flood of megabyte arguments can hold between the stages (4 MiB,
/// or one event alone if it is larger).
const TOKENS: usize = 16;
/// Batches the reading stage may be ahead of the detecting one by.
const BATCHES_IN_FLIGHT: usize = 16;
/// Lists of spare record buffers on their way back to the reader, at most.
const RETURNS_IN_FLIGHT: usize = 4;

/// The front of a pipeline, lent to the reading stage of a replay.
struct Intake<'a> {
    reassembler: &'a mut Reassembler,
    parsed: &'a mut u64,
    unstamped: &'a mut u64,
    malformed: &'a mut u64,
}

/// What the reading stage hands to the detecting one: completed events, how many it dropped as no
/// exec since the last batch, the budget tokens they took, then, if the input could not be read,
/// why (the replay ends after what came before).
type Gathered = (Vec<Event>, u64, usize, Option<SourceError>);

/// Where the reading stage sends completed events, and the budget tokens it takes first.
struct Gather<'a> {
    events: &'a crossbeam_channel::Sender<Gathered>,
    tokens: &'a crossbeam_channel::Receiver<()>,
}

impl Gather<'_> {
    /// Sends `batch` (of `bytes` bytes) once the budget has room; false when the detecting stage
    /// is gone.
    fn send(
        &self,
        batch: Vec<Event>,
        others: u64,
        bytes: usize,
        read_error: Option<SourceError>,
    ) -> bool {
        let tokens = bytes.div_ceil(BATCH_BYTES).clamp(1, TOKENS);
        for _ in 0..tokens {
            if self.tokens.recv().is_err() {
                return false;
            }
        }
        let gathered = (batch, others, tokens, read_error);
        self.events.send(gathered).is_ok()
    }
}

/// The reading stage: frames → records → reassembler → completed events, in batches bounded in
/// count and bytes. Spare record buffers come back on `spare`.
fn read_and_reassemble(
    inputs: &[String],
    format: Format,
    intake: Intake<'_>,
    keep_other: bool,
    spare: &crossbeam_channel::Receiver<Vec<Vec<u8>>>,
    out: &Gather<'_>,
) {
    let mut stage = Gathering {
        intake,
        keep_other,
        out,
        batch: Vec::with_capacity(BATCH_RECORDS),
        bytes: 0,
        others: 0,
        open: true,
    };
    read_inputs(inputs, format, BATCH_RECORDS, Some(spare), &mut |batch| {
        stage.take(batch)
    });
    stage.finish();
}

/// The state of the reading stage between two record batches.
struct Gathering<'a, 'o> {
    intake: Intake<'a>,
    keep_other: bool,
    out: &'o Gather<'o>,
    /// Completed events not sent yet, and their bytes.
    batch: Vec<Event>,
    bytes: usize,
    /// Events dropped as no exec since the last batch went.
    others: u64,
    /// False once the input failed or the detecting stage is gone.
    open: bool,
}

impl Gathering<'_, '_> {
    /// Reassembles one batch of parsed records (emptying it); false when reading must stop.
    fn take(&mut self, parsed: &mut Vec<Parsed>) -> bool {
        for item in parsed.drain(..) {
            match item {
                Parsed::Record(rec) => {
                    *self.intake.parsed += 1;
                    let (batch, bytes, others) =
                        (&mut self.batch, &mut self.bytes, &mut self.others);
                    let keep_other = self.keep_other;
                    self.intake.reassembler.push(rec, &mut |ev| {
                        // Half of a busy host's events are certainly no exec: counted and
                        // dropped here, unless the link sensor reads them.
                        if !keep_other && exec::is_other(&ev) {
                            *others += 1;
                            return;
                        }
                        *bytes += ev.records.iter().map(|r| 64 + r.body.len()).sum::<usize>();
                        batch.push(ev);
                    });
                }
                Parsed::Unstamped => *self.intake.unstamped += 1,
                Parsed::Malformed(what) => count_malformed(self.intake.malformed, &what),
                Parsed::Fatal(e) => {
                    self.send(Some(e));
                    self.open = false;
                    return false;
                }
            }
            if (self.batch.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES) && !self.send(None)
            {
                self.open = false;
                return false;
            }
        }
        true
    }

    /// Sends what is gathered (and `read_error`); false when the detecting stage is gone.
    fn send(&mut self, read_error: Option<SourceError>) -> bool {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_RECORDS));
        let (others, bytes) = (
            std::mem::take(&mut self.others),
            std::mem::take(&mut self.bytes),
        );
        self.out.send(batch, others, bytes, read_error)
    }

    /// Sends the rest at the end of the input.
    fn finish(mut self) {
        if self.open && (!self.batch.is_empty() || self.others > 0) {
            self.send(None);
        }
    }
}

/// One frame of a replayed input, parsed.
enum Parsed {
    Record(Record),
    /// A `msg=?` record: counted apart from malformed ones.
    Unstamped,
    /// Not a record, described for the operator.
    Malformed(String),
    /// The input could not be read: the replay ends after what was read.
    Fatal(SourceError),
}

/// Reads and parses `inputs` in order, handing batches of up to `per_batch` records to `deliver`,
/// which empties each (the batch is reused), until it returns false or a read fails. Line buffers
/// coming back on `spare` are reused.
fn read_inputs(
    inputs: &[String],
    format: Format,
    per_batch: usize,
    spare: Option<&crossbeam_channel::Receiver<Vec<Vec<u8>>>>,
    deliver: &mut dyn FnMut(&mut Vec<Parsed>) -> bool,
) {
    let mut batch = Vec::with_capacity(per_batch);
    let mut bytes = 0;
    let mut push = |item: Parsed, size: usize, batch: &mut Vec<Parsed>| {
        batch.push(item);
        bytes += size;
        if batch.len() >= per_batch || bytes >= BATCH_BYTES {
            bytes = 0;
            let more = deliver(batch);
            batch.clear();
            return more;
        }
        true
    };
    for input in inputs {
        let mut reader = match file::open(input, format) {
            Ok(r) => r,
            Err(e) => {
                batch.push(Parsed::Fatal(e));
                break;
            }
        };
        let mut n = 0;
        while let Some(item) = reader.next() {
            n += 1;
            if n % 256 == 0 {
                while let Some(buffers) = spare.and_then(|r| r.try_recv().ok()) {
                    reader.recycle(buffers);
                }
            }
            let parsed = match item {
                Ok(frame) => match parse_frame_owned(frame) {
                    Ok(rec) => {
                        let size = rec.body.len();
                        if !push(Parsed::Record(rec), size, &mut batch) {
                            return;
                        }
                        continue;
                    }
                    Err(e) if e.reason == UNSTAMPED => Parsed::Unstamped,
                    Err(e) => Parsed::Malformed(format!("{input}: record {n}: {e}")),
                },
                Err(e @ SourceError::Io { .. }) => {
                    batch.push(Parsed::Fatal(e));
                    deliver(&mut batch);
                    return;
                }
                Err(e) => Parsed::Malformed(e.to_string()),
            };
            if !push(parsed, 0, &mut batch) {
                return;
            }
        }
    }
    if !batch.is_empty() {
        deliver(&mut batch);
    }
}

/// Feeds one batch to the pipeline (emptying it); `Some` when the batch ends in a read failure.
fn take_batch<S: TermStore>(
    batch: &mut Vec<Parsed>,
    pipeline: &mut Pipeline<S>,
    sink: &mut dyn Sink,
) -> Result<Option<SourceError>, SinkError> {
    for item in batch.drain(..) {
        match item {
            Parsed::Record(rec) => pipeline.push(rec, sink)?,
            Parsed::Unstamped => pipeline.unstamped += 1,
            Parsed::Malformed(what) => pipeline.malformed(&what),
            Parsed::Fatal(e) => return Ok(Some(e)),
        }
    }
    Ok(None)
}
