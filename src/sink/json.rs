//! NDJSON sink: one ECS alert object per line. serde_json escapes every control character, so an
//! argument holding a newline can never start a second line.

use super::{Sink, SinkError};
use crate::alert::Alert;
use std::io::Write;

/// Writes alerts as newline-delimited JSON to any writer (stdout, a file).
pub struct JsonSink {
    out: Box<dyn Write + Send>,
    target: String,
}

impl JsonSink {
    /// A sink over `out`; `target` names it in errors.
    pub fn new(out: Box<dyn Write + Send>, target: impl Into<String>) -> Self {
        JsonSink {
            out,
            target: target.into(),
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

    fn err(&self, source: std::io::Error) -> SinkError {
        SinkError {
            target: self.target.clone(),
            source,
        }
    }
}

impl Sink for JsonSink {
    fn emit(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(&alert.to_json()).map_err(|e| self.err(e.into()))?;
        line.push(b'\n');
        self.out.write_all(&line).map_err(|e| self.err(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.err(e))
    }
}
