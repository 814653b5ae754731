//! The bytes of the kernel's process-events connector (`NETLINK_CONNECTOR`, `CN_IDX_PROC`), as
//! pure functions: the subscription request, and datagram → [`ProcEvent`]s.
//!
//! A message is a netlink header, a `struct cn_msg` (callback id, sequence, ack, data length,
//! flags: 20 bytes) and its data; for process events the data is a `struct proc_event` (what, cpu,
//! timestamp, then the event's own fields). Nothing here touches a socket, so every layout has a
//! round-trip test with hand-checked bytes. Netlink is host byte order; the fixtures are written
//! for little-endian hosts. Only datagrams from the kernel (port id 0) are accepted.

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// `nlmsg_type` the connector uses for every message, both ways.
pub const NLMSG_DONE: u16 = 3;
/// Size of `struct cn_msg` before its data.
pub const CN_MSG_LEN: usize = 20;
/// Callback index (and the multicast group) of process events.
pub const CN_IDX_PROC: u32 = 1;
/// Callback value of process events.
pub const CN_VAL_PROC: u32 = 1;
/// `enum proc_cn_mcast_op`: start sending process events to this socket.
pub const PROC_CN_MCAST_LISTEN: u32 = 1;
/// `enum proc_cn_mcast_op`: stop.
pub const PROC_CN_MCAST_IGNORE: u32 = 2;
/// Offset of the event's own fields in `struct proc_event` (after what, cpu, timestamp_ns).
const EVENT_DATA: usize = 16;

/// `proc_event.what`: the acknowledgement of a subscription (`event_data.ack.err`).
pub const PROC_EVENT_NONE: u32 = 0;
/// `proc_event.what`: a task was created.
pub const PROC_EVENT_FORK: u32 = 0x1;
/// `proc_event.what`: a process exec'd.
pub const PROC_EVENT_EXEC: u32 = 0x2;
/// `proc_event.what`: a task exited.
pub const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// Why bytes are not a process event from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorWireError {
    /// The datagram came from a user-space port, not the kernel (port id 0).
    #[error("datagram from netlink port {portid}, not the kernel")]
    ForeignSender {
        /// The sender's port id.
        portid: u32,
    },
    /// Fewer bytes than a netlink header and a `cn_msg`, or `nlmsg_len` beyond the datagram.
    #[error("{what} needs {need} bytes, {have} there")]
    Short {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        have: usize,
    },
    /// A connector message of another callback (not process events).
    #[error("connector message for callback {idx}.{val}, not process events")]
    NotProcEvents {
        /// `cb_id.idx`.
        idx: u32,
        /// `cb_id.val`.
        val: u32,
    },
}

/// One process event, as far as the agent needs it. Pids are as the kernel's initial pid
/// namespace sees them; a `tgid` is the process, a `pid` the task (thread) within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// Task `child_pid` of process `child_tgid` was created by task `parent_pid` of process
    /// `parent_tgid`. A new process has `child_pid == child_tgid`; a new thread does not.
    Fork {
        /// The creating task.
        parent_pid: u32,
        /// Its process.
        parent_tgid: u32,
        /// The new task.
        child_pid: u32,
        /// Its process.
        child_tgid: u32,
    },
    /// Process `tgid` (task `pid`) replaced its image.
    Exec {
        /// The task.
        pid: u32,
        /// Its process.
        tgid: u32,
    },
    /// Task `pid` of process `tgid` exited; the process is gone when `pid == tgid` (the leader).
    Exit {
        /// The task.
        pid: u32,
        /// Its process.
        tgid: u32,
        /// `exit_code` as wait(2) encodes it.
        code: u32,
    },
    /// The kernel's answer to a subscription request: 0, or the errno it refused it with.
    Ack {
        /// 0 or a positive errno.
        err: u32,
    },
    /// Another kind of event (uid, gid, sid, ptrace, comm, coredump): not used.
    Other {
        /// `proc_event.what`.
        what: u32,
    },
}

impl ProcEvent {
    /// A fork that made a process (not a thread).
    pub fn is_process_fork(&self) -> bool {
        matches!(self, ProcEvent::Fork { child_pid, child_tgid, .. } if child_pid == child_tgid)
    }
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(b.try_into().ok()?))
}

fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes(b.try_into().ok()?))
}

/// The subscription request (`op` = [`PROC_CN_MCAST_LISTEN`] or [`PROC_CN_MCAST_IGNORE`]): a
/// netlink header of type NLMSG_DONE, a `cn_msg` for callback 1.1 with sequence `seq`, and the
/// 4-byte op (the form every kernel since 2.6.15 takes; 6.6+ also takes a filter, not used).
pub fn encode_subscribe(op: u32, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    for word in [CN_IDX_PROC, CN_VAL_PROC, seq, 0] {
        out.extend_from_slice(&word.to_ne_bytes());
    }
    out.extend_from_slice(&4u16.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&op.to_ne_bytes());
    out
}

/// Iterator over the events of one datagram; see [`parse_datagram`].
#[derive(Debug, Clone)]
pub struct Events<'a> {
    rest: &'a [u8],
}

impl Iterator for Events<'_> {
    type Item = Result<ProcEvent, ConnectorWireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.iter().all(|&b| b == 0) {
            // Empty, or padding after the last message.
            self.rest = &[];
            return None;
        }
        let rest = self.rest;
        let short = |what, need| ConnectorWireError::Short {
            what,
            need,
            have: rest.len(),
        };
        let Some(len) = u32_at(rest, 0).map(|l| l as usize) else {
            self.rest = &[];
            return Some(Err(short("netlink header", NLMSG_HDRLEN)));
        };
        if len < NLMSG_HDRLEN + CN_MSG_LEN || len > rest.len() {
            self.rest = &[];
            return Some(Err(short(
                "connector message",
                len.max(NLMSG_HDRLEN + CN_MSG_LEN),
            )));
        }
        let msg = rest.get(..len).unwrap_or_default();
        self.rest = rest.get((len + 3) & !3..).unwrap_or_default();
        let cn = msg.get(NLMSG_HDRLEN..).unwrap_or_default();
        let (idx, val) = (u32_at(cn, 0).unwrap_or(0), u32_at(cn, 4).unwrap_or(0));
        if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC) {
            return Some(Err(ConnectorWireError::NotProcEvents { idx, val }));
        }
        let data_len = usize::from(u16_at(cn, 16).unwrap_or(0));
        let data = cn
            .get(CN_MSG_LEN..)
            .unwrap_or_default()
            .get(..data_len)
            .unwrap_or_default();
        Some(decode_event(data).ok_or(ConnectorWireError::Short {
            what: "proc_event",
            need: EVENT_DATA + 8,
            have: data.len(),
        }))
    }
}

/// A `struct proc_event`; `None` when it is too short for its kind.
fn decode_event(data: &[u8]) -> Option<ProcEvent> {
    let what = u32_at(data, 0)?;
    let field = |i: usize| u32_at(data, EVENT_DATA + 4 * i);
    Some(match what {
        PROC_EVENT_NONE => ProcEvent::Ack { err: field(0)? },
        PROC_EVENT_FORK => ProcEvent::Fork {
            parent_pid: field(0)?,
            parent_tgid: field(1)?,
            child_pid: field(2)?,
            child_tgid: field(3)?,
        },
        PROC_EVENT_EXEC => ProcEvent::Exec {
            pid: field(0)?,
            tgid: field(1)?,
        },
        PROC_EVENT_EXIT => ProcEvent::Exit {
            pid: field(0)?,
            tgid: field(1)?,
            code: field(2)?,
        },
        other => ProcEvent::Other { what: other },
    })
}

/// Splits one received datagram (exactly the bytes recv returned) into process events. A
/// datagram whose sender is not the kernel (port id 0) is refused whole.
pub fn parse_datagram(
    datagram: &[u8],
    sender_portid: u32,
) -> Result<Events<'_>, ConnectorWireError> {
    if sender_portid != 0 {
        return Err(ConnectorWireError::ForeignSender {
            portid: sender_portid,
        });
    }
    Ok(Events { rest: datagram })
}

/// Encodes an event as the kernel sends it (header, `cn_msg`, 40-byte `proc_event`): for tests
/// and fixtures.
pub fn encode_event(event: &ProcEvent, seq: u32) -> Vec<u8> {
    let (what, fields): (u32, [u32; 6]) = match *event {
        ProcEvent::Ack { err } => (PROC_EVENT_NONE, [err, 0, 0, 0, 0, 0]),
        ProcEvent::Fork {
            parent_pid,
            parent_tgid,
            child_pid,
            child_tgid,
        } => (
            PROC_EVENT_FORK,
            [parent_pid, parent_tgid, child_pid, child_tgid, 0, 0],
        ),
        ProcEvent::Exec { pid, tgid } => (PROC_EVENT_EXEC, [pid, tgid, 0, 0, 0, 0]),
        ProcEvent::Exit { pid, tgid, code } => (PROC_EVENT_EXIT, [pid, tgid, code, 17, 0, 0]),
        ProcEvent::Other { what } => (what, [0; 6]),
    };
    let data_len = EVENT_DATA + 24;
    let len = NLMSG_HDRLEN + CN_MSG_LEN + data_len;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    for word in [CN_IDX_PROC, CN_VAL_PROC, seq, 0] {
        out.extend_from_slice(&word.to_ne_bytes());
    }
    out.extend_from_slice(&(data_len as u16).to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&what.to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes()); // cpu
    out.extend_from_slice(&0u64.to_ne_bytes()); // timestamp_ns
    for f in fields {
        out.extend_from_slice(&f.to_ne_bytes());
    }
    out
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    /// `PROC_CN_MCAST_LISTEN` laid out by hand from linux/connector.h and linux/cn_proc.h:
    /// len 40, type 3 (NLMSG_DONE), flags 0, seq 7, pid 0; cn_msg id 1.1, seq 7, ack 0, len 4,
    /// flags 0; op 1. (The live test shows the kernel takes it.)
    #[test]
    fn subscribe_request_bytes() {
        #[rustfmt::skip]
        let want: [u8; 40] = [
            40, 0, 0, 0,  3, 0,  0, 0,  7, 0, 0, 0,  0, 0, 0, 0,
            1, 0, 0, 0,  1, 0, 0, 0,  7, 0, 0, 0,  0, 0, 0, 0,  4, 0,  0, 0,
            1, 0, 0, 0,
        ];
        assert_eq!(encode_subscribe(PROC_CN_MCAST_LISTEN, 7), want);
        assert_eq!(encode_subscribe(PROC_CN_MCAST_IGNORE, 7)[36], 2);
    }

    /// A fork as Linux 6.18 sent it (captured): 16 + 20 + 40 = 76 bytes; netlink and connector
    /// sequence 1, `cn_msg.len` 40; what 1 (fork), cpu 1, timestamp 0x0560_31ad_38c7 ns; parent
    /// task 18910 (0x49de) of process 18909 (a test thread forked), child 18912/18912 (0x49e0).
    #[test]
    fn fork_event_as_the_kernel_sent_it() {
        #[rustfmt::skip]
        let bytes: [u8; 76] = [
            76, 0, 0, 0,  3, 0,  0, 0,  1, 0, 0, 0,  0, 0, 0, 0,
            1, 0, 0, 0,  1, 0, 0, 0,  1, 0, 0, 0,  0, 0, 0, 0,  40, 0,  0, 0,
            1, 0, 0, 0,  1, 0, 0, 0,  199, 56, 173, 49, 96, 5, 0, 0,
            222, 73, 0, 0,  221, 73, 0, 0,  224, 73, 0, 0,  224, 73, 0, 0,
            0, 0, 0, 0,  0, 0, 0, 0,
        ];
        let fork = ProcEvent::Fork {
            parent_pid: 18910,
            parent_tgid: 18909,
            child_pid: 18912,
            child_tgid: 18912,
        };
        let got: Vec<_> = parse_datagram(&bytes, 0).expect("kernel").collect();
        assert_eq!(got, vec![Ok(fork)]);
        assert!(fork.is_process_fork());
        // The encoder writes the same layout (cpu 1, timestamp 0).
        let mut zeroed = bytes;
        zeroed[44..52].fill(0);
        assert_eq!(encode_event(&fork, 1), zeroed);
    }

    #[test]
    fn every_kind_round_trips_and_threads_are_told_apart() {
        let events = [
            ProcEvent::Ack { err: 1 },
            ProcEvent::Fork {
                parent_pid: 5,
                parent_tgid: 5,
                child_pid: 6,
                child_tgid: 5,
            },
            ProcEvent::Exec { pid: 7, tgid: 7 },
            ProcEvent::Exit {
                pid: 8,
                tgid: 8,
                code: 256,
            },
            ProcEvent::Other { what: 0x200 },
        ];
        let mut dgram = Vec::new();
        for (i, e) in events.iter().enumerate() {
            dgram.extend(encode_event(e, i as u32));
        }
        let got: Vec<ProcEvent> = parse_datagram(&dgram, 0)
            .expect("kernel")
            .map(|e| e.expect("event"))
            .collect();
        assert_eq!(got, events);
        assert!(!got[1].is_process_fork(), "a thread: child pid != tgid");
    }

    #[test]
    fn foreign_short_and_other_callbacks_are_refused() {
        let ev = encode_event(&ProcEvent::Exec { pid: 1, tgid: 1 }, 0);
        assert_eq!(
            parse_datagram(&ev, 77).err(),
            Some(ConnectorWireError::ForeignSender { portid: 77 })
        );
        let cut: Vec<_> = parse_datagram(&ev[..30], 0).expect("kernel").collect();
        assert!(
            matches!(cut[..], [Err(ConnectorWireError::Short { .. })]),
            "{cut:?}"
        );
        let mut short_event = ev.clone();
        short_event[32] = 8; // cn_msg.len: 8 bytes of proc_event only
        let got: Vec<_> = parse_datagram(&short_event, 0).expect("kernel").collect();
        assert!(
            matches!(
                got[..],
                [Err(ConnectorWireError::Short {
                    what: "proc_event",
                    ..
                })]
            ),
            "{got:?}"
        );
        let mut other = ev;
        other[16] = 4; // cb_id.idx 4 (another connector user)
        let got: Vec<_> = parse_datagram(&other, 0).expect("kernel").collect();
        assert_eq!(
            got,
            vec![Err(ConnectorWireError::NotProcEvents { idx: 4, val: 1 })]
        );
        assert_eq!(parse_datagram(&[0; 8], 0).expect("kernel").count(), 0);
    }
}
