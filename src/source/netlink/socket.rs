//! The NETLINK_AUDIT socket: control requests (status, enable, daemon pid, backlog, rules) and
//! receiving record datagrams as [`Frame`]s.
//!
//! One type serves both live modes: a `multicast()` socket joins the read-only log group
//! (kernel ≥ 3.16, CAP_AUDIT_READ); a `control()` socket does requests and, once registered
//! with `set_pid`, is also the unicast record stream. Records that arrive while a request waits
//! for its reply are kept and handed out by the next `recv_frames`. Byte layouts live in
//! [`super::wire`]; this file only moves datagrams and names the operation when one fails.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_AUDIT, Socket, SocketAddr};
use nix::libc;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use nix::sys::time::TimeVal;

use super::wire::{
    self, Body, RuleData, Status, StatusChange, WireError, AUDIT_ADD_RULE, AUDIT_DEL_RULE,
    AUDIT_GET, AUDIT_LIST_RULES, AUDIT_REPLACE, AUDIT_SET, NLM_F_ACK, NLM_F_REQUEST,
};
use crate::source::Frame;

/// Multicast group of the read-only audit log (`AUDIT_NLGRP_READLOG`).
pub const AUDIT_NLGRP_READLOG: u32 = 1;
/// Receive buffer asked for on multicast sockets: slow readers lose records (ENOBUFS).
pub const DEFAULT_MULTICAST_RCVBUF: usize = 8 << 20;
/// Receive timeout of multicast sockets, so a reader thread notices shutdown.
pub const DEFAULT_RECV_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a control request waits for the kernel's reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A receive buffer size that holds any audit datagram (records are at most 8970 bytes).
pub const RECV_BUFFER_LEN: usize = 16 * 1024;
/// Buffer for control replies: a rule with many path fields can exceed a record.
const CONTROL_BUFFER_LEN: usize = 64 * 1024;
/// Oldest kernel whose multicast group delivers records.
pub const MULTICAST_MIN_KERNEL: (u32, u32, u32) = (3, 16, 0);

/// Why a netlink operation failed. Messages hold their cause's, so there is no `source()` (a
/// chain would print it twice).
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A system call failed; `op` names what we were doing.
    #[error("audit netlink: {op}: {error}")]
    Io { op: &'static str, error: io::Error },
    /// The kernel refused `request` with this positive errno.
    #[error("audit netlink: kernel refused {request}: {}", io::Error::from_raw_os_error(*.errno))]
    Kernel { request: &'static str, errno: i32 },
    /// AUDIT_SET pid failed with EEXIST: another daemon holds the unicast stream.
    #[error("another audit daemon is registered (pid {pid})")]
    DaemonRegistered { pid: u32 },
    /// No reply to `request` within [`REQUEST_TIMEOUT`].
    #[error("audit netlink: no reply to {request} within {REQUEST_TIMEOUT:?}")]
    Timeout { request: &'static str },
    /// The socket's receive queue overflowed (ENOBUFS): records were lost. Count and go on.
    #[error("audit netlink: receive queue overflowed (ENOBUFS), records lost")]
    Overrun,
    /// A datagram larger than the buffer given to recv; its tail was lost. Count and go on.
    #[error("audit netlink: {len}-byte datagram truncated to the {capacity}-byte buffer")]
    Truncated { len: usize, capacity: usize },
    /// Bytes that are not a valid audit netlink message (or came from a user-space port).
    #[error("audit netlink: {context}: {error}")]
    Wire {
        context: &'static str,
        error: WireError,
    },
    /// /proc/sys/kernel/osrelease did not start with a version number.
    #[error("cannot read a kernel version from {release:?}")]
    KernelRelease { release: String },
}

impl NetlinkError {
    /// True for errors about one datagram, after which the stream can still be read:
    /// the caller counts them and keeps receiving.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            NetlinkError::Overrun | NetlinkError::Truncated { .. } | NetlinkError::Wire { .. }
        )
    }

    fn io(op: &'static str) -> impl FnOnce(io::Error) -> NetlinkError {
        move |error| NetlinkError::Io { op, error }
    }

    fn nix(op: &'static str) -> impl FnOnce(nix::Error) -> NetlinkError {
        move |e| NetlinkError::Io {
            op,
            error: io::Error::from(e),
        }
    }
}

/// One received datagram, before decoding.
enum Received {
    /// `len` bytes (possibly more than the buffer: truncated) from port `sender`.
    Datagram { len: usize, sender: u32 },
    /// The receive timeout elapsed or a signal interrupted the call.
    Nothing,
}

/// A NETLINK_AUDIT socket; see the module docs for the two modes.
pub struct AuditSocket {
    socket: Socket,
    portid: u32,
    seq: u32,
    /// Records that arrived while a request waited for its reply.
    pending: VecDeque<Frame>,
    /// Pids named by AUDIT_REPLACE messages not yet taken (at most [`REPLACE_KEPT`]).
    replace: Vec<u32>,
}

/// Most AUDIT_REPLACE pids kept between two [`AuditSocket::take_replace_requests`].
const REPLACE_KEPT: usize = 16;

impl fmt::Debug for AuditSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSocket")
            .field("portid", &self.portid)
            .field("seq", &self.seq)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl AuditSocket {
    fn open() -> Result<AuditSocket, NetlinkError> {
        let mut socket =
            Socket::new(NETLINK_AUDIT).map_err(NetlinkError::io("open NETLINK_AUDIT socket"))?;
        let addr = socket
            .bind_auto()
            .map_err(NetlinkError::io("bind NETLINK_AUDIT socket"))?;
        Ok(AuditSocket {
            socket,
            portid: addr.port_number(),
            seq: 0,
            pending: VecDeque::new(),
            replace: Vec::new(),
        })
    }

    /// A request/response socket (also the unicast record stream after [`Self::set_pid`]).
    /// Its receive timeout is [`DEFAULT_RECV_TIMEOUT`].
    pub fn control() -> Result<AuditSocket, NetlinkError> {
        let s = AuditSocket::open()?;
        s.set_recv_timeout(Some(DEFAULT_RECV_TIMEOUT))?;
        Ok(s)
    }

    /// A socket joined to the read-only log group, with a [`DEFAULT_MULTICAST_RCVBUF`] receive
    /// buffer (forced past rmem_max when we are root) and a [`DEFAULT_RECV_TIMEOUT`] timeout.
    /// Kernels before 3.16 accept the join and deliver nothing: check [`multicast_supported`].
    pub fn multicast() -> Result<AuditSocket, NetlinkError> {
        let s = AuditSocket::open()?;
        s.set_receive_buffer(DEFAULT_MULTICAST_RCVBUF)?;
        s.set_recv_timeout(Some(DEFAULT_RECV_TIMEOUT))?;
        s.socket
            .add_membership(AUDIT_NLGRP_READLOG)
            .map_err(NetlinkError::io(
                "join audit multicast group (needs CAP_AUDIT_READ)",
            ))?;
        Ok(s)
    }

    /// Our netlink port id (the kernel assigned it at bind).
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// Asks for a `bytes` receive buffer, with SO_RCVBUFFORCE when allowed (root) and SO_RCVBUF
    /// otherwise; returns the size the kernel granted (it reports double the request).
    pub fn set_receive_buffer(&self, bytes: usize) -> Result<usize, NetlinkError> {
        if setsockopt(&self.socket, sockopt::RcvBufForce, &bytes).is_err() {
            setsockopt(&self.socket, sockopt::RcvBuf, &bytes)
                .map_err(NetlinkError::nix("set SO_RCVBUF"))?;
        }
        getsockopt(&self.socket, sockopt::RcvBuf).map_err(NetlinkError::nix("get SO_RCVBUF"))
    }

    /// Sets how long one receive blocks (`None`: forever).
    pub fn set_recv_timeout(&self, timeout: Option<Duration>) -> Result<(), NetlinkError> {
        let tv = match timeout {
            Some(d) => {
                let secs = libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX);
                // A zero timeval means "block forever": round a zero duration up to 1 µs.
                let micros = libc::suseconds_t::from(d.subsec_micros().max(u32::from(secs == 0)));
                TimeVal::new(secs, micros)
            }
            None => TimeVal::new(0, 0),
        };
        setsockopt(&self.socket, sockopt::ReceiveTimeout, &tv)
            .map_err(NetlinkError::nix("set SO_RCVTIMEO"))
    }

    /// AUDIT_GET: the kernel's audit status.
    pub fn status(&mut self) -> Result<Status, NetlinkError> {
        let mut status = None;
        self.transact(
            "AUDIT_GET",
            AUDIT_GET,
            NLM_F_REQUEST,
            &[],
            |msg_type, payload| {
                if msg_type != AUDIT_GET {
                    return Ok(Step::Continue);
                }
                let s = Status::decode(payload).map_err(|error| NetlinkError::Wire {
                    context: "AUDIT_GET reply",
                    error,
                })?;
                status = Some(s);
                Ok(Step::Finished)
            },
        )?;
        status.ok_or(NetlinkError::Timeout {
            request: "AUDIT_GET",
        })
    }

    /// AUDIT_SET enabled: turn auditing on or off (fails with EPERM when locked, enabled = 2).
    pub fn set_enabled(&mut self, enabled: bool) -> Result<(), NetlinkError> {
        let payload = Status::set_request(StatusChange::Enabled(u32::from(enabled)));
        self.transact_ack("AUDIT_SET enabled", AUDIT_SET, &payload)
    }

    /// AUDIT_SET pid: register this socket as the audit daemon (`pid` must be our own process
    /// id) or unregister with 0. Refuses to take over a live daemon: from kernel 4.11 that is
    /// EEXIST, reported as [`NetlinkError::DaemonRegistered`] with the holder's pid.
    pub fn set_pid(&mut self, pid: u32) -> Result<(), NetlinkError> {
        let payload = Status::set_request(StatusChange::Pid(pid));
        match self.transact_ack("AUDIT_SET pid", AUDIT_SET, &payload) {
            Err(NetlinkError::Kernel {
                errno: libc::EEXIST,
                ..
            }) => {
                let holder = self.status().map(|s| s.pid).unwrap_or(0);
                Err(NetlinkError::DaemonRegistered { pid: holder })
            }
            other => other,
        }
    }

    /// AUDIT_SET backlog_limit: how many records the kernel queues for the daemon.
    pub fn set_backlog_limit(&mut self, limit: u32) -> Result<(), NetlinkError> {
        let payload = Status::set_request(StatusChange::BacklogLimit(limit));
        self.transact_ack("AUDIT_SET backlog_limit", AUDIT_SET, &payload)
    }

    /// AUDIT_LIST_RULES: every rule in the kernel, in list order.
    pub fn list_rules(&mut self) -> Result<Vec<RuleData>, NetlinkError> {
        let mut rules = Vec::new();
        self.transact(
            "AUDIT_LIST_RULES",
            AUDIT_LIST_RULES,
            NLM_F_REQUEST,
            &[],
            |msg_type, payload| {
                if msg_type == AUDIT_LIST_RULES {
                    let rule = RuleData::decode(payload).map_err(|error| NetlinkError::Wire {
                        context: "AUDIT_LIST_RULES reply",
                        error,
                    })?;
                    rules.push(rule);
                }
                Ok(Step::Continue)
            },
        )?;
        Ok(rules)
    }

    /// AUDIT_ADD_RULE (EEXIST when an identical rule is already loaded).
    pub fn add_rule(&mut self, rule: &RuleData) -> Result<(), NetlinkError> {
        let payload = rule.encode().map_err(|error| NetlinkError::Wire {
            context: "encode AUDIT_ADD_RULE",
            error,
        })?;
        self.transact_ack("AUDIT_ADD_RULE", AUDIT_ADD_RULE, &payload)
    }

    /// AUDIT_DEL_RULE: deletes the rule equal to `rule` (ENOENT when there is none).
    pub fn del_rule(&mut self, rule: &RuleData) -> Result<(), NetlinkError> {
        let payload = rule.encode().map_err(|error| NetlinkError::Wire {
            context: "encode AUDIT_DEL_RULE",
            error,
        })?;
        self.transact_ack("AUDIT_DEL_RULE", AUDIT_DEL_RULE, &payload)
    }

    /// Receives one datagram into `buf` (use [`RECV_BUFFER_LEN`]) and appends its records to
    /// `out` as [`Frame::Netlink`]; returns how many were appended. `Ok(0)` when the receive
    /// timeout elapsed or the datagram held no record (a stray control reply). Records held
    /// back during a request come first, without a receive. Errors for which
    /// [`NetlinkError::is_transient`] holds (ENOBUFS, truncation, bad bytes, a non-kernel
    /// sender) concern one datagram: count them and call again.
    pub fn recv_frames(
        &mut self,
        buf: &mut [u8],
        out: &mut Vec<Frame>,
    ) -> Result<usize, NetlinkError> {
        if !self.pending.is_empty() {
            let n = self.pending.len();
            out.extend(self.pending.drain(..));
            return Ok(n);
        }
        let (len, sender) = match self.recv(buf, "receive audit records")? {
            Received::Nothing => return Ok(0),
            Received::Datagram { len, sender } => (len, sender),
        };
        let datagram = checked_datagram(buf, len)?;
        let before = out.len();
        let messages =
            wire::parse_datagram(datagram, sender).map_err(|error| NetlinkError::Wire {
                context: "audit record datagram",
                error,
            })?;
        for msg in messages {
            let msg = msg.map_err(|error| NetlinkError::Wire {
                context: "audit record datagram",
                error,
            })?;
            match msg.body {
                Body::Record(text) => out.push(Frame::Netlink {
                    msg_type: msg.header.msg_type,
                    payload: text.to_vec(),
                }),
                Body::Reply(payload) if msg.header.msg_type == AUDIT_REPLACE => {
                    self.note_replace(payload)
                }
                _ => {}
            }
        }
        Ok(out.len() - before)
    }

    /// Pids of processes that asked to become the audit daemon while this socket was the
    /// registered one (AUDIT_REPLACE, kernel ≥ 4.11: the kernel refused them with EEXIST), in
    /// arrival order since the last call.
    pub fn take_replace_requests(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.replace)
    }

    fn note_replace(&mut self, payload: &[u8]) {
        let pid = payload
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_ne_bytes);
        if self.replace.len() < REPLACE_KEPT {
            self.replace.push(pid);
        }
    }

    fn recv(&mut self, buf: &mut [u8], op: &'static str) -> Result<Received, NetlinkError> {
        match self.socket.recv_from(&mut &mut buf[..], libc::MSG_TRUNC) {
            Ok((len, addr)) => Ok(Received::Datagram {
                len,
                sender: addr.port_number(),
            }),
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOBUFS) => Err(NetlinkError::Overrun),
                Some(libc::EAGAIN | libc::EINTR) => Ok(Received::Nothing),
                _ => Err(NetlinkError::Io { op, error: e }),
            },
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn transact_ack(
        &mut self,
        request: &'static str,
        msg_type: u16,
        payload: &[u8],
    ) -> Result<(), NetlinkError> {
        self.transact(
            request,
            msg_type,
            NLM_F_REQUEST | NLM_F_ACK,
            payload,
            |_, _| Ok(Step::Continue),
        )
    }

    /// Sends one request and reads until it is answered: an ACK or NLMSG_DONE ends it, an
    /// error code fails it, other replies with our sequence number go to `on_reply`.
    /// Records (sequence 0) met on the way are kept for `recv_frames`.
    fn transact(
        &mut self,
        request: &'static str,
        msg_type: u16,
        flags: u16,
        payload: &[u8],
        mut on_reply: impl FnMut(u16, &[u8]) -> Result<Step, NetlinkError>,
    ) -> Result<(), NetlinkError> {
        let seq = self.next_seq();
        let bytes = wire::encode_request(msg_type, flags, seq, payload);
        self.socket
            .send_to(&bytes, &SocketAddr::new(0, 0), 0)
            .map_err(|error| NetlinkError::Io { op: request, error })?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut buf = vec![0u8; CONTROL_BUFFER_LEN];
        loop {
            if Instant::now() >= deadline {
                return Err(NetlinkError::Timeout { request });
            }
            let (len, sender) = match self.recv(&mut buf, request) {
                Ok(Received::Datagram { len, sender }) => (len, sender),
                Ok(Received::Nothing) | Err(NetlinkError::Overrun) => continue,
                Err(e) => return Err(e),
            };
            // A truncated reply would silently lose a rule: fail the request instead.
            let datagram = checked_datagram(&buf, len)?;
            // Not from the kernel: not an answer to us.
            let Ok(messages) = wire::parse_datagram(datagram, sender) else {
                continue;
            };
            for msg in messages {
                let msg = msg.map_err(|error| NetlinkError::Wire {
                    context: request,
                    error,
                })?;
                if let Body::Record(text) = msg.body {
                    self.pending.push_back(Frame::Netlink {
                        msg_type: msg.header.msg_type,
                        payload: text.to_vec(),
                    });
                    continue;
                }
                if let (Body::Reply(p), AUDIT_REPLACE) = (msg.body, msg.header.msg_type) {
                    self.note_replace(p);
                    continue;
                }
                if msg.header.seq != seq {
                    continue;
                }
                match msg.body {
                    Body::Ack | Body::Done => return Ok(()),
                    Body::Error(errno) => return Err(NetlinkError::Kernel { request, errno }),
                    Body::Reply(payload) => {
                        if on_reply(msg.header.msg_type, payload)? == Step::Finished {
                            return Ok(());
                        }
                    }
                    Body::Record(_) | Body::Noop => {}
                }
            }
        }
    }
}

/// What a reply handler wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Continue,
    Finished,
}

fn checked_datagram(buf: &[u8], len: usize) -> Result<&[u8], NetlinkError> {
    buf.get(..len).ok_or(NetlinkError::Truncated {
        len,
        capacity: buf.len(),
    })
}

/// Reads the running kernel's version from /proc/sys/kernel/osrelease (what `uname -r` shows).
pub fn kernel_version() -> Result<(u32, u32, u32), NetlinkError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_err(NetlinkError::io("read /proc/sys/kernel/osrelease"))?;
    parse_kernel_release(&release).ok_or_else(|| NetlinkError::KernelRelease {
        release: release.trim().to_string(),
    })
}

/// `"6.18.44-fc-v657"` → (6, 18, 44); `"3.10.0-1160.el7.x86_64"` → (3, 10, 0); `"4.4"` →
/// (4, 4, 0). Each part is the digits it starts with; major and minor must be present.
pub fn parse_kernel_release(release: &str) -> Option<(u32, u32, u32)> {
    let mut parts = release.trim().splitn(3, '.');
    let mut num = |required: bool| -> Option<u32> {
        let digits: String = match parts.next() {
            Some(p) => p.chars().take_while(char::is_ascii_digit).collect(),
            None if required => return None,
            None => return Some(0),
        };
        match digits.parse() {
            Ok(n) => Some(n),
            Err(_) if !required => Some(0),
            Err(_) => None,
        }
    };
    Some((num(true)?, num(true)?, num(false)?))
}

/// Whether a kernel of this version delivers records to the multicast group (3.16+).
pub fn multicast_supported(version: (u32, u32, u32)) -> bool {
    version >= MULTICAST_MIN_KERNEL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_release_parsing() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v657\n"), Some((6, 18, 44)));
        assert_eq!(
            parse_kernel_release("3.10.0-1160.el7.x86_64"),
            Some((3, 10, 0))
        );
        assert_eq!(parse_kernel_release("4.4"), Some((4, 4, 0)));
        assert_eq!(parse_kernel_release("5.15-rc1"), Some((5, 15, 0)));
        assert_eq!(parse_kernel_release("linux"), None);
        assert_eq!(parse_kernel_release("6"), None);
    }

    #[test]
    fn multicast_threshold() {
        assert!(!multicast_supported((3, 10, 0)));
        assert!(!multicast_supported((3, 15, 99)));
        assert!(multicast_supported((3, 16, 0)));
        assert!(multicast_supported((6, 18, 44)));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            NetlinkError::DaemonRegistered { pid: 812 }.to_string(),
            "another audit daemon is registered (pid 812)"
        );
        assert_eq!(
            NetlinkError::Kernel {
                request: "AUDIT_ADD_RULE",
                errno: libc::EEXIST
            }
            .to_string(),
            "audit netlink: kernel refused AUDIT_ADD_RULE: File exists (os error 17)"
        );
        assert!(NetlinkError::Overrun.is_transient());
        assert!(!NetlinkError::Timeout {
            request: "AUDIT_GET"
        }
        .is_transient());
    }
}
