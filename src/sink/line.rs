//! The one-line `key=value` rendering of an alert, for syslog and terminals.
//!
//! A value is written bare when it is plain, and in double quotes otherwise. Inside quotes `"` and
//! `\` are backslash-escaped and every control character (C0, DEL, C1, U+2028/U+2029 — anything a
//! log viewer might treat as a line break) becomes `\n`, `\r`, `\t` or `\xHH`/`\u{H}`. In `args`,
//! spaces inside one argument are written `\x20`, so the space between arguments is unambiguous.
//! Nothing an attacker puts in argv can start a second line or look like another field. The line is
//! capped; a cut line ends with `truncated=yes` and the full record stays in the JSON sink.

use crate::alert::Alert;
use serde_json::Value;
use std::fmt::Write;

/// Renders `alert` as one `key=value` line of at most `max_bytes` bytes (minimum 256).
pub fn render(alert: &Alert, max_bytes: usize) -> String {
    let max = max_bytes.max(256);
    let doc = &alert.document;
    let s = |path: &[&str]| -> Option<String> {
        let mut cur = doc;
        for p in path {
            cur = cur.get(p)?;
        }
        match cur {
            Value::String(v) => Some(v.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let mut fields: Vec<(&str, Option<String>)> = vec![
        ("rule", Some(alert.rule_name.clone())),
        ("rule_id", Some(alert.rule_id.clone())),
        ("severity", Some(alert.severity.clone())),
        ("risk", Some(alert.risk_score.to_string())),
        ("host", s(&["host", "name"])),
        ("host_id", s(&["host", "id"])),
        ("time", s(&["@timestamp"])),
        ("event_id", s(&["event", "id"])),
        ("pid", s(&["process", "pid"])),
        ("ppid", s(&["process", "parent", "pid"])),
        ("parent", s(&["process", "parent", "name"])),
        ("parent_exe", s(&["process", "parent", "executable"])),
        ("exe", s(&["process", "executable"])),
        ("uid", s(&["user", "id"])),
        ("auid", s(&["auditd", "auid"])),
        ("cwd", s(&["process", "working_directory"])),
    ];
    if !alert.new_terms.is_empty() {
        fields.push(("new_terms", Some(alert.new_terms.join(","))));
    }
    let mut line = String::with_capacity(512);
    for (key, value) in fields {
        if let Some(v) = value {
            push_field(&mut line, key, &v);
        }
    }
    let args: Vec<String> = doc
        .get("process")
        .and_then(|p| p.get("args"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let _ = write!(line, " argc={}", args.len());
    line.push_str(" args=\"");
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        escape_into(&mut line, arg, true);
    }
    line.push('"');
    let line = line.trim_start().to_string();
    if line.len() <= max {
        return line;
    }
    cut(line, max)
}

/// Cuts `line` to fit `max` bytes with a closing quote and the truncation marker, never inside an
/// escape sequence or a UTF-8 character.
fn cut(line: String, max: usize) -> String {
    const TAIL: &str = "...\" truncated=yes";
    let budget = max.saturating_sub(TAIL.len());
    let mut end = 0;
    let bytes = line.as_bytes();
    let mut i = 0;
    // Walk escape-aware: a backslash and what it introduces are one unit.
    while i < bytes.len() {
        let unit = unit_len(&line, i);
        if i + unit > budget {
            break;
        }
        i += unit;
        end = i;
    }
    let mut out = line[..end].to_string();
    // If the cut happened before `args="`, close nothing special: the marker still ends the line.
    out.push_str(TAIL);
    out
}

/// Length in bytes of the unit starting at `i`: a whole escape (`\n`, `\xHH`, `\u{...}`) or one char.
fn unit_len(s: &str, i: usize) -> usize {
    let rest = &s[i..];
    let b = rest.as_bytes();
    if b.first() == Some(&b'\\') {
        match b.get(1) {
            Some(b'x') => return 4.min(b.len()),
            Some(b'u') => return rest.find('}').map_or(b.len(), |p| p + 1),
            Some(_) => return 2,
            None => return 1,
        }
    }
    rest.chars().next().map_or(1, char::len_utf8)
}

fn push_field(line: &mut String, key: &str, value: &str) {
    line.push(' ');
    line.push_str(key);
    line.push('=');
    let plain = !value.is_empty()
        && value.chars().all(|c| {
            !c.is_control() && !matches!(c, ' ' | '"' | '\\' | '=' | '\u{2028}' | '\u{2029}')
        });
    if plain {
        line.push_str(value);
    } else {
        line.push('"');
        escape_into(line, value, false);
        line.push('"');
    }
}

/// Escapes `value` for use inside double quotes; with `space_hex`, spaces become `\x20`.
fn escape_into(out: &mut String, value: &str, space_hex: bool) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if space_hex => out.push_str("\\x20"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(args: Vec<&str>) -> Alert {
        Alert {
            rule_id: "d19a2399-f8e2-4b10-80d8-a561ce9d24d1".into(),
            rule_name: "System Binary Symlink to Suspicious Location".into(),
            severity: "low".into(),
            risk_score: 21,
            new_terms: vec!["abc".into(), "bash".into()],
            document: json!({
                "@timestamp": "2026-11-28T09:36:24.373Z",
                "event": {"id": "1795858584.373:30210"},
                "host": {"name": "web1", "id": "abc"},
                "process": {"pid": 42, "executable": "/usr/bin/ln", "working_directory": "/root",
                            "args": args, "parent": {"pid": 41, "name": "bash", "executable": "/usr/bin/bash"}},
                "user": {"id": "0"},
                "auditd": {"auid": 1000},
            }),
        }
    }

    #[test]
    fn plain_alert_renders_exactly() {
        let line = render(&alert(vec!["ln", "-s", "/usr/bin/id", "/tmp/x"]), 2048);
        assert_eq!(
            line,
            "rule=\"System Binary Symlink to Suspicious Location\" rule_id=d19a2399-f8e2-4b10-80d8-a561ce9d24d1 \
             severity=low risk=21 host=web1 host_id=abc time=2026-11-28T09:36:24.373Z \
             event_id=1795858584.373:30210 pid=42 ppid=41 parent=bash parent_exe=/usr/bin/bash \
             exe=/usr/bin/ln uid=0 auid=1000 cwd=/root new_terms=abc,bash argc=4 args=\"ln -s /usr/bin/id /tmp/x\""
        );
    }

    #[test]
    fn hostile_arguments_stay_on_one_line() {
        let evil = "/tmp/a\nFAKE rule=\"x\" \r\t\u{1d}\u{0}\u{85}\u{2028}\\";
        let line = render(&alert(vec!["ln", "-s", "/usr/bin/id", evil]), 2048);
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{2028}'),
            "{line:?}"
        );
        assert!(line.ends_with(
            "args=\"ln -s /usr/bin/id /tmp/a\\nFAKE\\x20rule=\\\"x\\\"\\x20\\r\\t\\x1d\\x00\\u{85}\\u{2028}\\\\\""
        ), "{line}");
        assert_eq!(line.matches(" args=").count(), 1);
    }

    #[test]
    fn long_lines_are_cut_and_marked() {
        let big = "A".repeat(1 << 20);
        let line = render(&alert(vec!["ln", "-s", "/usr/bin/id", &big]), 2048);
        assert!(line.len() <= 2048, "{}", line.len());
        assert!(line.ends_with("...\" truncated=yes"));
        assert!(line.contains("parent=bash"));
    }

    #[test]
    fn cut_never_splits_an_escape_or_a_character() {
        for n in 0..40 {
            let arg = format!("{}{}", "é".repeat(n), "\n".repeat(200));
            let line = render(&alert(vec!["ln", &arg]), 600);
            assert!(line.len() <= 600);
            let body = line.trim_end_matches("...\" truncated=yes");
            assert!(!body.ends_with('\\') && !body.ends_with("\\x"), "{body}");
        }
    }
}
