//! One JSON value as one display-safe line: what every JSON output writes (alerts, events,
//! notices) and what the rate-cap summary names its capped tuples with.

use serde_json::Value;
use std::io::Write;

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

/// `value` as one line of JSON (no newline): serde_json's escaping plus `\uXXXX` for every
/// [`is_display_control`] character, which serde_json writes raw. A pure function, for
/// every JSON output and for fuzzing.
pub fn to_vec(value: &Value) -> Vec<u8> {
    use serde::Serialize;
    let mut out = Vec::with_capacity(512);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, DisplaySafe);
    // Writing a Value to memory cannot fail; an empty line would show it.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

/// [`to_vec`] as a string.
pub fn to_line(value: &Value) -> String {
    String::from_utf8_lossy(&to_vec(value)).into_owned()
}

/// serde_json's compact formatter, escaping [`is_display_control`] characters too.
struct DisplaySafe;

impl serde_json::ser::Formatter for DisplaySafe {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_display_control(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}
