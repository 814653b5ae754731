//! Process events from the kernel's proc connector (netlink `NETLINK_CONNECTOR`, group
//! `CN_IDX_PROC`; Linux ≥ 2.6.15, CONFIG_PROC_EVENTS, CAP_NET_ADMIN): every fork, exec and exit on
//! the host, as it happens. Audit records only show execs, so a subshell (a fork that never
//! execs) is invisible to them; these events let the process table know it, and forget exited
//! processes at once.
//!
//! [`wire`] owns the bytes; [`ProcConnector`] the socket (subscription, the kernel's ack,
//! reception); [`spawn`] a reader thread that hands events to the worker over a bounded channel,
//! counting what it loses (socket overruns, a full channel). The socket comes from netlink-sys,
//! as the audit socket does; no crate for the connector is used (those on crates.io either
//! call libc unsafely in their own code or need a newer Rust than this crate's 1.75).

pub mod wire;

use crossbeam_channel::{Sender, TrySendError};
use netlink_sys::{protocols::NETLINK_CONNECTOR, Socket, SocketAddr};
use nix::libc;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
pub use wire::ProcEvent;
use wire::{ConnectorWireError, CN_IDX_PROC, PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN};

/// Receive buffer asked for: a fork storm must not overrun it while the reader is scheduled out.
pub const RCVBUF: usize = 4 << 20;
/// How long a receive blocks, so the reader thread notices a stop.
const RECV_TIMEOUT: Duration = Duration::from_millis(200);
/// How long the kernel has to acknowledge the subscription.
const ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// A receive buffer that holds any connector datagram (one event is 76 bytes).
pub const RECV_BUFFER_LEN: usize = 16 * 1024;

/// Why the connector cannot be used, or one receive failed. Messages hold their cause's, so
/// there is no `source()` (a chain would print it twice).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A system call failed; `op` names what was being done.
    #[error("proc connector: {op}: {error}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The failure.
        error: io::Error,
    },
    /// The kernel refused the subscription with this errno (EPERM: no CAP_NET_ADMIN in the
    /// initial user namespace).
    #[error(
        "proc connector: the kernel refused the subscription: {}",
        io::Error::from_raw_os_error(*.errno as i32)
    )]
    Refused {
        /// The errno.
        errno: u32,
    },
    /// No acknowledgement within a second: the kernel has no process events (CONFIG_PROC_EVENTS).
    #[error(
        "proc connector: no answer from the kernel within {ACK_TIMEOUT:?} (no CONFIG_PROC_EVENTS?)"
    )]
    NoAck,
    /// The socket's receive queue overflowed (ENOBUFS): events were lost. Count and go on.
    #[error("proc connector: receive queue overflowed (ENOBUFS)")]
    Overrun,
    /// Bytes that are not process events from the kernel. Count and go on.
    #[error("proc connector: {0}")]
    Wire(ConnectorWireError),
}

impl ConnectorError {
    /// True for errors about one datagram, after which reception goes on.
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectorError::Overrun | ConnectorError::Wire(_))
    }
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ConnectorError {
    move |error| ConnectorError::Io { op, error }
}

fn nix_err(op: &'static str) -> impl FnOnce(nix::Error) -> ConnectorError {
    move |e| ConnectorError::Io {
        op,
        error: io::Error::from(e),
    }
}

/// A socket subscribed to the kernel's process events.
pub struct ProcConnector {
    socket: Socket,
    seq: u32,
}

impl fmt::Debug for ProcConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcConnector")
            .field("seq", &self.seq)
            .finish()
    }
}

impl ProcConnector {
    /// Opens the socket, joins `CN_IDX_PROC`, asks for every event and waits for the kernel's
    /// acknowledgement, so an unusable connector is known at start, with the reason.
    pub fn open() -> Result<ProcConnector, ConnectorError> {
        let mut socket =
            Socket::new(NETLINK_CONNECTOR).map_err(io_err("open NETLINK_CONNECTOR socket"))?;
        socket
            .bind(&SocketAddr::new(0, CN_IDX_PROC))
            .map_err(io_err("bind to the process-events group"))?;
        if setsockopt(&socket, sockopt::RcvBufForce, &RCVBUF).is_err() {
            setsockopt(&socket, sockopt::RcvBuf, &RCVBUF).map_err(nix_err("set SO_RCVBUF"))?;
        }
        let tv = TimeVal::new(0, RECV_TIMEOUT.as_micros() as libc::suseconds_t);
        setsockopt(&socket, sockopt::ReceiveTimeout, &tv).map_err(nix_err("set SO_RCVTIMEO"))?;
        let mut conn = ProcConnector { socket, seq: 0 };
        conn.send(PROC_CN_MCAST_LISTEN)?;
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        let mut events = Vec::new();
        while Instant::now() < deadline {
            events.clear();
            match conn.recv_events(&mut buf, &mut events) {
                Ok(_) => {}
                Err(e) if e.is_transient() => continue,
                Err(e) => return Err(e),
            }
            for ev in &events {
                match ev {
                    ProcEvent::Ack { err: 0 } => return Ok(conn),
                    ProcEvent::Ack { err } => return Err(ConnectorError::Refused { errno: *err }),
                    _ => {}
                }
            }
        }
        Err(ConnectorError::NoAck)
    }

    fn send(&mut self, op: u32) -> Result<(), ConnectorError> {
        self.seq = self.seq.wrapping_add(1);
        let msg = wire::encode_subscribe(op, self.seq);
        self.socket
            .send_to(&msg, &SocketAddr::new(0, 0), 0)
            .map_err(io_err("send the subscription"))?;
        Ok(())
    }

    /// Receives one datagram into `buf` (use [`RECV_BUFFER_LEN`]) and appends its events to
    /// `out`; `Ok(0)` when the receive timeout passed. Errors for which
    /// [`ConnectorError::is_transient`] holds concern one datagram: count them and call again.
    pub fn recv_events(
        &mut self,
        buf: &mut [u8],
        out: &mut Vec<ProcEvent>,
    ) -> Result<usize, ConnectorError> {
        let (len, addr) = match self.socket.recv_from(&mut &mut buf[..], 0) {
            Ok(x) => x,
            Err(e) => {
                return match e.raw_os_error() {
                    Some(libc::ENOBUFS) => Err(ConnectorError::Overrun),
                    Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                    _ => Err(ConnectorError::Io {
                        op: "receive process events",
                        error: e,
                    }),
                };
            }
        };
        let datagram = buf.get(..len).unwrap_or(buf);
        let before = out.len();
        for ev in
            wire::parse_datagram(datagram, addr.port_number()).map_err(ConnectorError::Wire)?
        {
            out.push(ev.map_err(ConnectorError::Wire)?);
        }
        Ok(out.len() - before)
    }
}

impl Drop for ProcConnector {
    /// Unsubscribes, so the kernel stops preparing events for nobody.
    fn drop(&mut self) {
        let _ = self.send(PROC_CN_MCAST_IGNORE);
    }
}

/// Counters of the connector's reader thread.
#[derive(Debug, Default)]
pub struct ConnectorStats {
    /// Process forks received (threads not counted).
    pub forks: AtomicU64,
    /// Execs received.
    pub execs: AtomicU64,
    /// Process exits received (threads not counted).
    pub exits: AtomicU64,
    /// Socket overruns (ENOBUFS): events lost.
    pub overruns: AtomicU64,
    /// Datagrams that were not process events from the kernel.
    pub bad_datagrams: AtomicU64,
    /// Events dropped because the worker's channel was full.
    pub channel_drops: AtomicU64,
}

impl ConnectorStats {
    /// Events lost before they reached the worker (overruns count as one each: the kernel does
    /// not say how many).
    pub fn lost(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed) + self.channel_drops.load(Ordering::Relaxed)
    }
}

/// The running reader thread.
pub struct ConnectorReader {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<ConnectorStats>,
}

impl ConnectorReader {
    /// Stops the thread (it notices within the receive timeout) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts a thread receiving from `conn` and sending the events the process table needs
/// (process forks, execs, process exits) to `tx`, one datagram's worth at a time, at once: the
/// worker applies them before the audit records that follow. A full channel drops (counted).
pub fn spawn(mut conn: ProcConnector, tx: Sender<Vec<ProcEvent>>) -> io::Result<ConnectorReader> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ConnectorStats::default());
    let (stop2, stats2) = (stop.clone(), stats.clone());
    let handle = std::thread::Builder::new()
        .name("proc-connector".into())
        .spawn(move || {
            let mut buf = vec![0u8; RECV_BUFFER_LEN];
            let mut events = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                events.clear();
                match conn.recv_events(&mut buf, &mut events) {
                    Ok(_) => {}
                    Err(ConnectorError::Overrun) => {
                        stats2.overruns.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) if e.is_transient() => {
                        stats2.bad_datagrams.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(_) => return,
                }
                let wanted: Vec<ProcEvent> = events
                    .iter()
                    .copied()
                    .filter(|ev| {
                        let counter = match ev {
                            ProcEvent::Fork { .. } if ev.is_process_fork() => &stats2.forks,
                            ProcEvent::Exec { .. } => &stats2.execs,
                            ProcEvent::Exit { pid, tgid, .. } if pid == tgid => &stats2.exits,
                            _ => return false,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        true
                    })
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                let n = wanted.len() as u64;
                match tx.try_send(wanted) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        stats2.channel_drops.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        })?;
    Ok(ConnectorReader {
        stop,
        handle: Some(handle),
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real kernel: subscribe, run a shell that forks a subshell and execs `true` in it, and
    /// see the fork of the subshell (which never execs) with the shell as parent.
    #[test]
    #[ignore = "live: needs root (CAP_NET_ADMIN) and a kernel with process events"]
    fn live_a_subshell_fork_is_seen_with_its_parent() {
        let mut conn = match ProcConnector::open() {
            Ok(c) => c,
            Err(e) => panic!("live proc connector cannot run: {e}"),
        };
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "(/bin/true; :); :"])
            .spawn()
            .expect("sh");
        let sh = child.id();
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        let mut seen = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        let mut subshell = None;
        while Instant::now() < end && subshell.is_none() {
            let mut events = Vec::new();
            let _ = conn.recv_events(&mut buf, &mut events);
            for ev in events {
                if let ProcEvent::Fork {
                    parent_tgid,
                    child_tgid,
                    ..
                } = ev
                {
                    if parent_tgid == sh && ev.is_process_fork() {
                        subshell = Some(child_tgid);
                    }
                }
                seen.push(ev);
            }
        }
        child.wait().expect("wait");
        let subshell = subshell.unwrap_or_else(|| panic!("no fork of pid {sh}: {seen:?}"));
        // The subshell's own child execs /bin/true; the subshell exits.
        let end = Instant::now() + Duration::from_secs(5);
        let mut exited = false;
        while Instant::now() < end && !exited {
            let mut events = Vec::new();
            let _ = conn.recv_events(&mut buf, &mut events);
            exited = events.iter().any(
                |e| matches!(e, ProcEvent::Exit { pid, tgid, .. } if *pid == subshell && *tgid == subshell),
            );
        }
        assert!(exited, "no exit of the subshell {subshell}");
    }
}
