//! KQL's `*` wildcard values, compiled once: the parser builds a [`Pattern`] per wildcard value,
//! the evaluator runs it on every field value.

use super::lex::Piece;

/// A piece of a pattern between two stars, as a searcher built once (it holds the piece): a
/// query's patterns are tested against every argument of every exec.
#[derive(Clone, Debug)]
struct Segment(memchr::memmem::Finder<'static>);

impl Segment {
    fn new(text: String) -> Self {
        Segment(memchr::memmem::Finder::new(text.as_bytes()).into_owned())
    }
}

impl PartialEq for Segment {
    fn eq(&self, other: &Self) -> bool {
        self.0.needle() == other.0.needle()
    }
}

impl Eq for Segment {}

/// A `*` wildcard pattern, split at its stars: `prefix*middle[0]*…*suffix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern {
    prefix: String,
    middle: Vec<Segment>,
    suffix: String,
    /// False for a pattern without stars, which must equal `prefix` exactly.
    star: bool,
}

impl Pattern {
    /// Build from lexer pieces; adjacent stars collapse, and without any star the pattern is an
    /// exact match.
    pub(crate) fn new(pieces: &[Piece]) -> Self {
        let mut segments: Vec<String> = vec![String::new()];
        for piece in pieces {
            match piece {
                Piece::Star => segments.push(String::new()),
                Piece::Text(t) => {
                    if let Some(last) = segments.last_mut() {
                        last.push_str(t);
                    }
                }
            }
        }
        if segments.len() == 1 {
            // No star: the whole text must match exactly.
            return Pattern {
                prefix: segments.pop().unwrap_or_default(),
                middle: Vec::new(),
                suffix: String::new(),
                star: false,
            };
        }
        let suffix = segments.pop().unwrap_or_default();
        let mut rest = segments.into_iter();
        let prefix = rest.next().unwrap_or_default();
        let middle = rest.filter(|s| !s.is_empty()).map(Segment::new).collect();
        Pattern {
            prefix,
            middle,
            suffix,
            star: true,
        }
    }

    /// The literal text between the stars, in order (one piece for a pattern without stars).
    pub(crate) fn pieces(&self) -> Vec<String> {
        if !self.star {
            return vec![self.prefix.clone()];
        }
        let middle = self
            .middle
            .iter()
            .map(|s| String::from_utf8_lossy(s.0.needle()).into_owned());
        std::iter::once(self.prefix.clone())
            .chain(middle)
            .chain(std::iter::once(self.suffix.clone()))
            .collect()
    }

    /// Does the whole of `s` match? Linear in `s.len()` (one left-to-right pass).
    pub(crate) fn matches(&self, s: &str) -> bool {
        if !self.star {
            return same(s.as_bytes(), self.prefix.as_bytes());
        }
        let (bytes, prefix, suffix) =
            (s.as_bytes(), self.prefix.as_bytes(), self.suffix.as_bytes());
        if bytes.len() < prefix.len() + suffix.len()
            || !bytes
                .get(..prefix.len())
                .is_some_and(|head| same(head, prefix))
            || !bytes
                .get(bytes.len() - suffix.len()..)
                .is_some_and(|tail| same(tail, suffix))
        {
            return false;
        }
        let Some(mut rest) = s.get(self.prefix.len()..s.len() - self.suffix.len()) else {
            return false;
        };
        for segment in &self.middle {
            // A UTF-8 needle found in UTF-8 text starts and ends on character boundaries.
            match segment.0.find(rest.as_bytes()) {
                Some(at) => match rest.get(at + segment.0.needle().len()..) {
                    Some(after) => rest = after,
                    None => return false,
                },
                None => return false,
            }
        }
        true
    }
}

/// `a == b`, compared in line: query texts and field values are mostly a few bytes long, and a
/// library call per comparison was the largest cost of evaluating the seed query.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(text: &str) -> Pattern {
        let pieces: Vec<Piece> = text
            .split('*')
            .enumerate()
            .flat_map(|(i, t)| {
                let star = (i > 0).then_some(Piece::Star);
                let text = (!t.is_empty()).then(|| Piece::Text(t.to_string()));
                star.into_iter().chain(text)
            })
            .collect();
        Pattern::new(&pieces)
    }

    #[test]
    fn star_matches_any_run_including_slash_and_empty() {
        let hidden = pat("/*/.*");
        assert!(hidden.matches("/home/u/.x"));
        assert!(hidden.matches("/opt/x/./y"));
        assert!(!hidden.matches("/.x"));
        let bin = pat("/usr/bin/*");
        assert!(bin.matches("/usr/bin/"));
        assert!(bin.matches("/usr/bin/a/b"));
        assert!(!bin.matches("/usr/binary/x"));
        assert!(!pat("/tmp/*").matches("/TMP/x"));
        assert!(pat("*").matches(""));
        assert!(pat("a**b").matches("ab"));
        assert!(!pat("a*a").matches("a"));
        assert!(pat("a*a").matches("aa"));
        assert!(pat("*é*").matches("café"));
        assert!(!pat("x").matches("xx"));
        assert!(pat("x").matches("x"));
    }

    #[test]
    fn star_matching_has_no_pathological_backtracking() {
        let long = "a".repeat(1 << 20);
        let p = pat(&format!("{}b", "*a".repeat(30)));
        assert!(!p.matches(&long));
        assert!(pat(&"*a".repeat(30)).matches(&long));
    }
}
