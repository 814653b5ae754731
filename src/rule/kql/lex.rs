//! KQL lexer: query text → tokens with line/column positions.
//!
//! Kibana's grammar is a PEG whose keywords depend on the surrounding whitespace, so this lexer
//! reproduces its rules rather than splitting on spaces:
//! - `and`/`or` (any case) are operators only between whitespace, after something that ends an
//!   operand (a value, a quoted string, `)` or `}`); elsewhere they are ordinary text.
//! - `not` (any case) followed by whitespace is an operator wherever it starts, even inside an
//!   unquoted value (Kibana stops a value at `cannot x` after `can`).
//! - Unquoted values may contain inner whitespace (`field:a b` is the value `a b`); trailing
//!   whitespace is dropped. `*` is the only wildcard; `\` escapes `\ ( ) : < > " * { }`, the
//!   keywords `and`/`or`/`not`, `\t \r \n` and `\uXXXX`.
//! - Quoted strings are literal, with `\"`, `\\`, `\t \r \n` and `\uXXXX` escapes; any other
//!   backslash stays a backslash.
//!
//! Two deliberate departures, both on queries that are authoring mistakes: `and`/`or` followed by
//! the end of the query or by `)` is still an operator (so the parser can report the trailing
//! operator instead of Kibana's silent value `b or`), and `\not` is the text `not` (Kibana reads it
//! as an escaped newline followed by `ot`).

use super::KqlError;

/// A comparison operator of a range query (`field < 5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl RangeOp {
    /// The operator as written in a query.
    pub fn as_str(self) -> &'static str {
        match self {
            RangeOp::Lt => "<",
            RangeOp::Le => "<=",
            RangeOp::Gt => ">",
            RangeOp::Ge => ">=",
        }
    }
}

/// One piece of an unquoted value: literal text or an unescaped `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal characters, escapes already decoded.
    Text(String),
    /// An unescaped `*`: any run of characters, including none.
    Star,
}

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{` (nested queries; recognised only to reject them clearly)
    LBrace,
    /// `}`
    RBrace,
    /// `:`
    Colon,
    /// `<`, `<=`, `>`, `>=`
    Range(RangeOp),
    /// The `and` operator.
    And,
    /// The `or` operator.
    Or,
    /// The `not` operator.
    Not,
    /// A double-quoted string, escapes decoded.
    Quoted(String),
    /// An unquoted value or field name, as text and wildcard pieces (adjacent text merged).
    Unquoted(Vec<Piece>),
    /// End of the query text.
    Eof,
}

/// A 1-based line and character column in the query text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    /// Line number, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

/// A token with where it starts and the source text it covers (for error messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// What the token is.
    pub kind: TokenKind,
    /// Where it starts.
    pub pos: Pos,
    /// The source characters it was read from.
    pub raw: String,
}

/// Kibana's whitespace class: space, tab, CR, LF and no-break space.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{a0}')
}

/// Characters that end an unquoted value unless escaped (`*` is the wildcard).
fn is_special(c: char) -> bool {
    matches!(
        c,
        '\\' | '(' | ')' | ':' | '<' | '>' | '"' | '*' | '{' | '}'
    )
}

/// Split query text into tokens, ending with [`TokenKind::Eof`].
pub fn tokenize(text: &str) -> Result<Vec<Token>, KqlError> {
    Lexer::new(text).run()
}

struct Lexer {
    chars: Vec<char>,
    /// Position of every character, plus one past the end.
    pos: Vec<Pos>,
    i: usize,
}

impl Lexer {
    fn new(text: &str) -> Self {
        let chars: Vec<char> = text.chars().collect();
        let mut pos = Vec::with_capacity(chars.len() + 1);
        let (mut line, mut column) = (1, 1);
        for &c in &chars {
            pos.push(Pos { line, column });
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        pos.push(Pos { line, column });
        Lexer { chars, pos, i: 0 }
    }

    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).copied()
    }

    fn pos_of(&self, i: usize) -> Pos {
        self.pos
            .get(i)
            .copied()
            .unwrap_or(Pos { line: 1, column: 1 })
    }

    fn error(&self, i: usize, message: String) -> KqlError {
        let p = self.pos_of(i);
        KqlError {
            message,
            line: p.line,
            column: p.column,
        }
    }

    fn raw(&self, start: usize, end: usize) -> String {
        self.chars
            .get(start..end)
            .map(|s| s.iter().collect())
            .unwrap_or_default()
    }

    /// Does the word `word` (lower case) start at `i`, in any case?
    fn word_at(&self, i: usize, word: &str) -> bool {
        word.chars()
            .enumerate()
            .all(|(k, w)| self.at(i + k).map(|c| c.to_ascii_lowercase()) == Some(w))
    }

    /// `and`/`or` at `i` followed by whitespace, the end, or `)`: its length and token.
    fn and_or_at(&self, i: usize) -> Option<(usize, TokenKind)> {
        let (len, kind) = if self.word_at(i, "and") {
            (3, TokenKind::And)
        } else if self.word_at(i, "or") {
            (2, TokenKind::Or)
        } else {
            return None;
        };
        match self.at(i + len) {
            None | Some(')') => Some((len, kind)),
            Some(c) if is_space(c) => Some((len, kind)),
            Some(_) => None,
        }
    }

    /// `not` at `i` followed by whitespace.
    fn not_at(&self, i: usize) -> bool {
        self.word_at(i, "not") && self.at(i + 3).is_some_and(is_space)
    }

    fn run(mut self) -> Result<Vec<Token>, KqlError> {
        let mut tokens = Vec::new();
        // Did the previous token end an operand (so `and`/`or` may follow)?
        let mut after_operand = false;
        loop {
            let ws_start = self.i;
            while self.at(self.i).is_some_and(is_space) {
                self.i += 1;
            }
            let had_space = self.i > ws_start;
            let start = self.i;
            let Some(c) = self.at(start) else {
                tokens.push(Token {
                    kind: TokenKind::Eof,
                    pos: self.pos_of(start),
                    raw: String::new(),
                });
                return Ok(tokens);
            };
            let kind = match c {
                '(' => {
                    self.i += 1;
                    TokenKind::LParen
                }
                ')' => {
                    self.i += 1;
                    TokenKind::RParen
                }
                '{' => {
                    self.i += 1;
                    TokenKind::LBrace
                }
                '}' => {
                    self.i += 1;
                    TokenKind::RBrace
                }
                ':' => {
                    self.i += 1;
                    TokenKind::Colon
                }
                '<' | '>' => {
                    let eq = self.at(start + 1) == Some('=');
                    self.i += if eq { 2 } else { 1 };
                    TokenKind::Range(match (c, eq) {
                        ('<', false) => RangeOp::Lt,
                        ('<', true) => RangeOp::Le,
                        ('>', false) => RangeOp::Gt,
                        _ => RangeOp::Ge,
                    })
                }
                '"' => TokenKind::Quoted(self.quoted()?),
                _ => match self.and_or_at(start) {
                    Some((len, kind)) if after_operand && had_space => {
                        self.i += len;
                        kind
                    }
                    _ if self.not_at(start) => {
                        self.i += 3;
                        TokenKind::Not
                    }
                    _ => TokenKind::Unquoted(self.unquoted()?),
                },
            };
            after_operand = matches!(
                kind,
                TokenKind::RParen
                    | TokenKind::RBrace
                    | TokenKind::Quoted(_)
                    | TokenKind::Unquoted(_)
            );
            tokens.push(Token {
                kind,
                pos: self.pos_of(start),
                raw: self.raw(start, self.i),
            });
        }
    }

    /// A quoted string starting at the opening `"` at `self.i`.
    fn quoted(&mut self) -> Result<String, KqlError> {
        let open = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.at(self.i) {
                None => return Err(self.error(open, "unterminated quoted string".to_string())),
                Some('"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    let next = self.at(self.i + 1);
                    if let Some(c) = next.and_then(whitespace_escape) {
                        out.push(c);
                        self.i += 2;
                    } else if let Some(c) = self.unicode_escape(self.i + 1) {
                        out.push(c);
                        self.i += 6;
                    } else if let Some(c @ ('\\' | '"')) = next {
                        out.push(c);
                        self.i += 2;
                    } else {
                        out.push('\\');
                        self.i += 1;
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// `uXXXX` at `i` (after a backslash): the character it names.
    fn unicode_escape(&self, i: usize) -> Option<char> {
        if self.at(i) != Some('u') {
            return None;
        }
        let mut code = 0u32;
        for k in 1..=4 {
            code = code * 16 + self.at(i + k)?.to_digit(16)?;
        }
        char::from_u32(code)
    }

    /// An unquoted value starting at `self.i` (not whitespace, not a special character other
    /// than `\` or `*`).
    fn unquoted(&mut self) -> Result<Vec<Piece>, KqlError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut pending_space = String::new();
        while let Some(c) = self.at(self.i) {
            if is_space(c) {
                let mut j = self.i;
                while self.at(j).is_some_and(is_space) {
                    j += 1;
                }
                match self.at(j) {
                    None => break,
                    Some(n) if is_special(n) && n != '\\' && n != '*' => break,
                    Some(_) if self.and_or_at(j).is_some() => break,
                    Some(_) => {}
                }
                pending_space.extend(self.chars.get(self.i..j).unwrap_or_default());
                self.i = j;
                continue;
            }
            if self.not_at(self.i) {
                break;
            }
            if c == '*' {
                text.push_str(&pending_space);
                pending_space.clear();
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Star);
                self.i += 1;
                continue;
            }
            if c == '\\' {
                text.push_str(&pending_space);
                pending_space.clear();
                self.escape(&mut text)?;
                continue;
            }
            if is_special(c) {
                break;
            }
            text.push_str(&pending_space);
            pending_space.clear();
            text.push(c);
            self.i += 1;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(pieces)
    }

    /// An escape in an unquoted value, at the backslash at `self.i`.
    fn escape(&mut self, text: &mut String) -> Result<(), KqlError> {
        let at = self.i + 1;
        let Some(next) = self.at(at) else {
            return Err(self.error(self.i, "a backslash at the end of the query".to_string()));
        };
        // `\not` before `\n`: see the module comment.
        for word in ["not", "and", "or"] {
            if self.word_at(at, word) {
                text.extend(self.chars.get(at..at + word.len()).unwrap_or_default());
                self.i = at + word.len();
                return Ok(());
            }
        }
        if let Some(c) = whitespace_escape(next) {
            text.push(c);
            self.i = at + 1;
        } else if is_special(next) {
            text.push(next);
            self.i = at + 1;
        } else if let Some(c) = self.unicode_escape(at) {
            text.push(c);
            self.i = at + 5;
        } else {
            return Err(self.error(
                self.i,
                format!(
                    "invalid escape '\\{next}' (escape only \\ ( ) : < > \" * {{ }}, and, or, not, \\t \\r \\n, \\uXXXX)"
                ),
            ));
        }
        Ok(())
    }
}

/// `t`, `r`, `n` after a backslash: the whitespace character.
fn whitespace_escape(c: char) -> Option<char> {
    match c {
        't' => Some('\t'),
        'r' => Some('\r'),
        'n' => Some('\n'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        match tokenize(text) {
            Ok(tokens) => tokens.into_iter().map(|t| t.kind).collect(),
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn lit(s: &str) -> TokenKind {
        TokenKind::Unquoted(vec![Piece::Text(s.to_string())])
    }

    #[test]
    fn field_value_and_operators() {
        assert_eq!(
            kinds("a:b AND c:d Or NOT e:f"),
            vec![
                lit("a"),
                TokenKind::Colon,
                lit("b"),
                TokenKind::And,
                lit("c"),
                TokenKind::Colon,
                lit("d"),
                TokenKind::Or,
                TokenKind::Not,
                lit("e"),
                TokenKind::Colon,
                lit("f"),
                TokenKind::Eof,
            ]
        );
    }

    #[test]
    fn inner_whitespace_is_part_of_the_value_and_trailing_is_dropped() {
        assert_eq!(
            kinds("a : b c  )"),
            vec![
                lit("a"),
                TokenKind::Colon,
                lit("b c"),
                TokenKind::RParen,
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn keywords_need_whitespace_around_them() {
        // `or` right after `(` or `:` is text; `orange` is a word.
        assert_eq!(
            kinds("(or:x orange:y)"),
            vec![
                TokenKind::LParen,
                lit("or"),
                TokenKind::Colon,
                lit("x orange"),
                TokenKind::Colon,
                lit("y"),
                TokenKind::RParen,
                TokenKind::Eof,
            ]
        );
        // `not` ends a value wherever it starts, as in Kibana.
        assert_eq!(
            kinds("a:cannot b"),
            vec![
                lit("a"),
                TokenKind::Colon,
                lit("can"),
                TokenKind::Not,
                lit("b"),
                TokenKind::Eof
            ]
        );
        assert_eq!(kinds("notes:x")[0], lit("notes"));
    }

    #[test]
    fn trailing_keyword_is_an_operator() {
        assert_eq!(
            kinds("a:b or"),
            vec![
                lit("a"),
                TokenKind::Colon,
                lit("b"),
                TokenKind::Or,
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds("(b and)"),
            vec![
                TokenKind::LParen,
                lit("b"),
                TokenKind::And,
                TokenKind::RParen,
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn wildcards_and_escapes() {
        assert_eq!(
            kinds(r"/usr/bin/*"),
            vec![
                TokenKind::Unquoted(vec![Piece::Text("/usr/bin/".into()), Piece::Star]),
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds(r#"\\\(\)\:\<\>\"\*\{\}"#),
            vec![lit(r#"\():<>"*{}"#), TokenKind::Eof]
        );
        assert_eq!(
            kinds(r"a\and\OR\not\t\u0041"),
            vec![lit("aandORnot\tA"), TokenKind::Eof]
        );
        // Kibana does not escape spaces.
        assert!(tokenize(r"x\ y").is_err());
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(
            kinds(r#""a b*\"\\\n\x""#),
            vec![TokenKind::Quoted("a b*\"\\\n\\x".into()), TokenKind::Eof]
        );
    }

    #[test]
    fn range_operators() {
        assert_eq!(
            kinds("a<1 b<=2 c>3 d>=4"),
            vec![
                lit("a"),
                TokenKind::Range(RangeOp::Lt),
                lit("1 b"),
                TokenKind::Range(RangeOp::Le),
                lit("2 c"),
                TokenKind::Range(RangeOp::Gt),
                lit("3 d"),
                TokenKind::Range(RangeOp::Ge),
                lit("4"),
                TokenKind::Eof,
            ]
        );
    }

    #[test]
    fn positions_are_one_based_characters() {
        let tokens = tokenize("é:x and\n  (b:\"c\")").unwrap_or_default();
        let pos: Vec<(usize, usize)> = tokens.iter().map(|t| (t.pos.line, t.pos.column)).collect();
        assert_eq!(
            pos,
            vec![
                (1, 1),
                (1, 2),
                (1, 3),
                (1, 5),
                (2, 3),
                (2, 4),
                (2, 5),
                (2, 6),
                (2, 9),
                (2, 10)
            ]
        );
        assert_eq!(tokens.get(4).map(|t| t.raw.as_str()), Some("("));
    }

    #[test]
    fn lexical_errors_carry_positions() {
        let e = tokenize("a:b and\n c:\"open").err();
        assert_eq!(
            e.map(|e| (e.line, e.column, e.message)),
            Some((2, 4, "unterminated quoted string".to_string()))
        );
        let e = tokenize(r"a:x\y").err();
        assert_eq!(e.map(|e| (e.line, e.column)), Some((1, 4)));
        let e = tokenize("a:x\\").err();
        assert_eq!(
            e.map(|e| e.message),
            Some("a backslash at the end of the query".to_string())
        );
    }
}
