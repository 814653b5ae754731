//! The journal of what a running agent changed in the kernel (audit rules added, audit turned
//! on), kept in the state directory and written *before* each change. An agent killed with
//! SIGKILL cannot undo its changes; the next start, or `auditsentry cleanup` from the package's
//! maintainer scripts, reads the journal and does.
//!
//! The file is text, one fact per line, replaced atomically (temporary file, fsync, rename) and
//! readable by its owner only:
//!
//! ```text
//! auditsentry kernel changes v1
//! agent 4242 8123456
//! boot 5e1ab0c6-7d3a-4a59-9d0b-0cbbd1c3f2a1
//! enabled-audit
//! rule 04000000020000000300…
//! ```
//!
//! `agent PID START` names the agent (START: its start time in clock ticks after boot, field 22
//! of `/proc/PID/stat`, so a reused pid is not taken for the agent); `boot` is the kernel's boot
//! id (a journal from an earlier boot describes a kernel that is gone); each `rule` line is the
//! `audit_rule_data` the agent added, in hex, exactly as AUDIT_DEL_RULE needs it.

use crate::source::netlink::RuleData;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The journal's file name in the state directory.
pub const FILE_NAME: &str = "kernel-changes";
/// First line of the file.
const MAGIC: &str = "auditsentry kernel changes v1";
/// Mode of the file: owner only (it names rules and pids; nobody else needs it).
const MODE: u32 = 0o600;
/// Most bytes read: a journal holds a handful of rules of about 1 KiB each.
const MAX_BYTES: u64 = 1 << 20;

/// What an agent changed in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// The agent's pid.
    pub pid: u32,
    /// Its start time (clock ticks after boot), when known.
    pub start_time: Option<u64>,
    /// The boot id of the kernel it changed, when known.
    pub boot_id: Option<String>,
    /// The agent turned kernel audit on (and should turn it off again).
    pub enabled_audit: bool,
    /// Rules the agent added (or is about to add).
    pub rules: Vec<RuleData>,
}

/// Why the journal could not be read or written.
#[derive(Debug, Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("kernel-change journal {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure (in the message, so not also the `source()`).
        error: io::Error,
    },
    /// The file is not a journal this version can read.
    #[error("kernel-change journal {path}:{line}: {what}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: usize,
        /// What is wrong.
        what: String,
    },
}

/// The journal file of one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Journal {
        Journal {
            path: state_dir.join(FILE_NAME),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl FnOnce(io::Error) -> JournalError + '_ {
        |error| JournalError::Io {
            path: self.path.clone(),
            error,
        }
    }

    /// The recorded changes; `None` when there is no journal (nothing to undo).
    pub fn read(&self) -> Result<Option<Changes>, JournalError> {
        let mut bytes = Vec::new();
        match File::open(&self.path) {
            Ok(f) => {
                use std::io::Read;
                f.take(MAX_BYTES)
                    .read_to_end(&mut bytes)
                    .map_err(self.io())?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io()(e)),
        }
        parse(&bytes)
            .map(Some)
            .map_err(|(line, what)| JournalError::Bad {
                path: self.path.clone(),
                line,
                what,
            })
    }

    /// Replaces the journal with `changes`, durably, before the caller changes the kernel.
    pub fn write(&self, changes: &Changes) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("tmp");
        let text = render(changes);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(MODE)
            .open(&tmp)
            .map_err(self.io())?;
        // An older file at `tmp` keeps its mode through `open`: set it.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(MODE))
            .and_then(|()| f.write_all(text.as_bytes()))
            .and_then(|()| f.sync_all())
            .map_err(self.io())?;
        fs::rename(&tmp, &self.path).map_err(self.io())?;
        if let Some(dir) = self.path.parent() {
            // The rename is durable once the directory is.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(self.io())?;
        }
        Ok(())
    }

    /// Deletes the journal (nothing left to undo). A missing file is fine.
    pub fn remove(&self) -> Result<(), JournalError> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.io()(e)),
            _ => Ok(()),
        }
    }
}

fn render(c: &Changes) -> String {
    let mut out = format!("{MAGIC}\nagent {}", c.pid);
    if let Some(start) = c.start_time {
        out.push_str(&format!(" {start}"));
    }
    out.push('\n');
    if let Some(boot) = &c.boot_id {
        out.push_str(&format!("boot {boot}\n"));
    }
    if c.enabled_audit {
        out.push_str("enabled-audit\n");
    }
    for rule in &c.rules {
        if let Ok(bytes) = rule.encode() {
            out.push_str("rule ");
            for b in bytes {
                out.push_str(&format!("{b:02x}"));
            }
            out.push('\n');
        }
    }
    out
}

fn parse(bytes: &[u8]) -> Result<Changes, (usize, String)> {
    let text = std::str::from_utf8(bytes).map_err(|_| (1, "not UTF-8 text".to_string()))?;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, MAGIC)) => {}
        _ => return Err((1, format!("does not start with {MAGIC:?}"))),
    }
    let mut changes = Changes::default();
    let mut agent = false;
    for (n, line) in lines {
        let mut words = line.split(' ');
        match words.next() {
            Some("agent") => {
                let num = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok());
                let pid = num(words.next())
                    .and_then(|p| u32::try_from(p).ok())
                    .ok_or((n, "agent line without a pid".to_string()))?;
                changes.pid = pid;
                changes.start_time = num(words.next());
                agent = true;
            }
            Some("boot") => changes.boot_id = words.next().map(str::to_string),
            Some("enabled-audit") => changes.enabled_audit = true,
            Some("rule") => {
                let hex = words.next().unwrap_or_default();
                let bytes = decode_hex(hex).ok_or((n, "rule is not hex".to_string()))?;
                let rule = RuleData::decode(&bytes).map_err(|e| (n, e.to_string()))?;
                changes.rules.push(rule);
            }
            Some("") => {}
            Some(other) => return Err((n, format!("unknown entry {other:?}"))),
            None => {}
        }
    }
    if !agent {
        return Err((2, "no agent line".into()));
    }
    Ok(changes)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::netlink::Arch;
    use std::os::unix::fs::PermissionsExt;

    fn changes() -> Changes {
        Changes {
            pid: 4242,
            start_time: Some(8_123_456),
            boot_id: Some("5e1ab0c6-7d3a-4a59-9d0b-0cbbd1c3f2a1".into()),
            enabled_audit: true,
            rules: vec![
                RuleData::exec_rule(Arch::X86_64, Some(4242), "auditsentry").expect("rule"),
                RuleData::exec_rule(Arch::I386, Some(4242), "auditsentry").expect("rule"),
            ],
        }
    }

    #[test]
    fn round_trips_and_is_owner_only_whatever_the_umask() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::in_dir(dir.path());
        assert_eq!(j.read().expect("read"), None, "no journal: nothing to undo");
        // A left-over temporary file with wide permissions does not widen the journal.
        std::fs::write(j.path().with_extension("tmp"), "x").expect("write");
        std::fs::set_permissions(
            j.path().with_extension("tmp"),
            std::fs::Permissions::from_mode(0o666),
        )
        .expect("chmod");
        j.write(&changes()).expect("write");
        assert_eq!(j.read().expect("read"), Some(changes()));
        let mode = std::fs::metadata(j.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let text = std::fs::read_to_string(j.path()).expect("text");
        assert!(text.starts_with("auditsentry kernel changes v1\nagent 4242 8123456\nboot 5e1ab0c6-7d3a-4a59-9d0b-0cbbd1c3f2a1\nenabled-audit\nrule 04000000"), "{text}");
        j.remove().expect("remove");
        j.remove().expect("removing twice is fine");
        assert_eq!(j.read().expect("read"), None);
    }

    #[test]
    fn a_damaged_journal_names_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::in_dir(dir.path());
        for (text, line) in [
            ("something else\n", 1),
            ("auditsentry kernel changes v1\nagent 1\nrule 0g\n", 3),
            ("auditsentry kernel changes v1\nagent 1\nrule 0400\n", 3),
            ("auditsentry kernel changes v1\nenabled-audit\n", 2),
            ("auditsentry kernel changes v1\nagent x\n", 2),
        ] {
            std::fs::write(j.path(), text).expect("write");
            match j.read() {
                Err(JournalError::Bad { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }
}
