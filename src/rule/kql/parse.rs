//! KQL parser: tokens → a boolean tree whose leaves each test one field.
//!
//! Grammar (Kibana's, in precedence order `or` < `and` < `not`):
//!
//! ```text
//! query  = or?                        empty query: match everything, as Kibana does
//! or     = and ("or" and)*
//! and    = not ("and" not)*
//! not    = "not" sub | sub
//! sub    = "(" or ")" | field ":" values | field RANGE literal
//! values = "(" vor ")" | value        vor/vand/vnot: the same boolean grammar over values
//! ```
//!
//! A value list `field:(a or b and not c)` is expanded into leaves on the same field, which gives
//! Elastic's per-document array semantics for free: each leaf asks "does any value match".
//! Rejected with a position: nested `field:{…}` queries, field-less free text, wildcard field
//! names, unbalanced parentheses and operators with nothing after them.

use super::lex::{tokenize, Piece, RangeOp, Token, TokenKind};
use super::pattern::Pattern;
use super::KqlError;
use crate::document::Field;

/// A compiled query tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// The empty query: every document matches.
    MatchAll,
    /// All children match.
    And(Vec<Node>),
    /// At least one child matches.
    Or(Vec<Node>),
    /// The child does not match.
    Not(Box<Node>),
    /// One field test.
    Leaf(Leaf),
}

/// A test on one field: true when any value of the field passes it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Leaf {
    /// Dotted field name, e.g. `process.args`, resolved once.
    pub field: Field,
    /// What a value must satisfy.
    pub test: Test,
}

/// What a single field value must satisfy.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Test {
    /// `field:*`: any non-null value.
    Exists,
    /// Exact, case-sensitive equality with the text; `number` is the text read as a number, so a
    /// numeric document value also matches numerically (`pid:042` matches 42).
    Equals { text: String, number: Option<f64> },
    /// An unquoted value with `*`.
    Wildcard(Pattern),
    /// `field < bound` and friends.
    Range { op: RangeOp, bound: Bound },
}

/// The bound of a range test.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Bound {
    /// Numeric comparison with numbers and numeric strings.
    Number(f64),
    /// Byte-wise string comparison, as on a keyword field.
    Text(String),
}

/// Read text as a finite number (`42`, `-1.5`, `1e3`), the way a numeric field would.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
        && text.chars().any(|c| c.is_ascii_digit());
    if !looks_numeric {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The tree of KQL text (see [`super::parse()`]).
pub(crate) fn tree(text: &str) -> Result<Node, KqlError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(KqlError {
            message: format!(
                "the query is {} bytes, over the {MAX_QUERY_BYTES}-byte limit",
                text.len()
            ),
            line: 1,
            column: 1,
        });
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        i: 0,
        depth: 0,
        clauses: 0,
    };
    parser.query()
}

/// Deepest nesting of parentheses and `not` accepted: the parser and evaluator recurse.
const MAX_DEPTH: usize = 200;

/// Longest query text accepted (upstream rules' queries are a few KiB at most).
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Most field tests (leaves) in one query.
pub const MAX_CLAUSES: usize = 4096;

/// Most `*` wildcards in one value (upstream patterns have a handful).
pub const MAX_WILDCARDS: usize = 64;

struct Parser {
    tokens: Vec<Token>,
    i: usize,
    /// Current nesting of parentheses and `not`.
    depth: usize,
    /// Field tests so far.
    clauses: usize,
}

/// How a token is named in an error message.
fn describe(token: &Token) -> String {
    match &token.kind {
        TokenKind::Eof => "end of query".to_string(),
        TokenKind::And => "'and'".to_string(),
        TokenKind::Or => "'or'".to_string(),
        TokenKind::Not => "'not'".to_string(),
        _ => {
            let raw: String = token.raw.chars().take(40).collect();
            if raw.len() < token.raw.len() {
                format!("'{raw}…'")
            } else {
                format!("'{raw}'")
            }
        }
    }
}

fn error_at(token: &Token, message: String) -> KqlError {
    KqlError {
        message,
        line: token.pos.line,
        column: token.pos.column,
    }
}

impl Parser {
    /// The current token; the lexer always ends the list with `Eof`, which is never consumed.
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.i).or_else(|| self.tokens.last())
    }

    fn peek_kind(&self) -> &TokenKind {
        self.peek().map_or(&TokenKind::Eof, |t| &t.kind)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.peek().cloned();
        if self.i < self.tokens.len().saturating_sub(1) {
            self.i += 1;
        }
        token
    }

    /// Enter one nesting level (a `(` or `not`), refusing queries nested absurdly deep.
    fn enter(&mut self) -> Result<(), KqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(match self.peek() {
                Some(t) => error_at(t, format!("query nested deeper than {MAX_DEPTH} levels")),
                None => self.unexpected(),
            });
        }
        Ok(())
    }

    /// Count one more field test, refusing a query with more than [`MAX_CLAUSES`].
    fn clause(&mut self, at: &Token) -> Result<(), KqlError> {
        self.clauses += 1;
        if self.clauses > MAX_CLAUSES {
            return Err(error_at(
                at,
                format!("the query has more than {MAX_CLAUSES} field tests"),
            ));
        }
        Ok(())
    }

    fn unexpected(&self) -> KqlError {
        match self.peek() {
            Some(t) if t.kind == TokenKind::RParen => {
                error_at(t, "unexpected ')' (no '(' to close)".to_string())
            }
            Some(t) => error_at(t, format!("unexpected {}", describe(t))),
            None => KqlError {
                message: "unexpected end of query".to_string(),
                line: 1,
                column: 1,
            },
        }
    }

    fn query(&mut self) -> Result<Node, KqlError> {
        if *self.peek_kind() == TokenKind::Eof {
            return Ok(Node::MatchAll);
        }
        let node = self.or()?;
        if *self.peek_kind() != TokenKind::Eof {
            return Err(self.unexpected());
        }
        Ok(node)
    }

    /// Parse `item (op item)*` for a binary operator, flattening into one node.
    fn binary(
        &mut self,
        op: &TokenKind,
        item: fn(&mut Self) -> Result<Node, KqlError>,
        build: fn(Vec<Node>) -> Node,
    ) -> Result<Node, KqlError> {
        let mut items = vec![item(self)?];
        while self.peek_kind() == op {
            let op_token = self.bump();
            self.operand_follows(op_token)?;
            items.push(item(self)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Node::MatchAll)
        } else {
            build(items)
        })
    }

    /// After an operator: report one with nothing after it at the operator itself.
    fn operand_follows(&self, op_token: Option<Token>) -> Result<(), KqlError> {
        match (op_token, self.peek_kind()) {
            (Some(op), TokenKind::Eof | TokenKind::RParen) => Err(error_at(
                &op,
                format!("{} has nothing after it", describe(&op)),
            )),
            _ => Ok(()),
        }
    }

    fn or(&mut self) -> Result<Node, KqlError> {
        self.binary(&TokenKind::Or, Self::and, Node::Or)
    }

    fn and(&mut self) -> Result<Node, KqlError> {
        self.binary(&TokenKind::And, Self::not, Node::And)
    }

    fn not(&mut self) -> Result<Node, KqlError> {
        if *self.peek_kind() == TokenKind::Not {
            self.enter()?;
            let op = self.bump();
            self.operand_follows(op)?;
            let inner = self.sub()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.sub()
    }

    fn sub(&mut self) -> Result<Node, KqlError> {
        match self.peek_kind() {
            TokenKind::LParen => {
                self.enter()?;
                let open = self.bump();
                let inner = self.or()?;
                self.close(open)?;
                self.depth -= 1;
                Ok(inner)
            }
            TokenKind::Unquoted(_) | TokenKind::Quoted(_) => self.field_expression(),
            _ => Err(self.unexpected()),
        }
    }

    /// Expect the `)` closing `open`.
    fn close(&mut self, open: Option<Token>) -> Result<(), KqlError> {
        match (self.peek_kind(), open) {
            (TokenKind::RParen, _) => {
                self.bump();
                Ok(())
            }
            (TokenKind::Eof, Some(open)) => Err(error_at(&open, "'(' is never closed".to_string())),
            _ => Err(self.unexpected()),
        }
    }

    /// `field:values` or `field <op> value`, with the field token current.
    fn field_expression(&mut self) -> Result<Node, KqlError> {
        let Some(field_token) = self.bump() else {
            return Err(self.unexpected());
        };
        let follows = self.peek_kind().clone();
        if !matches!(follows, TokenKind::Colon | TokenKind::Range(_)) {
            return Err(free_text(&field_token));
        }
        let field = match &field_token.kind {
            TokenKind::Quoted(name) => name.clone(),
            TokenKind::Unquoted(pieces) => match pieces.as_slice() {
                [Piece::Text(name)] => name.clone(),
                _ => {
                    return Err(error_at(
                        &field_token,
                        format!(
                            "wildcard field names are not supported: {}",
                            describe(&field_token)
                        ),
                    ))
                }
            },
            _ => return Err(free_text(&field_token)),
        };
        let op_token = self.bump();
        match follows {
            TokenKind::Range(op) => {
                let Some(value) = self.bump() else {
                    return Err(self.unexpected());
                };
                let text = match &value.kind {
                    TokenKind::Quoted(text) => text.clone(),
                    TokenKind::Unquoted(pieces) => match pieces.as_slice() {
                        [Piece::Text(text)] => text.clone(),
                        _ => {
                            return Err(error_at(
                                &value,
                                "a range value cannot contain a wildcard".to_string(),
                            ))
                        }
                    },
                    _ => {
                        return Err(error_at(
                            &value,
                            format!(
                                "expected a value after '{}', found {}",
                                op.as_str(),
                                describe(&value)
                            ),
                        ))
                    }
                };
                self.clause(&value)?;
                let bound = match parse_number(&text) {
                    Some(n) => Bound::Number(n),
                    None => Bound::Text(text),
                };
                Ok(Node::Leaf(Leaf {
                    field: Field::new(&field),
                    test: Test::Range { op, bound },
                }))
            }
            _ => {
                if let Some(t) = self.peek().filter(|t| t.kind == TokenKind::LBrace) {
                    return Err(error_at(
                        t,
                        "nested field queries (field:{...}) are not supported".to_string(),
                    ));
                }
                if let Some(t) = self.peek().filter(|t| t.kind == TokenKind::Eof) {
                    let at = op_token.as_ref().unwrap_or(t);
                    return Err(error_at(at, "':' has no value after it".to_string()));
                }
                self.value_group(&field)
            }
        }
    }

    /// `(vor)` or a single value.
    fn value_group(&mut self, field: &str) -> Result<Node, KqlError> {
        if *self.peek_kind() == TokenKind::LParen {
            self.enter()?;
            let open = self.bump();
            let inner = self.value_or(field)?;
            self.close(open)?;
            self.depth -= 1;
            return Ok(inner);
        }
        self.value(field)
    }

    fn value_or(&mut self, field: &str) -> Result<Node, KqlError> {
        let mut items = vec![self.value_and(field)?];
        while *self.peek_kind() == TokenKind::Or {
            let op = self.bump();
            self.operand_follows(op)?;
            items.push(self.value_and(field)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Node::MatchAll)
        } else {
            Node::Or(items)
        })
    }

    fn value_and(&mut self, field: &str) -> Result<Node, KqlError> {
        let mut items = vec![self.value_not(field)?];
        while *self.peek_kind() == TokenKind::And {
            let op = self.bump();
            self.operand_follows(op)?;
            items.push(self.value_not(field)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Node::MatchAll)
        } else {
            Node::And(items)
        })
    }

    fn value_not(&mut self, field: &str) -> Result<Node, KqlError> {
        if *self.peek_kind() == TokenKind::Not {
            self.enter()?;
            let op = self.bump();
            self.operand_follows(op)?;
            let inner = self.value_group(field)?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.value_group(field)
    }

    /// One value: quoted (literal), `*` (exists), plain text, or a wildcard pattern.
    fn value(&mut self, field: &str) -> Result<Node, KqlError> {
        if let Some(token) = self.peek().cloned() {
            if matches!(token.kind, TokenKind::Quoted(_) | TokenKind::Unquoted(_)) {
                self.clause(&token)?;
            }
            if let TokenKind::Unquoted(pieces) = &token.kind {
                let stars = pieces.iter().filter(|p| **p == Piece::Star).count();
                if stars > MAX_WILDCARDS {
                    return Err(error_at(
                        &token,
                        format!("a value with {stars} wildcards (at most {MAX_WILDCARDS})"),
                    ));
                }
            }
        }
        let test = match self.peek_kind() {
            TokenKind::Quoted(text) => equals(text.clone()),
            TokenKind::Unquoted(pieces) => match pieces.as_slice() {
                [Piece::Star] => Test::Exists,
                [Piece::Text(text)] => equals(text.clone()),
                pieces => Test::Wildcard(Pattern::new(pieces)),
            },
            TokenKind::LBrace => {
                return Err(match self.peek() {
                    Some(t) => error_at(
                        t,
                        "nested field queries (field:{...}) are not supported".to_string(),
                    ),
                    None => self.unexpected(),
                })
            }
            _ => return Err(self.unexpected()),
        };
        self.bump();
        Ok(Node::Leaf(Leaf {
            field: Field::new(field),
            test,
        }))
    }
}

fn equals(text: String) -> Test {
    let number = parse_number(&text);
    Test::Equals { text, number }
}

/// The error for a value with no field in front of it.
fn free_text(token: &Token) -> KqlError {
    let raw = token.raw.to_ascii_lowercase();
    if matches!(raw.as_str(), "not" | "and" | "or") {
        return error_at(token, format!("'{raw}' has nothing after it"));
    }
    error_at(
        token,
        format!(
            "free-text search {} is not supported: write field:value",
            describe(token)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::kql::parse;

    fn tree(text: &str) -> Node {
        match parse(text) {
            Ok(q) => q.root().clone(),
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(q) => panic!("{text:?} parsed as {q:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn eq(field: &str, text: &str) -> Node {
        Node::Leaf(Leaf {
            field: Field::new(field),
            test: equals(text.to_string()),
        })
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            tree("a:1 or b:2 and c:3 or d:4"),
            Node::Or(vec![
                eq("a", "1"),
                Node::And(vec![eq("b", "2"), eq("c", "3")]),
                eq("d", "4"),
            ])
        );
    }

    #[test]
    fn not_binds_tighter_than_and() {
        assert_eq!(
            tree("not a:1 and b:2"),
            Node::And(vec![Node::Not(Box::new(eq("a", "1"))), eq("b", "2")])
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_parentheses_group() {
        assert_eq!(
            tree("(a:1 OR b:2) And NoT c:3"),
            Node::And(vec![
                Node::Or(vec![eq("a", "1"), eq("b", "2")]),
                Node::Not(Box::new(eq("c", "3"))),
            ])
        );
    }

    #[test]
    fn value_lists_use_the_same_grammar() {
        assert_eq!(
            tree("f:(v1 or v2 and not v3)"),
            Node::Or(vec![
                eq("f", "v1"),
                Node::And(vec![eq("f", "v2"), Node::Not(Box::new(eq("f", "v3")))]),
            ])
        );
        assert_eq!(
            tree("f:((a or b) and not (c))"),
            Node::And(vec![
                Node::Or(vec![eq("f", "a"), eq("f", "b")]),
                Node::Not(Box::new(eq("f", "c"))),
            ])
        );
    }

    #[test]
    fn value_kinds() {
        assert_eq!(
            tree("f:*"),
            Node::Leaf(Leaf {
                field: Field::new("f"),
                test: Test::Exists
            })
        );
        assert_eq!(tree(r#"f:"a b*""#), eq("f", "a b*"));
        assert_eq!(tree(r"f:a\*"), eq("f", "a*"));
        assert_eq!(tree(r#""f.g" : x y"#), eq("f.g", "x y"));
        assert_eq!(
            tree("f:a*b"),
            Node::Leaf(Leaf {
                field: Field::new("f"),
                test: Test::Wildcard(Pattern::new(&[
                    Piece::Text("a".into()),
                    Piece::Star,
                    Piece::Text("b".into())
                ]))
            })
        );
        assert_eq!(tree("  "), Node::MatchAll);
    }

    #[test]
    fn ranges() {
        assert_eq!(
            tree("n >= 5"),
            Node::Leaf(Leaf {
                field: Field::new("n"),
                test: Test::Range {
                    op: RangeOp::Ge,
                    bound: Bound::Number(5.0)
                }
            })
        );
        assert_eq!(
            tree("s<\"b\""),
            Node::Leaf(Leaf {
                field: Field::new("s"),
                test: Test::Range {
                    op: RangeOp::Lt,
                    bound: Bound::Text("b".into())
                }
            })
        );
    }

    #[test]
    fn numbers_are_read_strictly() {
        assert_eq!(parse_number("42"), Some(42.0));
        assert_eq!(parse_number("-1.5e1"), Some(-15.0));
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number(" 1"), None);
        assert_eq!(parse_number("1.2.3"), None);
    }

    #[test]
    fn unsupported_syntax_is_reported_with_its_position() {
        assert_eq!(
            err("a:1 and\nb:{c:1}"),
            "line 2, column 3: nested field queries (field:{...}) are not supported"
        );
        assert_eq!(
            err("a:1 and foo"),
            "line 1, column 9: free-text search 'foo' is not supported: write field:value"
        );
        assert_eq!(
            err("process.*:x"),
            "line 1, column 1: wildcard field names are not supported: 'process.*'"
        );
        assert_eq!(err("(a:1 or b:2"), "line 1, column 1: '(' is never closed");
        assert_eq!(
            err("a:1 or\n  b:2)"),
            "line 2, column 6: unexpected ')' (no '(' to close)"
        );
        assert_eq!(
            err("a:\"x or b:2"),
            "line 1, column 3: unterminated quoted string"
        );
        assert_eq!(
            err("a:1 and"),
            "line 1, column 5: 'and' has nothing after it"
        );
        assert_eq!(
            err("a:1 or "),
            "line 1, column 5: 'or' has nothing after it"
        );
        assert_eq!(
            err("f:(x or)"),
            "line 1, column 6: 'or' has nothing after it"
        );
        assert_eq!(
            err("a:1 and not"),
            "line 1, column 9: 'not' has nothing after it"
        );
        assert_eq!(err("a:"), "line 1, column 2: ':' has no value after it");
        assert_eq!(err("a:1 b:2"), "line 1, column 6: unexpected ':'");
        assert_eq!(
            err("a < 1*"),
            "line 1, column 5: a range value cannot contain a wildcard"
        );
        assert_eq!(err("not not a:1"), "line 1, column 5: unexpected 'not'");
        assert_eq!(
            err("a:1 )"),
            "line 1, column 5: unexpected ')' (no '(' to close)"
        );
    }

    #[test]
    fn absurd_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}a:1{}", "(".repeat(30_000), ")".repeat(30_000));
        assert_eq!(
            err(&deep),
            "line 1, column 201: query nested deeper than 200 levels"
        );
        let ok = format!("{}a:1{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(tree(&ok), eq("a", "1"));
        let values = format!("f:{}a{}", "(".repeat(300), ")".repeat(300));
        assert!(parse(&values).is_err());
    }

    #[test]
    fn queries_over_their_bounds_are_refused_where_they_go_over() {
        let values: Vec<String> = (0..MAX_CLAUSES).map(|i| format!("v{i}")).collect();
        let at_limit = format!("f:({})", values.join(" or "));
        assert!(parse(&at_limit).is_ok());
        let over = format!("{at_limit} or g < 3");
        let e = parse(&over).unwrap_err();
        assert_eq!(
            e.message,
            format!("the query has more than {MAX_CLAUSES} field tests")
        );
        assert_eq!(e.column, at_limit.len() + " or g < ".len() + 1);

        let stars = format!("f:{}", "*a".repeat(MAX_WILDCARDS));
        assert!(parse(&stars).is_ok());
        let e = parse(&format!("{stars}*")).unwrap_err();
        assert_eq!(e.message, "a value with 65 wildcards (at most 64)");
        assert_eq!((e.line, e.column), (1, 3));

        let long = format!("f:{}", "x".repeat(MAX_QUERY_BYTES));
        let e = parse(&long).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "the query is {} bytes, over the 65536-byte limit",
                long.len()
            )
        );
    }
}
