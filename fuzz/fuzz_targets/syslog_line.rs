//! The syslog line renderer on hostile input: arbitrary argv, executable, cwd, parent and host
//! bytes go through the agent's own parsing and exec building into an alert, which renders as one
//! line (no control character, nothing a viewer breaks a line on) that parses back, field by field,
//! to the alert document's values. Capped at a fuzzer-chosen `max_line`, it is still one line
//! within the cap.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use auditsentry::sink::line::render;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(case) = common::Case::new(data) else {
        return;
    };
    let (_, alert) = case.alert();

    let line = render(&alert, usize::MAX);
    one_line(&line);
    let fields = match parse(&line) {
        Ok(f) => f,
        Err(e) => panic!("{e}: {line}"),
    };
    let mut want = expected(&alert);
    let args = args_of(&alert.document);
    want.push(("argc".into(), args.len().to_string()));
    want.push(("args".into(), args.join(" ")));
    let got: Vec<(String, String)> = fields
        .iter()
        .map(|f| (f.key.clone(), f.value.clone()))
        .collect();
    assert_eq!(got, want, "{line}");
    let Some(raw_args) = fields.last().map(|f| f.raw.as_str()) else {
        panic!("no args field: {line}");
    };
    // Arguments are separated by bare spaces (a space inside one is escaped); `argc` tells no
    // argument from one empty argument.
    let split: Vec<String> = if args.is_empty() {
        Vec::new()
    } else {
        raw_args
            .split(' ')
            .map(|a| unescape(a).unwrap_or_default())
            .collect()
    };
    assert_eq!(split, args, "{line}");

    let capped = render(&alert, case.max_line);
    one_line(&capped);
    assert!(
        capped.len() <= case.max_line.max(256),
        "{} > {}",
        capped.len(),
        case.max_line
    );
    if line.len() <= case.max_line.max(256) {
        assert_eq!(capped, line);
    }
});

/// No byte a terminal, syslog daemon or log viewer could take as a line break or a control.
fn one_line(line: &str) {
    for c in line.chars() {
        assert!(
            !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}'),
            "raw {c:?} in {line:?}"
        );
    }
}

struct Field {
    key: String,
    /// The value with quotes and escapes undone.
    value: String,
    /// The value as written between the quotes (escapes kept).
    raw: String,
}

/// `key=value` pairs separated by single spaces; a value is bare (no space, quote, backslash or
/// `=`) or double-quoted with `\"`, `\\`, `\n`, `\r`, `\t`, `\xHH` and `\u{H..}` escapes.
fn parse(line: &str) -> Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("a field without =")?;
        let key = &rest[..eq];
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(format!("bad key {key:?}"));
        }
        rest = &rest[eq + 1..];
        let raw;
        if let Some(q) = rest.strip_prefix('"') {
            let mut end = None;
            let mut esc = false;
            for (i, c) in q.char_indices() {
                match (esc, c) {
                    (true, _) => esc = false,
                    (false, '\\') => esc = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unclosed quote")?;
            raw = &q[..end];
            rest = &q[end + 1..];
            fields.push(Field {
                key: key.into(),
                value: unescape(raw)?,
                raw: raw.into(),
            });
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            raw = &rest[..end];
            if raw.is_empty() || raw.contains(['"', '\\', '=']) {
                return Err(format!("bad bare value {raw:?}"));
            }
            rest = &rest[end..];
            fields.push(Field {
                key: key.into(),
                value: raw.into(),
                raw: raw.into(),
            });
        }
        if !rest.is_empty() {
            rest = rest
                .strip_prefix(' ')
                .ok_or("fields not separated by one space")?;
        }
    }
    Ok(fields)
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('x') => {
                let h: String = chars.by_ref().take(2).collect();
                let v = u8::from_str_radix(&h, 16).map_err(|_| format!("bad \\x{h}"))?;
                out.push(char::from(v));
            }
            Some('u') => {
                let body: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let hex = body.strip_prefix('{').ok_or("bad \\u")?;
                let v = u32::from_str_radix(hex, 16).map_err(|_| format!("bad \\u{{{hex}}}"))?;
                out.push(char::from_u32(v).ok_or("bad \\u scalar")?);
            }
            other => return Err(format!("bad escape \\{other:?}")),
        }
    }
    Ok(out)
}

/// The fields the line should carry, in order, from the alert and its document.
fn expected(alert: &auditsentry::alert::Alert) -> Vec<(String, String)> {
    let doc = &alert.document;
    let get = |path: &[&str]| -> Option<String> {
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
    let mut out: Vec<(&str, Option<String>)> = vec![
        ("rule", Some(alert.rule_name.clone())),
        ("rule_id", Some(alert.rule_id.clone())),
        ("severity", Some(alert.severity.as_str().to_string())),
        ("risk", Some(alert.risk_score.to_string())),
        ("host", get(&["host", "name"])),
        ("host_id", get(&["host", "id"])),
        ("time", get(&["@timestamp"])),
        ("event_id", get(&["event", "id"])),
        ("pid", get(&["process", "pid"])),
        ("ppid", get(&["process", "parent", "pid"])),
        ("parent", get(&["process", "parent", "name"])),
        ("parent_exe", get(&["process", "parent", "executable"])),
        ("exe", get(&["process", "executable"])),
        ("uid", get(&["user", "id"])),
        ("auid", get(&["auditd", "auid"])),
        ("cwd", get(&["process", "working_directory"])),
    ];
    if !alert.new_terms.is_empty() {
        out.push(("new_terms", Some(alert.new_terms.join(","))));
    }
    out.into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
}

fn args_of(doc: &Value) -> Vec<String> {
    doc["process"]["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}
