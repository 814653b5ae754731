//! The fanotify sensor: new symlinks in the suspicious directories, reported by the kernel's
//! fanotify (`FAN_CREATE` with `FAN_REPORT_DFID_NAME`, Linux ≥ 5.9) whether or not audit saw the
//! call. It feeds the extended detector only.
//!
//! One fanotify group watches one directory (an inode mark with `FAN_CREATE`), so the directory
//! of an event is known from the group it arrived on and the directory file handle in the event
//! never needs resolving. The raw event bytes are parsed here ([`Events`]): nix's
//! `read_events` does not expose the name record. The limit of inode marks: only direct
//! children of a watched directory are seen (`/tmp/x`, not `/tmp/d/x`), and `/home/*` is the list
//! of home directories at start.
//!
//! A reader thread polls the groups (non-blocking, every [`POLL_PERIOD`]), keeps what is a
//! symlink, reads its target and the creator's `/proc` facts while the creator is most likely
//! alive, and sends a [`FanEvent`] to the worker on its own channel after [`GRACE`].

use crate::proc::{ProcFallback, ProcessInfo};
use crate::procfs::ProcFs;
use crossbeam_channel::{Sender, TrySendError};
use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The directories watched when they exist at start; each `/home/*` directory is added.
pub const WATCH_DIRS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/root"];

/// How long the reader sleeps when no group had an event.
pub const POLL_PERIOD: Duration = Duration::from_millis(20);

/// How long the reader holds a symlink before sending it. The audit syscall sensor reports the
/// same link with better attribution (its records name the caller even after it exited); held
/// back, the fanotify report is the one the extended detector's dedupe drops, and it still alerts
/// when audit never saw the call.
pub const GRACE: Duration = Duration::from_millis(1500);

/// Most symlinks held back at once (a burst beyond it is dropped, counted as channel drops).
const HELD_MAX: usize = 4096;

/// `FANOTIFY_METADATA_VERSION` of the kernel ABI this parser reads.
pub const METADATA_VERSION: u8 = 3;

/// Size of `struct fanotify_event_metadata`.
const METADATA_LEN: usize = 24;

/// `FAN_EVENT_INFO_TYPE_DFID_NAME`: directory file handle followed by a name.
const INFO_DFID_NAME: u8 = 2;

/// `FAN_CREATE`.
pub const FAN_CREATE: u64 = 0x0000_0100;

/// `FAN_Q_OVERFLOW`: the group's queue overflowed and events were lost.
pub const FAN_Q_OVERFLOW: u64 = 0x0000_4000;

/// One event as the kernel wrote it, with the name of its DFID_NAME record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// Event mask (`FAN_CREATE`, `FAN_Q_OVERFLOW`...).
    pub mask: u64,
    /// The event's file descriptor; `-1` (FAN_NOFD) for groups that report file handles.
    pub fd: i32,
    /// The process that caused the event (thread-group id); 0 when it is in another pid
    /// namespace.
    pub pid: i32,
    /// The entry name inside the watched directory, when a DFID_NAME record carried one.
    pub name: Option<Vec<u8>>,
}

/// Bytes that are not a well-formed fanotify event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FanParseError {
    /// Fewer bytes than the metadata, or than the record's `event_len` says.
    #[error("fanotify event truncated: {have} of {need} bytes")]
    Truncated {
        /// Bytes left in the buffer.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A metadata version this parser does not know.
    #[error("fanotify metadata version {0}, expected {METADATA_VERSION}")]
    Version(u8),
    /// `event_len` or `metadata_len` inconsistent (smaller than the metadata, or than each other).
    #[error(
        "fanotify event lengths inconsistent: event_len {event_len}, metadata_len {metadata_len}"
    )]
    Length {
        /// `event_len`.
        event_len: usize,
        /// `metadata_len`.
        metadata_len: usize,
    },
}

/// The events of one `read(2)` of a fanotify group, in order; stops after the first error (the
/// rest of the buffer cannot be framed).
#[derive(Debug)]
pub struct Events<'a> {
    rest: &'a [u8],
}

/// Iterates the events in `buf`.
pub fn events(buf: &[u8]) -> Events<'_> {
    Events { rest: buf }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl Iterator for Events<'_> {
    type Item = Result<RawEvent, FanParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = parse_one(self.rest);
        match &item {
            Ok((_, used)) => self.rest = self.rest.get(*used..).unwrap_or_default(),
            Err(_) => self.rest = &[],
        }
        Some(item.map(|(ev, _)| ev))
    }
}

/// The first event of `b` and how many bytes it used.
fn parse_one(b: &[u8]) -> Result<(RawEvent, usize), FanParseError> {
    let short = |need| FanParseError::Truncated {
        have: b.len(),
        need,
    };
    if b.len() < METADATA_LEN {
        return Err(short(METADATA_LEN));
    }
    let event_len = u32_at(b, 0).ok_or(short(4))? as usize;
    let vers = *b.get(4).ok_or(short(5))?;
    let metadata_len = usize::from(u16_at(b, 6).ok_or(short(8))?);
    if vers != METADATA_VERSION {
        return Err(FanParseError::Version(vers));
    }
    if metadata_len < METADATA_LEN || event_len < metadata_len {
        return Err(FanParseError::Length {
            event_len,
            metadata_len,
        });
    }
    let record = b.get(..event_len).ok_or(short(event_len))?;
    let mask = u64_at(record, 8).ok_or(short(16))?;
    let fd = i32_at(record, 16).ok_or(short(20))?;
    let pid = i32_at(record, 20).ok_or(short(24))?;
    let mut name = None;
    let mut info = record.get(metadata_len..).unwrap_or_default();
    // Info records: header (type u8, pad u8, len u16), then for DFID_NAME: fsid (8 bytes),
    // file_handle (handle_bytes u32, handle_type i32, f_handle[handle_bytes]), NUL-terminated name.
    while info.len() >= 4 {
        let info_type = info.first().copied().unwrap_or_default();
        let len = usize::from(u16_at(info, 2).unwrap_or_default());
        if len < 4 || len > info.len() {
            return Err(FanParseError::Length {
                event_len,
                metadata_len,
            });
        }
        let body = info.get(..len).unwrap_or_default();
        if info_type == INFO_DFID_NAME {
            let handle_bytes = u32_at(body, 12).map_or(usize::MAX, |n| n as usize);
            let name_at = 20usize.saturating_add(handle_bytes);
            if let Some(tail) = body.get(name_at..) {
                let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
                name = tail.get(..end).map(<[u8]>::to_vec);
            }
        }
        info = info.get(len..).unwrap_or_default();
    }
    Ok((
        RawEvent {
            mask,
            fd,
            pid,
            name,
        },
        event_len,
    ))
}

/// A new symlink seen by fanotify, with what `/proc` said of its creator when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanEvent {
    /// Absolute path of the new link (watched directory + name).
    pub path: String,
    /// The link's text, as `readlink` returned it.
    pub target: Vec<u8>,
    /// The creating process (thread-group id, as audit's `pid=`).
    pub pid: u32,
    /// Its parent, from `/proc/PID/status`, if it was still there.
    pub ppid: Option<u32>,
    /// Its real and effective user ids, from `/proc/PID/status`.
    pub uid: Option<u32>,
    /// Effective user id.
    pub euid: Option<u32>,
    /// Its working directory, from `/proc/PID/cwd`.
    pub cwd: Option<String>,
    /// What the process table would say of it (exe, name, argv), read from `/proc`.
    pub me: Option<ProcessInfo>,
    /// Wall-clock milliseconds since the epoch when the event was read.
    pub time_ms: u64,
}

/// `PPid`, `Uid` (real) and `Uid` (effective) of a `/proc/PID/status` text.
pub fn status_ids(text: &str) -> (Option<u32>, Option<u32>, Option<u32>) {
    let mut ppid = None;
    let mut uid = None;
    let mut euid = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("PPid:") {
            ppid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Uid:") {
            let mut ids = v.split_whitespace().map(|n| n.parse::<u32>().ok());
            uid = ids.next().flatten();
            euid = ids.next().flatten();
        }
    }
    (ppid, uid, euid)
}

/// Why the sensor could not start.
#[derive(Debug, thiserror::Error)]
pub enum FanotifyError {
    /// `fanotify_init` refused (no fanotify, no `FAN_REPORT_DFID_NAME` before 5.9, not root).
    #[error("fanotify_init with FAN_REPORT_DFID_NAME failed: {0}")]
    Init(Errno),
    /// No watched directory could be marked.
    #[error("no directory could be watched")]
    NothingWatched,
}

fn init_group() -> Result<Fanotify, Errno> {
    let flags = InitFlags::FAN_CLASS_NOTIF
        | InitFlags::FAN_CLOEXEC
        | InitFlags::FAN_NONBLOCK
        | InitFlags::from_bits_retain(nix::libc::FAN_REPORT_DFID_NAME);
    Fanotify::init(flags, EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC)
}

/// Whether this kernel (and our privileges) allow the sensor: a group is opened and closed.
pub fn available() -> Result<(), FanotifyError> {
    init_group().map(drop).map_err(FanotifyError::Init)
}

/// [`WATCH_DIRS`] that exist, then each directory in `/home`, sorted.
pub fn watch_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = WATCH_DIRS
        .iter()
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .collect();
    let mut homes: Vec<PathBuf> = std::fs::read_dir("/home")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    homes.sort();
    dirs.extend(homes);
    dirs
}

/// The fanotify groups, one per watched directory.
#[derive(Debug)]
pub struct FanotifySensor {
    groups: Vec<(String, Fanotify)>,
}

impl FanotifySensor {
    /// Opens one group per directory of `dirs` with a `FAN_CREATE` mark on it. The first
    /// `fanotify_init` failure means no sensor; a directory that cannot be marked is left out.
    pub fn open(dirs: &[PathBuf]) -> Result<FanotifySensor, FanotifyError> {
        let mut groups = Vec::new();
        for dir in dirs {
            let group = init_group().map_err(FanotifyError::Init)?;
            let Ok(handle) = std::fs::File::open(dir) else {
                continue;
            };
            let marked = group.mark(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_ONLYDIR,
                MaskFlags::FAN_CREATE | MaskFlags::FAN_EVENT_ON_CHILD,
                handle.as_fd(),
                None::<&Path>,
            );
            if marked.is_ok() {
                let name = String::from_utf8_lossy(dir.as_os_str().as_bytes()).into_owned();
                groups.push((name.trim_end_matches('/').to_string(), group));
            }
        }
        if groups.is_empty() {
            return Err(FanotifyError::NothingWatched);
        }
        Ok(FanotifySensor { groups })
    }

    /// The watched directories.
    pub fn dirs(&self) -> Vec<&str> {
        self.groups.iter().map(|(d, _)| d.as_str()).collect()
    }
}

/// Counters of the fanotify reader.
#[derive(Debug, Default)]
pub struct FanStats {
    /// Events read (any kind).
    pub events: AtomicU64,
    /// Symlinks sent to the worker.
    pub symlinks: AtomicU64,
    /// Queue overflows reported by the kernel, and unparsable reads.
    pub lost: AtomicU64,
    /// Events dropped because the worker's channel (or the hold-back queue) was full.
    pub channel_drops: AtomicU64,
}

/// The running fanotify reader thread.
pub struct FanReader {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<FanStats>,
}

impl FanReader {
    /// Asks the thread to stop and waits for it (it wakes up every [`POLL_PERIOD`]).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The [`FanEvent`] of a created entry `name` in `dir`, if the entry is (still) a symlink.
fn symlink_event(dir: &str, name: &[u8], pid: i32, procfs: &ProcFs) -> Option<FanEvent> {
    let path = format!("{dir}/{}", String::from_utf8_lossy(name));
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(&path).ok()?.into_os_string().into_vec();
    let pid = u32::try_from(pid).ok().filter(|p| *p > 0)?;
    let proc_dir = procfs.root().join(pid.to_string());
    let (ppid, uid, euid) = std::fs::read_to_string(proc_dir.join("status"))
        .map(|s| status_ids(&s))
        .unwrap_or_default();
    let cwd = std::fs::read_link(proc_dir.join("cwd"))
        .ok()
        .map(|p| String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned());
    Some(FanEvent {
        path,
        target,
        pid,
        ppid,
        uid,
        euid,
        cwd,
        me: procfs.lookup(pid),
        time_ms: wall_ms(),
    })
}

/// Starts the reader thread over `sensor`'s groups; new symlinks go to `tx` (a full channel
/// drops the event, counted).
pub fn spawn(
    sensor: FanotifySensor,
    tx: Sender<FanEvent>,
    procfs: ProcFs,
) -> std::io::Result<FanReader> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(FanStats::default());
    let (stop2, stats2) = (stop.clone(), stats.clone());
    let handle = std::thread::Builder::new()
        .name("fanotify-reader".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut held: VecDeque<(Instant, FanEvent)> = VecDeque::new();
            let send = |fan: FanEvent| match tx.try_send(fan) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    stats2.channel_drops.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            };
            while !stop2.load(Ordering::Relaxed) {
                while held.front().is_some_and(|(at, _)| at.elapsed() >= GRACE) {
                    if let Some((_, fan)) = held.pop_front() {
                        if !send(fan) {
                            return;
                        }
                    }
                }
                let mut busy = false;
                for (dir, group) in &sensor.groups {
                    let n = match nix::unistd::read(group.as_fd(), &mut buf) {
                        Ok(n) => n,
                        Err(Errno::EAGAIN | Errno::EINTR) => continue,
                        Err(_) => {
                            stats2.lost.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    busy = true;
                    for item in events(buf.get(..n).unwrap_or_default()) {
                        let Ok(ev) = item else {
                            stats2.lost.fetch_add(1, Ordering::Relaxed);
                            break;
                        };
                        stats2.events.fetch_add(1, Ordering::Relaxed);
                        if ev.mask & FAN_Q_OVERFLOW != 0 {
                            stats2.lost.fetch_add(1, Ordering::Relaxed);
                        }
                        let Some(name) = ev.name.as_deref().filter(|_| ev.mask & FAN_CREATE != 0)
                        else {
                            continue;
                        };
                        let Some(fan) = symlink_event(dir, name, ev.pid, &procfs) else {
                            continue;
                        };
                        stats2.symlinks.fetch_add(1, Ordering::Relaxed);
                        if held.len() >= HELD_MAX {
                            stats2.channel_drops.fetch_add(1, Ordering::Relaxed);
                        } else {
                            held.push_back((Instant::now(), fan));
                        }
                    }
                }
                if !busy {
                    std::thread::sleep(POLL_PERIOD);
                }
            }
            for (_, fan) in held {
                if !send(fan) {
                    return;
                }
            }
        })?;
    Ok(FanReader {
        stop,
        handle: Some(handle),
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event as the kernel lays it out: metadata, then a DFID_NAME record with a
    /// `handle_len`-byte file handle and `name`.
    fn record(vers: u8, mask: u64, pid: i32, handle_len: usize, name: &[u8]) -> Vec<u8> {
        let mut info = vec![INFO_DFID_NAME, 0, 0, 0];
        info.extend_from_slice(&[7u8; 8]); // fsid
        info.extend_from_slice(&(handle_len as u32).to_ne_bytes());
        info.extend_from_slice(&1i32.to_ne_bytes()); // handle_type
        info.extend(std::iter::repeat_n(0xAB, handle_len));
        info.extend_from_slice(name);
        info.push(0);
        while info.len() % 4 != 0 {
            info.push(0);
        }
        let info_len = info.len() as u16;
        info[2..4].copy_from_slice(&info_len.to_ne_bytes());
        let mut out = Vec::new();
        out.extend_from_slice(&((METADATA_LEN + info.len()) as u32).to_ne_bytes());
        out.push(vers);
        out.push(0);
        out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        out.extend_from_slice(&mask.to_ne_bytes());
        out.extend_from_slice(&(-1i32).to_ne_bytes());
        out.extend_from_slice(&pid.to_ne_bytes());
        out.extend_from_slice(&info);
        out
    }

    #[test]
    fn one_create_event_gives_mask_pid_and_name() {
        let buf = record(3, FAN_CREATE, 4242, 8, b"evil");
        let got: Vec<_> = events(&buf).collect();
        assert_eq!(
            got,
            vec![Ok(RawEvent {
                mask: FAN_CREATE,
                fd: -1,
                pid: 4242,
                name: Some(b"evil".to_vec()),
            })]
        );
    }

    #[test]
    fn two_events_in_one_buffer_come_out_in_order() {
        let mut buf = record(3, FAN_CREATE, 1, 12, b"a");
        buf.extend(record(3, FAN_CREATE, 2, 8, b"longer-name.x"));
        let names: Vec<(i32, Option<Vec<u8>>)> = events(&buf)
            .map(|e| e.map(|e| (e.pid, e.name)).expect("valid"))
            .collect();
        assert_eq!(
            names,
            vec![
                (1, Some(b"a".to_vec())),
                (2, Some(b"longer-name.x".to_vec()))
            ]
        );
    }

    #[test]
    fn a_truncated_event_is_an_error_after_the_good_ones() {
        let first = record(3, FAN_CREATE, 1, 8, b"a");
        let second = record(3, FAN_CREATE, 2, 8, b"b");
        let mut buf = first.clone();
        buf.extend_from_slice(&second[..second.len() - 3]);
        let got: Vec<_> = events(&buf).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().map(|e| e.pid), Ok(1));
        assert_eq!(
            got[1],
            Err(FanParseError::Truncated {
                have: second.len() - 3,
                need: second.len(),
            })
        );
        let tiny: Vec<_> = events(&first[..10]).collect();
        assert_eq!(
            tiny,
            vec![Err(FanParseError::Truncated { have: 10, need: 24 })]
        );
    }

    #[test]
    fn a_wrong_version_stops_the_buffer() {
        let mut buf = record(2, FAN_CREATE, 1, 8, b"a");
        buf.extend(record(3, FAN_CREATE, 2, 8, b"b"));
        let got: Vec<_> = events(&buf).collect();
        assert_eq!(got, vec![Err(FanParseError::Version(2))]);
    }

    #[test]
    fn inconsistent_lengths_are_errors() {
        let mut buf = record(3, FAN_CREATE, 1, 8, b"a");
        buf[6..8].copy_from_slice(&8u16.to_ne_bytes());
        assert!(matches!(
            events(&buf).next(),
            Some(Err(FanParseError::Length {
                metadata_len: 8,
                ..
            }))
        ));
        let mut buf = record(3, FAN_CREATE, 1, 8, b"a");
        let info_len_at = METADATA_LEN + 2;
        buf[info_len_at..info_len_at + 2].copy_from_slice(&500u16.to_ne_bytes());
        assert!(matches!(
            events(&buf).next(),
            Some(Err(FanParseError::Length { .. }))
        ));
    }

    #[test]
    fn an_overflow_event_has_no_name() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&(METADATA_LEN as u32).to_ne_bytes());
        buf.extend_from_slice(&[3, 0]);
        buf.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        buf.extend_from_slice(&FAN_Q_OVERFLOW.to_ne_bytes());
        buf.extend_from_slice(&(-1i32).to_ne_bytes());
        buf.extend_from_slice(&0i32.to_ne_bytes());
        let got: Vec<_> = events(&buf).collect();
        assert_eq!(
            got,
            vec![Ok(RawEvent {
                mask: FAN_Q_OVERFLOW,
                fd: -1,
                pid: 0,
                name: None,
            })]
        );
    }

    #[test]
    fn status_ids_reads_ppid_and_uids() {
        let text = "Name:\tperl\nPid:\t10\nPPid:\t9\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\t5\t5\n";
        assert_eq!(status_ids(text), (Some(9), Some(1000), Some(0)));
        assert_eq!(status_ids("Name:\tx\n"), (None, None, None));
    }
}
