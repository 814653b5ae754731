//! Events → network connections. A reassembled [`Event`] that is a connect (succeeded, or in
//! progress on a non-blocking socket), an accept/accept4 or a bind with an IPv4 or IPv6 SOCKADDR
//! record becomes a [`NetEvent`]. `socket()` calls feed a small [`Sockets`] table so that a later
//! connect names its transport (tcp/udp) and an accept the local address its socket was bound to.
//! The daemon's audit rules record the calls of [`net_syscalls`] while a loaded rule needs
//! network events.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::reassemble::Event;
use super::record::{types, Record};
use super::task::{calls_of, lookup, SyscallFields, SyscallTable, Task};
use crate::source::netlink::Arch;

/// `EINPROGRESS` as a syscall's exit: a non-blocking connect that was started.
const EINPROGRESS_EXIT: &[u8] = b"-115";
/// Socket families.
pub const AF_INET: u32 = 2;
/// IPv6.
pub const AF_INET6: u32 = 10;
/// Most sockets [`Sockets`] remembers; the oldest is forgotten first.
pub const SOCKETS_KEPT: usize = 4096;

/// The calls this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Socket,
    Bind,
    Connect,
    Accept,
    /// i386/s390 `socketcall(call, args)`: a0 says which.
    Socketcall,
}

/// AUDIT_ARCH values and their (number, call, name) triples.
#[rustfmt::skip]
const NET_SYSCALLS: &SyscallTable<Call> = &[
    (0xc000_003e, &[
        (41, Call::Socket, "socket"), (49, Call::Bind, "bind"), (42, Call::Connect, "connect"),
        (43, Call::Accept, "accept"), (288, Call::Accept, "accept4"),
    ]),
    (0x4000_0003, &[
        (359, Call::Socket, "socket"), (361, Call::Bind, "bind"), (362, Call::Connect, "connect"),
        (364, Call::Accept, "accept4"), (102, Call::Socketcall, "socketcall"),
    ]),
    (0xc000_00b7, &[
        (198, Call::Socket, "socket"), (200, Call::Bind, "bind"), (203, Call::Connect, "connect"),
        (202, Call::Accept, "accept"), (242, Call::Accept, "accept4"),
    ]),
    (0x4000_0028, &[
        (281, Call::Socket, "socket"), (282, Call::Bind, "bind"), (283, Call::Connect, "connect"),
        (285, Call::Accept, "accept"), (366, Call::Accept, "accept4"),
    ]),
];

/// The name of network syscall `nr` of `arch`, if it is one (for describing rules).
pub fn syscall_name(arch: Arch, nr: u32) -> Option<&'static str> {
    lookup(NET_SYSCALLS, arch.audit_arch(), nr).map(|(_, name)| name)
}

/// The network calls of `arch`, as its audit rules record them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetCalls {
    /// bind, connect and accept: their address family is only known from the SOCKADDR record.
    pub main: Vec<u32>,
    /// `socket()`, worth recording for [`AF_INET`] and [`AF_INET6`] only.
    pub socket: Vec<u32>,
}

/// The network calls of `arch` (none for an ABI this module does not know).
pub fn net_syscalls(arch: Arch) -> NetCalls {
    let mut calls = NetCalls::default();
    for (nr, call, _) in calls_of(NET_SYSCALLS, arch.audit_arch()) {
        match call {
            Call::Socket => calls.socket.push(*nr),
            _ => calls.main.push(*nr),
        }
    }
    calls
}

/// What the call did, named as Elastic Defend names its network events (`event.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetAction {
    /// connect(2): an outgoing connection (or, for UDP, the default peer) was set.
    Attempted,
    /// accept(2): an incoming connection was taken.
    Accepted,
    /// bind(2): a local address was claimed.
    Bind,
}

impl NetAction {
    /// `event.action`.
    pub fn action(self) -> &'static str {
        match self {
            NetAction::Attempted => "connection_attempted",
            NetAction::Accepted => "connection_accepted",
            NetAction::Bind => "bind",
        }
    }
}

/// An IP endpoint.
pub type Endpoint = (IpAddr, u16);

/// A connection, accept or bind on an IPv4/IPv6 socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEvent {
    /// Who made the call.
    pub task: Task,
    /// What happened.
    pub action: NetAction,
    /// The system call's name.
    pub call: &'static str,
    /// `destination.*`: the peer of a connect, the bound local address of an accepted
    /// connection's listening socket (when its bind was seen).
    pub destination: Option<Endpoint>,
    /// `source.*`: the peer of an accept, the address of a bind.
    pub source: Option<Endpoint>,
    /// `network.transport`, when the socket's creation was seen (or for accept: tcp).
    pub transport: Option<&'static str>,
}

impl NetEvent {
    /// `network.type`: ipv4 or ipv6.
    pub fn ip_type(&self) -> &'static str {
        let ip = self.destination.or(self.source).map(|(ip, _)| ip);
        match ip {
            Some(IpAddr::V6(_)) => "ipv6",
            _ => "ipv4",
        }
    }
}

/// A socket the table remembers: its transport and the address it was bound to.
#[derive(Debug, Clone, Copy, Default)]
struct SocketFacts {
    transport: Option<&'static str>,
    bound: Option<Endpoint>,
}

/// Recently made sockets by (pid, fd), at most [`SOCKETS_KEPT`]. A forked child's lookup falls
/// back to its parent's descriptor (fds are inherited). A reused descriptor is overwritten by
/// the next `socket()` or `accept()` that returns it.
#[derive(Debug, Default)]
pub struct Sockets {
    map: HashMap<(u32, u32), SocketFacts>,
    order: VecDeque<(u32, u32)>,
}

impl Sockets {
    fn put(&mut self, key: (u32, u32), facts: SocketFacts) {
        if self.map.insert(key, facts).is_none() {
            self.order.push_back(key);
            while self.order.len() > SOCKETS_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    fn get(&self, task: &Task, fd: Option<u32>) -> SocketFacts {
        let Some(fd) = fd else {
            return SocketFacts::default();
        };
        self.map
            .get(&(task.pid, fd))
            .or_else(|| self.map.get(&(task.ppid, fd)))
            .copied()
            .unwrap_or_default()
    }

    /// Sockets remembered now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Reads `event`: a socket()/bind() updates the table; a connect, accept or bind on an
    /// IPv4/IPv6 address becomes a [`NetEvent`]. `None` for anything else.
    pub fn build(&mut self, event: &Event) -> Option<NetEvent> {
        let sc = event.records.iter().find(|r| r.rtype == types::SYSCALL)?;
        let f = SyscallFields::scan(sc);
        let (mut call, mut name) = lookup(NET_SYSCALLS, f.arch()?, f.syscall()?)?;
        let mut args = [arg(sc, 0), arg(sc, 1), arg(sc, 2)];
        if call == Call::Socketcall {
            // The real arguments are in memory; the SOCKADDR record still says the address.
            (call, name) = match args[0]? {
                1 => (Call::Socket, "socket"),
                2 => (Call::Bind, "bind"),
                3 => (Call::Connect, "connect"),
                5 | 18 => (Call::Accept, "accept"),
                _ => return None,
            };
            args = [None, None, None];
        }
        let exit = field(sc, b"exit");
        let succeeded = f.success == Some(b"yes");
        let in_progress = call == Call::Connect && exit == Some(EINPROGRESS_EXIT);
        if !succeeded && !in_progress {
            return None;
        }
        let task = Task::from_syscall(event, &f).ok()?;
        let exit_fd = exit
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u32>().ok());
        if call == Call::Socket {
            let transport = match args[1].map(|t| t & 0xf) {
                Some(1) => Some("tcp"),
                Some(2) => Some("udp"),
                _ => None,
            };
            if let Some(fd) = exit_fd {
                let facts = SocketFacts {
                    transport,
                    bound: None,
                };
                self.put((task.pid, fd), facts);
            }
            return None;
        }
        let addr = event
            .records
            .iter()
            .find(|r| r.rtype == types::SOCKADDR)
            .and_then(|r| field(r, b"saddr"))
            .and_then(sockaddr)?;
        let fd = args[0];
        let facts = self.get(&task, fd);
        let (action, destination, source, transport) = match call {
            Call::Connect => (NetAction::Attempted, Some(addr), None, facts.transport),
            Call::Bind => {
                if let Some(fd) = fd {
                    let bound = SocketFacts {
                        bound: Some(addr),
                        ..facts
                    };
                    self.put((task.pid, fd), bound);
                }
                (NetAction::Bind, None, Some(addr), facts.transport)
            }
            Call::Accept => {
                if let Some(new_fd) = exit_fd {
                    let accepted = SocketFacts {
                        transport: Some("tcp"),
                        bound: facts.bound,
                    };
                    self.put((task.pid, new_fd), accepted);
                }
                (NetAction::Accepted, facts.bound, Some(addr), Some("tcp"))
            }
            Call::Socket | Call::Socketcall => return None,
        };
        Some(NetEvent {
            task,
            action,
            call: name,
            destination,
            source,
            transport,
        })
    }
}

/// A SYSCALL field's raw value.
fn field<'a>(rec: &'a Record, key: &[u8]) -> Option<&'a [u8]> {
    rec.field(key)
}

/// Argument `i` (hex in the record) as a 32-bit number.
fn arg(sc: &Record, i: usize) -> Option<u32> {
    let key = [b'a', b'0' + i as u8];
    let v = std::str::from_utf8(sc.field(&key)?).ok()?;
    u64::from_str_radix(v, 16).ok().map(|v| v as u32)
}

/// An IPv4 or IPv6 `struct sockaddr` from the hex of a SOCKADDR record; `None` for any other
/// family or a short record.
pub fn sockaddr(hex: &[u8]) -> Option<Endpoint> {
    let bytes = decode_hex(hex)?;
    let family = u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]);
    let port = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
    match u32::from(family) {
        AF_INET => {
            let a: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some((IpAddr::V4(Ipv4Addr::from(a)), port))
        }
        AF_INET6 => {
            let a: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let v6 = Ipv6Addr::from(a);
            Some((IpAddr::V6(v6), port))
        }
        _ => None,
    }
}

/// Hex text → bytes (at most 128 bytes are read: a sockaddr_storage).
fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    let hex = hex.get(..hex.len().min(256))?;
    hex.chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fileop::CAPTURE;
    use super::super::reassemble::test_support::read_log;
    use super::super::reassemble::EventEnd;
    use super::super::record::AuditTime;
    use super::*;

    /// Every event of the capture in order, through one socket table.
    fn all() -> Vec<NetEvent> {
        let records = read_log(CAPTURE);
        let mut serials: Vec<u32> = records.iter().map(|r| r.serial).collect();
        serials.dedup();
        let mut sockets = Sockets::default();
        serials
            .into_iter()
            .filter_map(|serial| {
                let recs: Vec<Record> = records
                    .iter()
                    .filter(|r| r.serial == serial)
                    .cloned()
                    .collect();
                let ev = Event {
                    node: None,
                    serial,
                    time: recs.first().map_or(AuditTime::default(), |r| r.time),
                    records: recs,
                    end: EventEnd::Eoe,
                    truncated: false,
                };
                sockets.build(&ev)
            })
            .collect()
    }

    fn ep(s: &str) -> Option<Endpoint> {
        let (ip, port) = s.rsplit_once(':')?;
        Some((
            ip.trim_matches(['[', ']']).parse().ok()?,
            port.parse().ok()?,
        ))
    }

    #[test]
    fn captured_socket_calls() {
        type Row = (
            u32,
            &'static str,
            Option<Endpoint>,
            Option<Endpoint>,
            Option<&'static str>,
        );
        let got: Vec<Row> = all()
            .iter()
            .map(|e| {
                (
                    e.task.serial,
                    e.action.action(),
                    e.destination,
                    e.source,
                    e.transport,
                )
            })
            .collect();
        let want = vec![
            (332144, "bind", None, ep("127.0.0.1:47123"), Some("tcp")),
            (
                332146,
                "connection_attempted",
                ep("127.0.0.1:47123"),
                None,
                Some("tcp"),
            ),
            // accept4: the peer is the source, the listening socket's bind the destination.
            (
                332147,
                "connection_accepted",
                ep("127.0.0.1:47123"),
                ep("127.0.0.1:39168"),
                Some("tcp"),
            ),
            (
                332149,
                "connection_attempted",
                ep("[::1]:47124"),
                None,
                Some("udp"),
            ),
            // Non-blocking connect: EINPROGRESS.
            (
                332151,
                "connection_attempted",
                ep("127.0.0.1:47123"),
                None,
                Some("tcp"),
            ),
            (
                332153,
                "connection_attempted",
                ep("10.1.2.3:53"),
                None,
                Some("udp"),
            ),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn sockaddr_families() {
        assert_eq!(
            sockaddr(b"0200B8137F0000010000000000000000"),
            ep("127.0.0.1:47123")
        );
        assert_eq!(
            sockaddr(b"0A00B814000000000000000000000000000000000000000100000000"),
            ep("[::1]:47124")
        );
        // AF_UNIX, AF_NETLINK, short, not hex.
        assert_eq!(sockaddr(b"01002F6E6F6E6578697374656E742F736F636B00"), None);
        assert_eq!(sockaddr(b"100000000000000000000000"), None);
        assert_eq!(sockaddr(b"0200B8"), None);
        assert_eq!(sockaddr(b"02zz"), None);
    }

    #[test]
    fn the_socket_table_is_bounded() {
        let mut s = Sockets::default();
        for fd in 0..(SOCKETS_KEPT as u32 + 100) {
            s.put((1, fd), SocketFacts::default());
        }
        assert_eq!(s.len(), SOCKETS_KEPT);
        assert_eq!(s.order.len(), SOCKETS_KEPT);
    }
}
