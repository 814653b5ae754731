//! EQL evaluation: compiled conditions run against one document (any [`Document`], the same view
//! the KQL evaluator reads).
//!
//! Elasticsearch runs a single-event EQL query as a Query DSL filter: `and`/`or`/`not` become
//! boolean clauses, and each comparison or predicate becomes one leaf query — a term, terms,
//! range, prefix, wildcard or regexp query when a bare field meets literals, a script otherwise.
//! A leaf is true when *some* value of the field makes it true (scripts iterate over every value
//! of every field they name, each occurrence independently, and see `null` for a field without
//! values), `null` results count as false, and the boolean clauses around the leaves are
//! two-valued. So on multi-valued fields `process.args == "x"` asks whether any argument is `x`,
//! `process.args != "x"` (which Elasticsearch parses as `not ==`) whether none is, and on a document
//! without the field `x != "a"` and `not x : "a"` are true while `x == "a"` is false.
//! [`Cond`] is that structure: [`Cond::Field`] is a leaf over one bare field, [`Cond::Script`] any
//! other leaf, evaluated over every combination of its fields' values (at most
//! [`MAX_COMBINATIONS`] per leaf and event).

use std::cmp::Ordering;
use std::net::IpAddr;

use crate::document::Field;
use crate::rule::kql::{Document, EvalOptions, Scalar};

use super::ast::{ArithOp, CmpOp};
pub use super::func::Func;
use super::func::{arith, call};
use super::pattern::PatternSet;
pub use super::value::{Cidr, Val};

/// Most value combinations one script leaf evaluates per event (a leaf naming two multi-valued
/// fields is evaluated for every pair of their values); beyond it the leaf is false.
pub const MAX_COMBINATIONS: usize = 1 << 16;

/// A compiled boolean condition.
#[derive(Clone, Debug)]
pub enum Cond {
    /// Always true or always false.
    Const(bool),
    /// All of them.
    And(Vec<Cond>),
    /// Any of them.
    Or(Vec<Cond>),
    /// Not this one.
    Not(Box<Cond>),
    /// Some value of the field passes the test (a term, range, prefix, wildcard… query).
    Field {
        /// Dotted field path.
        path: Field,
        /// The test.
        test: Test,
    },
    /// The field has at least one value (`field != null`).
    Exists(Field),
    /// Some assignment of values to the expression's field references (one slot per reference,
    /// a field without values giving `null`) makes the expression `true`.
    Script {
        /// Field path of each slot.
        paths: Vec<Field>,
        /// The expression, reading its fields from the slots.
        expr: Expr,
    },
}

/// A test on one field value, as the Query DSL leaf Elasticsearch would run.
#[derive(Clone, Debug)]
pub enum Test {
    /// `==`, `<`, `<=`, `>`, `>=` against a literal: strings by bytes, numbers by value.
    Cmp(CmpOp, Val<'static>),
    /// `in (…)`: equal to one of the literals.
    In(Vec<Val<'static>>),
    /// `in~ (…)`: strings equal ignoring ASCII case, other literals exactly.
    InFold(Vec<Val<'static>>),
    /// `:`, `like`, `like~`, `regex`, `regex~`, `wildcard()`: strings only.
    Pattern(PatternSet),
    /// `startsWith`, `endsWith`, `stringContains` on the field with a literal (prefix or
    /// wildcard queries, so `~` folds ASCII letters only).
    Affix {
        /// Which function.
        kind: Affix,
        /// The literal.
        needle: String,
        /// The `~` form.
        fold: bool,
    },
    /// `cidrMatch` on the field: the value is an address inside one of the blocks.
    Cidr(Vec<Cidr>),
}

/// The three substring functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affix {
    /// `startsWith`
    Prefix,
    /// `endsWith`
    Suffix,
    /// `stringContains`
    Contains,
}

/// A compiled value expression (inside a script leaf).
#[derive(Clone, Debug)]
pub enum Expr {
    /// A constant.
    Lit(Val<'static>),
    /// The value of field slot N.
    Slot(usize),
    /// A comparison; `null` if either side is `null` or the types differ.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `in` / `in~` against literals.
    In {
        /// The value.
        value: Box<Expr>,
        /// The literals (no `null`s).
        list: Vec<Val<'static>>,
        /// `in~`: strings compared ignoring ASCII case.
        fold: bool,
    },
    /// A pattern operator.
    Pattern {
        /// The value.
        value: Box<Expr>,
        /// The patterns.
        set: PatternSet,
    },
    /// `x == null`.
    IsNull(Box<Expr>),
    /// Boolean negation (`null` stays `null`).
    Not(Box<Expr>),
    /// Unary minus.
    Neg(Box<Expr>),
    /// Arithmetic.
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// A function call.
    Call(Func, Vec<Expr>),
}

/// Is `s` a string longer than `ignore_above` (not a value, as for a keyword field)?
pub(crate) fn ignored(s: &Scalar<'_>, opts: &EvalOptions) -> bool {
    matches!(s, Scalar::Str(v) if opts.ignore_above.is_some_and(|limit| v.len() > limit))
}

impl Cond {
    /// Is the condition true for `doc`?
    pub fn eval(&self, doc: &dyn Document, opts: &EvalOptions) -> bool {
        match self {
            Cond::Const(b) => *b,
            Cond::And(items) => items.iter().all(|c| c.eval(doc, opts)),
            Cond::Or(items) => items.iter().any(|c| c.eval(doc, opts)),
            Cond::Not(inner) => !inner.eval(doc, opts),
            Cond::Field { path, test } => {
                doc.any_field(path, &mut |s| !ignored(&s, opts) && test.matches(&s))
            }
            Cond::Exists(path) => doc.any_field(path, &mut |s| !ignored(&s, opts)),
            Cond::Script { paths, expr } => eval_script(paths, expr, doc, opts),
        }
    }
}

fn eval_script(paths: &[Field], expr: &Expr, doc: &dyn Document, opts: &EvalOptions) -> bool {
    let truth = |env: &[Val<'_>]| matches!(expr.eval(env), Val::Bool(true));
    match paths {
        [] => truth(&[]),
        [only] => {
            let mut seen = false;
            let hit = doc.any_field(only, &mut |s| {
                if ignored(&s, opts) {
                    return false;
                }
                seen = true;
                truth(&[Val::from_scalar(s)])
            });
            hit || (!seen && truth(&[Val::Null]))
        }
        many => {
            let mut columns: Vec<Vec<Val<'static>>> = Vec::with_capacity(many.len());
            let mut combinations: usize = 1;
            for path in many {
                let mut values = Vec::new();
                doc.any_field(path, &mut |s| {
                    if !ignored(&s, opts) && values.len() < MAX_COMBINATIONS {
                        values.push(Val::from_scalar(s).into_owned());
                    }
                    false
                });
                if values.is_empty() {
                    values.push(Val::Null);
                }
                combinations = combinations.saturating_mul(values.len());
                columns.push(values);
            }
            let mut index = vec![0usize; columns.len()];
            let mut env: Vec<Val<'_>> = Vec::with_capacity(columns.len());
            for _ in 0..combinations.min(MAX_COMBINATIONS) {
                env.clear();
                env.extend(
                    columns
                        .iter()
                        .zip(&index)
                        .map(|(col, &i)| col.get(i).map_or(Val::Null, Val::borrowed)),
                );
                if truth(&env) {
                    return true;
                }
                // Next combination, odometer style.
                for (slot, col) in index.iter_mut().zip(&columns).rev() {
                    *slot += 1;
                    if *slot < col.len() {
                        break;
                    }
                    *slot = 0;
                }
            }
            false
        }
    }
}

/// ASCII case-insensitive substring search, linear in the haystack.
fn contains_fold(hay: &str, needle: &str) -> bool {
    let lower = |s: &str| s.to_ascii_lowercase();
    memchr::memmem::find(lower(hay).as_bytes(), lower(needle).as_bytes()).is_some()
}

impl Test {
    /// Does this one value pass?
    pub fn matches(&self, value: &Scalar<'_>) -> bool {
        match self {
            Test::Cmp(op, lit) => scalar_cmp(value, lit).is_some_and(|o| op_holds(*op, o)),
            Test::In(list) => list
                .iter()
                .any(|lit| scalar_cmp(value, lit) == Some(Ordering::Equal)),
            Test::InFold(list) => list.iter().any(|lit| match (value, lit) {
                (Scalar::Str(v), Val::Str(l)) => v.eq_ignore_ascii_case(l),
                _ => scalar_cmp(value, lit) == Some(Ordering::Equal),
            }),
            Test::Pattern(set) => matches!(value, Scalar::Str(s) if set.matches(s)),
            Test::Affix { kind, needle, fold } => {
                let Scalar::Str(s) = value else {
                    return false;
                };
                let (s, n) = (s.as_bytes(), needle.as_bytes());
                let eq = |a: &[u8], b: &[u8]| {
                    if *fold {
                        a.eq_ignore_ascii_case(b)
                    } else {
                        a == b
                    }
                };
                match kind {
                    Affix::Prefix => s.get(..n.len()).is_some_and(|h| eq(h, n)),
                    Affix::Suffix => s
                        .len()
                        .checked_sub(n.len())
                        .and_then(|at| s.get(at..))
                        .is_some_and(|t| eq(t, n)),
                    Affix::Contains if s.is_empty() || n.is_empty() => false,
                    Affix::Contains if *fold => {
                        contains_fold(std::str::from_utf8(s).unwrap_or(""), needle)
                    }
                    Affix::Contains => memchr::memmem::find(s, n).is_some(),
                }
            }
            Test::Cidr(blocks) => match value {
                Scalar::Str(s) => s
                    .trim()
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| blocks.iter().any(|b| b.contains(ip))),
                _ => false,
            },
        }
    }
}

fn op_holds(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    }
}

/// A document value against a literal, as an index compares them: strings by UTF-8 bytes
/// (code-point order), numbers by value; None across types.
fn scalar_cmp(value: &Scalar<'_>, lit: &Val<'_>) -> Option<Ordering> {
    match (value, lit) {
        (Scalar::Str(s), Val::Str(l)) => Some(s.as_bytes().cmp(l.as_bytes())),
        (Scalar::Bool(b), Val::Bool(l)) => Some(b.cmp(l)),
        (Scalar::Num(n), l) => num_cmp(&Val::from_scalar(Scalar::Num(n.clone())), l),
        _ => None,
    }
}

fn num_cmp(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Java's `String.compareTo`: UTF-16 code units, which scripts use.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Two values in a script comparison; None when either is null or the types differ.
fn value_cmp(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Some(utf16_cmp(x, y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => num_cmp(a, b),
    }
}

fn val_eq_fold(a: &Val<'_>, b: &Val<'_>, fold: bool) -> bool {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) if fold => x.eq_ignore_ascii_case(y),
        _ => value_cmp(a, b) == Some(Ordering::Equal),
    }
}

impl Expr {
    /// Evaluates with field slot values `env`.
    pub fn eval<'e>(&'e self, env: &'e [Val<'e>]) -> Val<'e> {
        match self {
            Expr::Lit(v) => v.borrowed(),
            Expr::Slot(i) => env.get(*i).map_or(Val::Null, Val::borrowed),
            Expr::Cmp(op, a, b) => {
                let (a, b) = (a.eval(env), b.eval(env));
                match value_cmp(&a, &b) {
                    Some(o) => Val::Bool(op_holds(*op, o)),
                    None => Val::Null,
                }
            }
            Expr::In { value, list, fold } => match value.eval(env) {
                Val::Null => Val::Null,
                v => Val::Bool(list.iter().any(|l| val_eq_fold(&v, l, *fold))),
            },
            Expr::Pattern { value, set } => match value.eval(env) {
                Val::Str(s) => Val::Bool(set.matches(&s)),
                _ => Val::Null,
            },
            Expr::IsNull(inner) => Val::Bool(inner.eval(env) == Val::Null),
            Expr::Not(inner) => match inner.eval(env) {
                Val::Bool(b) => Val::Bool(!b),
                _ => Val::Null,
            },
            Expr::Neg(inner) => match inner.eval(env) {
                Val::Int(i) => i.checked_neg().map_or(Val::Null, Val::Int),
                Val::Float(f) => Val::Float(-f),
                _ => Val::Null,
            },
            Expr::Arith(op, a, b) => arith(*op, &a.eval(env), &b.eval(env)),
            Expr::Call(func, args) => {
                let values: Vec<Val<'e>> = args.iter().map(|a| a.eval(env)).collect();
                call(func, &values)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::eql::func::*;
    use std::borrow::Cow;

    fn s(v: &str) -> Val<'static> {
        Val::Str(Cow::Owned(v.to_string()))
    }

    #[test]
    fn functions_follow_the_reference_examples() {
        let c = |f: Func, a: Vec<Val<'static>>| call(&f, &a).into_owned();
        assert_eq!(c(Func::Length, vec![s("explorer.exe")]), Val::Int(12));
        assert_eq!(
            c(Func::Length, vec![s("\u{1F600}")]),
            Val::Int(2),
            "UTF-16 units"
        );
        assert_eq!(c(Func::Length, vec![Val::Null]), Val::Null);
        let sw = Func::StartsWith { fold: false };
        assert_eq!(
            c(sw.clone(), vec![s("regsvr32.exe"), s("regsvr32")]),
            Val::Bool(true)
        );
        assert_eq!(
            c(sw, vec![s("regsvr32.exe"), s("Regsvr32")]),
            Val::Bool(false)
        );
        assert_eq!(
            c(
                Func::StartsWith { fold: true },
                vec![s("regsvr32.exe"), s("Regsvr32")]
            ),
            Val::Bool(true)
        );
        assert_eq!(
            c(Func::EndsWith { fold: false }, vec![s(""), s("")]),
            Val::Bool(true)
        );
        assert_eq!(
            c(Func::EndsWith { fold: false }, vec![s("a"), Val::Null]),
            Val::Null
        );
        let sc = Func::StringContains { fold: false };
        assert_eq!(
            c(sc.clone(), vec![s("start regsvr32.exe"), s("regsvr32")]),
            Val::Bool(true)
        );
        assert_eq!(c(sc.clone(), vec![s(""), s("")]), Val::Bool(false));
        assert_eq!(c(sc, vec![s("abc"), s("")]), Val::Bool(false));
        let io = Func::IndexOf { fold: false };
        let d = s("subdomain.example.com");
        assert_eq!(c(io.clone(), vec![d.clone(), s("d")]), Val::Int(3));
        assert_eq!(c(io.clone(), vec![d.clone(), s("D")]), Val::Null);
        assert_eq!(
            c(io.clone(), vec![d.clone(), s("."), Val::Int(10)]),
            Val::Int(17)
        );
        assert_eq!(
            c(io.clone(), vec![d.clone(), s("."), Val::Int(-6)]),
            Val::Int(9)
        );
        assert_eq!(
            c(io.clone(), vec![d.clone(), s(""), Val::Int(10)]),
            Val::Int(10)
        );
        assert_eq!(
            c(io.clone(), vec![d.clone(), s("."), Val::Int(30)]),
            Val::Null
        );
        assert_eq!(c(io.clone(), vec![d.clone(), s("."), Val::Null]), Val::Null);
        assert_eq!(c(io, vec![s("\u{1F600}x"), s("x")]), Val::Int(2));
        assert_eq!(
            c(Func::IndexOf { fold: true }, vec![d, s("D")]),
            Val::Int(3)
        );
        let p = s("C:\\Windows\\System32\\cmd.exe");
        let b = |fold, args| c(Func::Between { fold }, args);
        assert_eq!(
            b(false, vec![p.clone(), s("System32\\"), s(".exe")]),
            s("cmd")
        );
        assert_eq!(b(false, vec![p.clone(), s("system32\\"), s(".exe")]), s(""));
        assert_eq!(
            b(true, vec![p.clone(), s("system32\\"), s(".exe")]),
            s("cmd")
        );
        assert_eq!(
            b(false, vec![p.clone(), s("\\"), s("\\"), Val::Bool(false)]),
            s("Windows")
        );
        assert_eq!(
            b(false, vec![p, s("\\"), s("\\"), Val::Bool(true)]),
            s("Windows\\System32")
        );
        assert_eq!(b(false, vec![s(""), s("a"), s("b")]), s(""));
        assert_eq!(b(false, vec![Val::Null, s("a"), s("b")]), Val::Null);
        let sub = |a| c(Func::Substring, a);
        let t = s("start regsvr32.exe");
        assert_eq!(sub(vec![t.clone(), Val::Int(6)]), s("regsvr32.exe"));
        assert_eq!(sub(vec![t.clone(), Val::Int(0), Val::Int(5)]), s("start"));
        assert_eq!(sub(vec![t.clone(), Val::Int(-4)]), s(".exe"));
        assert_eq!(sub(vec![t.clone(), Val::Int(-4), Val::Int(-1)]), s(".ex"));
        assert_eq!(sub(vec![t, Val::Int(10), Val::Int(2)]), s(""));
        let n = |a| c(Func::Number, a);
        assert_eq!(n(vec![s("1337")]), Val::Int(1337));
        assert_eq!(n(vec![s("42.5")]), Val::Float(42.5));
        assert_eq!(
            n(vec![s("deadbeef"), Val::Int(16)]),
            Val::Int(3_735_928_559)
        );
        assert_eq!(n(vec![s("0xdeadbeef")]), Val::Int(3_735_928_559));
        assert_eq!(n(vec![s("0xdeadbeef"), Val::Null]), Val::Int(3_735_928_559));
        assert_eq!(n(vec![s("+1337")]), Val::Int(1337));
        assert_eq!(n(vec![s("-1337")]), Val::Int(-1337));
        assert_eq!(n(vec![s("  1337  ")]), Val::Int(1337));
        assert_eq!(n(vec![s("-0.5")]), Val::Float(-0.5));
        assert_eq!(n(vec![s("")]), Val::Null);
        assert_eq!(n(vec![s("1.2.3")]), Val::Null);
        assert_eq!(n(vec![s("abc")]), Val::Null);
        assert_eq!(n(vec![Val::Null]), Val::Null);
        let st = |v| c(Func::ToString, vec![v]);
        assert_eq!(st(Val::Int(42)), s("42"));
        assert_eq!(st(Val::Float(42.5)), s("42.5"));
        assert_eq!(st(Val::Float(1.0)), s("1.0"));
        assert_eq!(st(Val::Float(1e10)), s("1.0E10"));
        assert_eq!(st(Val::Float(1.5e-5)), s("1.5E-5"));
        assert_eq!(st(Val::Bool(true)), s("true"));
        assert_eq!(st(Val::Null), Val::Null);
        let cc = |a| c(Func::Concat, a);
        assert_eq!(
            cc(vec![s("regsvr32.exe"), s(" "), Val::Int(42)]),
            s("regsvr32.exe 42")
        );
        assert_eq!(cc(vec![s("a"), Val::Bool(true)]), s("atrue"));
        assert_eq!(cc(vec![Val::Null, s("a")]), Val::Null);
        let blocks = vec![Cidr::parse("192.168.0.0/16").unwrap()];
        assert_eq!(
            c(Func::CidrMatch(blocks.clone()), vec![s("192.168.152.12")]),
            Val::Bool(true)
        );
        assert_eq!(
            c(Func::CidrMatch(blocks.clone()), vec![s("10.0.0.1")]),
            Val::Bool(false)
        );
        assert_eq!(c(Func::CidrMatch(blocks), vec![Val::Null]), Val::Null);
    }

    #[test]
    fn arithmetic_follows_java() {
        assert_eq!(
            arith(ArithOp::Add, &Val::Int(4), &Val::Float(0.5)),
            Val::Float(4.5)
        );
        assert_eq!(arith(ArithOp::Div, &Val::Int(4), &Val::Int(3)), Val::Int(1));
        assert_eq!(
            arith(ArithOp::Div, &Val::Int(-7), &Val::Int(2)),
            Val::Int(-3)
        );
        assert_eq!(
            arith(ArithOp::Div, &Val::Int(4), &Val::Float(0.5)),
            Val::Float(8.0)
        );
        assert_eq!(
            arith(ArithOp::Mod, &Val::Int(10), &Val::Int(-6)),
            Val::Int(4)
        );
        assert_eq!(
            arith(ArithOp::Mod, &Val::Int(-10), &Val::Int(-6)),
            Val::Int(-4)
        );
        assert_eq!(arith(ArithOp::Div, &Val::Int(1), &Val::Int(0)), Val::Null);
        assert_eq!(
            arith(ArithOp::Mod, &Val::Float(1.0), &Val::Int(0)),
            Val::Null
        );
        assert_eq!(
            arith(ArithOp::Add, &Val::Int(i64::MAX), &Val::Int(1)),
            Val::Null
        );
        assert_eq!(
            arith(ArithOp::Div, &Val::Int(i64::MIN), &Val::Int(-1)),
            Val::Null
        );
        assert_eq!(arith(ArithOp::Add, &Val::Null, &Val::Int(1)), Val::Null);
        assert_eq!(arith(ArithOp::Add, &s("1"), &Val::Int(1)), Val::Null);
    }

    #[test]
    fn cidr_blocks() {
        let c = |t: &str| Cidr::parse(t).unwrap();
        assert!(c("10.0.0.0/8").contains("10.200.1.1".parse().unwrap()));
        assert!(!c("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(c("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(c("2001:db8::/32").contains("2001:db8::1".parse().unwrap()));
        assert!(!c("2001:db8::/32").contains("10.0.0.1".parse().unwrap()));
        assert!(c("127.0.0.1").contains("127.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope/8").is_none());
    }

    #[test]
    fn script_comparisons_order_strings_by_utf16() {
        // U+FF61 sorts after U+1F600 in code points but before it in UTF-16 units.
        let a = s("\u{FF61}");
        let b = s("\u{1F600}");
        assert_eq!(value_cmp(&a, &b), Some(Ordering::Greater));
        assert_eq!(
            scalar_cmp(&Scalar::Str("\u{FF61}"), &b),
            Some(Ordering::Less)
        );
        assert_eq!(
            value_cmp(&Val::Int(1), &Val::Float(1.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(value_cmp(&s("1"), &Val::Int(1)), None);
        assert_eq!(value_cmp(&Val::Null, &Val::Null), None);
    }
}
