//! Sinks write alerts out. Each one owns its protocol (NDJSON, syslog) and nothing else.
//!
//! Besides alerts, a sink may take *notices* (one-line operational messages such as a rate-cap
//! summary) and *events* (the ECS document of every exec, for a central Elasticsearch that runs the
//! same rule across a fleet). [`Fanout`] sends each of them to several sinks, so one failing output
//! never silences the others.

pub mod json;
pub mod line;
pub mod syslog;
pub mod text;

use crate::alert::Alert;
use serde_json::Value;

/// Characters a log viewer may use to reorder or break the text around them: the bidirectional
/// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), the directional marks
/// (U+200E, U+200F, U+061C) and the line and paragraph separators (U+2028, U+2029). Every output
/// escapes them, so an alert's text reads as it is.
pub fn is_display_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{061C}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Why a sink could not deliver; names the sink's target. The message holds the OS error's, so
/// the I/O error is not also its `source()` (a chain would print it twice).
#[derive(Debug, thiserror::Error)]
#[error("cannot write alerts to {target}: {error}")]
pub struct SinkError {
    /// The sink's target, e.g. `stdout` or a file path.
    pub target: String,
    /// The I/O failure.
    pub error: std::io::Error,
}

/// Something that takes alerts: the pipeline calls `emit` per alert and `flush` at the end.
pub trait Sink {
    /// Delivers one alert.
    fn emit(&mut self, alert: &Alert) -> Result<(), SinkError>;
    /// Makes everything emitted so far durable / visible.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Reopens the sink's files (after logrotate renamed them). Default: nothing to reopen.
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Delivers one operational line (rate-cap summary, health). Default: dropped.
    fn notice(&mut self, _line: &str) -> Result<(), SinkError> {
        Ok(())
    }

    /// Whether [`Sink::emit_event`] wants every exec document; the pipeline skips building the
    /// call when nobody does. Default: no.
    fn wants_events(&self) -> bool {
        false
    }

    /// Delivers the ECS document of one exec event (every exec, not only alerts). Default: dropped.
    fn emit_event(&mut self, _document: &Value) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Several outputs as one sink: alerts and notices go to every alert sink, exec documents to the
/// events sink. An error in one output does not stop the others; the first error is returned after
/// all were tried.
#[derive(Default)]
pub struct Fanout {
    sinks: Vec<Box<dyn Sink + Send>>,
    events: Option<Box<dyn Sink + Send>>,
    notices_to_stderr: bool,
}

impl Fanout {
    /// An empty fanout (alerts go nowhere until a sink is added).
    pub fn new() -> Self {
        Fanout::default()
    }

    /// Adds an output for alerts and notices.
    pub fn push(&mut self, sink: Box<dyn Sink + Send>) {
        self.sinks.push(sink);
    }

    /// Sets the output for every exec document (its [`Sink::emit_event`] is called).
    pub fn set_events(&mut self, sink: Box<dyn Sink + Send>) {
        self.events = Some(sink);
    }

    /// Also writes notices to standard error (replay: the operator is at the terminal).
    pub fn set_notices_to_stderr(&mut self, on: bool) {
        self.notices_to_stderr = on;
    }

    /// How many alert outputs there are.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether alerts go nowhere.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    fn each(
        &mut self,
        with_events: bool,
        mut f: impl FnMut(&mut (dyn Sink + Send)) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        let mut first = None;
        let events = if with_events {
            self.events.as_mut()
        } else {
            None
        };
        for sink in self.sinks.iter_mut().chain(events) {
            if let Err(e) = f(sink.as_mut()) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Sink for Fanout {
    fn emit(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.each(false, |s| s.emit(alert))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.each(true, |s| s.flush())
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        self.each(true, |s| s.reopen())
    }

    fn notice(&mut self, line: &str) -> Result<(), SinkError> {
        if self.notices_to_stderr {
            eprintln!("auditsentry: {line}");
        }
        self.each(false, |s| s.notice(line))
    }

    fn wants_events(&self) -> bool {
        self.events.is_some()
    }

    fn emit_event(&mut self, document: &Value) -> Result<(), SinkError> {
        match &mut self.events {
            Some(sink) => sink.emit_event(document),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// Records what it was given; fails on `emit` when `fail` is set.
    #[derive(Clone, Default)]
    struct Probe {
        log: Arc<Mutex<Vec<String>>>,
        fail: bool,
    }

    impl Probe {
        fn said(&self) -> Vec<String> {
            self.log.lock().map(|l| l.clone()).unwrap_or_default()
        }
        fn note(&self, what: String) {
            if let Ok(mut l) = self.log.lock() {
                l.push(what);
            }
        }
    }

    impl Sink for Probe {
        fn emit(&mut self, alert: &Alert) -> Result<(), SinkError> {
            self.note(format!("alert {}", alert.rule_id));
            if self.fail {
                return Err(SinkError {
                    target: "probe".into(),
                    error: std::io::Error::other("down"),
                });
            }
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            self.note("flush".into());
            Ok(())
        }
        fn reopen(&mut self) -> Result<(), SinkError> {
            self.note("reopen".into());
            Ok(())
        }
        fn notice(&mut self, line: &str) -> Result<(), SinkError> {
            self.note(format!("notice {line}"));
            Ok(())
        }
        fn wants_events(&self) -> bool {
            true
        }
        fn emit_event(&mut self, document: &Value) -> Result<(), SinkError> {
            self.note(format!("event {document}"));
            Ok(())
        }
    }

    fn alert() -> Alert {
        Alert {
            rule_id: "r".into(),
            rule_name: "R".into(),
            severity: crate::rule::file::Severity::Low,
            risk_score: 21,
            new_terms: vec![],
            document: json!({}),
        }
    }

    #[test]
    fn a_failing_sink_does_not_stop_the_others_and_its_error_is_returned() {
        let bad = Probe {
            fail: true,
            ..Probe::default()
        };
        let good = Probe::default();
        let mut f = Fanout::new();
        f.push(Box::new(bad.clone()));
        f.push(Box::new(good.clone()));
        let e = f.emit(&alert()).err().map(|e| e.target);
        assert_eq!(e.as_deref(), Some("probe"));
        assert_eq!(good.said(), ["alert r"]);
        assert_eq!(bad.said(), ["alert r"]);
    }

    #[test]
    fn events_go_only_to_the_events_sink_and_notices_only_to_alert_sinks() {
        let alerts = Probe::default();
        let events = Probe::default();
        let mut f = Fanout::new();
        assert!(!f.wants_events());
        f.push(Box::new(alerts.clone()));
        f.set_events(Box::new(events.clone()));
        assert!(f.wants_events());
        f.emit(&alert()).ok();
        f.emit_event(&json!({"a": 1})).ok();
        f.notice("capped").ok();
        f.reopen().ok();
        f.flush().ok();
        assert_eq!(
            alerts.said(),
            ["alert r", "notice capped", "reopen", "flush"]
        );
        assert_eq!(events.said(), ["event {\"a\":1}", "reopen", "flush"]);
    }
}
