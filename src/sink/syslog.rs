//! Syslog sink: one alert = one `key=value` line to the local syslog socket, ident `auditsentry`,
//! with the PID, the configured facility and a severity taken from the rule.
//!
//! This speaks exactly what glibc's syslog(3) sends — `<PRI>Mmm dd hh:mm:ss auditsentry[PID]: line`
//! as one datagram on `/dev/log`, no host name (rsyslog and journald both parse it) — and, like
//! glibc, reconnects and retries once when the daemon behind the socket restarts. It does not call
//! syslog(3) itself because `nix` 0.32 cannot name the `authpriv` facility (our default) and this
//! crate forbids `unsafe`. A line that cannot be delivered is dropped and counted, as glibc drops it:
//! a syslog outage must not stop detection (the JSON sink keeps the full record).
//!
//! The line comes from [`crate::sink::line::render`]: escaped, one line, capped.

use super::{line, Sink, SinkError};
use crate::alert::Alert;
use crate::rule::file::Severity as RuleSeverity;
use std::fmt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The local syslog socket (rsyslog's imuxsock, or journald's).
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// Every line this process logs is tagged `auditsentry[PID]`.
pub const IDENT: &str = "auditsentry";

/// How long one send may block on a full socket before the line is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// A syslog severity (RFC 5424 numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `crit` (2)
    Crit = 2,
    /// `err` (3)
    Err = 3,
    /// `warning` (4)
    Warning = 4,
    /// `notice` (5)
    Notice = 5,
    /// `info` (6)
    Info = 6,
}

/// Default cap of one syslog line, in bytes (the message part).
pub const DEFAULT_MAX_LINE: usize = 2048;

/// A syslog facility by its syslog.conf name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Facility {
    /// `auth`
    Auth,
    /// `authpriv` (the default: alerts are security-relevant and not for every reader)
    #[default]
    Authpriv,
    /// `daemon`
    Daemon,
    /// `user`
    User,
    /// `local0` … `local7`
    Local(u8),
}

impl Facility {
    /// The facility named `name` as syslog.conf spells it, or `None`.
    pub fn from_name(name: &str) -> Option<Facility> {
        Some(match name {
            "auth" => Facility::Auth,
            "authpriv" => Facility::Authpriv,
            "daemon" => Facility::Daemon,
            "user" => Facility::User,
            _ => {
                let n = name.strip_prefix("local")?;
                let d = match n.as_bytes() {
                    [d @ b'0'..=b'7'] => d - b'0',
                    _ => return None,
                };
                Facility::Local(d)
            }
        })
    }

    /// Every accepted name, for error messages.
    pub const NAMES: &'static str = "auth, authpriv, daemon, user, local0 … local7";

    /// The syslog.conf name.
    pub fn name(self) -> String {
        match self {
            Facility::Auth => "auth".into(),
            Facility::Authpriv => "authpriv".into(),
            Facility::Daemon => "daemon".into(),
            Facility::User => "user".into(),
            Facility::Local(n) => format!("local{n}"),
        }
    }

    /// The facility's code (`LOG_AUTHPRIV >> 3` is 10).
    pub fn code(self) -> u8 {
        match self {
            Facility::User => 1,
            Facility::Daemon => 3,
            Facility::Auth => 4,
            Facility::Authpriv => 10,
            Facility::Local(n) => 16 + n.min(7),
        }
    }
}

impl fmt::Display for Facility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The syslog severity of an alert of rule severity `severity`: low → notice, medium → warning,
/// high → err, critical → crit.
pub fn severity_of(severity: RuleSeverity) -> Severity {
    match severity {
        RuleSeverity::Low => Severity::Notice,
        RuleSeverity::Medium => Severity::Warning,
        RuleSeverity::High => Severity::Err,
        RuleSeverity::Critical => Severity::Crit,
    }
}

/// `Mmm dd hh:mm:ss` of `now` (UTC), the RFC 3164 timestamp glibc writes; receivers reading the
/// local socket stamp lines with their own clock anyway.
fn rfc3164_time(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let iso = crate::event::timestamp(crate::audit::AuditTime { sec: secs, msec: 0 });
    // iso: YYYY-MM-DDTHH:MM:SS.mmmZ
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    let day = iso
        .get(8..10)
        .and_then(|d| d.parse::<u8>().ok())
        .unwrap_or(1);
    let clock = iso.get(11..19).unwrap_or("00:00:00");
    format!("{month} {day:>2} {clock}")
}

/// One datagram as glibc's syslog(3) formats it. Control characters and the characters a viewer
/// would reorder text by ([`super::is_display_control`]) in `text` become spaces, so a caller's
/// line can never become two or read reordered (lines from [`line::render`] have none).
pub fn format_message(
    facility: Facility,
    severity: Severity,
    pid: u32,
    now: SystemTime,
    text: &str,
) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_control() || super::is_display_control(c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    format!(
        "<{}>{} {IDENT}[{pid}]: {clean}",
        u32::from(facility.code()) * 8 + severity as u32,
        rfc3164_time(now)
    )
}

/// A connection to the local syslog socket that reconnects when the daemon behind it restarts.
#[derive(Debug)]
pub struct Syslog {
    socket: PathBuf,
    conn: Option<UnixDatagram>,
    dropped: u64,
}

impl Syslog {
    /// A client of the socket at `socket` (normally [`DEFAULT_SOCKET`]); connects on first use.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Syslog {
            socket: socket.into(),
            conn: None,
            dropped: 0,
        }
    }

    /// Lines that could not be delivered (daemon down, socket full past the timeout).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn connect(path: &Path) -> std::io::Result<UnixDatagram> {
        let sock = UnixDatagram::unbound()?;
        sock.set_write_timeout(Some(SEND_TIMEOUT))?;
        sock.connect(path)?;
        Ok(sock)
    }

    /// Sends one line at `severity` to `facility`. On failure it reconnects and retries once, as
    /// glibc does; a line that still cannot be sent is dropped, counted and returned as the error.
    pub fn log(
        &mut self,
        facility: Facility,
        severity: Severity,
        text: &str,
    ) -> Result<(), std::io::Error> {
        let msg = format_message(
            facility,
            severity,
            std::process::id(),
            SystemTime::now(),
            text,
        );
        let first = match &self.conn {
            Some(c) => c.send(msg.as_bytes()).map(drop),
            None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
        };
        if first.is_ok() {
            return Ok(());
        }
        self.conn = None;
        let again = Self::connect(&self.socket).and_then(|c| {
            let sent = c.send(msg.as_bytes()).map(drop);
            self.conn = Some(c);
            sent
        });
        if again.is_err() {
            self.dropped += 1;
        }
        again
    }
}

/// Logs a status or summary line of the daemon (health, reload) at severity info, on a connection
/// of its own (these lines are rare).
pub fn log_status(facility: Facility, text: &str) -> Result<(), SinkError> {
    Syslog::new(DEFAULT_SOCKET)
        .log(facility, Severity::Info, text)
        .map_err(|error| SinkError {
            target: format!("syslog {DEFAULT_SOCKET} ({facility})"),
            error,
        })
}

/// Sends each alert as one line to the local syslog.
#[derive(Debug)]
pub struct SyslogSink {
    client: Syslog,
    facility: Facility,
    max_line: usize,
    warned: bool,
}

impl SyslogSink {
    /// A sink logging to `facility` through `/dev/log`, lines capped at `max_line` bytes (min 256).
    pub fn new(facility: Facility, max_line: usize) -> Self {
        SyslogSink::with_socket(DEFAULT_SOCKET, facility, max_line)
    }

    /// The same on another socket (tests, chroots).
    pub fn with_socket(socket: impl Into<PathBuf>, facility: Facility, max_line: usize) -> Self {
        SyslogSink {
            client: Syslog::new(socket),
            facility,
            max_line,
            warned: false,
        }
    }

    /// The facility alerts go to.
    pub fn facility(&self) -> Facility {
        self.facility
    }

    /// Lines dropped because syslog could not take them.
    pub fn dropped(&self) -> u64 {
        self.client.dropped()
    }

    fn send(&mut self, severity: Severity, text: &str) -> Result<(), SinkError> {
        if let Err(e) = self.client.log(self.facility, severity, text) {
            // Dropped, as glibc drops it: detection goes on; say so once per outage.
            if !self.warned {
                eprintln!(
                    "auditsentry: syslog {}: {e}; dropping lines until it is back",
                    self.client.socket.display()
                );
                self.warned = true;
            }
        } else {
            self.warned = false;
        }
        Ok(())
    }
}

impl Sink for SyslogSink {
    fn emit(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let text = line::render(alert, self.max_line);
        self.send(severity_of(alert.severity), &text)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Notices (rate-cap summaries) are logged at warning: alerts were held back.
    fn notice(&mut self, text: &str) -> Result<(), SinkError> {
        self.send(Severity::Warning, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facility_names_round_trip_and_reject_the_rest() {
        for name in [
            "auth", "authpriv", "daemon", "user", "local0", "local5", "local7",
        ] {
            assert_eq!(
                Facility::from_name(name).map(Facility::name).as_deref(),
                Some(name)
            );
        }
        for bad in ["nope", "local8", "local", "local55", "AUTHPRIV", "", "kern"] {
            assert_eq!(Facility::from_name(bad), None, "{bad}");
        }
        assert_eq!(Facility::default(), Facility::Authpriv);
    }

    #[test]
    fn severities_follow_the_rule() {
        assert_eq!(severity_of(RuleSeverity::Low), Severity::Notice);
        assert_eq!(severity_of(RuleSeverity::Medium), Severity::Warning);
        assert_eq!(severity_of(RuleSeverity::High), Severity::Err);
        assert_eq!(severity_of(RuleSeverity::Critical), Severity::Crit);
    }

    #[test]
    fn datagrams_look_like_glibc_syslog() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14T22:13:20Z
        assert_eq!(
            format_message(Facility::Authpriv, Severity::Notice, 42, t, "a=1 b=\"x y\""),
            "<85>Nov 14 22:13:20 auditsentry[42]: a=1 b=\"x y\""
        );
        let t = UNIX_EPOCH + Duration::from_secs(1_699_000_000); // 2023-11-03T08:26:40Z
        assert_eq!(
            format_message(Facility::Local(5), Severity::Info, 7, t, "two\nlines\0"),
            "<174>Nov  3 08:26:40 auditsentry[7]: two lines "
        );
    }

    #[test]
    fn reconnects_when_the_daemon_behind_the_socket_restarts(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        let mut buf = [0u8; 4096];
        let server = UnixDatagram::bind(&path)?;
        server.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut client = Syslog::new(&path);
        client.log(Facility::Local(5), Severity::Err, "one")?;
        let n = server.recv(&mut buf)?;
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("]: one"));
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("<171>"));

        // The daemon goes away: the line is dropped and counted, not fatal.
        drop(server);
        std::fs::remove_file(&path)?;
        assert!(client
            .log(Facility::Local(5), Severity::Err, "lost")
            .is_err());
        assert_eq!(client.dropped(), 1);

        // It comes back on the same path: the next line arrives.
        let server = UnixDatagram::bind(&path)?;
        server.set_read_timeout(Some(Duration::from_secs(5)))?;
        client.log(Facility::Local(5), Severity::Err, "two")?;
        let n = server.recv(&mut buf)?;
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("]: two"));
        assert_eq!(client.dropped(), 1);
        Ok(())
    }

    #[test]
    fn the_sink_sends_one_rendered_line_per_alert_at_the_rules_severity(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path)?;
        server.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut sink = SyslogSink::with_socket(&path, Facility::Authpriv, 300);
        let alert = Alert {
            rule_id: "r1".into(),
            rule_name: "R".into(),
            severity: RuleSeverity::High,
            risk_score: 73,
            new_terms: vec![],
            document: serde_json::json!({"process": {"args": ["ln", "x\ny", "A".repeat(5000)]}}),
        };
        sink.emit(&alert)?;
        sink.notice("rate cap: capped=3")?;
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf)?;
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (head, text) = got.split_once("]: ").unwrap_or_default();
        assert!(head.starts_with("<83>"), "{head}"); // authpriv (10) * 8 + err (3)
        assert!(
            text.starts_with("rule=R rule_id=r1 severity=high risk=73 argc=3 args=\"ln x\\ny AAA"),
            "{text}"
        );
        assert!(text.ends_with("...\" truncated=yes"), "{text}");
        assert!(text.len() <= 300, "{}", text.len());
        let n = server.recv(&mut buf)?;
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("<84>"));
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("]: rate cap: capped=3"));
        Ok(())
    }
}
