//! EQL lexer: query text → tokens with byte offsets (turned into line/column only for errors).
//!
//! The token rules are Elasticsearch's EQL grammar: lower-case keywords, identifiers of letters,
//! digits, `_` and `@` (not starting with a digit), `` `escaped` `` identifiers (with `` `` `` for a
//! backtick), an identifier glued to `~` as one token (`startsWith~`, `like~`, `in~`), double-quoted
//! strings with `\n \r \t \b \f \\ \" \' \u{XXXXXXXX}` escapes and no raw line breaks, raw strings in
//! three double quotes (no escapes, one line, up to two extra closing quotes kept), integers,
//! decimals, `//` and `/* */` comments. Single-quoted and `?"` strings are refused with the reason.

use super::EqlError;

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// An identifier or keyword (`process`, `where`, `and`, `startsWith`).
    Ident(String),
    /// An identifier written directly before `~` (`like~`, `startsWith~`), without the `~`.
    TildeIdent(String),
    /// A backtick-escaped identifier, unescaped (`` `my field` ``).
    Quoted(String),
    /// A string literal, escapes decoded.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A decimal literal.
    Float(f64),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `![` (a missing-event stage of a sequence)
    MissingOpen,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// `?` (prefix of an optional field)
    Question,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `:`
    Colon,
    /// `=` (only in `maxspan=` and `runs=`)
    Assign,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `|`
    Pipe,
    /// End of the query.
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::TildeIdent(s) => format!("'{s}~'"),
            Tok::Quoted(s) => format!("`{s}`"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Int(n) => format!("'{n}'"),
            Tok::Float(n) => format!("'{n}'"),
            Tok::Eof => "the end of the query".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::MissingOpen => "![",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Dot => ".",
            Tok::Question => "?",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Colon => ":",
            Tok::Assign => "=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Pipe => "|",
            _ => "?",
        }
    }
}

/// A token and where it starts (byte offset into the query).
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Byte offset of its first character.
    pub pos: usize,
    /// Whether whitespace or a comment separates it from the previous token.
    pub spaced: bool,
}

/// Splits `text` into tokens, ending with [`Tok::Eof`]. At most `max_tokens` tokens are produced;
/// more is an error, so that a huge query is refused before the parser builds anything.
pub fn lex(text: &str, max_tokens: usize) -> Result<Vec<Token>, EqlError> {
    let mut lexer = Lexer {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut out: Vec<Token> = Vec::new();
    loop {
        let spaced = lexer.skip_space_and_comments()?;
        let start = lexer.pos;
        let tok = lexer.next_token(out.last().map(|t| &t.tok))?;
        let end = tok == Tok::Eof;
        if out.len() >= max_tokens {
            return Err(EqlError::at(
                text,
                start,
                format!("query has more than {max_tokens} tokens"),
            ));
        }
        out.push(Token {
            tok,
            pos: start,
            spaced,
        });
        if end {
            return Ok(out);
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'@'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'@'
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn err(&self, at: usize, message: impl Into<String>) -> EqlError {
        EqlError::at(self.text, at, message)
    }

    /// Skips whitespace and comments; true if anything was skipped.
    fn skip_space_and_comments(&mut self) -> Result<bool, EqlError> {
        let start = self.pos;
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(b' ' | b'\t' | b'\r' | b'\n'), _) => self.pos += 1,
                (Some(b'/'), Some(b'/')) => {
                    while let Some(b) = self.peek(0) {
                        if b == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let open = self.pos;
                    let rest = self.text.get(self.pos + 2..).unwrap_or("");
                    match rest.find("*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => return Err(self.err(open, "unterminated comment")),
                    }
                }
                _ => return Ok(self.pos > start),
            }
        }
    }

    fn next_token(&mut self, previous: Option<&Tok>) -> Result<Tok, EqlError> {
        let start = self.pos;
        let Some(b) = self.peek(0) else {
            return Ok(Tok::Eof);
        };
        let two = |lexer: &mut Self, tok: Tok| {
            lexer.pos += 2;
            Ok(tok)
        };
        let one = |lexer: &mut Self, tok: Tok| {
            lexer.pos += 1;
            Ok(tok)
        };
        match (b, self.peek(1)) {
            (b'=', Some(b'=')) => two(self, Tok::EqEq),
            (b'!', Some(b'=')) => two(self, Tok::NotEq),
            (b'!', Some(b'[')) => two(self, Tok::MissingOpen),
            (b'<', Some(b'=')) => two(self, Tok::Le),
            (b'>', Some(b'=')) => two(self, Tok::Ge),
            (b'=', _) => one(self, Tok::Assign),
            (b'<', _) => one(self, Tok::Lt),
            (b'>', _) => one(self, Tok::Gt),
            (b'(', _) => one(self, Tok::LParen),
            (b')', _) => one(self, Tok::RParen),
            (b'[', _) => one(self, Tok::LBracket),
            (b']', _) => one(self, Tok::RBracket),
            (b',', _) => one(self, Tok::Comma),
            (b':', _) => one(self, Tok::Colon),
            (b'+', _) => one(self, Tok::Plus),
            (b'-', _) => one(self, Tok::Minus),
            (b'*', _) => one(self, Tok::Star),
            (b'/', _) => one(self, Tok::Slash),
            (b'%', _) => one(self, Tok::Percent),
            (b'|', _) => one(self, Tok::Pipe),
            (b'?', Some(b'"' | b'\'')) => Err(self.err(
                start,
                "?\"...\" raw strings are not EQL: use three double quotes (\"\"\"...\"\"\")",
            )),
            (b'?', _) => one(self, Tok::Question),
            (b'.', Some(d)) if d.is_ascii_digit() && !ends_operand(previous) => self.number(),
            (b'.', _) => one(self, Tok::Dot),
            (b'\'', _) => Err(self.err(
                start,
                "single-quoted strings are not EQL: use double quotes",
            )),
            (b'"', _) => self.string(),
            (b'`', _) => self.quoted_ident(),
            (d, _) if d.is_ascii_digit() => self.number(),
            (c, _) if is_ident_start(c) => {
                while self.peek(0).is_some_and(is_ident_char) {
                    self.pos += 1;
                }
                let name = self.text.get(start..self.pos).unwrap_or("").to_string();
                if self.peek(0) == Some(b'~') {
                    self.pos += 1;
                    return Ok(Tok::TildeIdent(name));
                }
                Ok(Tok::Ident(name))
            }
            _ => {
                let c = self.text.get(start..).and_then(|s| s.chars().next());
                Err(self.err(
                    start,
                    format!("unexpected character {:?}", c.unwrap_or('\u{fffd}')),
                ))
            }
        }
    }

    fn quoted_ident(&mut self) -> Result<Tok, EqlError> {
        let start = self.pos;
        self.pos += 1;
        let mut name = String::new();
        loop {
            let rest = self.text.get(self.pos..).unwrap_or("");
            let Some(at) = rest.find('`') else {
                return Err(self.err(start, "unterminated `quoted` identifier"));
            };
            name.push_str(rest.get(..at).unwrap_or(""));
            self.pos += at + 1;
            if self.peek(0) == Some(b'`') {
                name.push('`');
                self.pos += 1;
            } else {
                break;
            }
        }
        if name.is_empty() || name.contains(['\r', '\n']) {
            return Err(self.err(start, "an escaped identifier must be one non-empty line"));
        }
        Ok(Tok::Quoted(name))
    }

    fn number(&mut self) -> Result<Tok, EqlError> {
        let start = self.pos;
        let digits = |lexer: &mut Self| {
            let from = lexer.pos;
            while lexer.peek(0).is_some_and(|b| b.is_ascii_digit()) {
                lexer.pos += 1;
            }
            lexer.pos > from
        };
        digits(self);
        let mut decimal = false;
        if self.peek(0) == Some(b'.') && !self.peek(1).is_some_and(is_ident_start) {
            decimal = true;
            self.pos += 1;
            digits(self);
        }
        // An exponent only when digits follow it: `5m` is a number and a time unit.
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.peek(1), Some(b'+' | b'-')));
            if self.peek(1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                decimal = true;
                self.pos += 1 + sign;
                digits(self);
            }
        }
        let text = self.text.get(start..self.pos).unwrap_or("");
        if decimal {
            return text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Tok::Float)
                .ok_or_else(|| self.err(start, format!("invalid number {text}")));
        }
        text.parse::<i64>()
            .map(Tok::Int)
            .map_err(|_| self.err(start, format!("number {text} is too large")))
    }

    fn string(&mut self) -> Result<Tok, EqlError> {
        let start = self.pos;
        if self
            .text
            .get(self.pos..)
            .is_some_and(|s| s.starts_with("\"\"\""))
        {
            let body = self.pos + 3;
            let rest = self.text.get(body..).unwrap_or("");
            let Some(end) = rest.find("\"\"\"") else {
                return Err(self.err(start, "unterminated \"\"\" string"));
            };
            let mut value = rest.get(..end).unwrap_or("").to_string();
            if value.contains(['\r', '\n']) {
                return Err(self.err(start, "a \"\"\" string cannot span lines"));
            }
            self.pos = body + end + 3;
            // Up to two more quotes belong to the string (`"""a""""` is `a"`).
            for _ in 0..2 {
                if self.peek(0) == Some(b'"') {
                    value.push('"');
                    self.pos += 1;
                }
            }
            return Ok(Tok::Str(value));
        }
        self.pos += 1;
        let mut value = String::new();
        loop {
            let rest = self.text.get(self.pos..).unwrap_or("");
            let Some(at) = rest.find(['"', '\\', '\r', '\n']) else {
                return Err(self.err(start, "unterminated string"));
            };
            value.push_str(rest.get(..at).unwrap_or(""));
            self.pos += at;
            match self.peek(0) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Tok::Str(value));
                }
                Some(b'\\') => self.escape(&mut value)?,
                _ => return Err(self.err(start, "unterminated string (line break inside)")),
            }
        }
    }

    fn escape(&mut self, value: &mut String) -> Result<(), EqlError> {
        let at = self.pos;
        let decoded = match self.peek(1) {
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'\\') => '\\',
            Some(b'"') => '"',
            Some(b'\'') => '\'',
            Some(b'u') if self.peek(2) == Some(b'{') => {
                let hex_start = self.pos + 3;
                let rest = self.text.get(hex_start..).unwrap_or("");
                let len = rest.find('}').unwrap_or(usize::MAX);
                let hex = rest.get(..len).unwrap_or("");
                let code = (2..=8)
                    .contains(&hex.len())
                    .then(|| u32::from_str_radix(hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                    .ok_or_else(|| {
                        self.err(at, "\\u{...} needs 2 to 8 hex digits naming a character")
                    })?;
                value.push(code);
                self.pos = hex_start + len + 1;
                return Ok(());
            }
            _ => return Err(self.err(at, "invalid escape in string")),
        };
        value.push(decoded);
        self.pos += 2;
        Ok(())
    }
}

/// Whether the previous token ends an operand, so that a `.` after it is a field separator.
fn ends_operand(previous: Option<&Tok>) -> bool {
    matches!(
        previous,
        Some(Tok::Ident(_) | Tok::Quoted(_) | Tok::RParen | Tok::RBracket)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        match lex(text, 10_000) {
            Ok(t) => t.into_iter().map(|t| t.tok).collect(),
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn err(text: &str) -> EqlError {
        match lex(text, 10_000) {
            Ok(t) => panic!("{text:?} lexed: {t:?}"),
            Err(e) => e,
        }
    }

    fn id(s: &str) -> Tok {
        Tok::Ident(s.to_string())
    }

    #[test]
    fn operators_identifiers_and_numbers() {
        assert_eq!(
            toks("process.name == \"ln\" and x != 1.5 or y<=-2"),
            vec![
                id("process"),
                Tok::Dot,
                id("name"),
                Tok::EqEq,
                Tok::Str("ln".into()),
                id("and"),
                id("x"),
                Tok::NotEq,
                Tok::Float(1.5),
                id("or"),
                id("y"),
                Tok::Le,
                Tok::Minus,
                Tok::Int(2),
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("maxspan=5m like~ startsWith~(@timestamp"),
            vec![
                id("maxspan"),
                Tok::Assign,
                Tok::Int(5),
                id("m"),
                Tok::TildeIdent("like".into()),
                Tok::TildeIdent("startsWith".into()),
                Tok::LParen,
                id("@timestamp"),
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("1e3 .5 ![ ?x"),
            vec![
                Tok::Float(1000.0),
                Tok::Float(0.5),
                Tok::MissingOpen,
                Tok::Question,
                id("x"),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn strings_escapes_and_raw_strings() {
        assert_eq!(
            toks(r#""a\"b\\c\n\t\u{41}\u{0001F600}""#),
            vec![Tok::Str("a\"b\\c\n\tA\u{1F600}".into()), Tok::Eof]
        );
        assert_eq!(
            toks(r#""""C:\x\"y""""#),
            vec![Tok::Str(r#"C:\x\"y"#.into()), Tok::Eof]
        );
        assert_eq!(
            toks(r#""""a"""" x"#),
            vec![Tok::Str("a\"".into()), id("x"), Tok::Eof]
        );
        assert_eq!(
            toks("`my field` `a``b`"),
            vec![
                Tok::Quoted("my field".into()),
                Tok::Quoted("a`b".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(
            toks("a // one\n/* two\nlines */ b"),
            vec![id("a"), id("b"), Tok::Eof]
        );
    }

    #[test]
    fn bad_input_names_the_place() {
        let e = err("x == 'a'");
        assert_eq!((e.line, e.column), (1, 6));
        assert!(e.message.contains("double quotes"), "{e}");
        let e = err("x ==\n  \"abc");
        assert_eq!((e.line, e.column), (2, 3));
        assert!(err("\"a\nb\"").message.contains("line break"));
        assert!(err("\"\\q\"").message.contains("escape"));
        assert!(err("\"\\u{110000}\"").message.contains("hex"));
        assert!(err("/* open").message.contains("comment"));
        assert!(err("99999999999999999999").message.contains("too large"));
        assert!(err("x # y").message.contains("unexpected character '#'"));
        assert!(err("?\"raw\"").message.contains("three double quotes"));
    }

    #[test]
    fn token_limit_is_enforced() {
        let text = "a ".repeat(100);
        assert!(lex(&text, 101).is_ok());
        assert!(lex(&text, 100)
            .unwrap_err()
            .message
            .contains("more than 100 tokens"));
    }
}
