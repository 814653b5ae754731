//! One audit record: header (`audit(SEC.MSEC:SERIAL): `), numeric type, optional node, and the raw
//! `key=value` body. Parsing is pure: bytes in, [`Record`] or [`ParseError`] out.
//!
//! Two wire forms reach us. auditd's log and its plugin stream give text lines
//! (`[node=NAME ]type=NAME msg=audit(SEC.MSEC:SERIAL): body`, possibly with an ENRICHED tail after
//! 0x1d); a netlink socket gives the numeric type in the message header and the payload
//! `audit(SEC.MSEC:SERIAL): body`. Both end in the same [`Record`]. The parser scans bytes once and
//! copies only the body, since replay runs at a million records a second.

use std::ops::Range;

pub use super::record_type::{type_name, type_number};
use crate::source::Frame;

/// Record types the pipeline acts on (numbers from linux/audit.h).
pub mod types {
    pub const SYSCALL: u16 = 1300;
    pub const PATH: u16 = 1302;
    pub const CONFIG_CHANGE: u16 = 1305;
    pub const SOCKADDR: u16 = 1306;
    pub const CWD: u16 = 1307;
    pub const EXECVE: u16 = 1309;
    pub const EOE: u16 = 1320;
    pub const BPRM_FCAPS: u16 = 1321;
    pub const PROCTITLE: u16 = 1327;
}

/// Audit timestamp as the kernel prints it: seconds and milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AuditTime {
    /// Whole seconds since the Unix epoch.
    pub sec: u64,
    /// Milliseconds, 0..=999.
    pub msec: u32,
}

impl AuditTime {
    /// Milliseconds since the epoch, for window arithmetic.
    pub fn as_millis(&self) -> u64 {
        self.sec
            .saturating_mul(1000)
            .saturating_add(u64::from(self.msec))
    }
}

/// One parsed audit record. The body is kept raw; [`Record::fields`] tokenizes it on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `node=NAME` prefix when auditd's name_format is set; part of the grouping key.
    pub node: Option<String>,
    /// Numeric record type (1300 SYSCALL, ...). Text names are mapped through the type table.
    pub rtype: u16,
    /// Header timestamp.
    pub time: AuditTime,
    /// Header serial; events are grouped by (node, serial).
    pub serial: u32,
    /// The bytes after `): ` (leading spaces dropped), up to (not including) an ENRICHED 0x1d
    /// section or a trailing newline. Empty for EOE.
    pub body: Vec<u8>,
    /// A SYSCALL record's ENRICHED section (after the 0x1d, auditd's names for its ids such as
    /// `UID="root"`); empty otherwise. Read with [`Record::enriched_field`].
    pub enriched: Vec<u8>,
}

/// [`ParseError::reason`] of a `type=NAME msg=?` line: auditd could not stamp the record (RHEL 7
/// writes these for records it failed to format). Well-formed, but with no time or serial there is
/// nothing to group it with; the pipeline counts these apart from malformed input.
pub const UNSTAMPED: &str = "unstamped record (msg=?)";

/// Why a frame is not an audit record; carries the offending input for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at byte {offset}: {excerpt:?}")]
pub struct ParseError {
    /// What was wrong, e.g. "no msg=audit( header".
    pub reason: &'static str,
    /// Byte offset in the frame where parsing stopped.
    pub offset: usize,
    /// The start of the frame (at most 120 bytes, lossy UTF-8) for the error message.
    pub excerpt: String,
}

impl ParseError {
    /// Builds an error, keeping a bounded excerpt of the frame.
    pub fn new(reason: &'static str, offset: usize, frame: &[u8]) -> Self {
        let cut = &frame[..frame.len().min(120)];
        ParseError {
            reason,
            offset,
            excerpt: String::from_utf8_lossy(cut).into_owned(),
        }
    }
}

impl Record {
    /// Iterates the body's `key=value` fields in order. Values are raw (still quoted or hex);
    /// use [`decode_value`] for the bytes they stand for.
    pub fn fields(&self) -> Fields<'_> {
        Fields { rest: &self.body }
    }

    /// The raw value of the first field named `key`, if any.
    pub fn field(&self, key: &[u8]) -> Option<&[u8]> {
        self.fields().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The decoded value of the first field named `key` (quotes stripped, hex decoded).
    pub fn field_decoded(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.field(key).map(decode_value)
    }

    /// The first field named `key` parsed as a decimal number.
    pub fn field_u64(&self, key: &[u8]) -> Option<u64> {
        std::str::from_utf8(self.field(key)?).ok()?.parse().ok()
    }

    /// The raw value of the first field named `key` in the ENRICHED section, if any.
    pub fn enriched_field(&self, key: &[u8]) -> Option<&[u8]> {
        Fields {
            rest: &self.enriched,
        }
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
    }
}

/// Iterator over `key=value` pairs of a record body; see [`Record::fields`].
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let start = self.rest.iter().position(|b| *b != b' ')?;
            let s = self.rest.get(start..).unwrap_or_default();
            let (end, eq) = scan_token(s);
            let tok = s.get(..end).unwrap_or_default();
            self.rest = s.get(end..).unwrap_or_default();
            if let Some(eq) = eq {
                let key = tok.get(..eq).unwrap_or_default();
                return Some((key, tok.get(eq + 1..).unwrap_or_default()));
            }
            // A bare word (e.g. "user" in user-space records): not a field, skip it.
        }
    }
}

/// How many value bytes [`scan_token`] looks at one by one before it searches with memchr.
const SHORT_VALUE: usize = 24;

/// One pass over a token: where it ends (a space outside double or single quotes; an unclosed
/// quote runs to the end) and where its first `=` is, quoted or not. The key is walked byte by
/// byte; the value, which can be kilobytes of hex, and quoted runs are jumped with memchr. Every
/// field lookup goes through here.
fn scan_token(s: &[u8]) -> (usize, Option<usize>) {
    let mut i = 0;
    // The key: up to the first `=`; then where the value's scan starts.
    let (eq, mut i) = loop {
        match s.get(i) {
            None => return (s.len(), None),
            Some(b' ') => return (i, None),
            Some(b'=') => break (i, i + 1),
            Some(&q @ (b'"' | b'\'')) => {
                let quoted = rest(s, i + 1);
                let close = memchr::memchr(q, quoted);
                let inner = quoted
                    .get(..close.unwrap_or(quoted.len()))
                    .unwrap_or_default();
                if let Some(e) = memchr::memchr(b'=', inner) {
                    // The `=` is quoted: the rest of the token is the value.
                    match close {
                        Some(close) => break (i + 1 + e, i + close + 2),
                        None => return (s.len(), Some(i + 1 + e)),
                    }
                }
                match close {
                    Some(close) => i += close + 2,
                    None => return (s.len(), None),
                }
            }
            Some(_) => i += 1,
        }
    };
    let eq = Some(eq);
    // The value: to the next space outside quotes. Most values are short numbers, found
    // quicker byte by byte than by setting up a vector search.
    let short = (i + SHORT_VALUE).min(s.len());
    while let Some(&b) = s.get(i).filter(|_| i < short) {
        match b {
            b' ' => return (i, eq),
            b'"' | b'\'' => break,
            _ => i += 1,
        }
    }
    loop {
        let Some(off) = memchr::memchr3(b' ', b'"', b'\'', rest(s, i)) else {
            return (s.len(), eq);
        };
        let at = i + off;
        let q = s.get(at).copied().unwrap_or(b' ');
        if q == b' ' {
            return (at, eq);
        }
        match memchr::memchr(q, rest(s, at + 1)) {
            Some(close) => i = at + 1 + close + 1,
            None => return (s.len(), eq),
        }
    }
}

/// Decodes one raw *string* field value (exe, comm, cwd, name, aN, proctitle, key) the way the kernel
/// encoded it: `"text"` → text, an even-length run of upper-case hex digits → the bytes it encodes,
/// anything else (`(null)`, `(none)`) → itself. Do not use it on numeric fields: `pid=4410` is valid hex.
/// The single-quoted `msg='...'` of user-space records decodes to its inner text.
pub fn decode_value(raw: &[u8]) -> Vec<u8> {
    if let [q @ (b'"' | b'\''), inner @ .., last] = raw {
        if last == q {
            return inner.to_vec();
        }
    }
    if let Some(bytes) = decode_hex(raw) {
        return bytes;
    }
    raw.to_vec()
}

/// Decodes upper-case hex (as `audit_log_n_hex` writes it); `None` if `raw` is not such a run.
pub fn decode_hex(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    // One pass, no branch per byte: invalid digits set a bit that is checked once at the end
    // (arguments can be megabytes of hex).
    let mut bad = 0u8;
    let mut out = vec![0u8; raw.len() / 2];
    for (byte, pair) in out.iter_mut().zip(raw.chunks_exact(2)) {
        if let [hi, lo] = pair {
            let (hi, lo) = (HEX_DIGIT[usize::from(*hi)], HEX_DIGIT[usize::from(*lo)]);
            bad |= hi | lo;
            *byte = (hi << 4) | (lo & 0x0f);
        }
    }
    (bad & NOT_HEX == 0).then_some(out)
}

/// Marks a byte that is not an upper-case hex digit in [`HEX_DIGIT`].
const NOT_HEX: u8 = 0x10;

/// Upper-case hex digit → its value; any other byte → [`NOT_HEX`].
static HEX_DIGIT: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// ENRICHED log format: auditd appends 0x1d and its interpreted fields after the raw body.
const ENRICHED_SEPARATOR: u8 = 0x1d;

/// Parses one auditd log line or auditd plugin line:
/// `[node=NAME ]type=NAME msg=audit(SEC.MSEC:SERIAL): body`.
///
/// NAME is a type name from the table (`SYSCALL`, `USER_CMD`, ...) or `UNKNOWN[1234]`. A
/// well-formed name missing from the table (a type newer than this build) still parses, with
/// `rtype` 0, so it is not counted as malformed. A trailing `\n` or `\r\n` is ignored, the body
/// stops at an ENRICHED 0x1d, and an empty body (EOE) is valid. The colon after the header is
/// optional because old auditd wrote `audit(...) config changed, ...` for DAEMON_CONFIG.
pub fn parse_text(line: &[u8]) -> Result<Record, ParseError> {
    let (head, body) = text_parts(line)?;
    let enriched = head.enriched(line);
    Ok(head.into_record(slice(line, body.start, body.end).to_vec(), enriched))
}

/// [`parse_text`] on a line the caller gives up: the body is cut out of the line's own buffer
/// instead of being copied into a new one, which saves an allocation per record.
pub fn parse_text_owned(line: Vec<u8>) -> Result<Record, ParseError> {
    let (head, body) = text_parts(&line)?;
    let enriched = head.enriched(&line);
    Ok(head.into_record(into_range(line, body), enriched))
}

/// Everything of a record but its body, which the parsers return as a range of their input.
struct Head {
    node: Option<String>,
    rtype: u16,
    time: AuditTime,
    serial: u32,
    /// Where the ENRICHED section lies (empty when there is none).
    enriched: Range<usize>,
}

impl Head {
    fn into_record(self, body: Vec<u8>, enriched: Vec<u8>) -> Record {
        Record {
            node: self.node,
            rtype: self.rtype,
            time: self.time,
            serial: self.serial,
            body,
            enriched,
        }
    }

    /// The ENRICHED section of a SYSCALL record, copied out of `input` (the only one read).
    fn enriched(&self, input: &[u8]) -> Vec<u8> {
        if self.rtype != types::SYSCALL || self.enriched.is_empty() {
            return Vec::new();
        }
        slice(input, self.enriched.start, self.enriched.end).to_vec()
    }
}

/// `bytes[range]` in `bytes`' own buffer (empty when the range is out of bounds).
fn into_range(mut bytes: Vec<u8>, range: Range<usize>) -> Vec<u8> {
    if range.start > range.end || range.end > bytes.len() {
        bytes.clear();
        return bytes;
    }
    bytes.truncate(range.end);
    bytes.drain(..range.start);
    bytes
}

/// The parse of [`parse_text`]: the header fields and where the body lies in `line`.
fn text_parts(line: &[u8]) -> Result<(Head, Range<usize>), ParseError> {
    let frame = strip_line_end(line);
    let mut pos = 0;
    let mut node = None;
    if frame.starts_with(b"node=") {
        let start = b"node=".len();
        let end = find_byte(frame, start, b' ').ok_or_else(|| {
            ParseError::new("node= prefix not followed by a space", frame.len(), frame)
        })?;
        if end == start {
            return Err(ParseError::new("empty node name", start, frame));
        }
        node = Some(String::from_utf8_lossy(slice(frame, start, end)).into_owned());
        pos = skip_spaces(frame, end);
    }
    if !rest(frame, pos).starts_with(b"type=") {
        return Err(ParseError::new("no type= field", pos, frame));
    }
    pos += b"type=".len();
    let name_end = find_byte(frame, pos, b' ').unwrap_or(frame.len());
    let rtype = rtype_from_name(slice(frame, pos, name_end))
        .ok_or_else(|| ParseError::new("bad record type name", pos, frame))?;
    pos = skip_spaces(frame, name_end);
    if rest(frame, pos) == b"msg=?" {
        return Err(ParseError::new(UNSTAMPED, pos, frame));
    }
    if !rest(frame, pos).starts_with(b"msg=audit(") {
        return Err(ParseError::new("no msg=audit( header", pos, frame));
    }
    pos += b"msg=".len();
    let (time, serial, body) = parse_header(frame, pos)?;
    let head = Head {
        node,
        rtype,
        time,
        serial,
        enriched: body.end.saturating_add(1).min(frame.len())..frame.len(),
    };
    Ok((head, body))
}

/// Parses one netlink message payload `audit(SEC.MSEC:SERIAL): body`; the record type is the
/// netlink header's `msg_type`. Trailing NUL bytes and newlines (some kernels pad) are ignored.
pub fn parse_netlink(msg_type: u16, payload: &[u8]) -> Result<Record, ParseError> {
    let (head, body) = netlink_parts(msg_type, payload)?;
    let enriched = head.enriched(payload);
    Ok(head.into_record(slice(payload, body.start, body.end).to_vec(), enriched))
}

/// [`parse_netlink`] on a payload the caller gives up; the body reuses the payload's buffer.
pub fn parse_netlink_owned(msg_type: u16, payload: Vec<u8>) -> Result<Record, ParseError> {
    let (head, body) = netlink_parts(msg_type, &payload)?;
    let enriched = head.enriched(&payload);
    Ok(head.into_record(into_range(payload, body), enriched))
}

/// The parse of [`parse_netlink`]: the header fields and where the body lies in `payload`.
fn netlink_parts(msg_type: u16, payload: &[u8]) -> Result<(Head, Range<usize>), ParseError> {
    let end = payload
        .iter()
        .rposition(|b| !matches!(b, 0 | b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    let frame = slice(payload, 0, end);
    if !frame.starts_with(b"audit(") {
        return Err(ParseError::new("no audit( header", 0, frame));
    }
    let (time, serial, body) = parse_header(frame, 0)?;
    let head = Head {
        node: None,
        rtype: msg_type,
        time,
        serial,
        enriched: body.end.saturating_add(1).min(frame.len())..frame.len(),
    };
    Ok((head, body))
}

/// Parses whatever a source delivered: text lines via [`parse_text`], netlink messages via
/// [`parse_netlink`].
pub fn parse_frame(frame: &Frame) -> Result<Record, ParseError> {
    match frame {
        Frame::Text(line) => parse_text(line),
        Frame::Netlink { msg_type, payload } => parse_netlink(*msg_type, payload),
    }
}

/// [`parse_frame`] on a frame the caller gives up: the record's body is made from the frame's
/// buffer, so a record costs one allocation (the source's) instead of two. Same results.
pub fn parse_frame_owned(frame: Frame) -> Result<Record, ParseError> {
    match frame {
        Frame::Text(line) => parse_text_owned(line),
        Frame::Netlink { msg_type, payload } => parse_netlink_owned(msg_type, payload),
    }
}

/// Parses `audit(SEC.MSEC:SERIAL)` starting at `pos` (which must hold `audit(`), then the optional
/// `:` and spaces; returns the time, the serial and where the body (up to an ENRICHED 0x1d) lies.
fn parse_header(frame: &[u8], pos: usize) -> Result<(AuditTime, u32, Range<usize>), ParseError> {
    let mut pos = pos + b"audit(".len();
    let (sec, end) = parse_decimal(frame, pos, u64::MAX)
        .ok_or_else(|| ParseError::new("bad seconds in audit( header", pos, frame))?;
    pos = expect_byte(frame, end, b'.', "expected '.' after the seconds")?;
    let (msec, end) = parse_decimal(frame, pos, 999)
        .ok_or_else(|| ParseError::new("bad milliseconds in audit( header", pos, frame))?;
    pos = expect_byte(frame, end, b':', "expected ':' after the milliseconds")?;
    let (serial, end) = parse_decimal(frame, pos, u64::from(u32::MAX))
        .ok_or_else(|| ParseError::new("bad serial in audit( header", pos, frame))?;
    pos = expect_byte(frame, end, b')', "expected ')' after the serial")?;
    match frame.get(pos) {
        Some(b':') => pos += 1,
        Some(b' ') | None => {}
        Some(_) => {
            return Err(ParseError::new(
                "expected ': ' after the audit( header",
                pos,
                frame,
            ))
        }
    }
    let start = skip_spaces(frame, pos).min(frame.len());
    let body = match memchr::memchr(ENRICHED_SEPARATOR, rest(frame, start)) {
        Some(cut) => start..start + cut,
        None => start..frame.len(),
    };
    // Both bounds were checked by parse_decimal, so the narrowing cannot fail.
    let time = AuditTime {
        sec,
        msec: u32::try_from(msec).unwrap_or(999),
    };
    Ok((time, u32::try_from(serial).unwrap_or(u32::MAX), body))
}

/// A run of ASCII digits at `pos` whose value is at most `max`: (value, end position).
fn parse_decimal(frame: &[u8], pos: usize, max: u64) -> Option<(u64, usize)> {
    // One pass: every record header holds three of these.
    let mut value: u64 = 0;
    let mut digits = 0;
    for &b in rest(frame, pos) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d))?;
        digits += 1;
    }
    (digits > 0 && value <= max).then_some((value, pos + digits))
}

/// Checks that `frame[pos] == want` and returns the next position.
fn expect_byte(
    frame: &[u8],
    pos: usize,
    want: u8,
    reason: &'static str,
) -> Result<usize, ParseError> {
    if frame.get(pos) == Some(&want) {
        Ok(pos + 1)
    } else {
        Err(ParseError::new(reason, pos, frame))
    }
}

/// Maps a text type name to its number: table names, `UNKNOWN[n]`, or 0 for a well-formed name
/// the table lacks. `None` when the name is empty or has bytes no type name has.
fn rtype_from_name(name: &[u8]) -> Option<u16> {
    // The table's names are all well-formed: look up first, check the bytes only on a miss.
    if let Some(known) = type_number(name) {
        return Some(known);
    }
    if let Some(num) = name
        .strip_prefix(b"UNKNOWN[")
        .and_then(|n| n.strip_suffix(b"]"))
    {
        let (value, end) = parse_decimal(num, 0, u64::from(u16::MAX))?;
        return (end == num.len()).then_some(u16::try_from(value).ok()?);
    }
    if name.is_empty() || !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
        return None;
    }
    Some(0)
}

/// `line` without one trailing `\n` or `\r\n`.
fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Position of the first `byte` at or after `from`.
fn find_byte(s: &[u8], from: usize, byte: u8) -> Option<usize> {
    memchr::memchr(byte, rest(s, from)).map(|i| i + from)
}

/// First position at or after `from` that is not a space.
fn skip_spaces(s: &[u8], from: usize) -> usize {
    from + rest(s, from).iter().take_while(|b| **b == b' ').count()
}

/// `s[from..]`, empty when `from` is past the end.
fn rest(s: &[u8], from: usize) -> &[u8] {
    s.get(from..).unwrap_or(&[])
}

/// `s[from..to]`, empty when the range is out of bounds.
fn slice(s: &[u8], from: usize, to: usize) -> &[u8] {
    s.get(from..to).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record_type::TYPE_TABLE;

    /// The repository's own captures (samples/capture.sh).
    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples");

    fn read(path: &str) -> Vec<u8> {
        match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => panic!("cannot read test data {path}: {e}"),
        }
    }

    fn ok(line: &[u8]) -> Record {
        match parse_text(line) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn err(line: &[u8]) -> ParseError {
        match parse_text(line) {
            Ok(r) => panic!("parsed {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn syscall_line_header_and_fields() {
        let r = ok(b"type=SYSCALL msg=audit(1795858582.841:30175): arch=c000003e syscall=59 success=yes comm=\"ls\"\n");
        assert_eq!(r.node, None);
        assert_eq!(r.rtype, types::SYSCALL);
        assert_eq!(
            r.time,
            AuditTime {
                sec: 1795858582,
                msec: 841
            }
        );
        assert_eq!(r.serial, 30175);
        assert_eq!(
            r.body,
            b"arch=c000003e syscall=59 success=yes comm=\"ls\"".to_vec()
        );
        assert_eq!(r.field_u64(b"syscall"), Some(59));
        assert_eq!(r.field_decoded(b"comm"), Some(b"ls".to_vec()));
    }

    #[test]
    fn node_prefix() {
        let r = ok(b"node=web-01.example type=EXECVE msg=audit(1.002:3): argc=1 a0=\"x\"");
        assert_eq!(r.node.as_deref(), Some("web-01.example"));
        assert_eq!(r.rtype, types::EXECVE);
        assert_eq!(r.time, AuditTime { sec: 1, msec: 2 });
        assert_eq!(r.serial, 3);
        assert_eq!(
            err(b"node= type=EOE msg=audit(1.2:3): ").reason,
            "empty node name"
        );
        assert_eq!(err(b"node=host").offset, 9);
    }

    #[test]
    fn unknown_bracket_type_takes_its_number() {
        let r = ok(b"type=UNKNOWN[1334] msg=audit(1700000000.123:77): prog-id=12 op=LOAD");
        assert_eq!(r.rtype, 1334);
        assert_eq!(r.body, b"prog-id=12 op=LOAD".to_vec());
        assert_eq!(
            err(b"type=UNKNOWN[70000] msg=audit(1.2:3): ").reason,
            "bad record type name"
        );
        assert_eq!(
            err(b"type=UNKNOWN[] msg=audit(1.2:3): ").reason,
            "bad record type name"
        );
    }

    #[test]
    fn names_missing_from_the_table_parse_as_type_zero() {
        let r = ok(b"type=SOMETHING_NEW msg=audit(5.006:7): a=b");
        assert_eq!(r.rtype, 0);
        assert_eq!(r.serial, 7);
    }

    #[test]
    fn crlf_and_lf_are_stripped() {
        assert_eq!(
            ok(b"type=CWD msg=audit(1.2:3): cwd=\"/\"\r\n").body,
            b"cwd=\"/\"".to_vec()
        );
        assert_eq!(
            ok(b"type=CWD msg=audit(1.2:3): cwd=\"/\"\n").body,
            b"cwd=\"/\"".to_vec()
        );
    }

    #[test]
    fn empty_eoe_bodies() {
        for line in [
            &b"type=EOE msg=audit(1.2:3): "[..],
            b"type=EOE msg=audit(1.2:3):",
            b"type=EOE msg=audit(1.2:3):\n",
        ] {
            let r = ok(line);
            assert_eq!(r.rtype, types::EOE);
            assert_eq!(r.serial, 3);
            assert!(r.body.is_empty());
            assert_eq!(r.fields().count(), 0);
        }
    }

    #[test]
    fn rhel_double_space_and_colonless_daemon_header() {
        assert_eq!(
            ok(b"type=CWD msg=audit(1481077231.371:479):  cwd=\"/home/a\"").body,
            b"cwd=\"/home/a\"".to_vec()
        );
        let r = ok(b"type=DAEMON_CONFIG msg=audit(1490239800.477:34) config changed, auid=0 pid=1512 res=success");
        assert_eq!(r.rtype, 1203);
        assert_eq!(r.serial, 34);
        assert_eq!(r.field(b"pid"), Some(&b"1512"[..]));
    }

    #[test]
    fn enriched_body_ends_before_group_separator() {
        let r = ok(b"type=SYSCALL msg=audit(1.2:3): arch=c000003e syscall=59\x1dARCH=x86_64 SYSCALL=execve UID=\"r t\"\n");
        assert_eq!(r.body, b"arch=c000003e syscall=59".to_vec());
        assert_eq!(r.field(b"SYSCALL"), None);
        assert_eq!(r.enriched_field(b"SYSCALL"), Some(&b"execve"[..]));
        assert_eq!(r.enriched_field(b"UID"), Some(&b"\"r t\""[..]));
        assert_eq!(r.enriched_field(b"syscall"), None);
        let plain = ok(b"type=SYSCALL msg=audit(1.2:3): arch=c000003e syscall=59\n");
        assert!(plain.enriched.is_empty());
        // Only SYSCALL records keep theirs.
        let cwd = ok(b"type=CWD msg=audit(1.2:3): cwd=\"/\"\x1dX=1");
        assert!(cwd.enriched.is_empty());
    }

    #[test]
    fn garbage_is_an_error_with_place() {
        let cases: &[(&[u8], &str, usize)] = &[
            (b"", "no type= field", 0),
            (b"hello world", "no type= field", 0),
            (b"type= msg=audit(1.2:3): ", "bad record type name", 5),
            (
                b"type=SYS-CALL msg=audit(1.2:3): ",
                "bad record type name",
                5,
            ),
            (b"type=SYSCALL", "no msg=audit( header", 12),
            (b"type=UNKNOWN[1329] msg=?", UNSTAMPED, 19),
            (
                b"type=SYSCALL msg=audit(",
                "bad seconds in audit( header",
                23,
            ),
            (
                b"type=SYSCALL msg=audit(12",
                "expected '.' after the seconds",
                25,
            ),
            (
                b"type=SYSCALL msg=audit(12.",
                "bad milliseconds in audit( header",
                26,
            ),
            (
                b"type=SYSCALL msg=audit(12.1000:5): ",
                "bad milliseconds in audit( header",
                26,
            ),
            (
                b"type=SYSCALL msg=audit(12.100",
                "expected ':' after the milliseconds",
                29,
            ),
            (
                b"type=SYSCALL msg=audit(12.100:",
                "bad serial in audit( header",
                30,
            ),
            (
                b"type=SYSCALL msg=audit(12.100:4294967296): ",
                "bad serial in audit( header",
                30,
            ),
            (
                b"type=SYSCALL msg=audit(12.100:7",
                "expected ')' after the serial",
                31,
            ),
            (
                b"type=SYSCALL msg=audit(12.100:7)x",
                "expected ': ' after the audit( header",
                32,
            ),
            (
                b"type=SYSCALL msg=audit(99999999999999999999.1:2): ",
                "bad seconds in audit( header",
                23,
            ),
        ];
        for (line, reason, offset) in cases {
            let e = err(line);
            assert_eq!(
                (e.reason, e.offset),
                (*reason, *offset),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            err(b"type=SYSCALL").to_string(),
            "no msg=audit( header at byte 12: \"type=SYSCALL\""
        );
    }

    #[test]
    fn no_panic_on_any_prefix_of_a_line_or_on_odd_bytes() {
        let line =
            b"node=n1 type=UNKNOWN[1300] msg=audit(1795858582.841:30175): a=\"b c\" \x1dX=1\r\n";
        for end in 0..=line.len() {
            let _ = parse_text(&line[..end]);
            let _ = parse_netlink(1300, &line[..end]);
        }
        for bytes in [
            &b"\xff\xfe\x00"[..],
            b"type=\xff msg=audit(1.2:3): ",
            b"type=A msg=audit(1.2:3): \xff\xfe",
        ] {
            let _ = parse_text(bytes);
        }
    }

    #[test]
    fn netlink_payload() {
        let r = match parse_netlink(
            1309,
            b"audit(1795858582.841:30175): argc=2 a0=\"ls\" a1=\"-l\"\n\0\0",
        ) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.rtype, types::EXECVE);
        assert_eq!(r.serial, 30175);
        assert_eq!(r.body, b"argc=2 a0=\"ls\" a1=\"-l\"".to_vec());
        match parse_netlink(1320, b"audit(1.2:3): \0") {
            Ok(r) => assert!(r.body.is_empty()),
            Err(e) => panic!("{e}"),
        }
        // Trailing NULs are stripped before parsing, so the excerpt holds only the 0x01.
        assert_eq!(
            parse_netlink(1000, b"\x01\x00\x00\x00"),
            Err(ParseError::new("no audit( header", 0, b"\x01"))
        );
    }

    #[test]
    fn parse_frame_dispatches() {
        let text = Frame::Text(b"type=PATH msg=audit(1.2:3): item=0".to_vec());
        let netlink = Frame::Netlink {
            msg_type: 1302,
            payload: b"audit(1.2:3): item=0".to_vec(),
        };
        assert_eq!(parse_frame(&text), parse_frame(&netlink));
    }

    #[test]
    fn owned_parsing_gives_the_same_records_and_errors() {
        let mut frames: Vec<Frame> = [
            &b"type=CWD msg=audit(1.2:3): cwd=\"/\"\r\n"[..],
            b"node=n1 type=EXECVE msg=audit(1.2:3):  argc=1 a0=\"x\"",
            b"type=SYSCALL msg=audit(1.2:3): arch=c000003e\x1dARCH=x86_64",
            b"type=EOE msg=audit(1.2:3):",
            b"type=EOE msg=audit(1.2:3): \n",
            b"type=UNKNOWN[1329] msg=?",
            b"type=SYSCALL msg=audit(12.100:7)x",
            b"",
        ]
        .iter()
        .map(|line| Frame::Text(line.to_vec()))
        .collect();
        for payload in [
            &b"audit(1795858582.841:30175): argc=2 a0=\"ls\"\n\0\0"[..],
            b"audit(1.2:3): \0",
            b"\x01\x00",
        ] {
            frames.push(Frame::Netlink {
                msg_type: 1309,
                payload: payload.to_vec(),
            });
        }
        let corpus = read(&format!("{SAMPLES}/sample-enriched.audit.log"));
        frames.extend(
            corpus
                .split(|b| *b == b'\n')
                .map(|line| Frame::Text(line.to_vec())),
        );
        for frame in frames {
            let want = parse_frame(&frame);
            assert_eq!(parse_frame_owned(frame.clone()), want, "{frame:?}");
        }
        let r = parse_frame_owned(Frame::Text(b"type=PATH msg=audit(1.2:3): item=0".to_vec()));
        assert_eq!(r.map(|r| r.body), Ok(b"item=0".to_vec()));
    }

    /// The byte-by-byte quote state machine `scan_token` replaced, kept as the reference: the
    /// token's end, and its first `=` (quoted or not).
    fn scan_token_reference(s: &[u8]) -> (usize, Option<usize>) {
        let mut quote: Option<u8> = None;
        let mut end = s.len();
        for (i, &b) in s.iter().enumerate() {
            match quote {
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None if b == b'"' || b == b'\'' => quote = Some(b),
                None if b == b' ' => {
                    end = i;
                    break;
                }
                None => {}
            }
        }
        (end, s[..end].iter().position(|&b| b == b'='))
    }

    #[test]
    fn scan_token_matches_the_reference_state_machine() {
        let alphabet = [b' ', b'"', b'\'', b'a', b'='];
        // Every string of length 0..=6 over the bytes that matter.
        for len in 0..=6u32 {
            for mut n in 0..5usize.pow(len) {
                let mut s = Vec::new();
                for _ in 0..len {
                    s.push(alphabet[n % 5]);
                    n /= 5;
                }
                assert_eq!(scan_token(&s), scan_token_reference(&s), "{s:?}");
            }
        }
        // Longer ones, past the byte-by-byte start of the value, from a fixed pseudo-random walk.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for len in (20..80).cycle().take(20_000) {
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    // Mostly plain bytes, as in real values.
                    [b' ', b'"', b'\'', b'=', b'a', b'b', b'c', b'd', b'e', b'f']
                        [(next() % 10) as usize]
                })
                .collect();
            assert_eq!(scan_token(&s), scan_token_reference(&s), "{s:?}");
        }
        // Long plain runs of bytes next to the stops in value, with a stop now and then at any
        // offset (past the byte-by-byte start of the value too).
        let plain = [
            0x00, 0x1f, 0x21, 0x23, 0x26, 0x3c, 0x3e, 0x7f, 0x80, 0xa0, 0xbd, 0xff, b'A',
        ];
        for len in (1..100).cycle().take(20_000) {
            let s: Vec<u8> = (0..len)
                .map(|_| match next() % 40 {
                    0 => b' ',
                    1 => b'"',
                    2 => b'\'',
                    3 | 4 => b'=',
                    r => plain[(r % 13) as usize],
                })
                .collect();
            assert_eq!(scan_token(&s), scan_token_reference(&s), "{s:?}");
        }
        for stop in [b' ', b'=', b'"', b'\''] {
            for at in 0..40 {
                let mut s = vec![stop ^ 1; 40];
                s[at] = stop;
                assert_eq!(scan_token(&s), scan_token_reference(&s), "{s:?}");
            }
        }
        assert_eq!(scan_token(b"a=\"x y\" b=1"), (7, Some(1)));
        assert_eq!(scan_token(b"msg='a \"b' c"), (10, Some(3)));
        assert_eq!(scan_token(b"a=\"unclosed rest"), (16, Some(1)));
        assert_eq!(scan_token(b"'x=y z'=1 w"), (9, Some(2)));
        assert_eq!(scan_token(b"\"x y"), (4, None));
    }

    #[test]
    fn fields_respect_quotes_and_bracketed_keys() {
        let r = ok(b"type=USER_CMD msg=audit(1.2:3): pid=5 msg='cwd=\"/\" cmd=ls' a3[1]=4142 a3_len=4 bare");
        let fields: Vec<(&[u8], &[u8])> = r.fields().collect();
        assert_eq!(
            fields,
            vec![
                (&b"pid"[..], &b"5"[..]),
                (&b"msg"[..], &b"'cwd=\"/\" cmd=ls'"[..]),
                (&b"a3[1]"[..], &b"4142"[..]),
                (&b"a3_len"[..], &b"4"[..]),
            ]
        );
        assert_eq!(r.field_decoded(b"msg"), Some(b"cwd=\"/\" cmd=ls".to_vec()));
        assert_eq!(r.field_decoded(b"a3[1]"), Some(b"AB".to_vec()));
    }

    #[test]
    fn every_table_name_is_well_formed_so_lookup_can_come_first() {
        // rtype_from_name returns a table hit before checking the name's bytes.
        for (num, name) in TYPE_TABLE {
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{num}: {name:?}"
            );
            assert_eq!(rtype_from_name(name.as_bytes()), Some(*num), "{name}");
        }
    }

    #[test]
    fn decode_hex_agrees_with_a_digit_by_digit_reference_on_every_pair() {
        let reference = |raw: &[u8]| -> Option<Vec<u8>> {
            if raw.is_empty() || !raw.len().is_multiple_of(2) {
                return None;
            }
            let text = std::str::from_utf8(raw).ok()?;
            if !text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
            {
                return None;
            }
            (0..raw.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
                .collect()
        };
        for hi in 0..=255u8 {
            for lo in 0..=255u8 {
                let raw = [b'4', b'1', hi, lo];
                assert_eq!(decode_hex(&raw), reference(&raw), "{raw:?}");
            }
        }
        assert_eq!(decode_hex(b"0"), None);
        assert_eq!(decode_hex(b""), None);
        assert_eq!(
            decode_hex(b"2f"),
            None,
            "lower case is not what the kernel writes"
        );
    }

    #[test]
    fn decode_value_forms() {
        assert_eq!(decode_value(b"\"/bin/ls\""), b"/bin/ls".to_vec());
        assert_eq!(
            decode_value(b"2F746D702F6120622063"),
            b"/tmp/a b c".to_vec()
        );
        assert_eq!(decode_value(b"(null)"), b"(null)".to_vec());
        assert_eq!(decode_value(b"'x'"), b"x".to_vec());
        assert_eq!(decode_value(b"\"x'"), b"\"x'".to_vec());
        assert_eq!(decode_value(b"\""), b"\"".to_vec());
    }

    /// Every `type=NAME` of `files` must be a table name, so none parses as type 0.
    fn every_type_name_is_in_the_table(files: &[String]) {
        for file in files {
            for line in read(file).split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if let Ok(r) = parse_text(line) {
                    assert_ne!(r.rtype, 0, "{file}: {}", String::from_utf8_lossy(line));
                }
            }
        }
    }

    #[test]
    fn every_type_name_in_the_samples_is_in_the_table() {
        every_type_name_is_in_the_table(&[
            format!("{SAMPLES}/sample.audit.log"),
            format!("{SAMPLES}/sample-enriched.audit.log"),
        ]);
    }

    fn parse_all(file: &str) -> (usize, Vec<ParseError>) {
        let mut count = 0;
        let mut errors = Vec::new();
        for line in read(file).split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            count += 1;
            if let Err(e) = parse_text(line) {
                errors.push(e);
            }
        }
        (count, errors)
    }

    #[test]
    fn sample_text_logs_parse_without_errors() {
        let (count, errors) = parse_all(&format!("{SAMPLES}/sample.audit.log"));
        assert_eq!((count, errors), (845, vec![]));
        let (count, errors) = parse_all(&format!("{SAMPLES}/sample-enriched.audit.log"));
        assert_eq!((count, errors), (974, vec![]));

        let raw = read(&format!("{SAMPLES}/sample.audit.log"));
        let first = raw.split(|b| *b == b'\n').next().map(ok);
        let first = first.map(|r| (r.rtype, r.time, r.serial));
        assert_eq!(
            first,
            Some((
                1200,
                AuditTime {
                    sec: 1795862048,
                    msec: 195
                },
                2492
            ))
        );

        let enriched = read(&format!("{SAMPLES}/sample-enriched.audit.log"));
        let line = enriched.split(|b| *b == b'\n').next().unwrap_or(&[]);
        let r = ok(line);
        assert_eq!(r.rtype, 1200);
        assert_eq!(r.serial, 4735);
        assert!(r.body.ends_with(b"res=success"));
        assert!(!r.body.contains(&0x1d));
    }

    #[test]
    fn peer_user_space_record_with_nested_msg() {
        let r = ok(b"type=USER_CMD msg=audit(1481077231.363:475): pid=1382 uid=1000 auid=1000 ses=3 subj=unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023 msg='cwd=\"/home/andrew_kroh\" cmd=2E2F6D657472696362656174202D63206D622E6465762E796D6C terminal=pts/0 res=success'");
        assert_eq!(r.rtype, 1123);
        assert_eq!(r.field_u64(b"ses"), Some(3));
        let inner = Record {
            body: r.field_decoded(b"msg").unwrap_or_default(),
            ..r.clone()
        };
        assert_eq!(
            inner.field_decoded(b"cmd"),
            Some(b"./metricbeat -c mb.dev.yml".to_vec())
        );
        assert_eq!(inner.field(b"terminal"), Some(&b"pts/0"[..]));
    }

    /// Tests on the shared corpus beside the checkout: ignored by a plain `cargo test`, run by the
    /// corpus step of `scripts/test-all.sh` (docs/testing.md).
    mod shared_corpus {
        use super::*;

        const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");
        const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/peer/go-libaudit");

        /// Every `type=NAME` of the shared logs must be a table name, so none parses as type 0.
        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn every_type_name_in_the_shared_logs_is_in_the_table() {
            let mut files = vec![
                format!("{CORPUS}/raw.audit.log"),
                format!("{CORPUS}/enriched.audit.log"),
            ];
            files.extend(peer_logs());
            every_type_name_is_in_the_table(&files);
        }

        fn peer_logs() -> Vec<String> {
            let dir = match std::fs::read_dir(PEER) {
                Ok(dir) => dir,
                Err(e) => panic!("{PEER}: {e}"),
            };
            let mut logs: Vec<String> = dir
                .filter_map(|e| e.ok())
                .map(|e| e.path().to_string_lossy().into_owned())
                .filter(|p| p.ends_with(".log"))
                .collect();
            logs.sort();
            logs
        }

        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn corpus_text_logs_parse_without_errors() {
            let (count, errors) = parse_all(&format!("{CORPUS}/raw.audit.log"));
            assert_eq!((count, errors), (774, vec![]));
            let (count, errors) = parse_all(&format!("{CORPUS}/enriched.audit.log"));
            assert_eq!((count, errors), (773, vec![]));

            let raw = read(&format!("{CORPUS}/raw.audit.log"));
            let first = raw.split(|b| *b == b'\n').next().map(ok);
            let first = first.map(|r| (r.rtype, r.time, r.serial));
            assert_eq!(
                first,
                Some((
                    1200,
                    AuditTime {
                        sec: 1795858582,
                        msec: 851
                    },
                    8692
                ))
            );

            let enriched = read(&format!("{CORPUS}/enriched.audit.log"));
            let line = enriched.split(|b| *b == b'\n').next().unwrap_or(&[]);
            let r = ok(line);
            assert_eq!(r.rtype, 1200);
            assert_eq!(r.serial, 5928);
            assert!(r.body.ends_with(b"res=success"));
            assert!(!r.body.contains(&0x1d));
        }

        /// go-libaudit's logs: RHEL 6/7 and Ubuntu kernels, user-space records with nested msg='...'.
        /// One line of auparse-audit-rhel7.log, `type=UNKNOWN[1329] msg=?`, has no audit( header at
        /// all (go-libaudit's own golden output reports it as "invalid audit message header"); it is
        /// the only line refused, as UNSTAMPED rather than malformed.
        #[test]
        #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
        fn peer_logs_parse_without_errors() {
            let mut total = 0;
            let mut refused = Vec::new();
            for file in peer_logs() {
                let (count, errors) = parse_all(&file);
                total += count;
                refused.extend(errors.into_iter().map(|e| (e.reason, e.excerpt)));
            }
            assert_eq!(total, 263);
            assert_eq!(
                refused,
                vec![(UNSTAMPED, "type=UNKNOWN[1329] msg=?".to_string())]
            );
        }
    }
}
