//! The configuration file as serde reads it: tables that deny unknown keys and keep each value's
//! place, and serde's errors turned into ones that name the file, line and key.

use super::ConfigError;
use serde::Deserialize;
use toml::Spanned;

/// 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
        + 1
}

/// The dotted key written on the line holding `offset`: the table header above it plus the key
/// before `=` (or the header itself when the line is one).
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_no = line_of(text, offset);
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line_no.checked_sub(1)?)?.trim();
    let header = |l: &str| {
        let l = l.trim();
        (l.starts_with('[') && !l.starts_with("[[")).then(|| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
    };
    if let Some(h) = header(here) {
        return Some(h);
    }
    let key = here.split('=').next()?.trim().trim_matches('"').to_string();
    if key.is_empty() {
        return None;
    }
    let table = lines
        .get(..line_no.saturating_sub(1))?
        .iter()
        .rev()
        .find_map(|l| header(l));
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key,
    })
}

pub(super) fn serde_error(text: &str, file: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return ConfigError::Syntax {
            file: file.to_string(),
            line: 1,
            message,
        };
    };
    let line = line_of(text, span.start);
    let unknown = message.starts_with("unknown field");
    match key_at(text, span.start) {
        Some(key) if unknown || !message.contains("expected") || is_value_error(&message) => {
            ConfigError::Key {
                file: file.to_string(),
                line,
                key,
                message: if unknown {
                    message.replacen("unknown field", "unknown key", 1)
                } else {
                    message
                },
            }
        }
        _ => ConfigError::Syntax {
            file: file.to_string(),
            line,
            message,
        },
    }
}

/// Whether a serde message is about a value's type (as opposed to TOML syntax).
pub(super) fn is_value_error(message: &str) -> bool {
    message.starts_with("invalid type") || message.starts_with("invalid value")
}

pub(super) type Setting<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) source: Option<RawSource>,
    pub(super) rules: Option<RawRules>,
    pub(super) state: Option<RawState>,
    pub(super) output: Option<RawOutput>,
    pub(super) reassembly: Option<RawReassembly>,
    pub(super) limits: Option<RawLimits>,
    pub(super) daemon: Option<RawDaemon>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) kind: Setting<String>,
    pub(super) manage_rules: Setting<bool>,
    pub(super) keep_rules: Setting<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    pub(super) paths: Setting<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) dir: Setting<String>,
    pub(super) max_terms_per_rule: Setting<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub(super) syslog: Option<RawSyslog>,
    pub(super) json: Option<RawFileOutput>,
    pub(super) events: Option<RawFileOutput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSyslog {
    pub(super) enabled: Setting<bool>,
    pub(super) facility: Setting<String>,
    pub(super) max_line: Setting<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFileOutput {
    pub(super) path: Setting<String>,
    pub(super) fsync: Setting<String>,
    pub(super) fsync_interval_secs: Setting<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReassembly {
    pub(super) timeout_ms: Setting<i64>,
    pub(super) max_in_flight: Setting<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_signals: Setting<i64>,
    pub(super) rate_window_secs: Setting<i64>,
    pub(super) ignore_above: Setting<i64>,
    pub(super) exec_argv_mib: Setting<i64>,
    pub(super) process_table_mib: Setting<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) status_period_secs: Setting<i64>,
    pub(super) extended: Setting<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_at_finds_the_table_and_key() {
        let text = "[a]\nx = 1\n[b.c]\n y = 2\n";
        assert_eq!(key_at(text, 5).as_deref(), Some("a.x"));
        assert_eq!(key_at(text, 18).as_deref(), Some("b.c.y"));
        assert_eq!(key_at(text, 0).as_deref(), Some("a"));
        assert_eq!(line_of(text, 18), 4);
        assert_eq!(line_of(text, 10_000), 5);
    }
}
