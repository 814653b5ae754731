//! The bytes of the kernel's audit netlink protocol, as pure functions: datagram → messages,
//! `struct audit_status` and `struct audit_rule_data` both ways, request framing.
//!
//! Nothing here touches a socket, so every wire type has a round-trip test with hand-checked
//! bytes. Netlink is host byte order; the fixtures are written for little-endian hosts.
//!
//! Two kernel quirks shape the parser:
//! - On the unicast path (the registered audit daemon's socket) the kernel writes the *payload*
//!   length into `nlmsg_len` of record messages, 16 bytes short; the multicast copy is fixed up.
//!   The kernel sends one record per datagram on both paths, so a record's payload is taken to
//!   the end of the datagram (the recv length) and `nlmsg_len` is ignored for records.
//! - Anyone may send to a netlink port: only datagrams from port id 0 (the kernel) are accepted.

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Netlink "nothing here" message.
pub const NLMSG_NOOP: u16 = 1;
/// Netlink error or acknowledgement (error code 0).
pub const NLMSG_ERROR: u16 = 2;
/// End of a multi-message reply (the end of a LIST_RULES dump).
pub const NLMSG_DONE: u16 = 3;
/// Netlink "data lost" message.
pub const NLMSG_OVERRUN: u16 = 4;

/// `nlmsg_flags`: this is a request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `nlmsg_flags`: ask the kernel for an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;

/// Request: read `struct audit_status`.
pub const AUDIT_GET: u16 = 1000;
/// Request: change fields of `struct audit_status` selected by its mask.
pub const AUDIT_SET: u16 = 1001;
/// Request: add one `struct audit_rule_data`.
pub const AUDIT_ADD_RULE: u16 = 1011;
/// Request: delete the rule equal to one `struct audit_rule_data`.
pub const AUDIT_DEL_RULE: u16 = 1012;
/// Request and reply type: dump the rules, one `struct audit_rule_data` per message.
pub const AUDIT_LIST_RULES: u16 = 1013;
/// Kernel → registered daemon: "someone else wants your place" (payload: their pid, binary).
/// Its type is in the record range but it is a control message, not a record.
pub const AUDIT_REPLACE: u16 = 1329;
/// Message types from here on are records (user messages 1100.., kernel records 1300..).
pub const AUDIT_FIRST_RECORD: u16 = 1100;

/// `audit_status.mask` bit: `enabled` is valid / to be set.
pub const AUDIT_STATUS_ENABLED: u32 = 0x0001;
/// `audit_status.mask` bit: `failure`.
pub const AUDIT_STATUS_FAILURE: u32 = 0x0002;
/// `audit_status.mask` bit: `pid` (register or unregister the audit daemon).
pub const AUDIT_STATUS_PID: u32 = 0x0004;
/// `audit_status.mask` bit: `rate_limit`.
pub const AUDIT_STATUS_RATE_LIMIT: u32 = 0x0008;
/// `audit_status.mask` bit: `backlog_limit`.
pub const AUDIT_STATUS_BACKLOG_LIMIT: u32 = 0x0010;

/// Rule list number (`audit_rule_data.flags`) of the syscall-exit filter.
pub const AUDIT_FILTER_EXIT: u32 = 0x04;
/// Rule action: always generate a record.
pub const AUDIT_ALWAYS: u32 = 2;
/// Maximum number of fields in one rule (`AUDIT_MAX_FIELDS`).
pub const AUDIT_MAX_FIELDS: usize = 64;
/// Number of 32-bit words in the syscall mask (`AUDIT_BITMASK_SIZE`).
pub const AUDIT_BITMASK_SIZE: usize = 64;
/// Longest filter key the kernel accepts (`AUDIT_MAX_KEY_LEN`).
pub const AUDIT_MAX_KEY_LEN: usize = 256;
/// Separator auditctl puts between several `-k` keys in one filterkey string.
pub const AUDIT_KEY_SEPARATOR: u8 = 0x01;

/// Rule field: process id.
pub const AUDIT_PID: u32 = 0;
/// Rule field: syscall ABI (`AUDIT_ARCH_*` value).
pub const AUDIT_ARCH: u32 = 11;
/// Rule field: filter key (string).
pub const AUDIT_FILTERKEY: u32 = 210;

/// Field operator `=`.
pub const AUDIT_EQUAL: u32 = 0x4000_0000;
/// Field operator `!=`.
pub const AUDIT_NOT_EQUAL: u32 = 0x3000_0000;

/// Fixed part of `struct audit_rule_data`: `flags, action, field_count, mask[64], fields[64],
/// values[64], fieldflags[64], buflen`.
pub const RULE_DATA_FIXED_LEN: usize = 4 * (3 + AUDIT_BITMASK_SIZE + 3 * AUDIT_MAX_FIELDS + 1);
/// Bytes of `struct audit_status` up to `backlog_wait_time` (what we send with AUDIT_SET).
pub const STATUS_LEN: usize = 40;
/// Oldest `struct audit_status` (2.6 kernels): mask .. backlog.
pub const STATUS_MIN_LEN: usize = 32;

const OFF_MASK: usize = 12;
const OFF_FIELDS: usize = OFF_MASK + 4 * AUDIT_BITMASK_SIZE;
const OFF_VALUES: usize = OFF_FIELDS + 4 * AUDIT_MAX_FIELDS;
const OFF_FIELDFLAGS: usize = OFF_VALUES + 4 * AUDIT_MAX_FIELDS;
const OFF_BUFLEN: usize = OFF_FIELDFLAGS + 4 * AUDIT_MAX_FIELDS;

/// Why bytes could not be read as (or values could not be written as) an audit netlink message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The datagram came from a user-space port, not the kernel (port id 0).
    #[error("datagram from netlink port {portid}, not the kernel")]
    ForeignSender { portid: u32 },
    /// Fewer bytes than a netlink header where a message should start.
    #[error("{} bytes left, too short for a netlink header: {bytes:02x?}", .bytes.len())]
    ShortHeader { bytes: Vec<u8> },
    /// `nlmsg_len` smaller than a header or larger than what was received.
    #[error("nlmsg_len {nlmsg_len} does not fit the {available} bytes received")]
    BadLength { nlmsg_len: u32, available: usize },
    /// An NLMSG_ERROR message without its 4-byte error code.
    #[error("NLMSG_ERROR without an error code: {bytes:02x?}")]
    ShortError { bytes: Vec<u8> },
    /// A structure shorter than its fixed part.
    #[error("{what} needs {need} bytes, got {}: {:02x?}", .bytes.len(), head(.bytes))]
    ShortStruct {
        what: &'static str,
        need: usize,
        bytes: Vec<u8>,
    },
    /// `audit_rule_data.field_count` above [`AUDIT_MAX_FIELDS`].
    #[error("rule has {count} fields, the kernel allows {AUDIT_MAX_FIELDS}")]
    TooManyFields { count: usize },
    /// The string fields of a rule need more bytes than `buflen` or the message provides.
    #[error("rule strings need {need} bytes, buffer has {have}")]
    RuleStrings { need: usize, have: usize },
    /// A filter key that is empty or longer than [`AUDIT_MAX_KEY_LEN`].
    #[error("filter key of {len} bytes (must be 1..={AUDIT_MAX_KEY_LEN})")]
    BadKey { len: usize },
}

/// At most the first 64 bytes of a structure, for an error message.
fn head(bytes: &[u8]) -> &[u8] {
    bytes.get(..64).unwrap_or(bytes)
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(b.try_into().ok()?))
}

fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes(b.try_into().ok()?))
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_ne_bytes());
}

/// `struct nlmsghdr`, as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `nlmsg_len` as the kernel wrote it (unreliable for unicast records).
    pub len: u32,
    /// `nlmsg_type`.
    pub msg_type: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`: our request's sequence number in replies, 0 in records.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
}

impl Header {
    fn parse(buf: &[u8]) -> Option<Header> {
        Some(Header {
            len: u32_at(buf, 0)?,
            msg_type: u16_at(buf, 4)?,
            flags: u16_at(buf, 6)?,
            seq: u32_at(buf, 8)?,
            pid: u32_at(buf, 12)?,
        })
    }
}

/// What one netlink message from the kernel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// An audit record (type ≥ 1100): its text, trailing NULs removed.
    Record(&'a [u8]),
    /// A reply to a control request (AUDIT_GET status, one AUDIT_LIST_RULES rule, ...).
    Reply(&'a [u8]),
    /// NLMSG_ERROR with code 0: the request succeeded.
    Ack,
    /// NLMSG_ERROR with a non-zero code: the positive errno the kernel refused the request with.
    Error(i32),
    /// NLMSG_DONE: the end of a dump.
    Done,
    /// NLMSG_NOOP or NLMSG_OVERRUN: nothing to act on.
    Noop,
}

/// One parsed netlink message, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header as received.
    pub header: Header,
    /// The decoded body.
    pub body: Body<'a>,
}

/// Iterator over the messages of one datagram; see [`parse_datagram`].
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.iter().all(|&b| b == 0) {
            // Empty, or alignment padding after the last message.
            self.rest = &[];
            return None;
        }
        let Some(header) = Header::parse(rest) else {
            self.rest = &[];
            return Some(Err(WireError::ShortHeader {
                bytes: rest.to_vec(),
            }));
        };
        let after_header = rest.get(NLMSG_HDRLEN..).unwrap_or(&[]);
        if header.msg_type >= AUDIT_FIRST_RECORD && header.msg_type != AUDIT_REPLACE {
            // One record per datagram; nlmsg_len may be 16 short (unicast): use the recv length.
            self.rest = &[];
            let end = after_header
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |i| i + 1);
            let text = after_header.get(..end).unwrap_or(after_header);
            return Some(Ok(Message {
                header,
                body: Body::Record(text),
            }));
        }
        let len = header.len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            self.rest = &[];
            return Some(Err(WireError::BadLength {
                nlmsg_len: header.len,
                available: rest.len(),
            }));
        }
        let payload = rest.get(NLMSG_HDRLEN..len).unwrap_or(&[]);
        let aligned = len.saturating_add(3) & !3;
        self.rest = rest.get(aligned..).unwrap_or(&[]);
        let body = match header.msg_type {
            NLMSG_ERROR => match u32_at(payload, 0) {
                Some(0) => Body::Ack,
                // The kernel sends -errno.
                Some(code) => Body::Error((code as i32).saturating_neg()),
                None => {
                    return Some(Err(WireError::ShortError {
                        bytes: payload.to_vec(),
                    }));
                }
            },
            NLMSG_DONE => Body::Done,
            NLMSG_NOOP | NLMSG_OVERRUN => Body::Noop,
            _ => Body::Reply(payload),
        };
        Some(Ok(Message { header, body }))
    }
}

/// Splits one received datagram (exactly the bytes recv returned) into messages.
///
/// A datagram whose sender port id is not 0 did not come from the kernel and is refused whole
/// with [`WireError::ForeignSender`]. Record messages run to the end of the datagram.
pub fn parse_datagram(datagram: &[u8], sender_portid: u32) -> Result<Messages<'_>, WireError> {
    if sender_portid != 0 {
        return Err(WireError::ForeignSender {
            portid: sender_portid,
        });
    }
    Ok(Messages { rest: datagram })
}

/// Frames a request: a 16-byte header (`nlmsg_len` = 16 + payload, port id 0 so the kernel
/// fills in ours) followed by the payload, unpadded.
pub fn encode_request(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    let mut out = Vec::with_capacity(len);
    put_u32(&mut out, u32::try_from(len).unwrap_or(u32::MAX));
    out.extend_from_slice(&msg_type.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    put_u32(&mut out, seq);
    put_u32(&mut out, 0);
    out.extend_from_slice(payload);
    out
}

/// `struct audit_status`, the AUDIT_GET reply.
///
/// The last fields arrived with later kernels (feature bitmap 3.13, backlog_wait_time 3.14,
/// backlog_wait_time_actual 5.9); they are `None` when the reply is too short to hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Which fields are valid (in replies the kernel sets them all).
    pub mask: u32,
    /// 0 off, 1 on, 2 on and locked until reboot.
    pub enabled: u32,
    /// What to do when records are lost: 0 silent, 1 printk, 2 panic.
    pub failure: u32,
    /// Pid of the registered audit daemon, 0 if none.
    pub pid: u32,
    /// Records per second before the kernel drops, 0 unlimited.
    pub rate_limit: u32,
    /// Records queued for the daemon before the kernel drops or waits.
    pub backlog_limit: u32,
    /// Records the kernel has lost since boot (multicast ENOBUFS losses are not counted).
    pub lost: u32,
    /// Records queued right now.
    pub backlog: u32,
    /// `AUDIT_FEATURE_BITMAP_*` bits (3.13+).
    pub feature_bitmap: Option<u32>,
    /// How long a task may wait for backlog room, in jiffies (3.14+).
    pub backlog_wait_time: Option<u32>,
    /// Time tasks actually waited on a full backlog (5.9+).
    pub backlog_wait_time_actual: Option<u32>,
}

impl Status {
    /// Decodes an AUDIT_GET reply payload (at least the 32 bytes every kernel sends).
    pub fn decode(payload: &[u8]) -> Result<Status, WireError> {
        let word = |i: usize| u32_at(payload, 4 * i);
        match (word(0), word(7)) {
            (Some(mask), Some(backlog)) => Ok(Status {
                mask,
                enabled: word(1).unwrap_or(0),
                failure: word(2).unwrap_or(0),
                pid: word(3).unwrap_or(0),
                rate_limit: word(4).unwrap_or(0),
                backlog_limit: word(5).unwrap_or(0),
                lost: word(6).unwrap_or(0),
                backlog,
                feature_bitmap: word(8),
                backlog_wait_time: word(9),
                backlog_wait_time_actual: word(10),
            }),
            _ => Err(WireError::ShortStruct {
                what: "audit_status",
                need: STATUS_MIN_LEN,
                bytes: payload.to_vec(),
            }),
        }
    }

    /// Encodes the first [`STATUS_LEN`] bytes (absent late fields as 0), the AUDIT_SET payload.
    /// The kernel copies what it knows of a longer or shorter struct and zeroes the rest.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STATUS_LEN);
        for v in [
            self.mask,
            self.enabled,
            self.failure,
            self.pid,
            self.rate_limit,
            self.backlog_limit,
            self.lost,
            self.backlog,
            self.feature_bitmap.unwrap_or(0),
            self.backlog_wait_time.unwrap_or(0),
        ] {
            put_u32(&mut out, v);
        }
        out
    }

    /// The AUDIT_SET payload that changes one setting: only its mask bit is set.
    pub fn set_request(change: StatusChange) -> Vec<u8> {
        let mut s = Status::default();
        match change {
            StatusChange::Enabled(v) => {
                s.mask = AUDIT_STATUS_ENABLED;
                s.enabled = v;
            }
            StatusChange::Pid(v) => {
                s.mask = AUDIT_STATUS_PID;
                s.pid = v;
            }
            StatusChange::BacklogLimit(v) => {
                s.mask = AUDIT_STATUS_BACKLOG_LIMIT;
                s.backlog_limit = v;
            }
        }
        s.encode()
    }
}

/// One AUDIT_SET change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// Set `enabled` (0 or 1; 2 locks until reboot).
    Enabled(u32),
    /// Register this process as the audit daemon (its own pid), or unregister (0).
    Pid(u32),
    /// Set the backlog limit.
    BacklogLimit(u32),
}

/// A syscall ABI the kernel audits separately (`-F arch=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86_64 (`b64` on an x86_64 host).
    X86_64,
    /// i386 compat (`b32` on an x86_64 host).
    I386,
    /// aarch64 (`b64` on an arm64 host).
    Aarch64,
    /// 32-bit ARM EABI compat (`b32` on an arm64 host).
    Arm,
}

impl Arch {
    /// The `AUDIT_ARCH_*` value (ELF machine | 64-bit | little-endian bits).
    pub fn audit_arch(self) -> u32 {
        match self {
            Arch::X86_64 => 0xC000_003E,
            Arch::I386 => 0x4000_0003,
            Arch::Aarch64 => 0xC000_00B7,
            Arch::Arm => 0x4000_0028,
        }
    }

    /// Syscall numbers of execve and execveat in this ABI.
    pub fn exec_syscalls(self) -> [u32; 2] {
        match self {
            Arch::X86_64 => [59, 322],
            Arch::I386 => [11, 358],
            Arch::Aarch64 => [221, 281],
            Arch::Arm => [11, 387],
        }
    }

    /// The native and compat ABIs of the host this was built for (b64, b32); empty elsewhere.
    pub fn host() -> &'static [Arch] {
        if cfg!(target_arch = "x86_64") {
            &[Arch::X86_64, Arch::I386]
        } else if cfg!(target_arch = "aarch64") {
            &[Arch::Aarch64, Arch::Arm]
        } else {
            &[]
        }
    }
}

/// A rule field's value: a number, or a string carried in the rule's trailing buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// Numeric value (`values[i]`).
    Num(u32),
    /// String value: `values[i]` holds its length, the bytes sit in `buf`.
    Str(Vec<u8>),
}

/// One `-F` condition of a rule: `fields[i] fieldflags[i] values[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleField {
    /// `AUDIT_*` field id.
    pub field: u32,
    /// Operator (`AUDIT_EQUAL`, `AUDIT_NOT_EQUAL`, ...).
    pub op: u32,
    /// The value.
    pub value: FieldValue,
}

/// `struct audit_rule_data`, owned: what ADD_RULE/DEL_RULE send and LIST_RULES returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleData {
    /// Filter list (`AUDIT_FILTER_EXIT`, ...), possibly with `AUDIT_FILTER_PREPEND`.
    pub flags: u32,
    /// `AUDIT_ALWAYS` or `AUDIT_NEVER`.
    pub action: u32,
    /// Syscall bit mask: bit `nr % 32` of word `nr / 32`.
    pub mask: [u32; AUDIT_BITMASK_SIZE],
    /// Conditions in order.
    pub fields: Vec<RuleField>,
}

/// Field ids whose value is a string in `buf` (the kernel's `audit_krule_to_data` list).
fn is_string_field(field: u32) -> bool {
    matches!(field, 13..=17 | 19..=23 | 105 | 107 | 112 | AUDIT_FILTERKEY)
}

impl RuleData {
    /// `-a always,exit -F arch=ARCH -S execve,execveat [-F pid!=PID] -k KEY`.
    ///
    /// `exclude_pid` keeps a multicast reader's own syscalls out of the stream.
    pub fn exec_rule(
        arch: Arch,
        exclude_pid: Option<u32>,
        key: &str,
    ) -> Result<RuleData, WireError> {
        Self::syscall_rule(arch, &arch.exec_syscalls(), exclude_pid, key)
    }

    /// `-a always,exit -F arch=ARCH -S SYSCALLS [-F pid!=PID] -k KEY` for any list of syscall
    /// numbers of `arch` (numbers beyond the mask are ignored).
    pub fn syscall_rule(
        arch: Arch,
        syscalls: &[u32],
        exclude_pid: Option<u32>,
        key: &str,
    ) -> Result<RuleData, WireError> {
        if key.is_empty() || key.len() > AUDIT_MAX_KEY_LEN {
            return Err(WireError::BadKey { len: key.len() });
        }
        let mut mask = [0u32; AUDIT_BITMASK_SIZE];
        for &nr in syscalls {
            if let Some(word) = mask.get_mut((nr / 32) as usize) {
                *word |= 1 << (nr % 32);
            }
        }
        let mut fields = vec![RuleField {
            field: AUDIT_ARCH,
            op: AUDIT_EQUAL,
            value: FieldValue::Num(arch.audit_arch()),
        }];
        if let Some(pid) = exclude_pid {
            fields.push(RuleField {
                field: AUDIT_PID,
                op: AUDIT_NOT_EQUAL,
                value: FieldValue::Num(pid),
            });
        }
        fields.push(RuleField {
            field: AUDIT_FILTERKEY,
            op: AUDIT_EQUAL,
            value: FieldValue::Str(key.as_bytes().to_vec()),
        });
        Ok(RuleData {
            flags: AUDIT_FILTER_EXIT,
            action: AUDIT_ALWAYS,
            mask,
            fields,
        })
    }

    /// Encodes the ADD_RULE / DEL_RULE payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let count = self.fields.len();
        if count > AUDIT_MAX_FIELDS {
            return Err(WireError::TooManyFields { count });
        }
        let mut fields = [0u32; AUDIT_MAX_FIELDS];
        let mut values = [0u32; AUDIT_MAX_FIELDS];
        let mut fieldflags = [0u32; AUDIT_MAX_FIELDS];
        let mut buf = Vec::new();
        for (i, f) in self.fields.iter().enumerate() {
            let value = match &f.value {
                FieldValue::Num(v) => *v,
                FieldValue::Str(s) => {
                    buf.extend_from_slice(s);
                    u32::try_from(s.len()).map_err(|_| WireError::RuleStrings {
                        need: s.len(),
                        have: 0,
                    })?
                }
            };
            if let (Some(fd), Some(v), Some(op)) =
                (fields.get_mut(i), values.get_mut(i), fieldflags.get_mut(i))
            {
                *fd = f.field;
                *v = value;
                *op = f.op;
            }
        }
        let buflen = u32::try_from(buf.len()).map_err(|_| WireError::RuleStrings {
            need: buf.len(),
            have: 0,
        })?;
        let mut out = Vec::with_capacity(RULE_DATA_FIXED_LEN + buf.len());
        put_u32(&mut out, self.flags);
        put_u32(&mut out, self.action);
        put_u32(&mut out, count as u32);
        for w in self
            .mask
            .iter()
            .chain(&fields)
            .chain(&values)
            .chain(&fieldflags)
        {
            put_u32(&mut out, *w);
        }
        put_u32(&mut out, buflen);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decodes one AUDIT_LIST_RULES reply payload.
    pub fn decode(payload: &[u8]) -> Result<RuleData, WireError> {
        let short = || WireError::ShortStruct {
            what: "audit_rule_data",
            need: RULE_DATA_FIXED_LEN,
            bytes: payload.to_vec(),
        };
        let word = |off: usize| u32_at(payload, off).ok_or_else(short);
        let flags = word(0)?;
        let action = word(4)?;
        let count = word(8)? as usize;
        if count > AUDIT_MAX_FIELDS {
            return Err(WireError::TooManyFields { count });
        }
        let mut mask = [0u32; AUDIT_BITMASK_SIZE];
        for (i, m) in mask.iter_mut().enumerate() {
            *m = word(OFF_MASK + 4 * i)?;
        }
        let buflen = word(OFF_BUFLEN)? as usize;
        let strings = payload.get(RULE_DATA_FIXED_LEN..).unwrap_or(&[]);
        let strings = strings.get(..buflen).ok_or(WireError::RuleStrings {
            need: buflen,
            have: strings.len(),
        })?;
        let mut used = 0usize;
        let mut fields = Vec::with_capacity(count);
        for i in 0..count {
            let field = word(OFF_FIELDS + 4 * i)?;
            let raw = word(OFF_VALUES + 4 * i)?;
            let op = word(OFF_FIELDFLAGS + 4 * i)?;
            let value = if is_string_field(field) {
                let end = used.saturating_add(raw as usize);
                let s = strings.get(used..end).ok_or(WireError::RuleStrings {
                    need: end,
                    have: buflen,
                })?;
                used = end;
                FieldValue::Str(s.to_vec())
            } else {
                FieldValue::Num(raw)
            };
            fields.push(RuleField { field, op, value });
        }
        Ok(RuleData {
            flags,
            action,
            mask,
            fields,
        })
    }

    /// The filter key string (several keys are joined by 0x01), if the rule has one.
    pub fn key(&self) -> Option<&[u8]> {
        self.fields.iter().find_map(|f| match (&f.value, f.field) {
            (FieldValue::Str(s), AUDIT_FILTERKEY) => Some(s.as_slice()),
            _ => None,
        })
    }

    /// Whether `key` is one of the rule's filter keys.
    pub fn has_key(&self, key: &[u8]) -> bool {
        self.key().is_some_and(|k| {
            k.split(|&b| b == AUDIT_KEY_SEPARATOR)
                .any(|part| part == key)
        })
    }

    /// Whether this rule records *every* execve in `arch`: [`RuleData::watches_execve`] with no
    /// field other than `arch=` and keys, so nothing (uid, pid, path...) narrows it.
    pub fn covers_all_execve(&self, arch: Arch) -> bool {
        self.watches_execve(arch)
            && self
                .fields
                .iter()
                .all(|f| f.field == AUDIT_ARCH || f.field == AUDIT_FILTERKEY)
    }

    /// Whether this exit rule always records execve in `arch`: the execve bit is set and the
    /// rule has no arch field or `arch=` this ABI. Other fields (uid, pid, ...) may still narrow
    /// it; callers that need full coverage should add their own rule.
    pub fn watches_execve(&self, arch: Arch) -> bool {
        let [execve, _] = arch.exec_syscalls();
        let bit_set = self
            .mask
            .get((execve / 32) as usize)
            .is_some_and(|w| w & (1 << (execve % 32)) != 0);
        let arch_ok = self
            .fields
            .iter()
            .filter(|f| f.field == AUDIT_ARCH)
            .all(|f| f.op == AUDIT_EQUAL && f.value == FieldValue::Num(arch.audit_arch()));
        self.flags & !0x10 == AUDIT_FILTER_EXIT && self.action == AUDIT_ALWAYS && bit_set && arch_ok
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    /// AUDIT_GET request as `auditctl -s` sends it (strace of sendto): len 16, type 1000,
    /// flags REQUEST|ACK, seq 1, pid 0.
    const GET_REQUEST: [u8; 16] = [
        0x10, 0, 0, 0, 0xe8, 0x03, 0x05, 0x00, 1, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn encode_request_matches_auditctl_get() {
        assert_eq!(
            encode_request(AUDIT_GET, NLM_F_REQUEST | NLM_F_ACK, 1, &[]),
            GET_REQUEST
        );
    }

    /// A unicast EXECVE record as the kernel sends it to the registered daemon: nlmsg_len is the
    /// payload length (0x15 = 21 for `audit(1.0:7): argc=1`), 16 bytes short of the datagram.
    #[test]
    fn unicast_record_uses_recv_length() {
        let text = b"audit(1.0:7): argc=1";
        let mut dgram = vec![0x15, 0, 0, 0, 0x1d, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        dgram.extend_from_slice(text);
        dgram.push(0);
        let msgs: Vec<_> = parse_datagram(&dgram, 0).unwrap().collect();
        assert_eq!(msgs.len(), 1);
        let m = msgs[0].clone().unwrap();
        assert_eq!(m.header.msg_type, 1309);
        assert_eq!(m.header.len, 21);
        assert_eq!(m.body, Body::Record(text));
    }

    /// The multicast copy: nlmsg_len is correct (16 + 20 = 36 = 0x24).
    #[test]
    fn multicast_record() {
        let text = b"audit(1.0:7): argc=1";
        let mut dgram = vec![0x24, 0, 0, 0, 0x28, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        dgram.extend_from_slice(text);
        let msgs: Vec<_> = parse_datagram(&dgram, 0)
            .unwrap()
            .map(|m| m.unwrap().body)
            .collect();
        assert_eq!(msgs, vec![Body::Record(text)]);
    }

    /// AUDIT_REPLACE as the kernel sent it to our registered socket when a second socket tried
    /// to register (captured in the unicast live test): len 20, type 1329, payload pid 0x3039.
    #[test]
    fn replace_is_not_a_record() {
        let dgram = [
            0x14, 0, 0, 0, 0x31, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x39, 0x30, 0, 0,
        ];
        let bodies: Vec<_> = parse_datagram(&dgram, 0)
            .unwrap()
            .map(|m| m.unwrap().body)
            .collect();
        assert_eq!(bodies, vec![Body::Reply(&[0x39, 0x30, 0, 0])]);
    }

    #[test]
    fn foreign_sender_is_refused() {
        assert_eq!(
            parse_datagram(&GET_REQUEST, 4242).err(),
            Some(WireError::ForeignSender { portid: 4242 })
        );
    }

    /// An ACK (error 0) followed by EPERM (-1 = ff ff ff ff) in one datagram, each carrying the
    /// original 16-byte request header: 16 + 4 + 16 = 36 bytes each.
    #[test]
    fn ack_and_error() {
        let mut dgram = Vec::new();
        for code in [[0u8, 0, 0, 0], [0xff, 0xff, 0xff, 0xff]] {
            dgram.extend_from_slice(&[0x24, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0x39, 0x30, 0, 0]);
            dgram.extend_from_slice(&code);
            dgram.extend_from_slice(&GET_REQUEST);
        }
        let bodies: Vec<_> = parse_datagram(&dgram, 0)
            .unwrap()
            .map(|m| m.unwrap())
            .collect();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0].body, Body::Ack);
        assert_eq!(bodies[0].header.seq, 9);
        assert_eq!(bodies[0].header.pid, 12345);
        assert_eq!(bodies[1].body, Body::Error(1));
    }

    /// NLMSG_DONE closing a LIST_RULES dump: len 20 (header + int 0), padded nothing.
    #[test]
    fn done() {
        let dgram = [
            0x14, 0, 0, 0, 3, 0, 2, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let bodies: Vec<_> = parse_datagram(&dgram, 0)
            .unwrap()
            .map(|m| m.unwrap().body)
            .collect();
        assert_eq!(bodies, vec![Body::Done]);
    }

    #[test]
    fn bad_lengths() {
        let too_long = [0x40, 0, 0, 0, 0xe8, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let got: Vec<_> = parse_datagram(&too_long, 0).unwrap().collect();
        assert_eq!(
            got,
            vec![Err(WireError::BadLength {
                nlmsg_len: 64,
                available: 16
            })]
        );
        let short = [7u8, 0, 0];
        let got: Vec<_> = parse_datagram(&short, 0).unwrap().collect();
        assert_eq!(
            got,
            vec![Err(WireError::ShortHeader {
                bytes: vec![7, 0, 0]
            })]
        );
        let short_err = [0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let got: Vec<_> = parse_datagram(&short_err, 0).unwrap().collect();
        assert_eq!(got, vec![Err(WireError::ShortError { bytes: vec![0, 0] })]);
    }

    /// AUDIT_GET reply of a 6.18 kernel (HZ 250) with audit off and no daemon, decoded by
    /// hand: mask 0 (replies leave it unset), enabled 0, failure 1, pid 0, rate 0,
    /// backlog_limit 64, lost 0, backlog 0, features 0x7f, wait 15000 jiffies (60 s),
    /// wait_actual 0: 44 bytes.
    #[test]
    fn status_roundtrip() {
        #[rustfmt::skip]
        let bytes: [u8; 44] = [
            0x00, 0, 0, 0,  0, 0, 0, 0,  1, 0, 0, 0,  0, 0, 0, 0,
            0, 0, 0, 0,  0x40, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,
            0x7f, 0, 0, 0,  0x98, 0x3a, 0, 0,  0, 0, 0, 0,
        ];
        let s = Status::decode(&bytes).unwrap();
        let want = Status {
            mask: 0,
            enabled: 0,
            failure: 1,
            pid: 0,
            rate_limit: 0,
            backlog_limit: 64,
            lost: 0,
            backlog: 0,
            feature_bitmap: Some(0x7f),
            backlog_wait_time: Some(15000),
            backlog_wait_time_actual: Some(0),
        };
        assert_eq!(s, want);
        assert_eq!(s.encode(), bytes[..40].to_vec());
        // A 2.6-era 32-byte reply has no late fields.
        let old = Status::decode(&bytes[..32]).unwrap();
        assert_eq!(old.feature_bitmap, None);
        assert_eq!(old.backlog_wait_time, None);
        assert_eq!(old.backlog_limit, 64);
        assert!(matches!(
            Status::decode(&bytes[..31]),
            Err(WireError::ShortStruct { need: 32, .. })
        ));
    }

    /// `auditctl -e 1` sends mask 1, enabled 1; `-b 8192` mask 0x10, backlog_limit 0x2000.
    #[test]
    fn status_set_requests() {
        let mut want = vec![0u8; 40];
        want[0] = 1;
        want[4] = 1;
        assert_eq!(Status::set_request(StatusChange::Enabled(1)), want);
        let mut want = vec![0u8; 40];
        want[0] = 0x10;
        want[20..24].copy_from_slice(&[0, 0x20, 0, 0]);
        assert_eq!(Status::set_request(StatusChange::BacklogLimit(8192)), want);
        let mut want = vec![0u8; 40];
        want[0] = 4;
        want[12..16].copy_from_slice(&[0x39, 0x30, 0, 0]);
        assert_eq!(Status::set_request(StatusChange::Pid(12345)), want);
    }

    /// `auditctl -a always,exit -F arch=b64 -S execve,execveat -F pid!=4660 -k ak` payload:
    /// flags 4, action 2, 3 fields; mask word 1 bit 27 (59) and word 10 bit 2 (322);
    /// fields arch(11) pid(0) key(210); values 0xc000003e, 0x1234, 2; ops =, !=, =; buflen 2 "ak".
    fn exec_rule_bytes() -> Vec<u8> {
        let mut w = vec![0u32; RULE_DATA_FIXED_LEN / 4];
        w[0] = 4;
        w[1] = 2;
        w[2] = 3;
        w[3 + 1] = 0x0800_0000;
        w[3 + 10] = 0x0000_0004;
        let f = 3 + 64;
        w[f] = 11;
        w[f + 1] = 0;
        w[f + 2] = 210;
        w[f + 64] = 0xc000_003e;
        w[f + 65] = 0x1234;
        w[f + 66] = 2;
        w[f + 128] = 0x4000_0000;
        w[f + 129] = 0x3000_0000;
        w[f + 130] = 0x4000_0000;
        w[f + 192] = 2;
        let mut out: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        out.extend_from_slice(b"ak");
        out
    }

    #[test]
    fn exec_rule_roundtrip() {
        assert_eq!(RULE_DATA_FIXED_LEN, 1040);
        let rule = RuleData::exec_rule(Arch::X86_64, Some(0x1234), "ak").unwrap();
        let bytes = exec_rule_bytes();
        assert_eq!(bytes.len(), 1042);
        assert_eq!(rule.encode().unwrap(), bytes);
        assert_eq!(RuleData::decode(&bytes).unwrap(), rule);
        assert_eq!(rule.key(), Some(&b"ak"[..]));
        assert!(rule.has_key(b"ak"));
        assert!(!rule.has_key(b"a"));
        assert!(rule.watches_execve(Arch::X86_64));
        assert!(!rule.watches_execve(Arch::I386));
    }

    #[test]
    fn b32_rule_mask() {
        let rule = RuleData::exec_rule(Arch::I386, None, "k").unwrap();
        let mut mask = [0u32; 64];
        mask[0] = 1 << 11; // execve 11
        mask[11] = 1 << 6; // execveat 358 = 11 * 32 + 6
        assert_eq!(rule.mask, mask);
        assert_eq!(rule.fields.len(), 2);
        assert!(rule.watches_execve(Arch::I386));
        assert!(!rule.watches_execve(Arch::X86_64));
    }

    #[test]
    fn multiple_keys_and_no_arch_field() {
        let mut rule = RuleData::exec_rule(Arch::X86_64, None, "x").unwrap();
        rule.fields.retain(|f| f.field != AUDIT_ARCH);
        rule.fields[0].value = FieldValue::Str(b"one\x01two".to_vec());
        assert!(rule.has_key(b"two"));
        assert!(rule.has_key(b"one"));
        assert!(!rule.has_key(b"one\x01two"));
        // No arch field: the bit applies to whatever ABI has syscall 59.
        assert!(rule.watches_execve(Arch::X86_64));
        let round = RuleData::decode(&rule.encode().unwrap()).unwrap();
        assert_eq!(round, rule);
    }

    #[test]
    fn rule_decode_errors() {
        let bytes = exec_rule_bytes();
        assert!(matches!(
            RuleData::decode(&bytes[..1000]),
            Err(WireError::ShortStruct {
                what: "audit_rule_data",
                need: 1040,
                ..
            })
        ));
        // buflen says 2, only 1 byte present.
        assert_eq!(
            RuleData::decode(&bytes[..1041]),
            Err(WireError::RuleStrings { need: 2, have: 1 })
        );
        let mut many = bytes.clone();
        many[8] = 65;
        assert_eq!(
            RuleData::decode(&many),
            Err(WireError::TooManyFields { count: 65 })
        );
        // Key length 3 in values[] but buflen 2.
        let mut long = bytes;
        long[OFF_VALUES + 8] = 3;
        assert_eq!(
            RuleData::decode(&long),
            Err(WireError::RuleStrings { need: 3, have: 2 })
        );
    }

    #[test]
    fn bad_keys() {
        assert_eq!(
            RuleData::exec_rule(Arch::X86_64, None, ""),
            Err(WireError::BadKey { len: 0 })
        );
        let long = "k".repeat(257);
        assert_eq!(
            RuleData::exec_rule(Arch::X86_64, None, &long),
            Err(WireError::BadKey { len: 257 })
        );
    }
}
