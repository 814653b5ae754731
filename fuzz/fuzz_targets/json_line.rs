//! The JSON alert writer on hostile input: arbitrary argv, executable, cwd, parent and host bytes go
//! through the agent's own parsing and exec building into an alert, which the NDJSON sink writes as
//! exactly one line that parses back to the alert's values (argv as the document's text of the
//! bytes).
#![no_main]

#[path = "common/mod.rs"]
mod common;

use auditsentry::sink::json::JsonSink;
use auditsentry::sink::Sink;
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A writer whose bytes the target reads back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(case) = common::Case::new(data) else {
        return;
    };
    let (exec, alert) = case.alert();
    let out = Shared::default();
    let mut sink = JsonSink::new(Box::new(out.clone()), "fuzz");
    if let Err(e) = sink.emit(&alert).and_then(|()| sink.flush()) {
        panic!("{e}");
    }
    let bytes = out.0.lock().map(|b| b.clone()).unwrap_or_default();
    let Some((last, body)) = bytes.split_last() else {
        panic!("nothing written");
    };
    assert_eq!(*last, b'\n', "the line does not end with a newline");
    assert!(
        !body.contains(&b'\n') && !body.contains(&b'\r'),
        "more than one line"
    );
    let text = std::str::from_utf8(body).expect("NDJSON is UTF-8");
    let parsed: serde_json::Value = serde_json::from_str(text).expect("the line parses");
    assert_eq!(parsed, alert.to_json());
    let args: Vec<String> = exec
        .argv
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(parsed["process"]["args"], serde_json::json!(args));
    assert_eq!(
        parsed["process"]["args_count"],
        serde_json::json!(args.len())
    );
    assert_eq!(
        parsed["process"]["working_directory"],
        serde_json::json!(String::from_utf8_lossy(&case.cwd))
    );
    assert_eq!(parsed["host"]["name"], serde_json::json!(case.host.name));
});
