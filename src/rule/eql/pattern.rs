//! String patterns of EQL's `:`, `like`, `like~`, `regex`, `regex~` (and `in~`), compiled once into
//! matchers that run in linear time on attacker-controlled text.
//!
//! - Wildcards (`:`, `like`): `*` matches any run of characters, `?` exactly one character, and
//!   every other character, backslash included, is literal — Elasticsearch turns EQL wildcards into
//!   a Lucene wildcard query with everything else escaped, and EQL has no escape for `*` or `?`.
//! - Regexes (`regex`): Lucene's regular-expression syntax, which Elasticsearch uses for EQL's
//!   `regex` on a field (a `regexp` query with all optional operators on), parsed here and
//!   re-emitted for the `regex` crate: always anchored at both ends, `.` matches any character
//!   including a line break, `@` any string, `#` nothing, `"…"` a literal string, `\d \s \w` (and
//!   upper-case negations) their ASCII classes, `[^…]` any one character outside the class, and a
//!   backslash makes any other character literal. The intersection (`&`), complement (`~`) and
//!   interval (`<1-5>`) operators have no exact `regex` equivalent and are refused.
//! - Case-insensitive forms fold ASCII letters only: Elasticsearch's `case_insensitive` term,
//!   wildcard and regexp queries "allow ASCII case insensitive matching", and Lucene's regexp flag
//!   is `ASCII_CASE_INSENSITIVE`, which folds single characters and strings but not ranges.
//!
//! Patterns that need neither wildcards nor case folding become plain string comparisons.

use regex::{Regex, RegexBuilder};

/// Longest regex pattern accepted, in characters: Elasticsearch's default `index.max_regex_length`.
pub const MAX_REGEX_CHARS: usize = 1000;

/// Compiled-size bound handed to the `regex` crate, so that `x{1000}{1000}` is refused at load.
const REGEX_SIZE_LIMIT: usize = 4 << 20;

/// A list of patterns tested together: true when any of them matches the whole value.
#[derive(Clone, Debug)]
pub struct PatternSet {
    /// Patterns that are plain strings, compared exactly (or ASCII-case-insensitively).
    exact: Vec<String>,
    /// Compare `exact` ignoring ASCII case.
    fold: bool,
    /// Everything else, as one anchored alternation.
    regex: Option<Regex>,
    /// For each wildcard pattern, its longest run of literal text (which a match must contain);
    /// `None` when a regex is among the patterns.
    pieces: Option<Vec<String>>,
}

impl PatternSet {
    /// Does `value` match one of the patterns?
    pub fn matches(&self, value: &str) -> bool {
        let exact = if self.fold {
            self.exact.iter().any(|e| e.eq_ignore_ascii_case(value))
        } else {
            self.exact.iter().any(|e| e == value)
        };
        exact || self.regex.as_ref().is_some_and(|r| r.is_match(value))
    }

    /// What a matching value must hold: one of the plain strings exactly, or one of the wildcard
    /// patterns' literal runs somewhere — `None` when a regex is among the patterns.
    pub(crate) fn required(&self) -> Option<(&[String], &[String])> {
        Some((&self.exact, self.pieces.as_deref()?))
    }
}

/// One pattern as written, and what kind it is.
pub enum Source<'a> {
    /// An EQL wildcard pattern (`*`, `?`).
    Wildcard(&'a str),
    /// A Lucene regular expression.
    Regex(&'a str),
}

/// Compiles patterns into one [`PatternSet`]; `fold` for ASCII-case-insensitive matching. The error
/// names the failing pattern's index in `patterns` and what is wrong with it.
pub fn compile(patterns: &[Source<'_>], fold: bool) -> Result<PatternSet, (usize, String)> {
    let mut exact = Vec::new();
    let mut alternatives = Vec::new();
    let mut pieces = Some(Vec::new());
    for (i, pattern) in patterns.iter().enumerate() {
        match pattern {
            Source::Wildcard(p) if !p.contains(['*', '?']) => exact.push(p.to_string()),
            Source::Wildcard(p) => {
                let longest = p.split(['*', '?']).max_by_key(|run| run.len());
                if let (Some(list), Some(run)) = (&mut pieces, longest) {
                    list.push(run.to_string());
                }
                alternatives.push(wildcard_regex(p, fold));
            }
            Source::Regex(p) => {
                pieces = None;
                if p.chars().count() > MAX_REGEX_CHARS {
                    return Err((i, format!("regex longer than {MAX_REGEX_CHARS} characters")));
                }
                let tree = LuceneParser::new(p).parse().map_err(|e| (i, e))?;
                let mut out = String::new();
                emit(&tree, fold, &mut out);
                // Check each alone, so an error names its pattern.
                build(&out).map_err(|e| (i, e))?;
                alternatives.push(out);
            }
        }
    }
    let regex = if alternatives.is_empty() {
        None
    } else {
        let joined = alternatives
            .iter()
            .map(|a| format!("(?:{a})"))
            .collect::<Vec<_>>()
            .join("|");
        Some(build(&joined).map_err(|e| (0, e))?)
    };
    Ok(PatternSet {
        exact,
        fold,
        regex,
        pieces,
    })
}

fn build(body: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!(r"(?s)\A(?:{body})\z"))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "pattern too large once compiled".to_string(),
            other => format!("pattern not accepted: {other}"),
        })
}

/// One literal character in `regex` syntax, as a two-case class when folding an ASCII letter.
fn push_char(c: char, fold: bool, out: &mut String) {
    if fold && c.is_ascii_alphabetic() {
        out.push('[');
        out.push(c.to_ascii_lowercase());
        out.push(c.to_ascii_uppercase());
        out.push(']');
    } else {
        let mut buf = [0u8; 4];
        out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
    }
}

fn wildcard_regex(pattern: &str, fold: bool) -> String {
    let mut out = String::new();
    for c in pattern.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            other => push_char(other, fold, &mut out),
        }
    }
    out
}

// ---- Lucene regular expressions ----

/// A parsed Lucene regular expression (the subset with an exact `regex` equivalent).
#[derive(Clone, Debug, PartialEq)]
enum Re {
    Union(Vec<Re>),
    Concat(Vec<Re>),
    Optional(Box<Re>),
    Repeat(Box<Re>, u32, Option<u32>),
    Char(char),
    Range(char, char),
    Predefined(char),
    Class(Vec<Re>, bool),
    AnyChar,
    AnyString,
    Nothing,
    Str(String),
}

/// A port of the grammar of Lucene's `RegExp` parser (syntax flags ALL), built from its documented
/// productions so that every string Lucene accepts parses to the same language here.
struct LuceneParser<'a> {
    chars: Vec<char>,
    pos: usize,
    text: &'a str,
}

impl<'a> LuceneParser<'a> {
    fn new(text: &'a str) -> Self {
        LuceneParser {
            chars: text.chars().collect(),
            pos: 0,
            text,
        }
    }

    fn parse(mut self) -> Result<Re, String> {
        if self.chars.is_empty() {
            return Ok(Re::Str(String::new()));
        }
        let e = self.union(0)?;
        if self.pos < self.chars.len() {
            return Err(format!(
                "regex {:?}: unexpected {:?} at character {}",
                self.text,
                self.chars.get(self.pos).copied().unwrap_or(' '),
                self.pos + 1
            ));
        }
        Ok(e)
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!(
            "regex {:?}: {what} at character {}",
            self.text,
            self.pos + 1
        ))
    }

    fn peek_is(&self, set: &str) -> bool {
        self.chars.get(self.pos).is_some_and(|c| set.contains(*c))
    }

    fn eat(&mut self, c: char) -> bool {
        if self.chars.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn more(&self) -> bool {
        self.pos < self.chars.len()
    }

    fn next(&mut self) -> Result<char, String> {
        match self.chars.get(self.pos) {
            Some(c) => {
                self.pos += 1;
                Ok(*c)
            }
            None => self.err("unexpected end"),
        }
    }

    fn union(&mut self, depth: usize) -> Result<Re, String> {
        if depth > 100 {
            return self.err("nested too deeply");
        }
        let mut alternatives = vec![self.intersection(depth)?];
        while self.eat('|') {
            alternatives.push(self.intersection(depth)?);
        }
        Ok(if alternatives.len() == 1 {
            alternatives.pop().unwrap_or(Re::Nothing)
        } else {
            Re::Union(alternatives)
        })
    }

    fn intersection(&mut self, depth: usize) -> Result<Re, String> {
        let e = self.concat(depth)?;
        if self.peek_is("&") {
            return self
                .err("the intersection operator & has no exact equivalent (escape it as \\&)");
        }
        Ok(e)
    }

    fn concat(&mut self, depth: usize) -> Result<Re, String> {
        let mut items = vec![self.repeat(depth)?];
        while self.more() && !self.peek_is(")|&") {
            items.push(self.repeat(depth)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Re::Nothing)
        } else {
            Re::Concat(items)
        })
    }

    fn repeat(&mut self, depth: usize) -> Result<Re, String> {
        let mut e = self.complement(depth)?;
        while self.peek_is("?*+{") {
            if self.eat('?') {
                e = Re::Optional(Box::new(e));
            } else if self.eat('*') {
                e = Re::Repeat(Box::new(e), 0, None);
            } else if self.eat('+') {
                e = Re::Repeat(Box::new(e), 1, None);
            } else if self.eat('{') {
                let n = self.integer()?;
                let m = if self.eat(',') {
                    if self.peek_is("0123456789") {
                        Some(self.integer()?)
                    } else {
                        None
                    }
                } else {
                    Some(n)
                };
                if !self.eat('}') {
                    return self.err("expected '}'");
                }
                e = Re::Repeat(Box::new(e), n, m);
            }
        }
        Ok(e)
    }

    fn integer(&mut self) -> Result<u32, String> {
        let start = self.pos;
        while self.peek_is("0123456789") {
            self.pos += 1;
        }
        if start == self.pos {
            return self.err("integer expected");
        }
        let digits: String = self
            .chars
            .get(start..self.pos)
            .unwrap_or(&[])
            .iter()
            .collect();
        match digits.parse::<u32>() {
            Ok(n) if n <= 1000 => Ok(n),
            _ => self.err("repetition count above 1000"),
        }
    }

    fn complement(&mut self, depth: usize) -> Result<Re, String> {
        if self.peek_is("~") {
            return self
                .err("the complement operator ~ has no exact equivalent (escape it as \\~)");
        }
        self.char_class(depth)
    }

    fn char_class(&mut self, depth: usize) -> Result<Re, String> {
        if self.eat('[') {
            let negated = self.eat('^');
            let mut items = vec![self.class_item()?];
            while self.more() && !self.peek_is("]") {
                items.push(self.class_item()?);
            }
            if !self.eat(']') {
                return self.err("expected ']'");
            }
            return Ok(Re::Class(items, negated));
        }
        self.simple(depth)
    }

    fn class_item(&mut self) -> Result<Re, String> {
        if let Some(pre) = self.predefined()? {
            return Ok(pre);
        }
        let c = self.char_exp()?;
        if self.eat('-') {
            let to = self.char_exp()?;
            if c > to {
                return self.err("invalid range");
            }
            return Ok(Re::Range(c, to));
        }
        Ok(Re::Char(c))
    }

    /// `\d \D \s \S \w \W`, `\\`; a backslash before another letter is an error, as in Lucene.
    /// Any other backslash is consumed here and the next character is taken literally.
    fn predefined(&mut self) -> Result<Option<Re>, String> {
        if !self.eat('\\') {
            return Ok(None);
        }
        match self.chars.get(self.pos).copied() {
            Some(c @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                self.pos += 1;
                Ok(Some(Re::Predefined(c)))
            }
            Some('\\') => {
                self.pos += 1;
                Ok(Some(Re::Char('\\')))
            }
            Some(c) if c.is_ascii_alphabetic() => self.err("invalid character class"),
            _ => Ok(None),
        }
    }

    fn char_exp(&mut self) -> Result<char, String> {
        self.eat('\\');
        self.next()
    }

    fn simple(&mut self, depth: usize) -> Result<Re, String> {
        if self.eat('.') {
            return Ok(Re::AnyChar);
        }
        if self.eat('#') {
            return Ok(Re::Nothing);
        }
        if self.eat('@') {
            return Ok(Re::AnyString);
        }
        if self.eat('"') {
            let start = self.pos;
            while self.more() && !self.peek_is("\"") {
                self.pos += 1;
            }
            if !self.eat('"') {
                return self.err("expected '\"'");
            }
            let s = self
                .chars
                .get(start..self.pos - 1)
                .unwrap_or(&[])
                .iter()
                .collect();
            return Ok(Re::Str(s));
        }
        if self.eat('(') {
            if self.eat(')') {
                return Ok(Re::Str(String::new()));
            }
            let e = self.union(depth + 1)?;
            if !self.eat(')') {
                return self.err("expected ')'");
            }
            return Ok(e);
        }
        if self.peek_is("<") {
            return self.err(
                "named automata and <n-m> intervals have no exact equivalent (escape < as \\<)",
            );
        }
        if let Some(pre) = self.predefined()? {
            return Ok(pre);
        }
        Ok(Re::Char(self.char_exp()?))
    }
}

/// The ASCII classes of Lucene's `\d \s \w` (and negations), as `regex` class bodies.
fn predefined_class(c: char) -> &'static str {
    match c {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        's' => "[ \\t\\n\\r]",
        'S' => "[^ \\t\\n\\r]",
        'w' => "[a-zA-Z_0-9]",
        _ => "[^a-zA-Z_0-9]",
    }
}

/// A character inside a `regex` class, escaped.
fn class_char(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() || !c.is_ascii() {
        out.push(c);
    } else {
        out.push('\\');
        out.push(c);
    }
}

/// Writes `re` in `regex` crate syntax (the caller adds `(?s)` and the anchors).
fn emit(re: &Re, fold: bool, out: &mut String) {
    match re {
        Re::Union(alternatives) => {
            out.push_str("(?:");
            for (i, a) in alternatives.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                emit(a, fold, out);
            }
            out.push(')');
        }
        Re::Concat(items) => items.iter().for_each(|i| emit(i, fold, out)),
        Re::Optional(inner) => {
            out.push_str("(?:");
            emit(inner, fold, out);
            out.push_str(")?");
        }
        Re::Repeat(inner, min, max) => {
            if max.is_some_and(|m| m < *min) {
                // Lucene: a repetition whose maximum is below its minimum accepts nothing.
                out.push_str("[a&&b]");
                return;
            }
            out.push_str("(?:");
            emit(inner, fold, out);
            out.push(')');
            match (min, max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (n, None) => out.push_str(&format!("{{{n},}}")),
                (n, Some(m)) => out.push_str(&format!("{{{n},{m}}}")),
            }
        }
        Re::Char(c) => push_char(*c, fold, out),
        Re::Str(s) => {
            out.push_str("(?:");
            s.chars().for_each(|c| push_char(c, fold, out));
            out.push(')');
        }
        Re::Range(..) | Re::Predefined(_) => {
            out.push('[');
            class_item(re, fold, out);
            out.push(']');
        }
        Re::Class(items, negated) => {
            out.push('[');
            if *negated {
                out.push('^');
            }
            items.iter().for_each(|i| class_item(i, fold, out));
            out.push(']');
        }
        Re::AnyChar => out.push('.'),
        Re::AnyString => out.push_str("(?:.*)"),
        Re::Nothing => out.push_str("[a&&b]"),
    }
}

fn class_item(re: &Re, fold: bool, out: &mut String) {
    match re {
        Re::Char(c) => {
            class_char(*c, out);
            if fold && c.is_ascii_alphabetic() {
                let other = if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
                out.push(other);
            }
        }
        // Lucene does not fold ranges, even case-insensitively.
        Re::Range(a, b) => {
            class_char(*a, out);
            out.push('-');
            class_char(*b, out);
        }
        Re::Predefined(c) => out.push_str(predefined_class(*c)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wc(patterns: &[&str], fold: bool) -> PatternSet {
        let sources: Vec<Source<'_>> = patterns.iter().map(|p| Source::Wildcard(p)).collect();
        compile(&sources, fold).unwrap_or_else(|e| panic!("{patterns:?}: {e:?}"))
    }

    fn re(pattern: &str, fold: bool) -> PatternSet {
        compile(&[Source::Regex(pattern)], fold).unwrap_or_else(|e| panic!("{pattern:?}: {e:?}"))
    }

    fn re_err(pattern: &str) -> String {
        match compile(&[Source::Regex(pattern)], false) {
            Ok(p) => panic!("{pattern:?} compiled: {p:?}"),
            Err((_, e)) => e,
        }
    }

    #[test]
    fn wildcards_star_question_and_literal_backslash() {
        let p = wc(&["doc*"], false);
        assert!(p.matches("doc") && p.matches("docs") && p.matches("document"));
        assert!(!p.matches("DOS") && !p.matches("Doc"));
        let p = wc(&["d?c"], false);
        assert!(p.matches("doc") && p.matches("dée".replace('e', "c").as_str()));
        assert!(!p.matches("disc") && !p.matches("dc"));
        let p = wc(&["C:\\*\\x.exe"], false);
        assert!(p.matches("C:\\Windows\\x.exe"));
        assert!(!p.matches("C:/Windows/x.exe"));
        let p = wc(&["a.b", "[x]"], false);
        assert!(p.matches("a.b") && p.matches("[x]") && !p.matches("axb"));
        let p = wc(&["*"], false);
        assert!(p.matches("") && p.matches("line\nbreak"));
        let p = wc(&["a*\n*"], false);
        assert!(p.matches("ab\nc"));
    }

    #[test]
    fn case_insensitive_wildcards_fold_ascii_only() {
        let p = wc(&["*/TMP/*", "ln"], true);
        assert!(p.matches("/tmp/x") && p.matches("/Tmp/X") && p.matches("LN"));
        assert!(!p.matches("/tmp"));
        let p = wc(&["é*", "straße"], true);
        assert!(p.matches("éa"));
        assert!(!p.matches("Éa"), "non-ASCII letters are not folded");
        assert!(!p.matches("STRASSE"));
        // KELVIN SIGN does not fold to k.
        assert!(!wc(&["k*"], true).matches("\u{212a}x"));
        assert!(!wc(&["k"], true).matches("\u{212a}"));
    }

    #[test]
    fn wildcard_matching_is_linear_on_hostile_text() {
        let long = "a".repeat(1 << 20);
        let p = wc(&[&format!("{}b", "*a".repeat(30))], false);
        assert!(!p.matches(&long));
        let p = wc(&[&"?*".repeat(30)], true);
        assert!(p.matches(&long));
    }

    #[test]
    fn lucene_regex_is_anchored_and_dot_matches_newlines() {
        let p = re("abc", false);
        assert!(p.matches("abc") && !p.matches("abcd") && !p.matches("xabc"));
        assert!(!p.matches("abc\n"), "no implicit newline before the end");
        let p = re("a.c", false);
        assert!(p.matches("a\nc"));
        let p = re(".*[0-9]{1,3}\\.[0-9]{1,3}.*", false);
        assert!(p.matches("x 10.1 y") && !p.matches("x 10x1 y"));
    }

    #[test]
    fn lucene_regex_operators() {
        let p = re("(ab|cd)+e?", false);
        assert!(p.matches("abcdab") && p.matches("cde") && !p.matches("ace"));
        assert!(re("@", false).matches("anything\nat all"));
        assert!(!re("#", false).matches("") && !re("a|#", false).matches("b"));
        assert!(re("a|#", false).matches("a"));
        assert!(re("\"a.b*\"", false).matches("a.b*"));
        assert!(!re("\"a.b*\"", false).matches("axb"));
        assert!(re("()", false).matches(""));
        assert!(re("", false).matches("") && !re("", false).matches("a"));
        let p = re("a{2}b{1,}c{0,1}", false);
        assert!(p.matches("aab") && p.matches("aabbbc") && !p.matches("ab"));
        assert!(!re("a{3,1}", false).matches("aa"));
    }

    #[test]
    fn lucene_treats_stray_metacharacters_as_literals() {
        // `*` with nothing before it, `^`, `$`, `]`, `}` are ordinary characters in Lucene.
        assert!(re("*a", false).matches("*a"));
        assert!(re("^a$", false).matches("^a$"));
        assert!(!re("^a$", false).matches("a"));
        assert!(re("a]}", false).matches("a]}"));
        assert!(re("|a", false).matches("|a"));
    }

    #[test]
    fn lucene_classes_escapes_and_predefined() {
        let p = re("[^-]*[uz][^-]*", false);
        assert!(p.matches("xuy") && !p.matches("x-u"));
        let p = re("[a-z0-9_\\-\\.]+", false);
        assert!(p.matches("a-b.c_1") && !p.matches("A"));
        let p = re("\\d\\s\\w\\D\\S\\W", false);
        assert!(p.matches("1 a-x."));
        assert!(!p.matches("\u{663} a-x."), "\\d is ASCII digits only");
        assert!(
            !re("\\s", false).matches("\u{c}"),
            "\\s is space, tab, CR, LF only"
        );
        let p = re("[\\d\\s]+", false);
        assert!(p.matches("1 2\t3"));
        assert!(re("\\\\x", false).matches("\\x"));
        assert!(re("a\\.b\\*", false).matches("a.b*"));
        assert!(re("[]a]+", false).matches("]a]"));
        assert!(re("\\é", false).matches("é"));
        assert!(re("[é-ë]", false).matches("ê"));
        let p = re("/var/run/\\w+\\.(pid|lock)", true);
        assert!(p.matches("/VAR/run/Foo.PID"));
    }

    #[test]
    fn case_insensitive_regex_folds_chars_not_ranges() {
        let p = re("ab[c][d-f]", true);
        assert!(p.matches("ABCd") && p.matches("abce"));
        assert!(!p.matches("abcD"), "ranges are not folded");
        let p = re("[^a]", true);
        assert!(!p.matches("A") && p.matches("b"));
        assert!(!re("é", true).matches("É"));
    }

    #[test]
    fn untranslatable_or_invalid_regexes_are_refused() {
        assert!(re_err("a&b").contains("intersection"));
        assert!(re_err("~a").contains("complement"));
        assert!(re_err("<1-5>").contains("interval"));
        assert!(re_err("a\\q").contains("invalid character class"));
        assert!(re_err("[b-a]").contains("invalid range"));
        assert!(re_err("(a").contains("expected ')'"));
        assert!(re_err("a)").contains("unexpected ')'"));
        assert!(re_err("a{x}").contains("integer expected"));
        assert!(re_err("a{5000}").contains("above 1000"));
        assert!(re_err("[a").contains("expected ']'"));
        assert!(re_err("a|").contains("unexpected end"));
        assert!(re_err("\\").contains("unexpected end"));
        assert!(re_err(&"a".repeat(1001)).contains("longer than 1000"));
        assert!(re_err("(((a{1000}){1000}){1000})").contains("too large"));
        let deep = format!("{}a{}", "(".repeat(400), ")".repeat(400));
        assert!(re_err(&deep).contains("nested too deeply"));
    }

    #[test]
    fn regex_matching_is_linear_on_hostile_text() {
        let p = re("(a|aa)*b", false);
        let long = "a".repeat(1 << 20);
        assert!(!p.matches(&long));
        let p = re("(.*a){20}", false);
        assert!(p.matches(&long));
    }

    #[test]
    fn lists_match_any_pattern() {
        let sources = [
            Source::Wildcard("ab"),
            Source::Wildcard("*c"),
            Source::Regex("d+"),
        ];
        let p = compile(&sources, false).unwrap();
        assert!(p.matches("ab") && p.matches("xc") && p.matches("dd"));
        assert!(!p.matches("AB") && !p.matches("e"));
        let p = compile(&sources, true).unwrap();
        assert!(p.matches("AB") && p.matches("XC") && p.matches("DD"));
        let err = compile(&[Source::Wildcard("a"), Source::Regex("(")], false).unwrap_err();
        assert_eq!(err.0, 1);
    }
}
