//! Live sources as threads. A reader thread only receives: it batches frames and hands them to the
//! worker over a bounded channel, so a slow rule or sink never makes the kernel drop records. The
//! channel is bounded in batches and, for netlink, in bytes ([`CHANNEL_BYTES`]): a flood the
//! worker cannot keep up with costs records, not memory. What a reader loses (socket overruns, a
//! full channel) is counted, never silent.

use super::file::{Format, FrameReader};
use super::netlink::AuditSocket;
use super::Frame;
use crossbeam_channel::{Sender, TrySendError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{BufReader, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most frames in one batch, and the longest a frame waits in a batch before it is sent.
const BATCH_FRAMES: usize = 256;
const BATCH_AGE: Duration = Duration::from_millis(50);

/// The longest a plugin line waits in a batch for more lines: short, since auditd has already
/// delayed it and alerts through the plugin should stay quick.
pub const PLUGIN_BATCH_AGE: Duration = Duration::from_millis(10);

/// Most bytes of lines in one plugin batch (the line that reaches it included): the worker's
/// channel is bounded in batches, so this keeps what a stalled worker has queued near what one
/// line per batch queued.
const PLUGIN_BATCH_BYTES: usize = 16 * 1024;

/// Read buffer of the plugin reader: large, so that a backlog auditd queued is read in few calls.
const PLUGIN_BUF: usize = 256 * 1024;

/// Most bytes of frames a netlink reader may have handed to the worker that the worker has not
/// finished with; a batch that would go over is dropped and counted.
pub const CHANNEL_BYTES: usize = 8 << 20;

/// What a reader sends to the worker.
#[derive(Debug)]
pub enum Message {
    /// Frames in arrival order.
    Frames(Frames),
    /// Input that could not be framed (a plugin line over the length limit), described: the
    /// worker counts it as a malformed record.
    Malformed(String),
    /// The source ended: `None` at end of input (plugin stdin closed), `Some(reason)` on a fatal error.
    End(Option<String>),
}

/// A batch of frames. Its bytes count against the reader's [`CHANNEL_BYTES`] until it is dropped.
#[derive(Debug)]
pub struct Frames {
    frames: Vec<Frame>,
    /// The budget charged, and by how much.
    charge: Option<(Arc<AtomicUsize>, usize)>,
}

impl Frames {
    /// Frames not charged to any budget.
    pub fn new(frames: Vec<Frame>) -> Self {
        Frames {
            frames,
            charge: None,
        }
    }

    /// Takes the frames out; the budget is given back when this batch is dropped.
    pub fn take(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.frames)
    }

    /// The number of frames (0 once taken).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether there is no frame (also once taken).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        if let Some((budget, bytes)) = self.charge.take() {
            budget.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

/// Bytes of a frame as charged against [`CHANNEL_BYTES`]: its payload and its fixed size.
fn frame_bytes(frame: &Frame) -> usize {
    std::mem::size_of::<Frame>()
        + match frame {
            Frame::Netlink { payload, .. } => payload.len(),
            Frame::Text(line) => line.len(),
        }
}

/// Counters of one reader thread, readable from any thread.
#[derive(Debug, Default)]
pub struct ReaderStats {
    /// Frames received from the source.
    pub frames: AtomicU64,
    /// Socket receive-queue overruns (ENOBUFS): the kernel dropped records for this reader.
    pub overruns: AtomicU64,
    /// Datagrams cut short or not valid audit netlink (including foreign senders).
    pub bad_datagrams: AtomicU64,
    /// Frames dropped because the worker's channel was full.
    pub channel_drops: AtomicU64,
    /// Requests of other processes to become the audit daemon while this unicast reader was
    /// registered (AUDIT_REPLACE): auditd starting, refused by the kernel.
    pub replace_requests: AtomicU64,
    /// The pid of the last such request.
    pub replace_pid: AtomicU32,
}

/// Where a netlink reader writes its capture (`--record`), handed back when it stops.
pub type Capture = Box<dyn Write + Send>;

/// A running reader thread.
pub struct Reader {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Option<Capture>>>,
    /// Its counters.
    pub stats: Arc<ReaderStats>,
    joinable: bool,
}

impl Reader {
    /// Asks the thread to stop and waits for it when it can notice (netlink readers wake up at
    /// least every receive timeout; a plugin reader blocked on stdin is left to end with the process).
    /// Returns the capture writer of a netlink reader (flushed), for the reader that follows it.
    pub fn stop(mut self) -> Option<Capture> {
        self.stop.store(true, Ordering::SeqCst);
        if !self.joinable {
            return None;
        }
        self.handle.take().and_then(|h| h.join().ok().flatten())
    }
}

/// Writes a frame in the netlink capture format (16-byte header, payload; no padding) so a live
/// session can be replayed with `auditsentry replay`.
pub fn write_capture(out: &mut dyn Write, frame: &Frame) -> std::io::Result<()> {
    let (msg_type, payload) = match frame {
        Frame::Netlink { msg_type, payload } => (*msg_type, payload.as_slice()),
        Frame::Text(_) => return Ok(()),
    };
    let len = u32::try_from(16 + payload.len()).unwrap_or(u32::MAX);
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..6].copy_from_slice(&msg_type.to_le_bytes());
    out.write_all(&header)?;
    out.write_all(payload)
}

/// Starts a thread receiving from a netlink audit socket (multicast, or unicast once registered).
/// A full channel drops the batch (counted): the kernel cannot be made to wait.
pub fn spawn_netlink(
    mut sock: AuditSocket,
    tx: Sender<Message>,
    mut record: Option<Capture>,
) -> std::io::Result<Reader> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ReaderStats::default());
    let (stop2, stats2) = (stop.clone(), stats.clone());
    let handle = std::thread::Builder::new()
        .name("netlink-reader".into())
        .spawn(move || {
            let mut buf = vec![0u8; super::netlink::RECV_BUFFER_LEN];
            let mut batch: Vec<Frame> = Vec::with_capacity(BATCH_FRAMES);
            let mut oldest = Instant::now();
            let budget = Arc::new(AtomicUsize::new(0));
            let send = |batch: &mut Vec<Frame>| {
                if batch.is_empty() {
                    return true;
                }
                let frames = std::mem::take(batch);
                let n = frames.len() as u64;
                let bytes = frames.iter().map(frame_bytes).sum::<usize>();
                if budget.load(Ordering::Relaxed) + bytes > CHANNEL_BYTES {
                    stats2.channel_drops.fetch_add(n, Ordering::Relaxed);
                    return true;
                }
                budget.fetch_add(bytes, Ordering::Relaxed);
                let frames = Frames {
                    frames,
                    charge: Some((Arc::clone(&budget), bytes)),
                };
                match tx.try_send(Message::Frames(frames)) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        stats2.channel_drops.fetch_add(n, Ordering::Relaxed);
                        true
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                }
            };
            while !stop2.load(Ordering::Relaxed) {
                let before = batch.len();
                let received = sock.recv_frames(&mut buf, &mut batch);
                for pid in sock.take_replace_requests() {
                    stats2.replace_pid.store(pid, Ordering::Relaxed);
                    stats2.replace_requests.fetch_add(1, Ordering::Relaxed);
                }
                match received {
                    Ok(_) => {}
                    Err(e) if e.is_transient() => {
                        let counter = match e {
                            super::netlink::NetlinkError::Overrun => &stats2.overruns,
                            _ => &stats2.bad_datagrams,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let _ = send(&mut batch);
                        let _ = tx.send(Message::End(Some(e.to_string())));
                        return record;
                    }
                }
                let got = batch.len() - before;
                if got > 0 {
                    if before == 0 {
                        oldest = Instant::now();
                    }
                    stats2.frames.fetch_add(got as u64, Ordering::Relaxed);
                    if let Some(out) = record.as_mut() {
                        for f in &batch[before..] {
                            if write_capture(out.as_mut(), f).is_err() {
                                record = None;
                                break;
                            }
                        }
                    }
                }
                if (batch.len() >= BATCH_FRAMES || (got == 0 || oldest.elapsed() >= BATCH_AGE))
                    && !send(&mut batch)
                {
                    return record;
                }
            }
            let _ = send(&mut batch);
            if let Some(out) = record.as_mut() {
                let _ = out.flush();
            }
            record
        })?;
    Ok(Reader {
        stop,
        handle: Some(handle),
        stats,
        joinable: true,
    })
}

/// Starts a thread reading auditd plugin lines (`format = string`) from `input` until end of input.
/// It blocks when the worker is behind: auditd queues for its plugins, so nothing is lost here.
///
/// auditd writes one record per write, so lines come one by one; each would cost the worker a
/// wake-up. Lines are batched instead, as the netlink reader does: a batch goes to the worker when
/// it holds `BATCH_FRAMES` (256) lines or 16 KiB, or when no input came for [`PLUGIN_BATCH_AGE`] since its
/// first line (so an alert waits at most that long here).
pub fn spawn_lines<R>(input: R, tx: Sender<Message>) -> std::io::Result<Reader>
where
    R: Read + AsFd + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ReaderStats::default());
    let (stop2, stats2) = (stop.clone(), stats.clone());
    let handle = std::thread::Builder::new()
        .name("plugin-reader".into())
        .spawn(move || {
            let input = BufReader::with_capacity(PLUGIN_BUF, input);
            let mut lines = FrameReader::new(input, Format::Text, "stdin".into());
            let mut batch = Vec::with_capacity(BATCH_FRAMES);
            let mut oldest = Instant::now();
            let mut bytes = 0;
            let send = |batch: &mut Vec<Frame>| {
                batch.is_empty()
                    || tx
                        .send(Message::Frames(Frames::new(std::mem::replace(
                            batch,
                            Vec::with_capacity(BATCH_FRAMES),
                        ))))
                        .is_ok()
            };
            let mut end = None;
            loop {
                // Nothing left in memory: wait for more input while the batch is young enough,
                // and hand it over when none comes.
                if !batch.is_empty() && !lines.has_buffered() {
                    let left = PLUGIN_BATCH_AGE.saturating_sub(oldest.elapsed());
                    if !readable_within(lines.get_ref(), left) && !send(&mut batch) {
                        return None;
                    }
                }
                let Some(item) = lines.next() else { break };
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                match item {
                    Ok(frame) => {
                        stats2.frames.fetch_add(1, Ordering::Relaxed);
                        if batch.is_empty() {
                            oldest = Instant::now();
                            bytes = 0;
                        }
                        bytes += frame_bytes(&frame);
                        batch.push(frame);
                        if (batch.len() >= BATCH_FRAMES || bytes >= PLUGIN_BATCH_BYTES)
                            && !send(&mut batch)
                        {
                            return None;
                        }
                    }
                    Err(e @ super::file::SourceError::Io { .. }) => {
                        end = Some(e.to_string());
                        break;
                    }
                    Err(e) => {
                        // In input order: the lines before it first.
                        if !send(&mut batch) || tx.send(Message::Malformed(e.to_string())).is_err()
                        {
                            return None;
                        }
                    }
                }
            }
            if send(&mut batch) {
                let _ = tx.send(Message::End(end));
            }
            None
        })?;
    Ok(Reader {
        stop,
        handle: Some(handle),
        stats,
        joinable: false,
    })
}

/// Whether `input` has something to read (data, end of input or an error) within `wait`
/// (rounded up to whole milliseconds). A failed poll counts as nothing to read.
fn readable_within(input: &impl AsFd, wait: Duration) -> bool {
    if wait.is_zero() {
        return false;
    }
    let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_format_round_trips_through_the_file_reader() {
        let frames = vec![
            Frame::Netlink {
                msg_type: 1300,
                payload: b"audit(1.002:3): arch=c000003e syscall=59".to_vec(),
            },
            Frame::Netlink {
                msg_type: 1320,
                payload: b"audit(1.002:3): ".to_vec(),
            },
        ];
        let mut out = Vec::new();
        for f in &frames {
            write_capture(&mut out, f).expect("write to memory");
        }
        let back: Vec<Frame> =
            FrameReader::new(std::io::Cursor::new(out), Format::Auto, "mem".into())
                .collect::<Result<_, _>>()
                .expect("frames read back");
        assert_eq!(back, frames);
    }

    /// An unlinked file holding `bytes`, read from its start.
    fn file_with(bytes: &[u8]) -> std::fs::File {
        use std::io::{Seek, Write};
        let mut file = tempfile::tempfile().expect("temporary file");
        file.write_all(bytes).expect("write");
        file.rewind().expect("rewind");
        file
    }

    /// The next message, which must come within a few seconds.
    fn next_message(rx: &crossbeam_channel::Receiver<Message>) -> Message {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("a message within 5 s")
    }

    #[test]
    fn plugin_lines_written_together_reach_the_worker_as_one_batch() {
        use std::io::Write;
        let (rd, mut wr) = std::io::pipe().expect("pipe");
        let (tx, rx) = crossbeam_channel::bounded(16);
        let reader = spawn_lines(rd, tx).expect("spawn");
        let lines: String = (1..=10)
            .map(|n| format!("type=EOE msg=audit(1.0:{n}): \n"))
            .collect();
        wr.write_all(lines.as_bytes()).expect("write");
        // With the pipe still open: the lines come as one batch, without waiting for more.
        match next_message(&rx) {
            Message::Frames(mut f) => assert_eq!(f.take().len(), 10),
            other => panic!("{other:?}"),
        }
        wr.write_all(b"type=EOE msg=audit(1.0:11): \n")
            .expect("write");
        match next_message(&rx) {
            Message::Frames(mut f) => {
                assert_eq!(
                    f.take(),
                    [Frame::Text(b"type=EOE msg=audit(1.0:11): ".to_vec())]
                )
            }
            other => panic!("{other:?}"),
        }
        // Lines before an oversized one are sent before it is reported.
        wr.write_all(b"type=EOE msg=audit(1.0:12): \n")
            .expect("write");
        let long = vec![b'x'; super::super::file::MAX_LINE_LEN + 1];
        wr.write_all(&long).expect("write");
        wr.write_all(b"\n").expect("write");
        drop(wr);
        match next_message(&rx) {
            Message::Frames(mut f) => assert_eq!(f.take().len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(next_message(&rx), Message::Malformed(_)));
        assert!(matches!(next_message(&rx), Message::End(None)));
        assert_eq!(reader.stats.frames.load(Ordering::Relaxed), 12);
        reader.stop();
    }

    #[test]
    fn plugin_batches_stop_at_their_byte_limit() {
        let line = format!(
            "type=EXECVE msg=audit(1.0:1): a0=\"{}\"\n",
            "x".repeat(1000)
        );
        let (tx, rx) = crossbeam_channel::bounded(256);
        let _reader = spawn_lines(file_with(line.repeat(100).as_bytes()), tx).expect("spawn");
        let mut sizes = Vec::new();
        loop {
            match next_message(&rx) {
                Message::Frames(mut f) => sizes.push(f.take().len()),
                Message::End(None) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        let most = PLUGIN_BATCH_BYTES / line.len() + 1;
        assert!(sizes.iter().all(|&n| n <= most), "{sizes:?}");
    }

    #[test]
    fn plugin_reader_sends_every_line_then_end() {
        let mut input =
            b"type=EOE msg=audit(1.0:1): \nnot audit\ntype=EOE msg=audit(1.0:2): \n".to_vec();
        input.extend(std::iter::repeat_n(
            b'x',
            super::super::file::MAX_LINE_LEN + 1,
        ));
        input.extend_from_slice(b"\ntype=EOE msg=audit(1.0:3): \n");
        let (tx, rx) = crossbeam_channel::bounded(16);
        let reader = spawn_lines(file_with(&input), tx).expect("spawn");
        let (mut frames, mut malformed) = (0, Vec::new());
        loop {
            match rx.recv_timeout(Duration::from_secs(5)).expect("message") {
                Message::Frames(mut f) => frames += f.take().len(),
                Message::Malformed(what) => malformed.push(what),
                Message::End(reason) => {
                    assert_eq!(reason, None);
                    break;
                }
            }
        }
        assert_eq!(
            frames, 4,
            "the reader frames lines; parsing is the worker's job"
        );
        // An over-long line goes to the worker as a malformed record, described.
        assert_eq!(
            malformed,
            ["stdin: line 4 is 1048577 bytes, over the 1048576 byte limit; skipped"]
        );
        assert_eq!(reader.stats.frames.load(Ordering::Relaxed), 4);
        reader.stop();
    }
}
