//! The parsed form of an EQL query, before compilation: what the text says, with the byte offset of
//! every node for error messages. Sequences and samples are kept whole (stages, join keys, maxspan,
//! runs, `until`, missing-event stages) so that their evaluation can be added without reparsing.

/// A whole query.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryAst {
    /// `CATEGORY where CONDITION`
    Event(EventQuery),
    /// `sequence [by KEYS] [with maxspan=N] [STAGE] [by KEYS] … [until [STAGE]]`
    Sequence(SequenceAst),
    /// `sample [by KEYS] [STAGE] [by KEYS] …`
    Sample(SampleAst),
}

/// `CATEGORY where CONDITION`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventQuery {
    /// The event category, or `None` for `any`.
    pub category: Option<String>,
    /// The `where` condition.
    pub condition: Expr,
    /// Byte offset of the category.
    pub pos: usize,
}

/// A sequence query.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceAst {
    /// `sequence by KEYS`: keys every stage shares.
    pub by: Vec<Expr>,
    /// `with maxspan=…` in milliseconds.
    pub maxspan_ms: Option<u64>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// `until [STAGE]`.
    pub until: Option<Box<Stage>>,
}

/// A sample query.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleAst {
    /// `sample by KEYS`.
    pub by: Vec<Expr>,
    /// The stages.
    pub stages: Vec<Stage>,
}

/// One bracketed stage of a sequence or sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The stage's event query.
    pub query: EventQuery,
    /// The stage's own `by` keys (after the outer ones).
    pub by: Vec<Expr>,
    /// `with runs=N`: the stage repeats N times.
    pub runs: Option<u32>,
    /// `![ … ]`: the stage must not happen.
    pub missing: bool,
}

/// An expression node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Byte offset in the query text.
    pub pos: usize,
}

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A decimal.
    Float(f64),
    /// A string.
    Str(String),
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator with its operands swapped (`a < b` is `b > a`).
    pub fn swapped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            same => same,
        }
    }

    /// As written.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// Arithmetic operators (also the `add` … `modulo` functions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

/// The pattern operators, which take string literals on their right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `:` — case-insensitive, `*` and `?` wildcards.
    Colon,
    /// `like` / `like~`
    Like,
    /// `regex` / `regex~`
    Regex,
}

/// What an expression is.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A literal.
    Lit(Literal),
    /// A field reference; `optional` for `?field`.
    Field {
        /// Dotted path.
        path: String,
        /// Written `?path`: null when no index maps it.
        optional: bool,
    },
    /// `not E`
    Not(Box<Expr>),
    /// `A and B and …` (flattened).
    And(Vec<Expr>),
    /// `A or B or …` (flattened).
    Or(Vec<Expr>),
    /// `A OP B`
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `A in (…)`, `A in~ (…)`, `A not in (…)`.
    In {
        /// The tested value.
        value: Box<Expr>,
        /// The list.
        list: Vec<Expr>,
        /// `in~`
        insensitive: bool,
        /// `not in`
        negated: bool,
    },
    /// `A : P`, `A like P`, `A regex (P, …)` and their `~` forms.
    Match {
        /// The operator.
        op: MatchOp,
        /// The `~` form.
        insensitive: bool,
        /// The tested value.
        value: Box<Expr>,
        /// The pattern literals.
        patterns: Vec<Expr>,
    },
    /// Unary minus.
    Neg(Box<Expr>),
    /// `A + B` etc.
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// `name(args)` or `name~(args)`.
    Call {
        /// Name as written.
        name: String,
        /// Written with `~`.
        insensitive: bool,
        /// Arguments.
        args: Vec<Expr>,
    },
}
