//! The human view of `replay`: one readable line per alert, for a person at a terminal.
//!
//! `TIME  HOST  RULE  PARENT[PPID] → PROCESS[PID]  ARGS`. Every value goes through the same
//! escaping as the syslog line ([`super::line`]): an argument holding a newline, an escape
//! sequence, a bidirectional control or U+2028 is written `\n`, `\x1b`, `\u{202e}`, ..., so an
//! alert stays one line and cannot move the cursor or reorder the text around it. An argument that
//! is not plain (spaces, quotes, backslashes, controls, empty) is shown in double quotes.

use super::line::escape_into;
use super::{Sink, SinkError};
use crate::alert::Alert;
use serde_json::Value;
use std::io::Write;

/// Writes one readable line per alert; notices are left to standard error (see `Fanout`).
pub struct TextSink {
    out: Box<dyn Write + Send>,
    target: String,
}

impl TextSink {
    /// A sink over `out`; `target` names it in errors.
    pub fn new(out: Box<dyn Write + Send>, target: impl Into<String>) -> Self {
        TextSink {
            out,
            target: target.into(),
        }
    }

    /// A sink on standard output (line-buffered by Rust's stdout: a terminal sees each alert at once).
    pub fn stdout() -> Self {
        TextSink::new(Box::new(std::io::stdout()), "stdout")
    }

    fn err(&self, error: std::io::Error) -> SinkError {
        SinkError {
            target: self.target.clone(),
            error,
        }
    }
}

impl Sink for TextSink {
    fn emit(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let mut line = render(alert);
        line.push('\n');
        self.out.write_all(line.as_bytes()).map_err(|e| self.err(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.err(e))
    }
}

/// One alert as one line, without the newline.
pub fn render(alert: &Alert) -> String {
    let doc = &alert.document;
    let get = |path: &[&str]| -> Option<&Value> {
        let mut cur = doc;
        for p in path {
            cur = cur.get(p)?;
        }
        (!cur.is_null()).then_some(cur)
    };
    let text = |path: &[&str]| -> String {
        match get(path) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "?".to_owned(),
        }
    };
    let who = |name: &[&str], pid: &[&str]| -> String {
        let mut out = word(&text(name));
        if let Some(pid) = get(pid) {
            out.push_str(&format!("[{pid}]"));
        }
        out
    };
    let mut line = String::with_capacity(256);
    line.push_str(&word(&text(&["@timestamp"])));
    line.push_str("  ");
    line.push_str(&word(&text(&["host", "name"])));
    line.push_str("  ");
    line.push_str(&word(&alert.rule_name));
    line.push_str("  ");
    line.push_str(&who(
        &["process", "parent", "name"],
        &["process", "parent", "pid"],
    ));
    line.push_str(" → ");
    line.push_str(&who(&["process", "name"], &["process", "pid"]));
    line.push(' ');
    match get(&["process", "args"]).and_then(Value::as_array) {
        Some(args) => {
            for arg in args {
                line.push(' ');
                match arg.as_str() {
                    Some(a) => line.push_str(&argument(a)),
                    None => line.push_str(&argument(&arg.to_string())),
                }
            }
        }
        None => line.push_str(" (no arguments)"),
    }
    line
}

/// A free-text value (rule name, host): escaped, spaces kept.
fn word(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_into(&mut out, value, false);
    out
}

/// One argument: bare when plain, else in double quotes with `"` and `\` escaped.
fn argument(value: &str) -> String {
    let plain = !value.is_empty()
        && value.chars().all(|c| {
            !c.is_control()
                && !matches!(c, ' ' | '"' | '\\' | '\'')
                && !super::is_display_control(c)
        });
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    escape_into(&mut out, value, false);
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(args: Vec<&str>) -> Alert {
        Alert {
            rule_id: "d19a2399-f8e2-4b10-80d8-a561ce9d24d1".into(),
            rule_name: "System Binary Symlink to Suspicious Location".into(),
            severity: crate::rule::file::Severity::Low,
            risk_score: 21,
            new_terms: vec![],
            document: json!({
                "@timestamp": "2026-11-28T09:36:24.373Z",
                "host": {"name": "web1", "id": "abc"},
                "process": {"pid": 42, "name": "ln", "args": args,
                            "parent": {"pid": 41, "name": "bash"}},
            }),
        }
    }

    #[test]
    fn plain_alert_reads_as_one_line() {
        assert_eq!(
            render(&alert(vec!["ln", "-s", "/usr/bin/id", "/tmp/x"])),
            "2026-11-28T09:36:24.373Z  web1  System Binary Symlink to Suspicious Location  \
             bash[41] → ln[42]  ln -s /usr/bin/id /tmp/x"
        );
    }

    #[test]
    fn hostile_arguments_stay_on_one_line_and_cannot_move_the_cursor() {
        let hostile = [
            "/tmp/a\nFAKE ALERT",
            "/tmp/b\r\x1b[2K\x1b[1A",
            "/tmp/\u{202e}txt.exe",
            "/tmp/\u{2028}sep\u{2029}",
            "/tmp/\u{200f}\u{061c}\u{2066}x\u{2069}",
            "\u{9b}31m\u{85}\x7f\x00",
            "\u{fffd}invalid",
            "",
            "two words",
            "say \"hi\" \\ there",
        ];
        let line = render(&alert([&["ln", "-s"][..], &hostile[..]].concat()));
        assert_eq!(line.lines().count(), 1, "{line}");
        for c in line.chars() {
            assert!(
                !c.is_control() && !crate::sink::is_display_control(c),
                "raw {c:?} in {line}"
            );
        }
        assert!(line.contains(r#""/tmp/a\nFAKE ALERT""#), "{line}");
        assert!(line.contains(r#""/tmp/b\r\x1b[2K\x1b[1A""#), "{line}");
        assert!(line.contains(r#""/tmp/\u{202e}txt.exe""#), "{line}");
        assert!(line.contains(r#""two words""#), "{line}");
        assert!(line.contains(r#""say \"hi\" \\ there""#), "{line}");
        assert!(line.contains(r#" "" "#), "{line}");
        assert!(line.contains("\u{fffd}invalid"), "{line}");
    }

    #[test]
    fn hostile_names_are_escaped_too() {
        let mut a = alert(vec!["ln"]);
        a.document["host"]["name"] = json!("h\x1b]0;owned\x07");
        a.document["process"]["parent"]["name"] = json!("sh\n");
        a.rule_name = "r\u{202e}".into();
        let line = render(&a);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains(r"h\x1b]0;owned\x07"), "{line}");
        assert!(line.contains(r"sh\n[41]"), "{line}");
        assert!(line.contains(r"r\u{202e}"), "{line}");
    }

    #[test]
    fn missing_fields_show_a_question_mark() {
        let mut a = alert(vec![]);
        a.document = json!({"process": {"name": "ln"}});
        assert_eq!(
            render(&a),
            "?  ?  System Binary Symlink to Suspicious Location  ? → ln  (no arguments)"
        );
    }
}
