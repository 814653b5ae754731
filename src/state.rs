//! New-terms history on disk: the [`TermStore`] over sled. This is the only module that names sled.
//!
//! sled has known crash-consistency reports, so it is kept small and replaceable: one sled tree per
//! rule (`new_terms/<rule_id>`), key = encoded tuple, value = last-seen event time as u64 big-endian
//! milliseconds. A store that sled refuses to open as corrupt is moved aside to
//! `<dir>.corrupt-<unix-seconds>` and rebuilt empty: losing history costs some repeated alerts,
//! which is better than an agent that does not start. Errors that do not mean corruption (a lock
//! held by another running instance, permissions) are returned, never "repaired".
//!
//! Writes are made durable by sled's own flusher thread every [`FLUSH_EVERY_MS`] (one fsync for all
//! the tuples recorded meanwhile), not one fsync per tuple on the detecting thread; the gate only
//! records a tuple after its alert left, so what a crash loses there alerts again.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::rule::new_terms::TermStore;

/// Prefix of the sled tree names that hold new-terms history, followed by the rule id.
const TREE_PREFIX: &str = "new_terms/";

/// Upper bound of sled's page cache (its default is 1 GiB, far too much for a host agent).
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Period of sled's background flush (and fsync) of what was written: a crash repeats the alerts
/// of at most this long.
pub const FLUSH_EVERY_MS: u64 = 500;

/// Failure of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store reported an error during `op`.
    #[error("state store: {op}: {error}")]
    Store {
        /// What was being done (`open`, `read`, `write`, `flush`, …).
        op: &'static str,
        /// The store's error (in the message, so not also the `source()`).
        error: sled::Error,
    },
    /// A file-system operation on the state directory failed.
    #[error("state store: {op} {path}: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error (in the message, so not also the `source()`).
        error: io::Error,
    },
    /// A stored value is not 8 bytes (damaged entry). The next `record` of that key overwrites it.
    #[error("state store: value for rule {rule_id} key {key} is {len} bytes, expected 8")]
    CorruptValue {
        /// Rule whose tree holds the entry.
        rule_id: String,
        /// The key, lossily decoded for display.
        key: String,
        /// The stored length.
        len: usize,
    },
}

fn store_err(op: &'static str) -> impl FnOnce(sled::Error) -> StateError {
    move |error| StateError::Store { op, error }
}

/// What [`SledStore::open`] found, for the caller to log once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The state directory.
    pub dir: PathBuf,
    /// True when there was no store yet (new directory, or rebuilt after quarantine).
    pub created: bool,
    /// Set when a damaged store was moved aside and replaced by an empty one.
    pub quarantined: Option<Quarantine>,
    /// History entries present after opening.
    pub entries: usize,
}

/// A damaged store that was moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// Where the damaged directory now is (`<dir>.corrupt-<unix-seconds>`).
    pub moved_to: PathBuf,
    /// The error that made the store unusable.
    pub reason: String,
}

impl fmt::Display for OpenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(q) = &self.quarantined {
            write!(
                f,
                "state store {} could not be opened ({}); moved it to {} and started an empty one",
                self.dir.display(),
                q.reason,
                q.moved_to.display()
            )
        } else if self.created {
            write!(f, "state store {} created", self.dir.display())
        } else {
            write!(
                f,
                "state store {} opened with {} entries",
                self.dir.display(),
                self.entries
            )
        }
    }
}

/// [`TermStore`] persisted with sled.
pub struct SledStore {
    db: sled::Db,
    /// Entries per rule id (sled's own `len` walks the whole tree).
    counts: HashMap<String, usize>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens or creates the store in `dir`. A store that will not open because it is damaged is
    /// moved to the sibling `<dir>.corrupt-<unix-seconds>` and replaced by an empty one; the report
    /// says so. Other failures (lock held by another process, permissions) are errors.
    pub fn open(dir: &Path) -> Result<(SledStore, OpenReport), StateError> {
        // sled's own files; an empty directory (made by the package) is a new store, not a damaged one.
        let had_store = dir.join("conf").exists();
        let reason = match open_db(dir).and_then(|db| {
            let marked = db.contains_key(MARKER_KEY)?;
            Ok((db, marked))
        }) {
            Ok((db, true)) => return SledStore::finish(dir, db, false, None),
            Ok((db, false)) if !had_store => {
                mark(&db)?;
                return SledStore::finish(dir, db, true, None);
            }
            // sled "recovers" some damaged logs by dropping what it cannot read, and opens fine:
            // the missing marker is how that silent loss shows.
            Ok((_db, false)) => MARKER_MISSING.to_string(),
            Err(e) if is_damage(&e) => damage_reason(&e),
            Err(e) => {
                return Err(StateError::Store {
                    op: "open",
                    error: e,
                })
            }
        };
        let moved_to = quarantine_path(dir)?;
        std::fs::rename(dir, &moved_to).map_err(|error| StateError::Io {
            op: "move damaged store to",
            path: moved_to.clone(),
            error,
        })?;
        let db = open_db(dir).map_err(store_err("open after quarantine"))?;
        mark(&db)?;
        SledStore::finish(dir, db, true, Some(Quarantine { moved_to, reason }))
    }

    fn finish(
        dir: &Path,
        db: sled::Db,
        created: bool,
        quarantined: Option<Quarantine>,
    ) -> Result<(SledStore, OpenReport), StateError> {
        let counts = count_entries(&db)?;
        let report = OpenReport {
            dir: dir.to_path_buf(),
            created,
            quarantined,
            entries: counts.values().sum(),
        };
        Ok((SledStore { db, counts }, report))
    }

    /// A store that lives only as long as this value (files removed on drop), for tests.
    #[cfg(test)]
    pub fn temporary() -> Result<SledStore, StateError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(store_err("open temporary"))?;
        Ok(SledStore {
            db,
            counts: HashMap::new(),
        })
    }

    fn tree(&self, rule_id: &str) -> Result<sled::Tree, StateError> {
        self.db
            .open_tree(format!("{TREE_PREFIX}{rule_id}"))
            .map_err(store_err("open tree"))
    }
}

/// Written (and flushed) when a store is created; a store with sled files but no marker lost data.
const MARKER_KEY: &[u8] = b"auditsentry.state.format";
const MARKER_VALUE: &[u8] = b"1";
const MARKER_MISSING: &str =
    "store files exist but its format marker is gone (data lost in recovery)";

fn mark(db: &sled::Db) -> Result<(), StateError> {
    db.insert(MARKER_KEY, MARKER_VALUE)
        .map_err(store_err("write marker"))?;
    db.flush().map_err(store_err("flush marker"))?;
    Ok(())
}

/// Opens sled in `dir`, the directory and every file in it owner-only (0700/0600) whatever the
/// umask: new-terms history says which programs ran on the host.
fn open_db(dir: &Path) -> sled::Result<sled::Db> {
    owner_only(dir)?;
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(Some(FLUSH_EVERY_MS))
        .open()?;
    owner_only(dir)?;
    Ok(db)
}

/// Creates `dir` (0700) if missing and makes it and what it holds (one level of subdirectories
/// deep, as sled lays it out) owner-only.
fn owner_only(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let private = |path: &Path, is_dir: bool| {
        let mode = if is_dir { 0o700 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    private(dir, true)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            private(&entry.path(), true)?;
            for inner in std::fs::read_dir(entry.path())? {
                let inner = inner?;
                if inner.file_type()?.is_file() {
                    private(&inner.path(), false)?;
                }
            }
        } else if kind.is_file() {
            private(&entry.path(), false)?;
        }
    }
    Ok(())
}

/// Whether an open error means the files are damaged (so rebuilding is right), as opposed to an
/// environment problem that moving the directory would not fix or would make worse.
fn is_damage(e: &sled::Error) -> bool {
    match e {
        sled::Error::Corruption { .. }
        | sled::Error::Unsupported(_)
        | sled::Error::ReportableBug(_) => true,
        sled::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// What a damage error says, in words for the operator: sled's own text for corruption ends in a
/// debug dump of an empty backtrace (`backtrace ()`).
fn damage_reason(e: &sled::Error) -> String {
    match e {
        sled::Error::Corruption { at: Some(at), .. } => {
            format!("corrupted data at {}", disk_ptr(at))
        }
        sled::Error::Corruption { at: None, .. } => "corrupted data".to_string(),
        other => other.to_string(),
    }
}

/// Where sled found corrupted data, without its type names.
fn disk_ptr(at: &dyn std::fmt::Debug) -> String {
    let text = format!("{at:?}");
    let digits: Vec<&str> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|d| !d.is_empty())
        .collect();
    match digits.first() {
        Some(offset) => format!("file offset {offset}"),
        None => "an unknown offset".to_string(),
    }
}

/// `<dir>.corrupt-<unix-seconds>`, with `-N` appended if that name is taken.
fn quarantine_path(dir: &Path) -> Result<PathBuf, StateError> {
    let name = dir.file_name().ok_or_else(|| StateError::Io {
        op: "quarantine (no directory name)",
        path: dir.to_path_buf(),
        error: io::Error::new(io::ErrorKind::InvalidInput, "state dir has no file name"),
    })?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("{}.corrupt-{secs}", name.to_string_lossy());
    let mut candidate = dir.with_file_name(&base);
    let mut n = 1u32;
    while candidate.exists() {
        candidate = dir.with_file_name(format!("{base}-{n}"));
        n += 1;
    }
    Ok(candidate)
}

/// Entries per rule id, counted once at open.
fn count_entries(db: &sled::Db) -> Result<HashMap<String, usize>, StateError> {
    let mut counts = HashMap::new();
    for name in db.tree_names() {
        if let Some(rule_id) = name.strip_prefix(TREE_PREFIX.as_bytes()) {
            let n = db.open_tree(&name).map_err(store_err("open tree"))?.len();
            counts.insert(String::from_utf8_lossy(rule_id).into_owned(), n);
        }
    }
    Ok(counts)
}

/// A stored last-seen time; a damaged value (not 8 bytes) reads as 0, the oldest.
fn stored_time(value: &[u8]) -> u64 {
    value.try_into().map_or(0, u64::from_be_bytes)
}

impl TermStore for SledStore {
    fn last_seen(&self, rule_id: &str, key: &[u8]) -> Result<Option<u64>, StateError> {
        let Some(value) = self.tree(rule_id)?.get(key).map_err(store_err("read"))? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = value
            .as_ref()
            .try_into()
            .map_err(|_| StateError::CorruptValue {
                rule_id: rule_id.to_string(),
                key: String::from_utf8_lossy(key).into_owned(),
                len: value.len(),
            })?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    fn record(&mut self, rule_id: &str, key: &[u8], time_ms: u64) -> Result<(), StateError> {
        let old = self
            .tree(rule_id)?
            .insert(key, &time_ms.to_be_bytes())
            .map_err(store_err("write"))?;
        if old.is_none() {
            *self.counts.entry(rule_id.to_string()).or_default() += 1;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StateError> {
        self.db.flush().map_err(store_err("flush"))?;
        Ok(())
    }

    fn len(&self) -> usize {
        self.counts.values().sum()
    }

    fn len_of(&self, rule_id: &str) -> usize {
        self.counts.get(rule_id).copied().unwrap_or(0)
    }

    fn times(&self, rule_id: &str) -> Result<Vec<u64>, StateError> {
        let mut times = Vec::with_capacity(self.len_of(rule_id));
        for value in self.tree(rule_id)?.iter().values() {
            times.push(stored_time(&value.map_err(store_err("read"))?));
        }
        Ok(times)
    }

    fn retain(
        &mut self,
        rule_id: &str,
        keep: &mut dyn FnMut(u64) -> bool,
    ) -> Result<usize, StateError> {
        let tree = self.tree(rule_id)?;
        let mut removed = 0;
        for entry in tree.iter() {
            let (key, value) = entry.map_err(store_err("read"))?;
            if !keep(stored_time(&value))
                && tree.remove(&key).map_err(store_err("remove"))?.is_some()
            {
                removed += 1;
            }
        }
        if let Some(n) = self.counts.get_mut(rule_id) {
            *n = n.saturating_sub(removed);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn must<T>(r: Result<T, StateError>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn new_directory_is_created_and_reported() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        let (store, report) = must(SledStore::open(&dir));
        assert_eq!(store.len(), 0);
        assert_eq!(
            report,
            OpenReport {
                dir: dir.clone(),
                created: true,
                quarantined: None,
                entries: 0
            }
        );
        assert_eq!(
            report.to_string(),
            format!("state store {} created", dir.display())
        );
    }

    #[test]
    fn history_persists_across_reopen() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        {
            let (mut store, _) = must(SledStore::open(&dir));
            must(store.record("r-1", b"[\"h1\",\"bash\"]", 1_700_000_000_123));
            must(store.record("r-1", b"[\"h1\",\"sh\"]", 5));
            must(store.record("r-2", b"[\"h1\",\"bash\"]", 7));
            must(store.record("r-1", b"[\"h1\",\"sh\"]", 6));
            assert_eq!(store.len(), 3);
            must(store.flush());
        }
        let (store, report) = must(SledStore::open(&dir));
        assert!(!report.created);
        assert_eq!(report.quarantined, None);
        assert_eq!(report.entries, 3);
        assert_eq!(store.len(), 3);
        assert_eq!(
            must(store.last_seen("r-1", b"[\"h1\",\"bash\"]")),
            Some(1_700_000_000_123)
        );
        assert_eq!(must(store.last_seen("r-1", b"[\"h1\",\"sh\"]")), Some(6));
        assert_eq!(must(store.last_seen("r-2", b"[\"h1\",\"bash\"]")), Some(7));
        assert_eq!(must(store.last_seen("r-2", b"[\"h1\",\"sh\"]")), None);
    }

    #[test]
    fn retain_removes_per_rule_and_the_counts_survive_reopen() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        {
            let (mut store, _) = must(SledStore::open(&dir));
            for i in 0..100u64 {
                must(store.record("r-1", format!("k{i}").as_bytes(), i));
            }
            must(store.record("r-2", b"k", 5));
            let mut times = must(store.times("r-1"));
            times.sort_unstable();
            assert_eq!(times, (0..100).collect::<Vec<_>>());
            assert_eq!(must(store.retain("r-1", &mut |t| t >= 60)), 60);
            assert_eq!((store.len_of("r-1"), store.len_of("r-2")), (40, 1));
            assert_eq!(must(store.retain("nothing", &mut |_| false)), 0);
            must(store.flush());
        }
        let (store, report) = must(SledStore::open(&dir));
        assert_eq!(
            (report.entries, store.len_of("r-1"), store.len()),
            (41, 40, 41)
        );
        assert_eq!(must(store.last_seen("r-1", b"k59")), None);
        assert_eq!(must(store.last_seen("r-1", b"k60")), Some(60));
    }

    #[test]
    fn a_damaged_value_is_the_oldest_and_goes_first() {
        let mut store = must(SledStore::temporary());
        must(store.record("r-1", b"good", 7));
        store
            .db
            .open_tree("new_terms/r-1")
            .unwrap()
            .insert(b"bad", &b"abc"[..])
            .unwrap();
        let mut times = must(store.times("r-1"));
        times.sort_unstable();
        assert_eq!(times, [0, 7]);
        assert_eq!(must(store.retain("r-1", &mut |t| t > 0)), 1);
        assert_eq!(must(store.last_seen("r-1", b"good")), Some(7));
    }

    #[test]
    fn values_are_u64_big_endian_in_a_tree_per_rule() {
        let parent = tempfile::tempdir().unwrap();
        let (mut store, _) = must(SledStore::open(&parent.path().join("s")));
        must(store.record("r-1", b"k", 0x0102_0304_0506_0708));
        let raw = store
            .db
            .open_tree("new_terms/r-1")
            .unwrap()
            .get(b"k")
            .unwrap();
        assert_eq!(raw.as_deref(), Some(&[1u8, 2, 3, 4, 5, 6, 7, 8][..]));
    }

    #[test]
    fn damaged_value_is_a_typed_error() {
        let store = must(SledStore::temporary());
        store
            .db
            .open_tree("new_terms/r-1")
            .unwrap()
            .insert(b"k", &b"abc"[..])
            .unwrap();
        match store.last_seen("r-1", b"k") {
            Err(StateError::CorruptValue { len: 3, .. }) => {}
            other => panic!("expected CorruptValue, got {other:?}"),
        }
    }

    /// Writes a store holding one entry, then overwrites the sled files whose names start with
    /// one of `victims` with garbage.
    fn damaged_store(parent: &Path, victims: &[&str]) -> PathBuf {
        let dir = parent.join("state");
        {
            let (mut store, _) = must(SledStore::open(&dir));
            must(store.record("r-1", b"k", 42));
            must(store.flush());
        }
        let mut damaged = 0;
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_file() && victims.iter().any(|v| name.starts_with(v)) {
                fs::write(&path, vec![0xA5u8; 4096]).unwrap();
                damaged += 1;
            }
        }
        assert_eq!(damaged, victims.len());
        dir
    }

    fn assert_quarantined(parent: &Path, dir: &Path, store: &SledStore, report: &OpenReport) {
        assert_eq!(store.len(), 0);
        assert_eq!(must(store.last_seen("r-1", b"k")), None);
        assert!(report.created);
        let q = match &report.quarantined {
            Some(q) => q,
            None => panic!("expected a quarantine, got {report:?}"),
        };
        let moved_name = q
            .moved_to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(moved_name.starts_with("state.corrupt-"), "{moved_name}");
        assert_eq!(q.moved_to.parent(), Some(parent));
        assert!(q.moved_to.join("db").is_file(), "damaged files kept");
        assert!(dir.is_dir());
        assert!(report.to_string().contains("moved it to"), "{report}");
    }

    #[test]
    fn store_that_will_not_open_is_moved_aside_and_rebuilt() {
        let parent = tempfile::tempdir().unwrap();
        let dir = damaged_store(parent.path(), &["conf", "db"]);
        let (store, report) = must(SledStore::open(&dir));
        assert_quarantined(parent.path(), &dir, &store, &report);
        // The rebuilt store is a normal one: reopening it is not another quarantine.
        drop(store);
        let (_store, again) = must(SledStore::open(&dir));
        assert_eq!(again.quarantined, None);
        assert!(!again.created);
    }

    #[test]
    fn store_that_opens_after_silently_dropping_data_is_moved_aside_too() {
        // With `conf` intact sled opens a garbage `db` as an empty store; the marker catches it.
        let parent = tempfile::tempdir().unwrap();
        let dir = damaged_store(parent.path(), &["db"]);
        let (store, report) = must(SledStore::open(&dir));
        assert_quarantined(parent.path(), &dir, &store, &report);
        assert_eq!(
            report.quarantined.map(|q| q.reason),
            Some(MARKER_MISSING.to_string())
        );
    }

    #[test]
    fn existing_empty_directory_is_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let (store, report) = must(SledStore::open(dir.path()));
        assert_eq!(store.len(), 0);
        assert!(report.created);
        assert_eq!(report.quarantined, None);
    }

    #[test]
    fn store_locked_by_another_instance_is_an_error_not_a_quarantine() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        let (_first, _) = must(SledStore::open(&dir));
        assert!(SledStore::open(&dir).is_err());
        let names: Vec<_> = fs::read_dir(parent.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "nothing was moved aside");
    }

    #[test]
    fn temporary_store_works_and_starts_empty() {
        let mut store = must(SledStore::temporary());
        assert_eq!(store.len(), 0);
        must(store.record("r-1", b"k", 9));
        must(store.flush());
        assert_eq!(must(store.last_seen("r-1", b"k")), Some(9));
        assert_eq!(store.len(), 1);
        let other = must(SledStore::temporary());
        assert_eq!(must(other.last_seen("r-1", b"k")), None);
    }

    #[test]
    fn the_store_is_owner_only_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        // A directory made by someone else's umask, or an older version.
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        {
            let (mut store, _) = must(SledStore::open(&dir));
            must(store.record("r-1", b"k", 1));
            must(store.flush());
        }
        let (_store, _) = must(SledStore::open(&dir));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let mut files = 0;
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let want = if path.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&path), want, "{}", path.display());
            files += 1;
        }
        assert!(files >= 2, "conf and db at least");
    }

    #[test]
    fn a_damaged_store_is_reported_in_words() {
        let parent = tempfile::tempdir().unwrap();
        let dir = damaged_store(parent.path(), &["conf", "db"]);
        let (_store, report) = must(SledStore::open(&dir));
        let text = report.to_string();
        assert!(!text.contains("backtrace"), "{text}");
        assert!(text.contains("could not be opened ("), "{text}");
    }

    #[test]
    fn quarantine_name_skips_taken_names() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        let first = must(quarantine_path(&dir));
        fs::create_dir(&first).unwrap();
        let second = must(quarantine_path(&dir));
        assert_ne!(first, second);
        assert!(second
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("state.corrupt-"));
    }
}
