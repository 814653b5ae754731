//! The link watchers: new symlinks in the suspicious directories, reported by the kernel whether
//! or not audit saw the call. They feed the extended detector only.
//!
//! fanotify (`FAN_CREATE` with `FAN_REPORT_DFID_NAME`, Linux ≥ 5.9) names the new entry and the
//! creating process. One fanotify group watches one directory (an inode mark with `FAN_CREATE`),
//! so the directory of an event is known from the group it arrived on and the directory file
//! handle in the event never needs resolving. The raw event bytes are parsed here ([`Events`]):
//! nix's `read_events` does not expose the name record. A directory fanotify cannot mark (older
//! kernels; a file system that cannot report file handles, such as tmpfs on Linux 5.10) is
//! watched with inotify instead (`IN_CREATE`, every kernel since 2.6.13), which names the entry
//! but not its creator: the extended detector finds the creator among the recent execs.
//! The limit of both: only direct children of a watched directory are seen (`/tmp/x`, not
//! `/tmp/d/x`), and `/home/*` is the list of home directories at start.
//!
//! A directory is reached the way the host's init sees it: when this process has a `/tmp` of its
//! own (a service with `PrivateTmp=`), the host's is marked through `/proc/1/root/tmp`.
//!
//! A reader thread polls the watchers (non-blocking, every [`POLL_PERIOD`]), keeps what is a
//! symlink, reads its target and the creator's `/proc` facts while the creator is most likely
//! alive, and sends a [`FanEvent`] to the worker on its own channel after [`GRACE`].

use crate::proc::{ProcFallback, ProcessInfo};
use crate::procfs::ProcFs;
use crossbeam_channel::{Sender, TrySendError};
use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use nix::sys::inotify::{self, AddWatchFlags, Inotify, WatchDescriptor};
use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
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

/// Which kernel interface reported a new link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watcher {
    /// fanotify: names the creating process.
    Fanotify,
    /// inotify: names the entry only; the creator is found among the recent execs.
    Inotify,
}

/// A new symlink seen by a link watcher, with what `/proc` said of its creator when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanEvent {
    /// Which watcher saw it.
    pub watcher: Watcher,
    /// Absolute path of the new link (watched directory + name), as the host names it.
    pub path: String,
    /// The link's text, as `readlink` returned it.
    pub target: Vec<u8>,
    /// The creating process (thread-group id, as audit's `pid=`); 0 when inotify saw the link
    /// and the creator is not known yet.
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

/// Why the link watchers could not start.
#[derive(Debug, thiserror::Error)]
pub enum FanotifyError {
    /// `fanotify_init` refused (no fanotify, no `FAN_REPORT_DFID_NAME` before 5.9, not root).
    #[error("fanotify_init with FAN_REPORT_DFID_NAME failed: {0}")]
    Init(Errno),
    /// No directory could be watched, by fanotify or inotify.
    #[error("no directory could be watched ({0})")]
    NothingWatched(String),
}

fn init_group() -> Result<Fanotify, Errno> {
    let flags = InitFlags::FAN_CLASS_NOTIF
        | InitFlags::FAN_CLOEXEC
        | InitFlags::FAN_NONBLOCK
        | InitFlags::from_bits_retain(nix::libc::FAN_REPORT_DFID_NAME);
    Fanotify::init(flags, EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC)
}

/// Whether this kernel (and our privileges) allow fanotify: a group is opened and closed.
pub fn available() -> Result<(), FanotifyError> {
    init_group().map(drop).map_err(FanotifyError::Init)
}

/// A directory to watch: the name alerts give it, and the path this process opens it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchDir {
    /// The directory as the host names it (`/tmp`).
    pub name: String,
    /// Where this process reaches the host's directory: `name`, or the same under
    /// [`HOST_ROOT`] when this process's mount namespace has a directory of its own there.
    pub open_path: PathBuf,
}

/// The host's file system as its init sees it (needs CAP_SYS_PTRACE over pid 1).
pub const HOST_ROOT: &str = "/proc/1/root";

impl WatchDir {
    /// `name` as the host sees it: through [`HOST_ROOT`] when our own `name` is another
    /// directory (a service's private `/tmp`), else `name` itself.
    pub fn host(name: &str) -> WatchDir {
        let theirs = Path::new(HOST_ROOT).join(name.trim_start_matches('/'));
        let open_path = match (std::fs::metadata(name), std::fs::metadata(&theirs)) {
            (Ok(own), Ok(host)) if (own.dev(), own.ino()) != (host.dev(), host.ino()) => theirs,
            _ => PathBuf::from(name),
        };
        WatchDir {
            name: name.trim_end_matches('/').to_string(),
            open_path,
        }
    }

    /// Whether the host's directory is reached through [`HOST_ROOT`].
    pub fn through_host_root(&self) -> bool {
        self.open_path != Path::new(&self.name)
    }
}

/// [`WATCH_DIRS`] that exist, then each directory in `/home`, sorted — as the host sees them.
pub fn watch_dirs() -> Vec<WatchDir> {
    let mut dirs: Vec<WatchDir> = WATCH_DIRS
        .iter()
        .map(|d| WatchDir::host(d))
        .filter(|d| d.open_path.is_dir())
        .collect();
    let home = WatchDir::host("/home");
    let mut homes: Vec<String> = std::fs::read_dir(&home.open_path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .map(|e| format!("/home/{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    homes.sort();
    dirs.extend(homes.iter().map(|h| WatchDir::host(h)));
    dirs
}

/// What a failed fanotify mark means, for the start line.
fn mark_refusal(e: Errno) -> String {
    match e {
        Errno::ENODEV => "ENODEV: its file system has no file handles for fanotify".into(),
        Errno::EXDEV => "EXDEV: its file system reports no unique fsid to fanotify".into(),
        Errno::EOPNOTSUPP => "EOPNOTSUPP: its file system cannot report file handles".into(),
        e => e.to_string(),
    }
}

/// The inotify watch of the directories fanotify could not mark.
#[derive(Debug)]
struct InotifyWatch {
    fd: Inotify,
    dirs: Vec<(WatchDescriptor, WatchDir)>,
}

/// The link watchers: one fanotify group per directory it can mark, one inotify instance for
/// the rest.
#[derive(Debug)]
pub struct FanotifySensor {
    groups: Vec<(WatchDir, Fanotify)>,
    inotify: Option<InotifyWatch>,
    /// Each directory inotify watches instead of fanotify, with fanotify's refusal.
    fallbacks: Vec<(String, String)>,
    /// Each directory nothing watches, with why.
    unwatched: Vec<(String, String)>,
}

impl FanotifySensor {
    /// Marks each directory of `dirs` for `FAN_CREATE` in a fanotify group of its own; a
    /// directory fanotify refuses (or every directory, when `fanotify_init` fails) gets an
    /// inotify `IN_CREATE` watch instead. Fails only when nothing could be watched.
    pub fn open(dirs: &[WatchDir]) -> Result<FanotifySensor, FanotifyError> {
        FanotifySensor::open_with(dirs, true)
    }

    /// [`FanotifySensor::open`], or with inotify alone when `try_fanotify` is false.
    fn open_with(dirs: &[WatchDir], try_fanotify: bool) -> Result<FanotifySensor, FanotifyError> {
        let mut sensor = FanotifySensor {
            groups: Vec::new(),
            inotify: None,
            fallbacks: Vec::new(),
            unwatched: Vec::new(),
        };
        let mut init_refused = None;
        let mut to_inotify = Vec::new();
        if !try_fanotify {
            to_inotify.extend(dirs.iter().map(|d| (d, "not tried".to_string())));
        }
        for dir in dirs.iter().filter(|_| try_fanotify) {
            let handle = match std::fs::File::open(&dir.open_path) {
                Ok(h) => h,
                Err(e) => {
                    sensor.unwatched.push((dir.name.clone(), e.to_string()));
                    continue;
                }
            };
            if let Some(e) = init_refused {
                to_inotify.push((dir, format!("fanotify_init: {e}")));
                continue;
            }
            let group = match init_group() {
                Ok(g) => g,
                Err(e) => {
                    init_refused = Some(e);
                    to_inotify.push((dir, format!("fanotify_init: {e}")));
                    continue;
                }
            };
            match group.mark(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_ONLYDIR,
                MaskFlags::FAN_CREATE | MaskFlags::FAN_EVENT_ON_CHILD,
                handle.as_fd(),
                None::<&Path>,
            ) {
                Ok(()) => sensor.groups.push((dir.clone(), group)),
                Err(e) => to_inotify.push((dir, mark_refusal(e))),
            }
        }
        if !to_inotify.is_empty() {
            match Inotify::init(inotify::InitFlags::IN_NONBLOCK | inotify::InitFlags::IN_CLOEXEC) {
                Ok(fd) => {
                    let mut watched = Vec::new();
                    for (dir, why) in to_inotify {
                        let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ONLYDIR;
                        match fd.add_watch(&dir.open_path, flags) {
                            Ok(wd) => {
                                watched.push((wd, dir.clone()));
                                sensor.fallbacks.push((dir.name.clone(), why));
                            }
                            Err(e) => sensor
                                .unwatched
                                .push((dir.name.clone(), format!("{why}; inotify: {e}"))),
                        }
                    }
                    if !watched.is_empty() {
                        sensor.inotify = Some(InotifyWatch { fd, dirs: watched });
                    }
                }
                Err(e) => {
                    for (dir, why) in to_inotify {
                        let why = format!("{why}; inotify_init: {e}");
                        sensor.unwatched.push((dir.name.clone(), why));
                    }
                }
            }
        }
        if sensor.groups.is_empty() && sensor.inotify.is_none() {
            return Err(match init_refused {
                Some(e) if sensor.unwatched.is_empty() => FanotifyError::Init(e),
                _ => FanotifyError::NothingWatched(sensor.describe()),
            });
        }
        Ok(sensor)
    }

    /// The directories fanotify watches.
    pub fn dirs(&self) -> Vec<&str> {
        self.groups.iter().map(|(d, _)| d.name.as_str()).collect()
    }

    /// What is watched and how, for the start line: `fanotify: on (/tmp /root); inotify: on
    /// (/dev/shm: fanotify refused it: ENODEV …); not watched: …`. A directory reached through
    /// [`HOST_ROOT`] says so.
    pub fn describe(&self) -> String {
        let name = |d: &WatchDir| {
            if d.through_host_root() {
                format!(
                    "{} (the host's, via {HOST_ROOT}: this process's own is private)",
                    d.name
                )
            } else {
                d.name.clone()
            }
        };
        let mut out = if self.groups.is_empty() {
            "off".to_string()
        } else {
            let dirs: Vec<String> = self.groups.iter().map(|(d, _)| name(d)).collect();
            format!("on ({})", dirs.join(" "))
        };
        if let Some(watch) = &self.inotify {
            let dirs: Vec<String> = watch
                .dirs
                .iter()
                .map(|(_, d)| {
                    let why = self
                        .fallbacks
                        .iter()
                        .find(|(n, _)| *n == d.name)
                        .map_or("", |(_, w)| w.as_str());
                    format!("{}: fanotify refused it: {why}", name(d))
                })
                .collect();
            out.push_str(&format!(
                "; inotify: on ({}; creator from recent execs)",
                dirs.join("; ")
            ));
        }
        if !self.unwatched.is_empty() {
            let dirs: Vec<String> = self
                .unwatched
                .iter()
                .map(|(n, w)| format!("{n}: {w}"))
                .collect();
            out.push_str(&format!("; not watched: {}", dirs.join("; ")));
        }
        out
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
/// `creator` is fanotify's pid (an event without one, from another pid namespace, is dropped);
/// inotify's events have none.
fn symlink_event(
    watcher: Watcher,
    dir: &WatchDir,
    name: &[u8],
    creator: Option<i32>,
    procfs: &ProcFs,
) -> Option<FanEvent> {
    let at = dir.open_path.join(std::ffi::OsStr::from_bytes(name));
    let meta = std::fs::symlink_metadata(&at).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(&at).ok()?.into_os_string().into_vec();
    let path = format!("{}/{}", dir.name, String::from_utf8_lossy(name));
    let mut ev = FanEvent {
        watcher,
        path,
        target,
        pid: 0,
        ppid: None,
        uid: None,
        euid: None,
        cwd: None,
        me: None,
        time_ms: wall_ms(),
    };
    let Some(pid) = creator else {
        return Some(ev);
    };
    let pid = u32::try_from(pid).ok().filter(|p| *p > 0)?;
    let proc_dir = procfs.root().join(pid.to_string());
    (ev.ppid, ev.uid, ev.euid) = std::fs::read_to_string(proc_dir.join("status"))
        .map(|s| status_ids(&s))
        .unwrap_or_default();
    ev.cwd = std::fs::read_link(proc_dir.join("cwd"))
        .ok()
        .map(|p| String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned());
    ev.pid = pid;
    ev.me = procfs.lookup(pid);
    Some(ev)
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
                let mut hold = |fan: FanEvent| {
                    stats2.symlinks.fetch_add(1, Ordering::Relaxed);
                    if held.len() >= HELD_MAX {
                        stats2.channel_drops.fetch_add(1, Ordering::Relaxed);
                    } else {
                        held.push_back((Instant::now(), fan));
                    }
                };
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
                        if let Some(fan) =
                            symlink_event(Watcher::Fanotify, dir, name, Some(ev.pid), &procfs)
                        {
                            hold(fan);
                        }
                    }
                }
                if let Some(watch) = &sensor.inotify {
                    match watch.fd.read_events() {
                        Ok(evs) => {
                            busy = true;
                            for ev in evs {
                                stats2.events.fetch_add(1, Ordering::Relaxed);
                                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                                    stats2.lost.fetch_add(1, Ordering::Relaxed);
                                }
                                let dir = watch.dirs.iter().find(|(wd, _)| *wd == ev.wd);
                                let (Some((_, dir)), Some(name)) = (dir, ev.name) else {
                                    continue;
                                };
                                let name = name.into_vec();
                                if let Some(fan) =
                                    symlink_event(Watcher::Inotify, dir, &name, None, &procfs)
                                {
                                    hold(fan);
                                }
                            }
                        }
                        Err(Errno::EAGAIN | Errno::EINTR) => {}
                        Err(_) => {
                            stats2.lost.fetch_add(1, Ordering::Relaxed);
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

    fn dir(path: &Path) -> WatchDir {
        WatchDir {
            name: path.display().to_string(),
            open_path: path.to_path_buf(),
        }
    }

    #[test]
    fn our_own_directories_are_the_hosts_when_we_share_its_mounts() {
        // The test runs in the host's mount namespace (or one whose /tmp is the same).
        let tmp = WatchDir::host("/tmp/");
        assert_eq!(tmp.name, "/tmp");
        assert!(!tmp.through_host_root() || Path::new(HOST_ROOT).join("tmp").is_dir());
    }

    #[test]
    fn inotify_watches_what_fanotify_does_not_and_names_each_new_symlink() {
        let td = tempfile::tempdir().expect("tempdir");
        let missing = td.path().join("missing");
        let dirs = [dir(td.path()), dir(&missing)];
        let sensor = FanotifySensor::open_with(&dirs, false).expect("inotify works everywhere");
        let text = sensor.describe();
        assert!(text.starts_with("off; inotify: on ("), "{text}");
        assert!(text.contains(&format!(
            "{}: fanotify refused it: not tried",
            td.path().display()
        )));
        assert!(
            text.contains(&format!("not watched: {}:", missing.display())),
            "{text}"
        );

        let (tx, rx) = crossbeam_channel::bounded(4);
        let reader = spawn(sensor, tx, ProcFs::new()).expect("reader");
        std::fs::write(td.path().join("plain"), b"x").expect("file");
        std::os::unix::fs::symlink("/usr/bin/id", td.path().join("evil")).expect("symlink");
        let ev = rx
            .recv_timeout(GRACE + Duration::from_secs(5))
            .expect("the symlink is reported");
        reader.stop();
        assert_eq!(ev.watcher, Watcher::Inotify);
        assert_eq!(ev.path, format!("{}/evil", td.path().display()));
        assert_eq!(ev.target, b"/usr/bin/id");
        assert_eq!((ev.pid, ev.ppid, ev.me), (0, None, None));
        assert!(rx.try_recv().is_err(), "a plain file is no link");
    }

    #[test]
    fn nothing_to_watch_is_an_error_naming_why() {
        let td = tempfile::tempdir().expect("tempdir");
        let err = FanotifySensor::open_with(&[dir(&td.path().join("none"))], false)
            .expect_err("nothing watched");
        assert!(err.to_string().contains("not watched:"), "{err}");
    }

    #[test]
    fn status_ids_reads_ppid_and_uids() {
        let text = "Name:\tperl\nPid:\t10\nPPid:\t9\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\t5\t5\n";
        assert_eq!(status_ids(text), (Some(9), Some(1000), Some(0)));
        assert_eq!(status_ids("Name:\tx\n"), (None, None, None));
    }
}
