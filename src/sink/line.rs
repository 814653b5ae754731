//! The one-line `key=value` rendering of an alert, for syslog and terminals.
//!
//! A value is written bare when it is plain, and in double quotes otherwise. Inside quotes `"` and
//! `\` are backslash-escaped and every control character (C0, DEL, C1) and every character a log
//! viewer might use to break the line or reorder its text (U+2028/U+2029, the bidirectional
//! controls: [`super::is_display_control`]) becomes `\n`, `\r`, `\t` or `\xHH`/`\u{H}`. In `args`,
//! spaces inside one argument are written `\x20`, so the space between arguments is unambiguous.
//! Nothing an attacker puts in argv can start a second line or look like another field.
//!
//! The line is capped at `max_line` bytes by field, not by position: every field keeps its key
//! and a value, and when the whole does not fit, the longest values are cut to an equal share of
//! the room left (each ending `..."`, always quoted), so a long `parent_exe` or `cwd` cannot push
//! `exe`, `uid` or `args` out of the line. `args` comes last. A cut line ends with
//! `truncated=yes`; the full record stays in the JSON output.

use crate::alert::Alert;
use serde_json::Value;
use std::fmt::Write;

/// What ends a cut value inside its quotes.
const CUT_MARK: &str = "...";
/// What ends a line with a cut value.
const CUT_TAIL: &str = " truncated=yes";
/// The shortest a cut value gets: `"..."`.
const MIN_CUT: usize = 2 + CUT_MARK.len();

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
    let named: Vec<(&str, Option<String>)> = vec![
        ("rule", Some(alert.rule_name.clone())),
        ("rule_id", Some(alert.rule_id.clone())),
        ("severity", Some(alert.severity.as_str().to_string())),
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
    // Each field as (key, rendered value, whether the value is quoted).
    let mut fields: Vec<(&str, String, bool)> = named
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key, v)))
        .map(|(key, v)| {
            let (text, quoted) = render_value(&v);
            (key, text, quoted)
        })
        .collect();
    if !alert.new_terms.is_empty() {
        let (text, quoted) = render_value(&alert.new_terms.join(","));
        fields.push(("new_terms", text, quoted));
    }
    // A sequence's stages (the document is its last event's), a threshold's count.
    let ours = doc.get("auditsentry");
    let mut push = |key, value: String| {
        let (text, quoted) = render_value(&value);
        fields.push((key, text, quoted));
    };
    if let Some(stages) = ours
        .and_then(|o| o.get("sequence"))
        .and_then(Value::as_array)
    {
        let pids: Vec<String> = stages
            .iter()
            .map(|s| s["process"]["pid"].to_string())
            .collect();
        push("sequence", stages.len().to_string());
        push("sequence_pids", pids.join(","));
    }
    if let Some(result) = ours.and_then(|o| o.get("threshold_result")) {
        push("count", result["count"].to_string());
        if let Some(n) = result["cardinality"][0].get("value") {
            push("cardinality", n.to_string());
        }
    }
    let args = doc
        .get("process")
        .and_then(|p| p.get("args"))
        .and_then(Value::as_array);
    let argc = args.map_or(0, Vec::len);
    fields.push(("argc", argc.to_string(), false));
    let mut rendered_args = String::from("\"");
    for (i, arg) in args.into_iter().flatten().enumerate() {
        if i > 0 {
            rendered_args.push(' ');
        }
        match arg.as_str() {
            Some(a) => escape_into(&mut rendered_args, a, true),
            None => escape_into(&mut rendered_args, &arg.to_string(), true),
        }
    }
    rendered_args.push('"');
    fields.push(("args", rendered_args, true));
    fit(fields, max)
}

/// A value as it is written: bare when plain, else quoted and escaped.
fn render_value(value: &str) -> (String, bool) {
    let plain = !value.is_empty()
        && value.chars().all(|c| {
            !c.is_control() && !matches!(c, ' ' | '"' | '\\' | '=') && !super::is_display_control(c)
        });
    if plain {
        return (value.to_string(), false);
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    escape_into(&mut out, value, false);
    out.push('"');
    (out, true)
}

/// Joins `fields` as `key=value` separated by spaces within `max` bytes: when they do not fit,
/// the values longer than an equal share of the room are cut to it (see the module doc).
fn fit(fields: Vec<(&str, String, bool)>, max: usize) -> String {
    let keys: usize = fields.iter().map(|(k, _, _)| k.len() + 2).sum::<usize>() - 1;
    let values: usize = fields.iter().map(|(_, v, _)| v.len()).sum();
    if keys + values <= max {
        return join(&fields, &[]);
    }
    // The room for values, and the largest share every long value may keep within it.
    let room = max.saturating_sub(keys + CUT_TAIL.len());
    let mut lens: Vec<usize> = fields.iter().map(|(_, v, _)| v.len()).collect();
    lens.sort_unstable();
    let mut share = MIN_CUT;
    let mut used = 0;
    for (i, &len) in lens.iter().enumerate() {
        let left = lens.len() - i;
        let fair = room.saturating_sub(used) / left;
        if len > fair {
            share = fair.max(MIN_CUT);
            break;
        }
        used += len;
    }
    let cut: Vec<Option<String>> = fields
        .iter()
        .map(|(_, v, quoted)| (v.len() > share).then(|| cut_value(v, *quoted, share)))
        .collect();
    let mut line = join(&fields, &cut);
    line.push_str(CUT_TAIL);
    if line.len() > max {
        // Only when `max` cannot hold every key with its shortest value: cut the line itself.
        line = cut_line(&line, max);
    }
    line
}

/// `key=value ...`, each value replaced by its cut form where there is one.
fn join(fields: &[(&str, String, bool)], cut: &[Option<String>]) -> String {
    let mut line = String::with_capacity(512);
    for (i, (key, value, _)) in fields.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(key);
        line.push('=');
        match cut.get(i).and_then(Option::as_ref) {
            Some(short) => line.push_str(short),
            None => line.push_str(value),
        }
    }
    line
}

/// `value` (as rendered, quoted or bare) cut to at most `len` bytes, never inside an escape or a
/// character, ending `..."` and always quoted.
fn cut_value(value: &str, quoted: bool, len: usize) -> String {
    let inner = if quoted {
        value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value)
    } else {
        value
    };
    let budget = len.saturating_sub(MIN_CUT);
    let mut end = 0;
    while end < inner.len() {
        let unit = unit_len(inner, end);
        if end + unit > budget {
            break;
        }
        end += unit;
    }
    format!("\"{}{CUT_MARK}\"", &inner[..end])
}

/// The last resort for a `max` too small for every key: `line` cut at a whole character or
/// escape, its open quote (if any) closed after `...`, then the tail.
fn cut_line(line: &str, max: usize) -> String {
    let tail = format!("{CUT_MARK}\"{CUT_TAIL}");
    let budget = max.saturating_sub(tail.len());
    let (mut end, mut open) = (0, false);
    while end < line.len() {
        let unit = unit_len(line, end);
        if end + unit > budget {
            break;
        }
        if &line[end..end + unit] == "\"" {
            open = !open;
        }
        end += unit;
    }
    let mut out = line[..end].to_string();
    if !open {
        out.push('"');
    }
    out.push_str(&tail);
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

/// Escapes `value` for use inside double quotes; with `space_hex`, spaces become `\x20`.
pub(super) fn escape_into(out: &mut String, value: &str, space_hex: bool) {
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
            c if c.is_control() || super::is_display_control(c) => {
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
            severity: crate::rule::file::Severity::Low,
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
    fn sequence_and_threshold_alerts_say_so() {
        let mut a = alert(vec!["/tmp/p"]);
        a.new_terms.clear();
        a.document["auditsentry"] =
            json!({"sequence": [{"process": {"pid": 40}}, {"process": {"pid": 42}}]});
        let line = render(&a, 2048);
        assert!(
            line.contains(" sequence=2 sequence_pids=40,42 argc=1"),
            "{line}"
        );
        a.document["auditsentry"] =
            json!({"threshold_result": {"count": 7, "cardinality": [{"field": "x", "value": 3}]}});
        let line = render(&a, 2048);
        assert!(line.contains(" count=7 cardinality=3 argc=1"), "{line}");
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

    /// Parses a rendered line back into (key, value) pairs, unescaping quoted values; `None` when
    /// it is not a sequence of `key=bare` / `key="..."` separated by single spaces.
    fn parse(line: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut rest = line;
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return None;
            }
            let (value, after) = if let Some(q) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let end = loop {
                    let (i, c) = chars.next()?;
                    match c {
                        '"' => break i + 1,
                        '\\' => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            'r' => value.push('\r'),
                            't' => value.push('\t'),
                            '"' => value.push('"'),
                            '\\' => value.push('\\'),
                            'x' => {
                                let hex: String =
                                    (0..2).filter_map(|_| chars.next()).map(|c| c.1).collect();
                                value.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                            }
                            'u' => {
                                if chars.next()?.1 != '{' {
                                    return None;
                                }
                                let hex: String = chars
                                    .by_ref()
                                    .map(|c| c.1)
                                    .take_while(|&c| c != '}')
                                    .collect();
                                value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                            }
                            _ => return None,
                        },
                        c => value.push(c),
                    }
                };
                (value, &q[end..])
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            };
            out.push((key.to_string(), value));
            rest = match after.strip_prefix(' ') {
                Some(r) => r,
                None if after.is_empty() => after,
                None => return None,
            };
        }
        Some(out)
    }

    const KEYS: [&str; 19] = [
        "rule",
        "rule_id",
        "severity",
        "risk",
        "host",
        "host_id",
        "time",
        "event_id",
        "pid",
        "ppid",
        "parent",
        "parent_exe",
        "exe",
        "uid",
        "auid",
        "cwd",
        "new_terms",
        "argc",
        "args",
    ];

    #[test]
    fn a_three_kilobyte_parent_path_keeps_every_field() {
        let mut a = alert(vec!["ln", "-s", "/usr/bin/id", "/tmp/x"]);
        let long = format!("/tmp/{}/sh", "d".repeat(3031));
        a.document["process"]["parent"]["executable"] = Value::from(long.clone());
        let line = render(&a, 2048);
        assert!(line.len() <= 2048, "{}", line.len());
        let fields = parse(&line).unwrap_or_else(|| panic!("does not parse: {line}"));
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        let mut want = KEYS.to_vec();
        want.push("truncated");
        assert_eq!(keys, want, "{line}");
        let value = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("exe"), Some("/usr/bin/ln"));
        assert_eq!(value("uid"), Some("0"));
        assert_eq!(value("cwd"), Some("/root"));
        assert_eq!(value("new_terms"), Some("abc,bash"));
        assert_eq!(value("args"), Some("ln -s /usr/bin/id /tmp/x"));
        let cut = value("parent_exe").unwrap_or_default();
        assert!(
            cut.ends_with("...") && long.starts_with(&cut[..cut.len() - 3]),
            "{cut}"
        );
        assert!(line.ends_with(" truncated=yes"));
    }

    #[test]
    fn bidi_controls_are_escaped() {
        let evil = "/tmp/\u{202e}fdp.exe\u{2066}\u{2069}\u{200e}\u{200f}\u{61c}\u{202a}\u{2029}";
        let mut a = alert(vec!["ln", evil]);
        a.document["process"]["parent"]["name"] = Value::from("ba\u{202e}sh");
        let line = render(&a, 2048);
        assert!(!line.chars().any(crate::sink::is_display_control), "{line}");
        assert!(line.contains("parent=\"ba\\u{202e}sh\""), "{line}");
        assert!(line.ends_with(
            "args=\"ln /tmp/\\u{202e}fdp.exe\\u{2066}\\u{2069}\\u{200e}\\u{200f}\\u{61c}\\u{202a}\\u{2029}\""
        ), "{line}");
        let fields = parse(&line).unwrap_or_default();
        assert_eq!(
            fields.last().map(|(_, v)| v.as_str()),
            Some(format!("ln {evil}").as_str())
        );
    }

    /// Any argv bytes (and long, hostile field values) give one line within `max_line` that
    /// parses back into every key in order, with args exactly as given when nothing was cut.
    #[test]
    fn any_argv_gives_one_bounded_line_that_parses_back() {
        const SPICE: [&str; 12] = [
            " ", "\"", "\\", "=", "\n", "\r", "\t", "\u{1d}", "\u{85}", "\u{202e}", "\u{2028}", "é",
        ];
        fn text(next: &mut dyn FnMut() -> u64, max_len: u64) -> String {
            let len = next() % max_len;
            let mut bytes = Vec::new();
            while (bytes.len() as u64) < len {
                match next() % 4 {
                    0 => bytes.extend_from_slice(SPICE[(next() % 12) as usize].as_bytes()),
                    1 => bytes.push((next() % 256) as u8),
                    _ => bytes.push(b'a' + (next() % 26) as u8),
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3000 {
            let argc = (next() % 12) as usize;
            let long = if round % 10 == 0 { 3000 } else { 40 };
            let argv: Vec<String> = (0..argc).map(|_| text(&mut next, long)).collect();
            let mut a = alert(argv.iter().map(String::as_str).collect());
            a.document["process"]["parent"]["executable"] =
                Value::from(text(&mut next, if round % 3 == 0 { 4000 } else { 30 }));
            a.document["process"]["working_directory"] = Value::from(text(&mut next, 60));
            a.document["process"]["parent"]["name"] = Value::from(text(&mut next, 20));
            let max = 256 + (next() % 3000) as usize;
            let line = render(&a, max);
            assert!(line.len() <= max, "{} > {max}: {line}", line.len());
            assert!(
                !line
                    .chars()
                    .any(|c| c.is_control() || crate::sink::is_display_control(c)),
                "{line:?}"
            );
            let fields = parse(&line).unwrap_or_else(|| panic!("does not parse: {line:?}"));
            let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            let truncated = line.ends_with(" truncated=yes");
            let want: Vec<&str> = KEYS
                .iter()
                .copied()
                .chain(truncated.then_some("truncated"))
                .collect();
            assert_eq!(keys, want, "{line:?}");
            if !truncated {
                let args = fields
                    .iter()
                    .find(|(k, _)| k == "args")
                    .map(|(_, v)| v.clone());
                assert_eq!(args, Some(argv.join(" ")), "{line:?}");
            }
        }
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
