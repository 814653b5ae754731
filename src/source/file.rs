//! Replay of recorded audit input from a file or a pipe: auditd logs (one record per line, the same
//! text the auditd plugin stream carries) and netlink captures (raw `nlmsghdr` + payload frames).
//!
//! This module owns framing only: it cuts bytes into [`Frame`]s and reports input it cannot frame
//! as per-item [`SourceError`]s, then keeps going wherever it can resynchronise (the next line).
//! Memory is bounded: a line or frame larger than 1 MiB is never held whole. Gzip input is read
//! through a streaming decoder.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Chain, Cursor, Read};
use std::str::FromStr;

use super::Frame;

/// Longest text line kept, newline excluded; longer lines are skipped and reported.
pub const MAX_LINE_LEN: usize = 1 << 20;

/// Largest netlink frame accepted (`nlmsg_len`, header included).
pub const MAX_FRAME_LEN: u32 = 1 << 20;

/// Size of `struct nlmsghdr`: u32 len, u16 type, u16 flags, u32 seq, u32 pid.
const NLMSG_HDRLEN: usize = 16;

/// Bytes needed to tell a netlink capture from text: a header and `audit(`.
const DETECT_LEN: usize = NLMSG_HDRLEN + b"audit(".len();

/// Most spare line buffers a reader keeps ([`FrameReader::recycle`]).
pub const SPARE_MAX: usize = 4096;
/// Largest spare line buffer kept (bytes of capacity): most audit records are shorter, and a
/// record held in a larger buffer would use more memory than the reassembler counts for it.
pub const SPARE_CAPACITY: usize = 1024;

/// Read buffer size for files and stdin: large reads keep replay fast.
const BUF_CAPACITY: usize = 256 * 1024;

/// How the input is framed; `Auto` decides from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Netlink if the input starts like a netlink capture, text otherwise.
    #[default]
    Auto,
    /// One record per line (auditd log, auditd plugin stream).
    Text,
    /// Back-to-back `nlmsghdr` + payload frames, as a NETLINK_AUDIT reader received them.
    Netlink,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Text => "text",
            Format::Netlink => "netlink",
        })
    }
}

/// A `--format` value that is not `auto`, `text` or `netlink`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown input format {0:?} (expected auto, text or netlink)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Format::Auto),
            "text" => Ok(Format::Text),
            "netlink" => Ok(Format::Netlink),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

/// Why an input (or one item of it) could not be read; every variant names the input and place.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Opening or reading the input failed. After a read error the reader ends.
    #[error("{path}: {error}")]
    Io {
        /// The input as the user named it (`<stdin>` for `-`).
        path: String,
        /// The operating system's error (in the message, so not also the `source()`).
        error: io::Error,
    },
    /// A text line over [`MAX_LINE_LEN`] bytes; it was skipped and reading went on.
    #[error("{path}: line {line} is {len} bytes, over the {max} byte limit; skipped", max = MAX_LINE_LEN)]
    LineTooLong {
        /// The input as the user named it.
        path: String,
        /// 1-based line number, blank lines included.
        line: u64,
        /// Length of the skipped line, newline excluded.
        len: u64,
    },
    /// A netlink frame that is cut short or has an impossible length. The reader cannot find the
    /// next frame after it, so this is its last item.
    #[error("{path}: bad netlink frame at byte {offset}: {reason}")]
    BadFrame {
        /// The input as the user named it.
        path: String,
        /// Byte offset of the frame's header in the input.
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
}

/// Cuts a byte stream into [`Frame`]s. Item errors concern one record (or the unreadable rest of
/// the input); the caller counts them and keeps iterating.
pub struct FrameReader<R: BufRead> {
    /// Bytes read ahead for format detection, then the rest of the input.
    input: Chain<Cursor<Vec<u8>>, R>,
    /// The framing in use; `Auto` only until the first call to `next`.
    format: Format,
    /// The input's name for error messages.
    name: String,
    /// Scratch buffer for the current text line, reused across lines.
    line: Vec<u8>,
    /// Text lines read so far (for error messages).
    line_no: u64,
    /// Bytes consumed so far (for error messages).
    offset: u64,
    /// Set when nothing more can be read.
    done: bool,
    /// Line buffers handed back by the consumer ([`FrameReader::recycle`]) for the next lines.
    spare: Vec<Vec<u8>>,
}

impl<R: BufRead> FrameReader<R> {
    /// Wraps `reader`; `name` identifies the input in errors (a path, or `<stdin>`).
    pub fn new(reader: R, format: Format, name: String) -> Self {
        FrameReader {
            input: Cursor::new(Vec::new()).chain(reader),
            format,
            name,
            line: Vec::new(),
            line_no: 0,
            offset: 0,
            done: false,
            spare: Vec::new(),
        }
    }

    /// Takes back buffers of frames the consumer is done with, to copy the next lines into
    /// instead of allocating: a replay's reader and its consumer run on different threads, and
    /// glibc's malloc is slow at freeing on one thread what another allocated. Only buffers of
    /// at most [`SPARE_CAPACITY`] bytes are kept (so a record's buffer stays near its length),
    /// at most [`SPARE_MAX`] of them.
    pub fn recycle(&mut self, buffers: Vec<Vec<u8>>) {
        let room = SPARE_MAX.saturating_sub(self.spare.len());
        self.spare.extend(
            buffers
                .into_iter()
                .filter(|b| b.capacity() <= SPARE_CAPACITY)
                .take(room),
        );
    }

    /// The framing in use: the one asked for, or what `Auto` detected once the first item was read.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The input's name as used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads up to [`DETECT_LEN`] bytes ahead (kept for the framers) and picks the format.
    fn detect(&mut self) -> Result<Format, SourceError> {
        let mut peek = [0u8; DETECT_LEN];
        let (head, rest) = self.input.get_mut();
        let got = read_full(rest, &mut peek).map_err(|error| SourceError::Io {
            path: self.name.clone(),
            error,
        })?;
        let peek = peek.get(..got).unwrap_or(&[]);
        *head = Cursor::new(peek.to_vec());
        Ok(if looks_like_netlink(peek) {
            Format::Netlink
        } else {
            Format::Text
        })
    }

    /// An I/O error naming this input.
    fn io_error(&self, error: io::Error) -> SourceError {
        SourceError::Io {
            path: self.name.clone(),
            error,
        }
    }

    /// The next non-blank line, or an oversized-line error; `None` at end of input.
    ///
    /// A line that lies whole in the read buffer (nearly all of them) is copied once, straight
    /// into the frame; a line spread over several reads is gathered in `self.line` first, and
    /// that buffer is handed on rather than copied again.
    fn next_text(&mut self) -> Option<Result<Frame, SourceError>> {
        loop {
            self.line.clear();
            let mut oversized = false;
            let mut len: u64 = 0;
            let mut read_any = false;
            loop {
                let buf = match self.input.fill_buf() {
                    Ok(buf) => buf,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(SourceError::Io {
                            path: self.name.clone(),
                            error: e,
                        }));
                    }
                };
                if buf.is_empty() {
                    break;
                }
                read_any = true;
                let newline = memchr::memchr(b'\n', buf);
                if let (Some(content), false, true) = (newline, oversized, self.line.is_empty()) {
                    // Fast path: the whole line is in the buffer.
                    if content > MAX_LINE_LEN {
                        oversized = true;
                    } else {
                        let line = buf.get(..content).unwrap_or(&[]);
                        if is_blank(line) {
                            // Counted, skipped; nothing to copy.
                            self.consume_line(content + 1);
                            len = 0;
                            read_any = false;
                            continue;
                        }
                        // Into a spare buffer when one fits (see `recycle`).
                        let frame = match self.spare.pop() {
                            Some(mut spare) if content <= spare.capacity() => {
                                spare.clear();
                                spare.extend_from_slice(line);
                                spare
                            }
                            Some(spare) => {
                                self.spare.push(spare);
                                line.to_vec()
                            }
                            None => line.to_vec(),
                        };
                        self.consume_line(content + 1);
                        return Some(Ok(Frame::Text(frame)));
                    }
                    len += content as u64;
                    self.input.consume(content + 1);
                    self.offset += content as u64 + 1;
                    break;
                }
                let content = newline.unwrap_or(buf.len());
                if !oversized {
                    if self.line.len() + content > MAX_LINE_LEN {
                        oversized = true;
                        self.line.clear();
                    } else {
                        self.line
                            .extend_from_slice(buf.get(..content).unwrap_or(&[]));
                    }
                }
                len += content as u64;
                let used = newline.map_or(content, |i| i + 1);
                self.input.consume(used);
                self.offset += used as u64;
                if newline.is_some() {
                    break;
                }
            }
            if !read_any {
                self.done = true;
                return None;
            }
            self.line_no += 1;
            if oversized {
                return Some(Err(SourceError::LineTooLong {
                    path: self.name.clone(),
                    line: self.line_no,
                    len,
                }));
            }
            if is_blank(&self.line) {
                continue;
            }
            return Some(Ok(Frame::Text(std::mem::take(&mut self.line))));
        }
    }

    /// Consumes a whole line (`used` bytes, newline included) read on the fast path.
    fn consume_line(&mut self, used: usize) {
        self.input.consume(used);
        self.offset += used as u64;
        self.line_no += 1;
    }

    /// The next netlink frame; an error (and the end) on a truncated or impossible frame.
    fn next_netlink(&mut self) -> Option<Result<Frame, SourceError>> {
        let start = self.offset;
        let mut header = [0u8; NLMSG_HDRLEN];
        let got = match read_full(&mut self.input, &mut header) {
            Ok(got) => got,
            Err(e) => return Some(Err(self.fail_io(e))),
        };
        self.offset += got as u64;
        if got == 0 {
            self.done = true;
            return None;
        }
        if got < NLMSG_HDRLEN {
            return Some(Err(
                self.fail_frame(start, format!("truncated header: {got} of 16 bytes"))
            ));
        }
        let [l0, l1, l2, l3, t0, t1, ..] = header;
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        let msg_type = u16::from_le_bytes([t0, t1]);
        if len < NLMSG_HDRLEN as u32 {
            return Some(Err(self.fail_frame(
                start,
                format!("nlmsg_len {len} is below the 16-byte header"),
            )));
        }
        if len > MAX_FRAME_LEN {
            return Some(Err(self.fail_frame(
                start,
                format!("nlmsg_len {len} is over the {MAX_FRAME_LEN} byte limit"),
            )));
        }
        let mut payload = vec![0u8; len as usize - NLMSG_HDRLEN];
        let got = match read_full(&mut self.input, &mut payload) {
            Ok(got) => got,
            Err(e) => return Some(Err(self.fail_io(e))),
        };
        self.offset += got as u64;
        if got < payload.len() {
            let want = payload.len();
            return Some(Err(self.fail_frame(
                start,
                format!("truncated frame: {got} of {want} payload bytes"),
            )));
        }
        Some(Ok(Frame::Netlink { msg_type, payload }))
    }

    /// Ends the reader with a read error.
    fn fail_io(&mut self, source: io::Error) -> SourceError {
        self.done = true;
        self.io_error(source)
    }

    /// Ends the reader with a framing error for the frame at `offset`.
    fn fail_frame(&mut self, offset: u64, reason: String) -> SourceError {
        self.done = true;
        SourceError::BadFrame {
            path: self.name.clone(),
            offset,
            reason,
        }
    }
}

impl<R: BufRead> Iterator for FrameReader<R> {
    type Item = Result<Frame, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.format == Format::Auto {
            match self.detect() {
                Ok(format) => self.format = format,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        match self.format {
            Format::Netlink => self.next_netlink(),
            Format::Text | Format::Auto => self.next_text(),
        }
    }
}

impl<R: Read> FrameReader<BufReader<R>> {
    /// Whether bytes already read from the input wait in memory: the next item then comes
    /// without a read that could block (unless they end in an incomplete line).
    pub fn has_buffered(&self) -> bool {
        let (head, rest) = self.input.get_ref();
        head.position() < head.get_ref().len() as u64 || !rest.buffer().is_empty()
    }

    /// The underlying input (to wait on it; reading it directly would lose buffered bytes).
    pub fn get_ref(&self) -> &R {
        self.input.get_ref().1.get_ref()
    }
}

/// True when a line holds only spaces, tabs and carriage returns (such lines are skipped).
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// Message types the kernel's audit netlink messages carry: `AUDIT_GET` (1000) up to
/// `AUDIT_LAST_USER_MSG2` (2999); records are 1100 and up.
const AUDIT_TYPES: std::ops::RangeInclusive<u16> = 1000..=2999;

/// True when `peek` starts like a netlink capture: a header whose length fits a record
/// (`audit(` and more, at most [`MAX_FRAME_LEN`]) and whose type is an audit type, then `audit(`.
/// Text never passes: a log line starts with printable `type=` or `node=` (taken as text at
/// once), and read as a header its type bytes are printable characters, outside the audit range
/// (`type=EXECVE msg=audit(` has `audit(` just where a payload would start).
fn looks_like_netlink(peek: &[u8]) -> bool {
    if peek.starts_with(b"type=") || peek.starts_with(b"node=") {
        return false;
    }
    match peek {
        [l0, l1, l2, l3, t0, t1, _, _, _, _, _, _, _, _, _, _, tail @ ..] => {
            let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]);
            let msg_type = u16::from_le_bytes([*t0, *t1]);
            (DETECT_LEN as u32..=MAX_FRAME_LEN).contains(&len)
                && AUDIT_TYPES.contains(&msg_type)
                && tail.starts_with(b"audit(")
        }
        _ => false,
    }
}

/// Fills `buf` as far as the input allows; returns how many bytes were read (short only at EOF).
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Opens `path` for replay (`-` is stdin) with a large read buffer. An unreadable file is an
/// error naming the path. Gzip input (logrotate's `compress`), told by its magic bytes rather than
/// its name, is decompressed as it is read, so memory stays that of the plain input. The reader is
/// `Send` so the pipeline can move it to its reader thread.
pub fn open(
    path: &str,
    format: Format,
) -> Result<FrameReader<Box<dyn BufRead + Send>>, SourceError> {
    let io_error = |error| SourceError::Io {
        path: path.to_string(),
        error,
    };
    let (input, name): (Box<dyn BufRead + Send>, String) = if path == "-" {
        let stdin = BufReader::with_capacity(BUF_CAPACITY, io::stdin());
        (Box::new(stdin), "<stdin>".to_string())
    } else {
        let file = File::open(path).map_err(io_error)?;
        let file = BufReader::with_capacity(BUF_CAPACITY, file);
        (Box::new(file), path.to_string())
    };
    let input = decompressed(input).map_err(|error| SourceError::Io {
        path: name.clone(),
        error,
    })?;
    Ok(FrameReader::new(input, format, name))
}

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// `input` as it is, or decompressed when it starts with [`GZIP_MAGIC`] (all members, as `zcat`).
fn decompressed(mut input: Box<dyn BufRead + Send>) -> io::Result<Box<dyn BufRead + Send>> {
    let mut magic = [0u8; 2];
    let got = read_full(&mut input, &mut magic)?;
    let head = magic.get(..got).unwrap_or(&[]).to_vec();
    let whole = Cursor::new(head).chain(input);
    if got < GZIP_MAGIC.len() || magic != GZIP_MAGIC {
        return Ok(Box::new(whole));
    }
    let gzip = GzipErrors(flate2::bufread::MultiGzDecoder::new(whole));
    Ok(Box::new(BufReader::with_capacity(BUF_CAPACITY, gzip)))
}

/// A gzip decoder whose errors say they are about the compression (`gzip: corrupt deflate stream`).
struct GzipErrors<R>(R);

impl<R: Read> Read for GzipErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("gzip: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{parse_frame, types};

    /// The repository's own captures (samples/capture.sh).
    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");

    fn reader(bytes: &[u8], format: Format) -> FrameReader<Cursor<Vec<u8>>> {
        FrameReader::new(Cursor::new(bytes.to_vec()), format, "test.log".to_string())
    }

    fn netlink_frame(msg_type: u16, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(NLMSG_HDRLEN + payload.len()).unwrap_or(u32::MAX);
        let mut frame = Vec::new();
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&msg_type.to_le_bytes());
        frame.extend_from_slice(&[0; 10]);
        frame.extend_from_slice(payload);
        frame
    }

    /// Frames as `Ok(bytes)` (text line or netlink payload) or `Err(display)`.
    fn collect<R: BufRead>(reader: FrameReader<R>) -> Vec<Result<Vec<u8>, String>> {
        reader
            .map(|item| match item {
                Ok(Frame::Text(line)) => Ok(line),
                Ok(Frame::Netlink { payload, .. }) => Ok(payload),
                Err(e) => Err(e.to_string()),
            })
            .collect()
    }

    #[test]
    fn format_from_str_and_display() {
        for format in [Format::Auto, Format::Text, Format::Netlink] {
            assert_eq!(format.to_string().parse::<Format>(), Ok(format));
        }
        assert_eq!(
            "json".parse::<Format>().map_err(|e| e.to_string()),
            Err("unknown input format \"json\" (expected auto, text or netlink)".to_string())
        );
    }

    #[test]
    fn text_lines_blank_lines_and_missing_final_newline() {
        let r = reader(
            b"type=A msg=audit(1.2:3): x=1\n\n  \r\ntype=B msg=audit(1.2:4): \r\nlast",
            Format::Text,
        );
        assert_eq!(
            collect(r),
            vec![
                Ok(b"type=A msg=audit(1.2:3): x=1".to_vec()),
                Ok(b"type=B msg=audit(1.2:4): \r".to_vec()),
                Ok(b"last".to_vec()),
            ]
        );
        assert_eq!(collect(reader(b"", Format::Auto)), vec![]);
    }

    #[test]
    fn oversized_line_is_skipped_and_the_next_line_still_read() {
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN + 5));
        input.extend_from_slice(b"\nafter\n");
        input.extend(std::iter::repeat_n(b'y', MAX_LINE_LEN));
        input.push(b'\n');
        // A small buffer makes the long lines arrive in many pieces.
        let r = FrameReader::new(
            BufReader::with_capacity(4096, Cursor::new(input)),
            Format::Auto,
            "big.log".into(),
        );
        let items = collect(r);
        assert_eq!(items.len(), 4);
        assert_eq!(items[0], Ok(b"first".to_vec()));
        assert_eq!(
            items[1],
            Err(
                "big.log: line 2 is 1048581 bytes, over the 1048576 byte limit; skipped"
                    .to_string()
            )
        );
        assert_eq!(items[2], Ok(b"after".to_vec()));
        assert_eq!(items[3].as_ref().map(Vec::len), Ok(MAX_LINE_LEN));
    }

    #[test]
    fn whole_lines_in_one_read_keep_line_numbers_and_the_limit() {
        // A buffer larger than every line: each line is found whole in one read.
        let mut input = b"a\n\n \t\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN + 1));
        input.extend_from_slice(b"\n");
        input.extend(std::iter::repeat_n(b'y', MAX_LINE_LEN));
        input.extend_from_slice(b"\n\nb\n");
        let r = FrameReader::new(
            BufReader::with_capacity(4 * MAX_LINE_LEN, Cursor::new(input)),
            Format::Text,
            "big.log".into(),
        );
        let items: Vec<Result<usize, String>> = r
            .map(|item| match item {
                Ok(Frame::Text(line)) => Ok(line.len()),
                Ok(Frame::Netlink { payload, .. }) => Ok(payload.len()),
                Err(e) => Err(e.to_string()),
            })
            .collect();
        assert_eq!(
            items,
            vec![
                Ok(1),
                Err(
                    "big.log: line 4 is 1048577 bytes, over the 1048576 byte limit; skipped"
                        .to_string()
                ),
                Ok(MAX_LINE_LEN),
                Ok(1),
            ]
        );
    }

    #[test]
    fn recycled_buffers_carry_the_next_lines() {
        let text = b"type=A msg=audit(1.2:3): x=1\ntype=B msg=audit(1.2:4): y=2\n";
        let mut r = reader(text, Format::Text);
        let mut small = Vec::with_capacity(64);
        small.extend_from_slice(b"old contents");
        let reused = small.as_ptr();
        r.recycle(vec![Vec::with_capacity(SPARE_CAPACITY + 1), small]);
        assert_eq!(r.spare.len(), 1, "a buffer over SPARE_CAPACITY is not kept");
        match r.next() {
            Some(Ok(Frame::Text(line))) => {
                assert_eq!(line, b"type=A msg=audit(1.2:3): x=1");
                assert_eq!(line.as_ptr(), reused, "the spare buffer carries the line");
            }
            other => panic!("{other:?}"),
        }
        match r.next() {
            Some(Ok(Frame::Text(line))) => assert_eq!(line, b"type=B msg=audit(1.2:4): y=2"),
            other => panic!("{other:?}"),
        }
        r.recycle(
            (0..SPARE_MAX + 10)
                .map(|_| Vec::with_capacity(16))
                .collect(),
        );
        assert_eq!(r.spare.len(), SPARE_MAX);
    }

    #[test]
    fn lines_split_across_reads_equal_whole_ones() {
        let text =
            b"type=A msg=audit(1.2:3): x=1\n\n  \ntype=B msg=audit(1.2:4): y=\"a b\"\r\nlast";
        let whole = collect(reader(text, Format::Text));
        for cap in 1..8 {
            let split = collect(FrameReader::new(
                BufReader::with_capacity(cap, Cursor::new(text.to_vec())),
                Format::Text,
                "test.log".into(),
            ));
            assert_eq!(split, whole, "buffer of {cap} bytes");
        }
        assert_eq!(whole.len(), 3);
    }

    #[test]
    fn auto_detection_both_ways() {
        let text = b"type=EOE msg=audit(1.2:3): \n";
        let mut r = reader(text, Format::Auto);
        assert_eq!(r.format(), Format::Auto);
        assert!(matches!(r.next(), Some(Ok(Frame::Text(_)))));
        assert_eq!(r.format(), Format::Text);

        let frames = [
            netlink_frame(1320, b"audit(1.2:3): "),
            netlink_frame(1300, b"audit(1.2:4): arch=c000003e"),
        ]
        .concat();
        let mut r = reader(&frames, Format::Auto);
        assert_eq!(
            r.next().map(|f| f.map_err(|e| e.to_string())),
            Some(Ok(Frame::Netlink {
                msg_type: 1320,
                payload: b"audit(1.2:3): ".to_vec()
            }))
        );
        assert_eq!(r.format(), Format::Netlink);
        assert!(matches!(
            r.next(),
            Some(Ok(Frame::Netlink { msg_type: 1300, .. }))
        ));
        assert!(r.next().is_none());

        // Shorter than a netlink header: text.
        assert_eq!(collect(reader(b"x", Format::Auto)), vec![Ok(b"x".to_vec())]);
    }

    #[test]
    fn text_that_reads_like_a_netlink_header_is_text() {
        // `type=EXECVE msg=` is 16 bytes: as a header, nlmsg_len 1701869940, then `audit(`.
        let line = b"type=EXECVE msg=audit(1.2:3): argc=1 a0=\"ln\"\n";
        assert!(!looks_like_netlink(line));
        let mut r = reader(line, Format::Auto);
        assert!(matches!(r.next(), Some(Ok(Frame::Text(_)))));
        assert_eq!(r.format(), Format::Text);
        assert!(!looks_like_netlink(
            b"node=web1 type=EOE msg=audit(1.2:3): \n"
        ));
        // A plausible length with a type outside the audit range, or an audit type with an
        // impossible length: not netlink either.
        let mut frame = netlink_frame(1320, b"audit(1.2:3): ");
        assert!(looks_like_netlink(&frame));
        frame[4..6].copy_from_slice(&17725u16.to_le_bytes());
        assert!(!looks_like_netlink(&frame));
        let mut frame = netlink_frame(1320, b"audit(1.2:3): ");
        frame[..4].copy_from_slice(&(MAX_FRAME_LEN + 1).to_le_bytes());
        assert!(!looks_like_netlink(&frame));
    }

    #[test]
    fn gzip_input_is_read_through_a_decoder_and_plain_input_untouched() {
        use std::io::Write;
        let text = b"type=EOE msg=audit(1.2:3): \ntype=EOE msg=audit(1.2:4): \n";
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text).unwrap();
        let packed = enc.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log.2.gz");
        std::fs::write(&path, &packed).unwrap();
        let lines = collect(open(&path.to_string_lossy(), Format::Auto).unwrap());
        assert_eq!(lines.len(), 2, "{lines:?}");
        // Plain input starting with one of the magic bytes, or shorter than the magic, is as is.
        for plain in [&b"\x1fx\n"[..], b"\x1f", b""] {
            std::fs::write(&path, plain).unwrap();
            let got: Vec<u8> = collect(open(&path.to_string_lossy(), Format::Text).unwrap())
                .into_iter()
                .flat_map(|l| l.unwrap())
                .collect();
            assert_eq!(got, plain.strip_suffix(b"\n").unwrap_or(plain));
        }
        // Bad compressed data: one read error naming gzip.
        std::fs::write(&path, [0x1f, 0x8b, 0, 0, 0]).unwrap();
        let items = collect(open(&path.to_string_lossy(), Format::Auto).unwrap());
        assert!(
            matches!(items.as_slice(), [Err(e)] if e.contains(": gzip: ")),
            "{items:?}"
        );
    }

    #[test]
    fn truncated_netlink_frame_names_its_offset_and_ends() {
        let first = netlink_frame(1300, b"audit(1.2:3): a=b");
        let mut input = first.clone();
        input.extend_from_slice(&netlink_frame(1302, b"audit(1.2:3): item=0")[..25]);
        let items = collect(reader(&input, Format::Netlink));
        assert_eq!(
            items,
            vec![
                Ok(b"audit(1.2:3): a=b".to_vec()),
                Err(format!("test.log: bad netlink frame at byte {}: truncated frame: 9 of 20 payload bytes", first.len())),
            ]
        );
        let items = collect(reader(&first[..10], Format::Netlink));
        assert_eq!(
            items,
            vec![Err(
                "test.log: bad netlink frame at byte 0: truncated header: 10 of 16 bytes"
                    .to_string()
            )]
        );
    }

    #[test]
    fn impossible_netlink_lengths_are_reported_once() {
        let mut short = netlink_frame(1300, b"audit(1.2:3): ");
        short[..4].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(
            collect(reader(&short, Format::Netlink)),
            vec![Err(
                "test.log: bad netlink frame at byte 0: nlmsg_len 8 is below the 16-byte header"
                    .to_string()
            )]
        );
        let mut long = netlink_frame(1300, b"audit(1.2:3): ");
        long[..4].copy_from_slice(&(MAX_FRAME_LEN + 1).to_le_bytes());
        long.extend_from_slice(&[b'z'; 64]);
        assert_eq!(
            collect(reader(&long, Format::Netlink)),
            vec![Err("test.log: bad netlink frame at byte 0: nlmsg_len 1048577 is over the 1048576 byte limit".to_string())]
        );
    }

    #[test]
    fn open_missing_file_names_the_path() {
        let err = match open("/nonexistent/dir/audit.log", Format::Auto) {
            Ok(_) => panic!("opened a missing file"),
            Err(e) => e.to_string(),
        };
        assert!(err.starts_with("/nonexistent/dir/audit.log: "), "{err}");
    }

    fn parse_file(path: &str) -> (Format, Vec<crate::audit::Record>) {
        let reader = match open(path, Format::Auto) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let mut format = Format::Auto;
        let mut records = Vec::new();
        let mut reader = reader;
        while let Some(item) = reader.next() {
            format = reader.format();
            match item
                .map_err(|e| e.to_string())
                .and_then(|f| parse_frame(&f).map_err(|e| e.to_string()))
            {
                Ok(r) => records.push(r),
                Err(e) => panic!("{path}: {e}"),
            }
        }
        (format, records)
    }

    #[test]
    fn sample_netlink_capture_parses_without_errors() {
        let (format, raw) = parse_file(&format!("{SAMPLES}/sample.netlink.bin"));
        assert_eq!(format, Format::Netlink);
        assert_eq!(raw.len(), 972);
        let first = raw
            .first()
            .map(|r| (r.rtype, r.time.sec, r.time.msec, r.serial));
        assert_eq!(first, Some((1335, 1795862048, 228, 4)));
        assert_eq!(raw.iter().filter(|r| r.rtype == types::EOE).count(), 135);
        assert_eq!(raw.iter().filter(|r| r.rtype == types::EXECVE).count(), 71);
    }

    #[test]
    fn sample_text_logs_through_the_reader() {
        let (format, raw) = parse_file(&format!("{SAMPLES}/sample.audit.log"));
        assert_eq!(format, Format::Text);
        assert_eq!(raw.len(), 845);
        let (_, enriched) = parse_file(&format!("{SAMPLES}/sample-enriched.audit.log"));
        assert_eq!(enriched.len(), 974);
        let first = enriched
            .first()
            .map(|r| (r.rtype, r.serial, r.body.clone()));
        assert_eq!(
            first,
            Some((
                1200,
                4735,
                b"op=start ver=3.0.9 format=enriched kernel=6.18.44-fc-v657 auid=4294967295 pid=12213 uid=0 ses=4294967295 res=success".to_vec()
            ))
        );
        assert!(enriched.iter().all(|r| !r.body.contains(&0x1d)));
    }

    /// Tests on the shared corpus beside the checkout: ignored by a plain `cargo test`, run by the
    /// corpus step of `scripts/test-all.sh` (docs/testing.md).
    mod shared_corpus {
        use super::*;

        const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn corpus_netlink_captures_parse_without_errors() {
            let (format, raw) = parse_file(&format!("{CORPUS}/raw.netlink.bin"));
            assert_eq!(format, Format::Netlink);
            assert_eq!(raw.len(), 1045);
            let first = raw
                .first()
                .map(|r| (r.rtype, r.time.sec, r.time.msec, r.serial));
            assert_eq!(first, Some((types::SYSCALL, 1795858582, 841, 30175)));
            assert_eq!(raw.iter().filter(|r| r.rtype == types::EOE).count(), 142);

            let (format, enriched) = parse_file(&format!("{CORPUS}/enriched.netlink.bin"));
            assert_eq!(format, Format::Netlink);
            assert_eq!(enriched.len(), 1069);
            assert_eq!(
                enriched.iter().filter(|r| r.rtype == types::EXECVE).count(),
                86
            );
        }

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn corpus_text_logs_through_the_reader() {
            let (format, raw) = parse_file(&format!("{CORPUS}/raw.audit.log"));
            assert_eq!(format, Format::Text);
            assert_eq!(raw.len(), 774);
            let (_, enriched) = parse_file(&format!("{CORPUS}/enriched.audit.log"));
            assert_eq!(enriched.len(), 773);
            let first = enriched
                .first()
                .map(|r| (r.rtype, r.serial, r.body.clone()));
            assert_eq!(
                first,
                Some((
                    1200,
                    5928,
                    b"op=start ver=3.0.9 format=enriched kernel=6.18.44-fc-v657 auid=4294967295 pid=4779 uid=0 ses=4294967295 res=success".to_vec()
                ))
            );
            assert!(enriched.iter().all(|r| !r.body.contains(&0x1d)));
        }
    }
}
