//! One audit record: header (`audit(SEC.MSEC:SERIAL): `), numeric type, optional node, and the raw
//! `key=value` body. Parsing is pure: bytes in, [`Record`] or [`ParseError`] out.

use std::fmt;

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
        self.sec.saturating_mul(1000).saturating_add(u64::from(self.msec))
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
    /// The bytes after `): `, up to (not including) an ENRICHED 0x1d section or a trailing newline.
    pub body: Vec<u8>,
}

/// Why a frame is not an audit record; carries the offending input for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        ParseError { reason, offset, excerpt: String::from_utf8_lossy(cut).into_owned() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}: {:?}", self.reason, self.offset, self.excerpt)
    }
}

impl std::error::Error for ParseError {}

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
            let s = &self.rest[start..];
            let end = token_end(s);
            let tok = &s[..end];
            self.rest = &s[end..];
            if let Some(eq) = tok.iter().position(|b| *b == b'=') {
                return Some((&tok[..eq], &tok[eq + 1..]));
            }
            // A bare word (e.g. "user" in user-space records): not a field, skip it.
        }
    }
}

/// End of one token: a space outside double or single quotes ends it.
fn token_end(s: &[u8]) -> usize {
    let mut quote: Option<u8> = None;
    for (i, &b) in s.iter().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b' ' => return i,
            None => {}
        }
    }
    s.len()
}

/// Decodes one raw *string* field value (exe, comm, cwd, name, aN, proctitle, key) the way the kernel
/// encoded it: `"text"` → text, an even-length run of upper-case hex digits → the bytes it encodes,
/// anything else (`(null)`, `(none)`) → itself. Do not use it on numeric fields: `pid=4410` is valid hex.
pub fn decode_value(raw: &[u8]) -> Vec<u8> {
    if raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"' {
        return raw[1..raw.len() - 1].to_vec();
    }
    if let Some(bytes) = decode_hex(raw) {
        return bytes;
    }
    raw.to_vec()
}

/// Decodes upper-case hex (as `audit_log_n_hex` writes it); `None` if `raw` is not such a run.
pub fn decode_hex(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    raw.chunks_exact(2).map(|p| Some(nib(p[0])? << 4 | nib(p[1])?)).collect()
}
