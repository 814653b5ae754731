//! AST → compiled query: resolves functions, folds constants, checks what Elasticsearch's
//! verifier would refuse, and shapes every condition as Elasticsearch's query translation does
//! (see [`eval`](super::eval)): `!=` is `not ==`, `not in` is `not in`, `x == null` is "x has no
//! value", `f(...) == true` is `f(...)`, and a leaf over one bare field and literals becomes a
//! [`Test`] on that field's values; every other leaf becomes a script over its field references.

use super::ast::{self, ArithOp, CmpOp, ExprKind, Literal, MatchOp};
use super::eval::{Affix, Cidr, Cond, Expr, Func, Test, Val};
use super::pattern::{self, Source};
use super::EqlError;
use crate::document::Field;

/// Most field references in one comparison or predicate.
pub const MAX_FIELD_REFS: usize = 4;

/// Compiles one condition (the text is for error positions).
pub fn condition(text: &str, e: &ast::Expr) -> Result<Cond, EqlError> {
    Compiler { text }.cond(e)
}

/// Compiles one value expression (a join key) and the field paths of its slots.
pub fn value(text: &str, e: &ast::Expr) -> Result<(Expr, Vec<String>), EqlError> {
    let c = Compiler { text };
    let mut paths = Vec::new();
    let v = c.value(e, &mut paths)?;
    Ok((fold(v), paths))
}

struct Compiler<'t> {
    text: &'t str,
}

fn lit(l: &Literal) -> Val<'static> {
    match l {
        Literal::Null => Val::Null,
        Literal::Bool(b) => Val::Bool(*b),
        Literal::Int(i) => Val::Int(*i),
        Literal::Float(f) => Val::Float(*f),
        Literal::Str(s) => Val::Str(s.clone().into()),
    }
}

fn is_null_lit(e: &ast::Expr) -> bool {
    matches!(e.kind, ExprKind::Lit(Literal::Null))
}

/// Whether an expression names a field anywhere (so it is not a constant).
fn has_field(e: &ast::Expr) -> bool {
    match &e.kind {
        ExprKind::Lit(_) => false,
        ExprKind::Field { .. } => true,
        ExprKind::Not(a) | ExprKind::Neg(a) => has_field(a),
        ExprKind::And(v) | ExprKind::Or(v) => v.iter().any(has_field),
        ExprKind::Cmp(_, a, b) | ExprKind::Arith(_, a, b) => has_field(a) || has_field(b),
        ExprKind::In { value, list, .. } => has_field(value) || list.iter().any(has_field),
        ExprKind::Match {
            value, patterns, ..
        } => has_field(value) || patterns.iter().any(has_field),
        ExprKind::Call { args, .. } => args.iter().any(has_field),
    }
}

/// Expressions whose value is a boolean (so `e == true` is `e` and `e` can stand as a condition).
fn is_predicate(e: &ast::Expr) -> bool {
    match &e.kind {
        ExprKind::Cmp(..) | ExprKind::In { .. } | ExprKind::Match { .. } => true,
        ExprKind::Not(_) | ExprKind::And(_) | ExprKind::Or(_) => true,
        ExprKind::Lit(Literal::Bool(_)) => true,
        ExprKind::Call { name, .. } => matches!(
            name.to_ascii_lowercase().as_str(),
            "startswith" | "endswith" | "stringcontains" | "cidrmatch" | "wildcard"
        ),
        _ => false,
    }
}

fn has_slot(e: &Expr) -> bool {
    match e {
        Expr::Lit(_) => false,
        Expr::Slot(_) => true,
        Expr::Cmp(_, a, b) | Expr::Arith(_, a, b) => has_slot(a) || has_slot(b),
        Expr::In { value, .. } | Expr::Pattern { value, .. } => has_slot(value),
        Expr::IsNull(a) | Expr::Not(a) | Expr::Neg(a) => has_slot(a),
        Expr::Call(_, args) => args.iter().any(has_slot),
    }
}

/// Replaces every field-free sub-expression by its value.
fn fold(e: Expr) -> Expr {
    if !has_slot(&e) {
        let v = e.eval(&[]).into_owned();
        return Expr::Lit(v);
    }
    let b = |x: Box<Expr>| Box::new(fold(*x));
    match e {
        Expr::Cmp(op, a, c) => Expr::Cmp(op, b(a), b(c)),
        Expr::Arith(op, a, c) => Expr::Arith(op, b(a), b(c)),
        Expr::In { value, list, fold } => Expr::In {
            value: b(value),
            list,
            fold,
        },
        Expr::Pattern { value, set } => Expr::Pattern {
            value: b(value),
            set,
        },
        Expr::IsNull(a) => Expr::IsNull(b(a)),
        Expr::Not(a) => Expr::Not(b(a)),
        Expr::Neg(a) => Expr::Neg(b(a)),
        Expr::Call(f, args) => Expr::Call(f, args.into_iter().map(fold).collect()),
        other => other,
    }
}

fn truthy(v: &Val<'_>) -> bool {
    matches!(v, Val::Bool(true))
}

fn simplify_and(items: Vec<Cond>) -> Cond {
    let mut out = Vec::with_capacity(items.len());
    for c in items {
        match c {
            Cond::Const(true) => {}
            Cond::Const(false) => return Cond::Const(false),
            Cond::And(inner) => out.extend(inner),
            other => out.push(other),
        }
    }
    match out.len() {
        0 => Cond::Const(true),
        1 => out.pop().unwrap_or(Cond::Const(true)),
        _ => Cond::And(out),
    }
}

fn simplify_or(items: Vec<Cond>) -> Cond {
    let mut out = Vec::with_capacity(items.len());
    for c in items {
        match c {
            Cond::Const(false) => {}
            Cond::Const(true) => return Cond::Const(true),
            Cond::Or(inner) => out.extend(inner),
            other => out.push(other),
        }
    }
    match out.len() {
        0 => Cond::Const(false),
        1 => out.pop().unwrap_or(Cond::Const(false)),
        _ => Cond::Or(out),
    }
}

fn negate(c: Cond) -> Cond {
    match c {
        Cond::Const(b) => Cond::Const(!b),
        Cond::Not(inner) => *inner,
        other => Cond::Not(Box::new(other)),
    }
}

impl Compiler<'_> {
    fn err(&self, pos: usize, message: impl Into<String>) -> EqlError {
        EqlError::at(self.text, pos, message)
    }

    fn cond(&self, e: &ast::Expr) -> Result<Cond, EqlError> {
        match &e.kind {
            ExprKind::And(items) => Ok(simplify_and(
                items
                    .iter()
                    .map(|i| self.cond(i))
                    .collect::<Result<_, _>>()?,
            )),
            ExprKind::Or(items) => Ok(simplify_or(
                items
                    .iter()
                    .map(|i| self.cond(i))
                    .collect::<Result<_, _>>()?,
            )),
            ExprKind::Not(inner) => Ok(negate(self.cond(inner)?)),
            ExprKind::Lit(Literal::Bool(b)) => Ok(Cond::Const(*b)),
            ExprKind::Lit(Literal::Null) => Ok(Cond::Const(false)),
            ExprKind::Cmp(CmpOp::Ne, a, b) => {
                let eq = ast::Expr {
                    kind: ExprKind::Cmp(CmpOp::Eq, a.clone(), b.clone()),
                    pos: e.pos,
                };
                Ok(negate(self.cond(&eq)?))
            }
            ExprKind::Cmp(CmpOp::Eq, a, b) if is_null_lit(a) || is_null_lit(b) => {
                let other = if is_null_lit(a) { b } else { a };
                self.is_null(other)
            }
            ExprKind::Cmp(CmpOp::Eq, a, b)
                if matches!(b.kind, ExprKind::Lit(Literal::Bool(_))) && is_predicate(a) =>
            {
                let c = self.cond(a)?;
                Ok(if matches!(b.kind, ExprKind::Lit(Literal::Bool(true))) {
                    c
                } else {
                    negate(c)
                })
            }
            ExprKind::In {
                value,
                list,
                insensitive,
                negated: true,
            } => {
                let positive = ast::Expr {
                    kind: ExprKind::In {
                        value: value.clone(),
                        list: list.clone(),
                        insensitive: *insensitive,
                        negated: false,
                    },
                    pos: e.pos,
                };
                Ok(negate(self.cond(&positive)?))
            }
            _ => self.leaf(e),
        }
    }

    fn is_null(&self, e: &ast::Expr) -> Result<Cond, EqlError> {
        if let ExprKind::Field { path, .. } = &e.kind {
            return Ok(negate(Cond::Exists(Field::new(path))));
        }
        let mut paths = Vec::new();
        let v = fold(self.value(e, &mut paths)?);
        if let Expr::Lit(v) = &v {
            return Ok(Cond::Const(*v == Val::Null));
        }
        Ok(Cond::Script {
            paths: fields(&paths),
            expr: Expr::IsNull(Box::new(v)),
        })
    }

    /// One comparison or predicate: a field test when it has that shape, a script otherwise.
    fn leaf(&self, e: &ast::Expr) -> Result<Cond, EqlError> {
        let mut paths = Vec::new();
        let v = fold(self.value(e, &mut paths)?);
        if !is_predicate(e) && !matches!(e.kind, ExprKind::Field { .. }) {
            return Err(self.err(e.pos, "a condition must be a comparison or a boolean"));
        }
        if paths.len() > MAX_FIELD_REFS {
            return Err(self.err(
                e.pos,
                format!("more than {MAX_FIELD_REFS} field references in one comparison"),
            ));
        }
        if let Expr::Lit(v) = &v {
            return Ok(Cond::Const(truthy(v)));
        }
        if paths.len() == 1 {
            if let Some(c) = field_test(&v, &paths[0]) {
                return Ok(c);
            }
        }
        Ok(Cond::Script {
            paths: fields(&paths),
            expr: v,
        })
    }

    /// A value expression; field references get consecutive slots in `paths`.
    fn value(&self, e: &ast::Expr, paths: &mut Vec<String>) -> Result<Expr, EqlError> {
        let b = |x: Expr| Box::new(x);
        Ok(match &e.kind {
            ExprKind::Lit(l) => Expr::Lit(lit(l)),
            ExprKind::Field { path, .. } => {
                paths.push(path.clone());
                Expr::Slot(paths.len() - 1)
            }
            ExprKind::And(_) | ExprKind::Or(_) => {
                return Err(self.err(
                    e.pos,
                    "and/or cannot be used inside a comparison or function argument",
                ))
            }
            ExprKind::Not(inner) => Expr::Not(b(self.value(inner, paths)?)),
            ExprKind::Neg(inner) => Expr::Neg(b(self.value(inner, paths)?)),
            ExprKind::Arith(op, x, y) => {
                Expr::Arith(*op, b(self.value(x, paths)?), b(self.value(y, paths)?))
            }
            ExprKind::Cmp(op, x, y) => {
                if has_field(x) && has_field(y) {
                    return Err(self.err(
                        y.pos,
                        "comparing a field to another field is not supported by Elasticsearch EQL",
                    ));
                }
                if is_null_lit(x) || is_null_lit(y) {
                    let other = if is_null_lit(x) { y } else { x };
                    let inner = Expr::IsNull(b(self.value(other, paths)?));
                    return Ok(match op {
                        CmpOp::Eq => inner,
                        CmpOp::Ne => Expr::Not(b(inner)),
                        _ => Expr::Lit(Val::Null),
                    });
                }
                // Literal on the right, as Elasticsearch's optimizer puts it.
                let (op, x, y) = if has_field(x) || !has_field(y) {
                    (*op, x, y)
                } else {
                    (op.swapped(), y, x)
                };
                let cmp = Expr::Cmp(
                    if op == CmpOp::Ne { CmpOp::Eq } else { op },
                    b(self.value(x, paths)?),
                    b(self.value(y, paths)?),
                );
                if op == CmpOp::Ne {
                    Expr::Not(b(cmp))
                } else {
                    cmp
                }
            }
            ExprKind::In {
                value,
                list,
                insensitive,
                negated,
            } => {
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let mut no_paths = Vec::new();
                    match fold(self.value(item, &mut no_paths)?) {
                        Expr::Lit(Val::Null) => {}
                        Expr::Lit(v) if no_paths.is_empty() => items.push(v),
                        _ => {
                            return Err(self.err(
                                item.pos,
                                "in (…) takes constants; comparing fields is not supported",
                            ))
                        }
                    }
                }
                let e = Expr::In {
                    value: b(self.value(value, paths)?),
                    list: items,
                    fold: *insensitive,
                };
                if *negated {
                    Expr::Not(b(e))
                } else {
                    e
                }
            }
            ExprKind::Match {
                op,
                insensitive,
                value,
                patterns,
            } => {
                if *op == MatchOp::Regex && !matches!(value.kind, ExprKind::Field { .. }) {
                    // Elasticsearch runs it as a Java regex in a script: another syntax.
                    return Err(self.err(
                        e.pos,
                        "regex on a computed value (not a field) is not supported",
                    ));
                }
                let set = self.patterns(*op, *insensitive, patterns)?;
                Expr::Pattern {
                    value: b(self.value(value, paths)?),
                    set,
                }
            }
            ExprKind::Call {
                name,
                insensitive,
                args,
            } => self.call(e.pos, name, *insensitive, args, paths)?,
        })
    }

    fn patterns(
        &self,
        op: MatchOp,
        insensitive: bool,
        patterns: &[ast::Expr],
    ) -> Result<pattern::PatternSet, EqlError> {
        let mut texts = Vec::with_capacity(patterns.len());
        for p in patterns {
            match &p.kind {
                ExprKind::Lit(Literal::Str(s)) => texts.push(s.as_str()),
                _ => return Err(self.err(p.pos, "patterns must be string literals")),
            }
        }
        let sources: Vec<Source<'_>> = texts
            .iter()
            .map(|t| match op {
                MatchOp::Regex => Source::Regex(t),
                MatchOp::Colon | MatchOp::Like => Source::Wildcard(t),
            })
            .collect();
        // `:` is always case-insensitive.
        let fold = insensitive || op == MatchOp::Colon;
        pattern::compile(&sources, fold).map_err(|(i, message)| {
            let pos = patterns.get(i).map_or(0, |p| p.pos);
            self.err(pos, message)
        })
    }

    fn call(
        &self,
        pos: usize,
        name: &str,
        insensitive: bool,
        args: &[ast::Expr],
        paths: &mut Vec<String>,
    ) -> Result<Expr, EqlError> {
        let lower = name.to_ascii_lowercase();
        let arity = |min: usize, max: usize| -> Result<(), EqlError> {
            if args.len() < min || args.len() > max {
                let want = if min == max {
                    format!("{min}")
                } else if max == usize::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min} to {max}")
                };
                return Err(self.err(
                    pos,
                    format!("{name} takes {want} arguments, not {}", args.len()),
                ));
            }
            Ok(())
        };
        let tilde_ok = matches!(
            lower.as_str(),
            "between" | "endswith" | "indexof" | "startswith" | "stringcontains" | "wildcard"
        );
        if insensitive && !tilde_ok {
            return Err(self.err(pos, format!("{name} has no case-insensitive (~) form")));
        }
        let fold = insensitive;
        let func = match lower.as_str() {
            "add" | "subtract" | "multiply" | "divide" | "modulo" => {
                arity(2, 2)?;
                let op = match lower.as_str() {
                    "add" => ArithOp::Add,
                    "subtract" => ArithOp::Sub,
                    "multiply" => ArithOp::Mul,
                    "divide" => ArithOp::Div,
                    _ => ArithOp::Mod,
                };
                return Ok(Expr::Arith(
                    op,
                    Box::new(self.value(&args[0], paths)?),
                    Box::new(self.value(&args[1], paths)?),
                ));
            }
            "wildcard" => {
                arity(2, usize::MAX)?;
                let set = self.patterns(MatchOp::Like, fold, &args[1..])?;
                return Ok(Expr::Pattern {
                    value: Box::new(self.value(&args[0], paths)?),
                    set,
                });
            }
            "cidrmatch" => {
                arity(2, usize::MAX)?;
                let mut blocks = Vec::new();
                for a in &args[1..] {
                    let block = match &a.kind {
                        ExprKind::Lit(Literal::Str(s)) => Cidr::parse(s),
                        _ => None,
                    };
                    match block {
                        Some(b) => blocks.push(b),
                        None => return Err(self.err(a.pos, "cidrMatch takes CIDR block literals")),
                    }
                }
                return Ok(Expr::Call(
                    Func::CidrMatch(blocks),
                    vec![self.value(&args[0], paths)?],
                ));
            }
            "between" => {
                arity(3, 4)?;
                Func::Between { fold }
            }
            "concat" => {
                arity(1, usize::MAX)?;
                Func::Concat
            }
            "endswith" => {
                arity(2, 2)?;
                Func::EndsWith { fold }
            }
            "indexof" => {
                arity(2, 3)?;
                Func::IndexOf { fold }
            }
            "length" => {
                arity(1, 1)?;
                Func::Length
            }
            "number" => {
                arity(1, 2)?;
                Func::Number
            }
            "startswith" => {
                arity(2, 2)?;
                Func::StartsWith { fold }
            }
            "string" => {
                arity(1, 1)?;
                Func::ToString
            }
            "stringcontains" => {
                arity(2, 2)?;
                Func::StringContains { fold }
            }
            "substring" => {
                arity(2, 3)?;
                Func::Substring
            }
            _ => {
                return Err(self.err(
                    pos,
                    format!("unknown function {name} (Elasticsearch EQL has no such function)"),
                ))
            }
        };
        let args = args
            .iter()
            .map(|a| self.value(a, paths))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expr::Call(func, args))
    }
}

/// Each path, resolved.
fn fields(paths: &[String]) -> Vec<Field> {
    paths.iter().map(|p| Field::new(p)).collect()
}

/// The query-shaped leaves: one bare field (slot 0) against literals.
fn field_test(v: &Expr, path: &str) -> Option<Cond> {
    let field = |test| {
        Some(Cond::Field {
            path: Field::new(path),
            test,
        })
    };
    match v {
        Expr::Slot(0) => field(Test::Cmp(CmpOp::Eq, Val::Bool(true))),
        Expr::Cmp(op, a, c) => match (a.as_ref(), c.as_ref()) {
            (Expr::Slot(0), Expr::Lit(Val::Null)) => Some(Cond::Const(false)),
            (Expr::Slot(0), Expr::Lit(l)) => field(Test::Cmp(*op, l.clone())),
            _ => None,
        },
        Expr::In { value, list, fold } if matches!(value.as_ref(), Expr::Slot(0)) => {
            if list.is_empty() {
                return Some(Cond::Const(false));
            }
            field(if *fold {
                Test::InFold(list.clone())
            } else {
                Test::In(list.clone())
            })
        }
        Expr::Pattern { value, set } if matches!(value.as_ref(), Expr::Slot(0)) => {
            field(Test::Pattern(set.clone()))
        }
        Expr::Call(func, args) => {
            let (kind, fold) = match func {
                Func::StartsWith { fold } => (Affix::Prefix, *fold),
                Func::EndsWith { fold } => (Affix::Suffix, *fold),
                Func::StringContains { fold } => (Affix::Contains, *fold),
                Func::CidrMatch(blocks) => {
                    return match args.as_slice() {
                        [Expr::Slot(0)] => field(Test::Cidr(blocks.clone())),
                        _ => None,
                    }
                }
                _ => return None,
            };
            match args.as_slice() {
                [Expr::Slot(0), Expr::Lit(Val::Str(needle))] => field(Test::Affix {
                    kind,
                    needle: needle.to_string(),
                    fold,
                }),
                [Expr::Slot(0), Expr::Lit(_)] => Some(Cond::Const(false)),
                _ => None,
            }
        }
        _ => None,
    }
}
