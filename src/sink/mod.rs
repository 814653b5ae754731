//! Sinks write alerts out. Each one owns its protocol (NDJSON, syslog) and nothing else.

pub mod json;
pub mod line;

use crate::alert::Alert;
use std::fmt;

/// Why a sink could not deliver; names the sink's target.
#[derive(Debug)]
pub struct SinkError {
    /// The sink's target, e.g. `stdout` or a file path.
    pub target: String,
    /// The I/O failure.
    pub source: std::io::Error,
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write alerts to {}: {}", self.target, self.source)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Something that takes alerts: the pipeline calls `emit` per alert and `flush` at the end.
pub trait Sink {
    /// Delivers one alert.
    fn emit(&mut self, alert: &Alert) -> Result<(), SinkError>;
    /// Makes everything emitted so far durable / visible.
    fn flush(&mut self) -> Result<(), SinkError>;
    /// Reopens file outputs (after logrotate moved them); a no-op for the others.
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Collects alerts in memory (tests, and callers that post-process).
#[derive(Debug, Default)]
pub struct Collect(pub Vec<Alert>);

impl Sink for Collect {
    fn emit(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.0.push(alert.clone());
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
