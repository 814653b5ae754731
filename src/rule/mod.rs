//! The rule stage: detection rules loaded from Elastic detection-rules TOML, their KQL or EQL
//! queries compiled once, and the new-terms gate that lets only first-seen tuples through.

pub mod coverage;
pub mod eql;
pub mod extended;
pub mod file;
pub mod index;
pub mod kql;
pub mod new_terms;
pub mod ratecap;
pub mod sequence;
pub mod stateful;
pub mod threshold;

/// 1-based (line, column in characters) of byte `offset` in `text`: where rule files and queries
/// report their errors.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}
