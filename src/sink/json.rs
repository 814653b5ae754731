//! NDJSON sink: one ECS object per line, to standard output or to a file. serde_json escapes every
//! control character, so an argument holding a newline can never start a second line.
//!
//! File mode appends (creating the file with mode 0640), writes each line with one `write(2)` so a
//! reader never sees half a line, reopens the path on [`Sink::reopen`] (logrotate renames the file,
//! the daemon reopens on SIGHUP) and syncs to disk as its [`FsyncPolicy`] says. The same sink writes
//! the "events" output (every exec document) through [`Sink::emit_event`].

use super::{Sink, SinkError};
use crate::alert::Alert;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Mode of a newly created output file: owner read/write, group read (alerts are sensitive).
pub const FILE_MODE: u32 = 0o640;

/// When a file sink forces its data to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Never: the kernel writes back when it likes (lines are still written immediately).
    Never,
    /// After every alert (or event) line.
    Alert,
    /// At most once per this interval, on the next write or flush after it elapsed.
    Interval(Duration),
}

enum Out {
    Stream(Box<dyn Write + Send>),
    File {
        path: PathBuf,
        file: File,
        fsync: FsyncPolicy,
        last_sync: Instant,
        dirty: bool,
    },
}

/// Writes alerts (and, as the events output, exec documents) as newline-delimited JSON.
pub struct JsonSink {
    out: Out,
    target: String,
    events: bool,
    notices: bool,
}

impl JsonSink {
    /// A sink over `out`; `target` names it in errors.
    pub fn new(out: Box<dyn Write + Send>, target: impl Into<String>) -> Self {
        JsonSink {
            out: Out::Stream(out),
            target: target.into(),
            events: false,
            notices: false,
        }
    }

    /// A sink on standard output.
    pub fn stdout() -> Self {
        JsonSink::new(
            Box::new(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stdout(),
            )),
            "stdout",
        )
    }

    /// A sink appending to `path` (created with mode 0640 if missing).
    pub fn file(path: &Path, fsync: FsyncPolicy) -> Result<Self, SinkError> {
        let target = path.display().to_string();
        let file = open_append(path).map_err(|error| SinkError {
            target: target.clone(),
            error,
        })?;
        Ok(JsonSink {
            out: Out::File {
                path: path.to_path_buf(),
                file,
                fsync,
                last_sync: Instant::now(),
                dirty: false,
            },
            target,
            events: false,
            notices: false,
        })
    }

    /// `-` is standard output, anything else a file as in [`JsonSink::file`].
    pub fn open(path: &Path, fsync: FsyncPolicy) -> Result<Self, SinkError> {
        if path == Path::new("-") {
            Ok(JsonSink::stdout())
        } else {
            JsonSink::file(path, fsync)
        }
    }

    /// Makes this sink the events output: [`Sink::emit_event`] writes every exec document.
    pub fn into_events(mut self) -> Self {
        self.events = true;
        self
    }

    /// Also writes notices (the live agent's coverage and loss warnings, rate-cap summaries)
    /// as one JSON object each, beside the alerts: see [`notice_json`].
    pub fn with_notices(mut self) -> Self {
        self.notices = true;
        self
    }

    fn err(&self, error: std::io::Error) -> SinkError {
        SinkError {
            target: self.target.clone(),
            error,
        }
    }

    fn write_value(&mut self, value: &Value) -> Result<(), SinkError> {
        let mut line = to_vec(value);
        line.push(b'\n');
        let result = match &mut self.out {
            Out::Stream(w) => w.write_all(&line),
            Out::File {
                file,
                fsync,
                last_sync,
                dirty,
                ..
            } => file.write_all(&line).and_then(|()| {
                *dirty = true;
                sync_if_due(file, *fsync, last_sync, dirty, false)
            }),
        };
        result.map_err(|e| self.err(e))
    }
}

/// A notice as an ECS object: `event.kind` `event` (so alert queries on `event.kind: alert`
/// skip it), `event.dataset` `auditsentry.notice`, `event.action` from the line's leading
/// `words:` (`coverage-lost`, `records-lost`, `rate-cap`, ...), `log.level` `warning`, and the
/// line itself as `message`.
pub fn notice_json(line: &str, at: SystemTime) -> Value {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let time = crate::audit::record::AuditTime {
        sec: since.as_secs(),
        msec: since.subsec_millis(),
    };
    let action = line
        .split_once(':')
        .map(|(head, _)| head)
        .filter(|h| h.len() <= 40 && h.bytes().all(|b| b.is_ascii_lowercase() || b == b' '))
        .map_or_else(|| "notice".to_string(), |h| h.replace(' ', "-"));
    serde_json::json!({
        "@timestamp": crate::event::timestamp(time),
        "event": {
            "kind": "event",
            "module": "auditsentry",
            "dataset": "auditsentry.notice",
            "action": action,
        },
        "log": {"level": "warning"},
        "message": line,
    })
}

/// `value` as one line of JSON (no newline): serde_json's escaping plus `\uXXXX` for every
/// [`super::is_display_control`] character, which serde_json writes raw. A pure function, for
/// every JSON output and for fuzzing.
pub fn to_vec(value: &Value) -> Vec<u8> {
    use serde::Serialize;
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, DisplaySafe);
    // Writing a Value to memory cannot fail; an empty line would show it.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

/// [`to_vec`] as a string.
pub fn to_line(value: &Value) -> String {
    String::from_utf8_lossy(&to_vec(value)).into_owned()
}

/// serde_json's compact formatter, escaping [`super::is_display_control`] characters too.
struct DisplaySafe;

impl serde_json::ser::Formatter for DisplaySafe {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if super::is_display_control(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Opens `path` for appending; a file it creates gets [`FILE_MODE`] exactly, whatever the umask
/// (an existing file keeps its mode: logrotate's `create` sets it).
fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::PermissionsExt;
    match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(file) => {
            file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
            Ok(file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// Syncs `file` when the policy says it is time (`closing` forces an interval sync).
fn sync_if_due(
    file: &File,
    fsync: FsyncPolicy,
    last_sync: &mut Instant,
    dirty: &mut bool,
    closing: bool,
) -> std::io::Result<()> {
    if !*dirty {
        return Ok(());
    }
    let due = match fsync {
        FsyncPolicy::Never => false,
        FsyncPolicy::Alert => true,
        FsyncPolicy::Interval(every) => closing || last_sync.elapsed() >= every,
    };
    if due {
        file.sync_data()?;
        *last_sync = Instant::now();
        *dirty = false;
    }
    Ok(())
}

impl Sink for JsonSink {
    fn emit(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.write_value(&alert.to_json())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let result = match &mut self.out {
            Out::Stream(w) => w.flush(),
            Out::File {
                file,
                fsync,
                last_sync,
                dirty,
                ..
            } => sync_if_due(file, *fsync, last_sync, dirty, true),
        };
        result.map_err(|e| self.err(e))
    }

    /// Reopens the file by its path, so writing continues in the file logrotate created (or in a
    /// new one). The old file is synced first as the policy says. Standard output is left as it is.
    fn reopen(&mut self) -> Result<(), SinkError> {
        self.flush()?;
        let result = match &mut self.out {
            Out::Stream(_) => Ok(()),
            Out::File { path, file, .. } => open_append(path).map(|f| *file = f),
        };
        result.map_err(|e| self.err(e))
    }

    fn notice(&mut self, line: &str) -> Result<(), SinkError> {
        if self.notices && !self.events {
            self.write_value(&notice_json(line, SystemTime::now()))
        } else {
            Ok(())
        }
    }

    fn wants_events(&self) -> bool {
        self.events
    }

    fn emit_event(&mut self, document: &Value) -> Result<(), SinkError> {
        if self.events {
            self.write_value(document)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn alert(n: u32) -> Alert {
        Alert {
            rule_id: "r".into(),
            rule_name: "R".into(),
            severity: crate::rule::file::Severity::Low,
            risk_score: n,
            new_terms: vec![],
            document: json!({"event": {"kind": "event"}}),
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    #[test]
    fn file_mode_appends_with_mode_0640() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("alerts.json");
        std::fs::write(&path, "{\"old\":true}\n")?;
        let mut sink = JsonSink::file(&path, FsyncPolicy::Alert)?;
        sink.emit(&alert(1))?;
        sink.flush()?;
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], json!({"old": true}));
        assert_eq!(got[1]["rule"]["risk_score"], 1);
        assert_eq!(got[1]["event"]["kind"], "alert");

        let fresh = dir.path().join("new.json");
        JsonSink::file(&fresh, FsyncPolicy::Never)?;
        let mode = std::fs::metadata(&fresh)?.permissions().mode() & 0o777;
        // The umask can only remove bits.
        assert_eq!(mode & !FILE_MODE, 0, "{mode:o}");
        Ok(())
    }

    #[test]
    fn reopen_after_rename_writes_to_the_new_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("alerts.json");
        let rotated = dir.path().join("alerts.json.1");
        let mut sink = JsonSink::file(&path, FsyncPolicy::Interval(Duration::from_secs(3600)))?;
        sink.emit(&alert(1))?;
        std::fs::rename(&path, &rotated)?;
        sink.emit(&alert(2))?; // still the old file, as with any daemon before SIGHUP
        sink.reopen()?;
        sink.emit(&alert(3))?;
        sink.flush()?;
        let old: Vec<_> = lines(&rotated)
            .iter()
            .map(|v| v["rule"]["risk_score"].clone())
            .collect();
        let new: Vec<_> = lines(&path)
            .iter()
            .map(|v| v["rule"]["risk_score"].clone())
            .collect();
        assert_eq!(old, [json!(1), json!(2)]);
        assert_eq!(new, [json!(3)]);
        Ok(())
    }

    #[test]
    fn events_are_written_only_by_an_events_sink() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("events.json");
        let mut plain = JsonSink::file(&path, FsyncPolicy::Never)?;
        assert!(!plain.wants_events());
        plain.emit_event(&json!({"x": 1}))?;
        let mut events = JsonSink::file(&path, FsyncPolicy::Never)?.into_events();
        assert!(events.wants_events());
        events.emit_event(&json!({"x": 2}))?;
        assert_eq!(lines(&path), [json!({"x": 2})]);
        Ok(())
    }

    #[test]
    fn notices_are_written_only_when_asked_for() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("alerts.json");
        JsonSink::file(&path, FsyncPolicy::Never)?.notice("rate cap: x")?;
        assert_eq!(
            lines(&path),
            Vec::<Value>::new(),
            "replay's output stays alerts only"
        );
        let mut sink = JsonSink::file(&path, FsyncPolicy::Never)?.with_notices();
        sink.notice("coverage lost: kernel audit disabled (enabled=0)\nx")?;
        sink.emit(&alert(1))?;
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["event"]["action"], "coverage-lost");
        assert_eq!(got[0]["event"]["kind"], "event");
        assert_eq!(got[0]["log"]["level"], "warning");
        assert_eq!(
            got[0]["message"],
            "coverage lost: kernel audit disabled (enabled=0)\nx"
        );
        assert_eq!(got[1]["event"]["kind"], "alert");
        let odd = notice_json("no colon here", SystemTime::UNIX_EPOCH);
        assert_eq!(odd["event"]["action"], "notice");
        assert_eq!(odd["@timestamp"], "1970-01-01T00:00:00.000Z");
        Ok(())
    }

    #[test]
    fn bidi_controls_and_separators_are_escaped_and_read_back() {
        let evil = "/tmp/\u{202e}fdp.exe\u{2066}x\u{2069}\u{200e}\u{200f}\u{61c}\u{2028}\u{2029}\u{202a}\n\"é";
        let value = json!({"process": {"args": ["ln", evil]}});
        let line = to_line(&value);
        assert_eq!(
            line,
            "{\"process\":{\"args\":[\"ln\",\"/tmp/\\u202efdp.exe\\u2066x\\u2069\\u200e\\u200f\\u061c\\u2028\\u2029\\u202a\\n\\\"é\"]}}"
        );
        assert!(!line.chars().any(crate::sink::is_display_control));
        let back: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back, value);
    }

    #[test]
    fn unopenable_file_names_its_path() {
        let e = JsonSink::file(Path::new("/nonexistent/dir/a.json"), FsyncPolicy::Never)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("cannot write alerts to /nonexistent/dir/a.json: No such file or directory (os error 2)")
        );
    }
}
