//! EQL parser: tokens → [`QueryAst`], by recursive descent over Elasticsearch's EQL grammar.
//!
//! Precedence, loosest first: `or`, `and`, `not`, one comparison (`==` `!=` `<` `<=` `>` `>=`; a
//! second one is an error, as in Elasticsearch), `+ -`, `* / %`, unary `- +`, and a primary
//! (literal, field, `?field`, function call, parenthesised expression) optionally followed by one
//! predicate: `in (…)`, `in~ (…)`, `not in (…)`, `: P`, `like P`, `like~ P`, `regex P`, `regex~ P`
//! (a pattern or a parenthesised list of them). Nesting deeper than [`MAX_DEPTH`] is refused, so
//! neither this parser nor the evaluator can run out of stack.

use super::ast::{
    ArithOp, CmpOp, EventQuery, Expr, ExprKind, Literal, MatchOp, QueryAst, SampleAst, SequenceAst,
    Stage,
};
use super::lex::{Tok, Token};
use super::EqlError;

/// Deepest nesting of parentheses, `not`s, unary signs and function calls accepted.
pub const MAX_DEPTH: usize = 64;

/// Words that cannot name a field unless written in backticks.
const KEYWORDS: &[&str] = &[
    "and", "any", "by", "false", "in", "join", "like", "maxspan", "not", "null", "of", "or",
    "regex", "sample", "sequence", "true", "until", "where", "with",
];

/// Parses a whole query from its tokens (as [`lex`](super::lex::lex) made them).
pub fn parse_tokens(text: &str, tokens: &[Token]) -> Result<QueryAst, EqlError> {
    let mut p = Parser {
        text,
        tokens,
        at: 0,
        depth: 0,
    };
    let query = match p.peek() {
        Tok::Ident(w) if w == "sequence" => {
            p.bump();
            QueryAst::Sequence(p.sequence()?)
        }
        Tok::Ident(w) if w == "sample" => {
            p.bump();
            QueryAst::Sample(p.sample()?)
        }
        Tok::Ident(w) if w == "join" => {
            return Err(p.err_here("join queries are not supported by Elasticsearch EQL"))
        }
        _ => QueryAst::Event(p.event_query()?),
    };
    match p.peek() {
        Tok::Eof => Ok(query),
        Tok::Pipe => Err(p.err_here("pipes (|) are not supported in detection rules")),
        other => {
            let found = other.describe();
            Err(p.err_here(format!("unexpected {found} after the query")))
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    tokens: &'a [Token],
    at: usize,
    depth: usize,
}

fn is_word(tok: &Tok, word: &str) -> bool {
    matches!(tok, Tok::Ident(w) if w == word)
}

impl Parser<'_> {
    fn token(&self) -> Option<&Token> {
        self.tokens.get(self.at).or_else(|| self.tokens.last())
    }

    fn peek(&self) -> &Tok {
        self.token().map_or(&Tok::Eof, |t| &t.tok)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        self.tokens
            .get(self.at + ahead)
            .map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.token().map_or(self.text.len(), |t| t.pos)
    }

    fn bump(&mut self) {
        if self.at < self.tokens.len() {
            self.at += 1;
        }
    }

    fn err_here(&self, message: impl Into<String>) -> EqlError {
        EqlError::at(self.text, self.pos(), message)
    }

    fn unexpected(&self, wanted: &str) -> EqlError {
        let found = self.peek().describe();
        self.err_here(format!("expected {wanted}, found {found}"))
    }

    fn expect(&mut self, tok: &Tok, wanted: &str) -> Result<(), EqlError> {
        if self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    fn expect_word(&mut self, word: &str) -> Result<(), EqlError> {
        if is_word(self.peek(), word) {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{word}'")))
        }
    }

    fn enter(&mut self) -> Result<(), EqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_here(format!("query nests deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // ---- queries ----

    fn event_query(&mut self) -> Result<EventQuery, EqlError> {
        let pos = self.pos();
        let category = match self.peek().clone() {
            Tok::Ident(w) if w == "any" => None,
            Tok::Str(s) => Some(s),
            Tok::Ident(w) if !KEYWORDS.contains(&w.as_str()) => Some(w),
            _ => return Err(self.unexpected("an event category (e.g. process, any)")),
        };
        self.bump();
        self.expect_word("where")?;
        let condition = self.expression()?;
        Ok(EventQuery {
            category,
            condition,
            pos,
        })
    }

    fn sequence(&mut self) -> Result<SequenceAst, EqlError> {
        let mut by = Vec::new();
        let mut maxspan_ms = None;
        if is_word(self.peek(), "by") {
            self.bump();
            by = self.expression_list()?;
            if is_word(self.peek(), "with") {
                maxspan_ms = Some(self.maxspan()?);
            }
        } else if is_word(self.peek(), "with") {
            maxspan_ms = Some(self.maxspan()?);
            if is_word(self.peek(), "by") {
                return Err(self.err_here("write the sequence's [by] before [with], not after"));
            }
        }
        let mut stages = Vec::new();
        while matches!(self.peek(), Tok::LBracket | Tok::MissingOpen) {
            stages.push(self.stage()?);
        }
        // `[stage] with runs=N` counts N times.
        let count: u32 = stages.iter().map(|s| s.runs.unwrap_or(1)).sum();
        if count < 2 {
            return Err(self.unexpected("a second [stage] of the sequence"));
        }
        let mut until = None;
        if is_word(self.peek(), "until") {
            self.bump();
            if self.peek() != &Tok::LBracket {
                return Err(self.unexpected("'[' after until"));
            }
            until = Some(Box::new(self.stage()?));
        }
        Ok(SequenceAst {
            by,
            maxspan_ms,
            stages,
            until,
        })
    }

    fn sample(&mut self) -> Result<SampleAst, EqlError> {
        let mut by = Vec::new();
        if is_word(self.peek(), "by") {
            self.bump();
            by = self.expression_list()?;
        }
        let mut stages = Vec::new();
        while self.peek() == &Tok::LBracket {
            stages.push(self.stage()?);
        }
        if stages.is_empty() {
            return Err(self.unexpected("a [stage] of the sample"));
        }
        Ok(SampleAst { by, stages })
    }

    fn stage(&mut self) -> Result<Stage, EqlError> {
        let missing = self.peek() == &Tok::MissingOpen;
        self.bump();
        let query = self.event_query()?;
        self.expect(&Tok::RBracket, "']' closing the stage")?;
        let mut by = Vec::new();
        if is_word(self.peek(), "by") {
            self.bump();
            by = self.expression_list()?;
        }
        let mut runs = None;
        if is_word(self.peek(), "with") && is_word(self.peek_at(1), "runs") {
            self.bump();
            self.bump();
            self.expect(&Tok::Assign, "'=' after runs")?;
            let at = self.pos();
            match self.peek() {
                Tok::Int(n) if (1..=100).contains(n) => runs = u32::try_from(*n).ok(),
                _ => return Err(EqlError::at(self.text, at, "runs must be 1 to 100")),
            }
            self.bump();
        }
        Ok(Stage {
            query,
            by,
            runs,
            missing,
        })
    }

    fn maxspan(&mut self) -> Result<u64, EqlError> {
        self.expect_word("with")?;
        self.expect_word("maxspan")?;
        self.expect(&Tok::Assign, "'=' after maxspan")?;
        let at = self.pos();
        let amount = match self.peek() {
            Tok::Int(n) if *n >= 0 => *n as f64,
            Tok::Float(n) if *n >= 0.0 => *n,
            _ => return Err(self.unexpected("a duration such as 5m")),
        };
        self.bump();
        let unit_ms = match self.peek() {
            Tok::Ident(u) => match u.as_str() {
                "ms" => 1.0,
                "s" => 1_000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                "d" => 86_400_000.0,
                other => {
                    return Err(self.err_here(format!(
                        "unknown time unit {other:?} (one of ms, s, m, h, d)"
                    )))
                }
            },
            _ => {
                return Err(EqlError::at(
                    self.text,
                    at,
                    "maxspan needs a unit (ms, s, m, h, d)",
                ))
            }
        };
        self.bump();
        let ms = amount * unit_ms;
        if !(1.0..=1e15).contains(&ms) {
            return Err(EqlError::at(self.text, at, "maxspan out of range"));
        }
        Ok(ms as u64)
    }

    fn expression_list(&mut self) -> Result<Vec<Expr>, EqlError> {
        let mut out = vec![self.expression()?];
        while self.peek() == &Tok::Comma {
            self.bump();
            out.push(self.expression()?);
        }
        Ok(out)
    }

    // ---- expressions ----

    fn expression(&mut self) -> Result<Expr, EqlError> {
        self.enter()?;
        let e = self.or_expr();
        self.leave();
        e
    }

    fn or_expr(&mut self) -> Result<Expr, EqlError> {
        let first = self.and_expr()?;
        if !is_word(self.peek(), "or") {
            return Ok(first);
        }
        let pos = first.pos;
        let mut items = vec![first];
        while is_word(self.peek(), "or") {
            self.bump();
            items.push(self.and_expr()?);
        }
        Ok(Expr {
            kind: ExprKind::Or(items),
            pos,
        })
    }

    fn and_expr(&mut self) -> Result<Expr, EqlError> {
        let first = self.not_expr()?;
        if !is_word(self.peek(), "and") {
            return Ok(first);
        }
        let pos = first.pos;
        let mut items = vec![first];
        while is_word(self.peek(), "and") {
            self.bump();
            items.push(self.not_expr()?);
        }
        Ok(Expr {
            kind: ExprKind::And(items),
            pos,
        })
    }

    fn not_expr(&mut self) -> Result<Expr, EqlError> {
        if is_word(self.peek(), "not") {
            let pos = self.pos();
            self.bump();
            self.enter()?;
            let inner = self.not_expr();
            self.leave();
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner?)),
                pos,
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, EqlError> {
        let left = self.additive()?;
        let Some(op) = self.cmp_op() else {
            if self.peek() == &Tok::Assign {
                return Err(self.err_here("= is not an EQL operator: use == or :"));
            }
            return Ok(left);
        };
        self.bump();
        let right = self.additive()?;
        if self.cmp_op().is_some() {
            return Err(self
                .err_here("comparisons cannot be chained: join them with and (a < b and b < c)"));
        }
        let pos = left.pos;
        Ok(Expr {
            kind: ExprKind::Cmp(op, Box::new(left), Box::new(right)),
            pos,
        })
    }

    fn cmp_op(&self) -> Option<CmpOp> {
        Some(match self.peek() {
            Tok::EqEq => CmpOp::Eq,
            Tok::NotEq => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            _ => return None,
        })
    }

    fn additive(&mut self) -> Result<Expr, EqlError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.multiplicative()?;
            let pos = left.pos;
            left = Expr {
                kind: ExprKind::Arith(op, Box::new(left), Box::new(right)),
                pos,
            };
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, EqlError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                Tok::Percent => ArithOp::Mod,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.unary()?;
            let pos = left.pos;
            left = Expr {
                kind: ExprKind::Arith(op, Box::new(left), Box::new(right)),
                pos,
            };
        }
    }

    fn unary(&mut self) -> Result<Expr, EqlError> {
        let sign = match self.peek() {
            Tok::Minus => Some(true),
            Tok::Plus => Some(false),
            _ => None,
        };
        let Some(negative) = sign else {
            return self.predicated();
        };
        let pos = self.pos();
        self.bump();
        self.enter()?;
        let inner = self.unary();
        self.leave();
        let inner = inner?;
        Ok(if negative {
            Expr {
                kind: ExprKind::Neg(Box::new(inner)),
                pos,
            }
        } else {
            inner
        })
    }

    /// A primary, then at most one `in` / pattern predicate.
    fn predicated(&mut self) -> Result<Expr, EqlError> {
        let value = self.primary()?;
        let pos = value.pos;
        let (negated, in_kind) = match (self.peek(), self.peek_at(1)) {
            (t, _) if is_word(t, "in") => (false, Some(false)),
            (Tok::TildeIdent(w), _) if w == "in" => (false, Some(true)),
            (t, n) if is_word(t, "not") && is_word(n, "in") => (true, Some(false)),
            (t, Tok::TildeIdent(w)) if is_word(t, "not") && w == "in" => (true, Some(true)),
            _ => (false, None),
        };
        if let Some(insensitive) = in_kind {
            if negated {
                self.bump();
            }
            self.bump();
            self.expect(&Tok::LParen, "'(' starting the in list")?;
            let list = self.expression_list()?;
            self.expect(&Tok::RParen, "')' closing the in list")?;
            return Ok(Expr {
                kind: ExprKind::In {
                    value: Box::new(value),
                    list,
                    insensitive,
                    negated,
                },
                pos,
            });
        }
        let (op, insensitive) = match self.peek() {
            Tok::Colon => (MatchOp::Colon, false),
            Tok::Ident(w) if w == "like" => (MatchOp::Like, false),
            Tok::TildeIdent(w) if w == "like" => (MatchOp::Like, true),
            Tok::Ident(w) if w == "regex" => (MatchOp::Regex, false),
            Tok::TildeIdent(w) if w == "regex" => (MatchOp::Regex, true),
            _ => return Ok(value),
        };
        self.bump();
        let patterns = if self.peek() == &Tok::LParen {
            self.bump();
            let mut list = vec![self.constant()?];
            while self.peek() == &Tok::Comma {
                self.bump();
                list.push(self.constant()?);
            }
            self.expect(&Tok::RParen, "')' closing the pattern list")?;
            list
        } else {
            vec![self.constant()?]
        };
        Ok(Expr {
            kind: ExprKind::Match {
                op,
                insensitive,
                value: Box::new(value),
                patterns,
            },
            pos,
        })
    }

    fn constant(&mut self) -> Result<Expr, EqlError> {
        let pos = self.pos();
        let lit = match self.peek().clone() {
            Tok::Str(s) => Literal::Str(s),
            Tok::Int(n) => Literal::Int(n),
            Tok::Float(n) => Literal::Float(n),
            Tok::Ident(w) if w == "null" => Literal::Null,
            Tok::Ident(w) if w == "true" => Literal::Bool(true),
            Tok::Ident(w) if w == "false" => Literal::Bool(false),
            _ => return Err(self.unexpected("a literal pattern")),
        };
        self.bump();
        Ok(Expr {
            kind: ExprKind::Lit(lit),
            pos,
        })
    }

    fn primary(&mut self) -> Result<Expr, EqlError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Str(_) | Tok::Int(_) | Tok::Float(_) => self.constant(),
            Tok::Ident(w) if matches!(w.as_str(), "null" | "true" | "false") => self.constant(),
            Tok::LParen => {
                self.bump();
                let inner = self.expression()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(inner)
            }
            Tok::TildeIdent(name) => {
                self.bump();
                if self.peek() != &Tok::LParen {
                    return Err(self.unexpected(&format!("'(' after {name}~")));
                }
                self.call(name, true, pos)
            }
            Tok::Ident(name)
                if self.peek_at(1) == &Tok::LParen && !KEYWORDS.contains(&name.as_str()) =>
            {
                self.bump();
                self.call(name, false, pos)
            }
            Tok::Question => {
                self.bump();
                if self.token().is_some_and(|t| t.spaced) {
                    return Err(self.err_here("write an optional field as ?name, without a space"));
                }
                self.field(true, pos)
            }
            Tok::Ident(_) | Tok::Quoted(_) => self.field(false, pos),
            _ => Err(self.unexpected("a value, field or function")),
        }
    }

    fn call(&mut self, name: String, insensitive: bool, pos: usize) -> Result<Expr, EqlError> {
        self.expect(&Tok::LParen, "'('")?;
        self.enter()?;
        let args = if self.peek() == &Tok::RParen {
            Ok(Vec::new())
        } else {
            self.expression_list()
        };
        self.leave();
        let args = args?;
        self.expect(&Tok::RParen, "')' closing the function call")?;
        Ok(Expr {
            kind: ExprKind::Call {
                name,
                insensitive,
                args,
            },
            pos,
        })
    }

    fn field(&mut self, optional: bool, pos: usize) -> Result<Expr, EqlError> {
        let mut path = self.field_part()?;
        while self.peek() == &Tok::Dot {
            self.bump();
            path.push('.');
            path.push_str(&self.field_part()?);
        }
        if self.peek() == &Tok::LBracket && !self.token().is_some_and(|t| t.spaced) {
            return Err(self.err_here("array indexes (field[0]) are not supported"));
        }
        Ok(Expr {
            kind: ExprKind::Field { path, optional },
            pos,
        })
    }

    fn field_part(&mut self) -> Result<String, EqlError> {
        match self.peek().clone() {
            Tok::Quoted(name) => {
                self.bump();
                Ok(name)
            }
            Tok::Ident(name) if KEYWORDS.contains(&name.as_str()) => Err(self.err_here(format!(
                "'{name}' is a keyword: write `{name}` in backticks to use it as a field name"
            ))),
            Tok::Ident(name) => {
                self.bump();
                Ok(name)
            }
            _ => Err(self.unexpected("a field name")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lex::lex;
    use super::*;

    fn ast(text: &str) -> QueryAst {
        let tokens = lex(text, 100_000).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        parse_tokens(text, &tokens).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> EqlError {
        let tokens = match lex(text, 100_000) {
            Ok(t) => t,
            Err(e) => return e,
        };
        match parse_tokens(text, &tokens) {
            Ok(q) => panic!("{text:?} parsed: {q:?}"),
            Err(e) => e,
        }
    }

    fn condition(text: &str) -> Expr {
        match ast(text) {
            QueryAst::Event(q) => q.condition,
            other => panic!("not an event query: {other:?}"),
        }
    }

    /// A compact rendering of an expression to check structure.
    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Lit(Literal::Str(s)) => format!("{s:?}"),
            ExprKind::Lit(l) => format!("{l:?}"),
            ExprKind::Field { path, optional } => {
                format!("{}{path}", if *optional { "?" } else { "" })
            }
            ExprKind::Not(i) => format!("(not {})", show(i)),
            ExprKind::And(v) => {
                format!("(and {})", v.iter().map(show).collect::<Vec<_>>().join(" "))
            }
            ExprKind::Or(v) => format!("(or {})", v.iter().map(show).collect::<Vec<_>>().join(" ")),
            ExprKind::Cmp(op, a, b) => format!("({} {} {})", op.as_str(), show(a), show(b)),
            ExprKind::In {
                value,
                list,
                insensitive,
                negated,
            } => format!(
                "({}in{} {} {})",
                if *negated { "not-" } else { "" },
                if *insensitive { "~" } else { "" },
                show(value),
                list.iter().map(show).collect::<Vec<_>>().join(" ")
            ),
            ExprKind::Match {
                op,
                insensitive,
                value,
                patterns,
            } => format!(
                "({op:?}{} {} {})",
                if *insensitive { "~" } else { "" },
                show(value),
                patterns.iter().map(show).collect::<Vec<_>>().join(" ")
            ),
            ExprKind::Neg(i) => format!("(- {})", show(i)),
            ExprKind::Arith(op, a, b) => format!("({op:?} {} {})", show(a), show(b)),
            ExprKind::Call {
                name,
                insensitive,
                args,
            } => format!(
                "{name}{}({})",
                if *insensitive { "~" } else { "" },
                args.iter().map(show).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    #[test]
    fn precedence_of_boolean_operators() {
        assert_eq!(
            show(&condition(
                "process where a == 1 or not b == 2 and c : \"x\""
            )),
            "(or (== a Int(1)) (and (not (== b Int(2))) (Colon c \"x\")))"
        );
        assert_eq!(
            show(&condition("any where not not (a or b)")),
            "(not (not (or a b)))"
        );
    }

    #[test]
    fn arithmetic_binds_tighter_than_comparison() {
        assert_eq!(
            show(&condition("process where -a + b * 2 % 3 >= 4 - c")),
            "(>= (Add (- a) (Mod (Mul b Int(2)) Int(3))) (Sub Int(4) c))"
        );
    }

    #[test]
    fn predicates_and_lists() {
        assert_eq!(
            show(&condition(
                "process where x in (\"a\", 1) and y not in~ (\"b\") and z like~ (\"*a\", \"b?\") and w regex \"[0-9]+\""
            )),
            "(and (in x \"a\" Int(1)) (not-in~ y \"b\") (Like~ z \"*a\" \"b?\") (Regex w \"[0-9]+\"))"
        );
        assert_eq!(
            show(&condition(
                "process where startsWith~(?process.name, \"a\") and `my-field`.x != null"
            )),
            "(and startsWith~(?process.name, \"a\") (!= my-field.x Null))"
        );
    }

    #[test]
    fn categories() {
        for (text, want) in [
            ("process where true", Some("process")),
            ("any where true", None),
            ("\"my-cat\" where true", Some("my-cat")),
        ] {
            match ast(text) {
                QueryAst::Event(q) => assert_eq!(q.category.as_deref(), want, "{text}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn sequences_parse_with_keys_maxspan_runs_until_and_missing_stages() {
        let q = ast(
            "sequence by host.id, process.entity_id with maxspan=1m\n  [process where event.type == \"start\"] by process.pid with runs=3\n  ![file where true]\n  [network where true] by source.ip\nuntil [process where event.type == \"end\"]",
        );
        let QueryAst::Sequence(s) = q else {
            panic!("not a sequence")
        };
        assert_eq!(s.by.len(), 2);
        assert_eq!(s.maxspan_ms, Some(60_000));
        assert_eq!(s.stages.len(), 3);
        assert_eq!(s.stages[0].runs, Some(3));
        assert_eq!(s.stages[0].by.len(), 1);
        assert!(s.stages[1].missing);
        assert_eq!(s.stages[2].query.category.as_deref(), Some("network"));
        assert!(s.until.is_some());
        let q = ast("sequence with maxspan=500ms [any where true] [any where true]");
        assert!(matches!(
            q,
            QueryAst::Sequence(SequenceAst {
                maxspan_ms: Some(500),
                ..
            })
        ));
        let q = ast("sample by host.id [process where true] [file where true]");
        assert!(matches!(q, QueryAst::Sample(SampleAst { ref stages, .. }) if stages.len() == 2));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err("process where a == 1 and\n  (b == 2");
        assert_eq!((e.line, e.column), (2, 10), "{e}");
        assert!(e.message.contains("expected ')'"), "{e}");
        let e = err("process where a = 1");
        assert!(e.message.contains("use == or :"), "{e}");
        let e = err("process where a < b < c");
        assert!(e.message.contains("chained"), "{e}");
        assert!(err("process where a | head 1").message.contains("pipes"));
        assert!(err("process where in == 1").message.contains("keyword"));
        assert!(err("process where a[0] == 1").message.contains("array"));
        assert!(err("where a == 1").message.contains("event category"));
        assert!(err("sequence [any where true]").message.contains("second"));
        assert!(matches!(
            ast("sequence by a [any where true] with runs=2"),
            QueryAst::Sequence(_)
        ));
        assert!(
            err("sequence with maxspan=5x [any where true] [any where true]")
                .message
                .contains("time unit")
        );
        assert!(
            err("sequence with maxspan=5m by a [any where true] [any where true]")
                .message
                .contains("before [with]")
        );
        assert!(err("join [any where true] [any where true]")
            .message
            .contains("join"));
        assert!(err("process where ? x == 1")
            .message
            .contains("without a space"));
        assert!(err("process where x : y")
            .message
            .contains("literal pattern"));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!(
            "process where {}a{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(err(&deep).message.contains("nests deeper"));
        let nots = format!("process where {}a", "not ".repeat(10_000));
        assert!(err(&nots).message.contains("nests deeper"));
        let negs = format!("process where {}1 == a", "-".repeat(10_000));
        assert!(err(&negs).message.contains("nests deeper"));
        let calls = format!(
            "process where {}a{} == 1",
            "length(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(err(&calls).message.contains("nests deeper"));
        let ok = format!("process where {}a{}", "(".repeat(40), ")".repeat(40));
        ast(&ok);
    }
}
