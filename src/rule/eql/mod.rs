//! Event Query Language: lexer, parser, compiler and evaluator with Elasticsearch's EQL semantics,
//! for the EQL detection rules Elastic writes for Linux.
//!
//! `lex` and `parse` turn the text into an [`ast`]; `compile` resolves functions, folds constants
//! and shapes each condition as Elasticsearch's query translation does; `eval` runs it on any
//! [`Document`] (the same view the KQL evaluator reads). What Elasticsearch's semantics are here,
//! in short (details in `eval` and `pattern`): a comparison is true when some value of a
//! multi-valued field makes it true; a missing field is `null`; `null` results are false while
//! `and`/`or`/`not` are two-valued, so `x != "a"` (which is `not x == "a"`) holds on a document
//! without `x`; `==`, `!=`, `in`, `like`, `regex` and the functions are case-sensitive, while `:`,
//! `in~`, `like~`, `regex~` fold ASCII letters and the `~` functions lower-case; string lengths and
//! positions count UTF-16 units, as Java does.
//!
//! Single-event queries (`process where …`, `any where …`, any category) evaluate with
//! [`Query::matches_with`]. Sequences and samples parse and compile into [`Sequence`] and
//! [`Sample`] (stages, join keys, `maxspan`, `runs`, `until`, missing-event stages), ready for a
//! stateful engine; on their own they match nothing.

pub mod ast;
mod compile;
mod eval;
mod func;
mod lex;
mod parse;
mod pattern;

use crate::document::Field;
use serde_json::Value;

use crate::rule::kql::{Document, EvalOptions, Scalar};

pub use eval::MAX_COMBINATIONS;
pub(crate) use eval::{Cond, Test, Val};
pub use parse::MAX_DEPTH;
pub use pattern::MAX_REGEX_CHARS;

/// Longest query text accepted, in bytes (the longest upstream Linux EQL query is about 10 KiB).
pub const MAX_QUERY_BYTES: usize = 256 * 1024;

/// Most tokens in one query.
pub const MAX_TOKENS: usize = 50_000;

/// A query that cannot be compiled, with the 1-based line and character column of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct EqlError {
    /// What is wrong, e.g. `expected ')', found the end of the query`.
    pub message: String,
    /// Line of the offending text, from 1.
    pub line: usize,
    /// Column of the offending text in characters, from 1.
    pub column: usize,
}

impl EqlError {
    /// An error at byte offset `pos` of `text`.
    pub(crate) fn at(text: &str, pos: usize, message: impl Into<String>) -> EqlError {
        let (line, column) = crate::rule::line_column(text, pos);
        EqlError {
            message: message.into(),
            line,
            column,
        }
    }
}

/// Compiles an EQL query. Text over [`MAX_QUERY_BYTES`] or [`MAX_TOKENS`] is refused before it is
/// parsed.
pub fn parse(text: &str) -> Result<Query, EqlError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(EqlError {
            message: format!(
                "query is {} bytes long, more than {MAX_QUERY_BYTES}",
                text.len()
            ),
            line: 1,
            column: 1,
        });
    }
    let tokens = lex::lex(text, MAX_TOKENS)?;
    let tree = parse::parse_tokens(text, &tokens)?;
    Query::compile(text, &tree)
}

/// Parses without compiling (syntax only): for tools that survey which queries parse.
pub fn parse_ast(text: &str) -> Result<ast::QueryAst, EqlError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(EqlError::at(text, 0, "query too long"));
    }
    let tokens = lex::lex(text, MAX_TOKENS)?;
    parse::parse_tokens(text, &tokens)
}

/// A compiled EQL query.
#[derive(Clone, Debug)]
pub struct Query {
    kind: QueryKind,
    fields: Vec<String>,
}

/// What kind of query it is.
#[derive(Clone, Debug)]
pub enum QueryKind {
    /// `CATEGORY where CONDITION`
    Event(EventFilter),
    /// `sequence …`
    Sequence(Sequence),
    /// `sample …`
    Sample(Sample),
}

/// A compiled `CATEGORY where CONDITION`.
#[derive(Clone, Debug)]
pub struct EventFilter {
    category: Option<String>,
    /// `event.category`, resolved.
    category_field: Field,
    cond: eval::Cond,
}

impl EventFilter {
    fn compile(text: &str, q: &ast::EventQuery) -> Result<EventFilter, EqlError> {
        Ok(EventFilter {
            category: q.category.clone(),
            category_field: Field::new("event.category"),
            cond: compile::condition(text, &q.condition)?,
        })
    }

    /// The compiled condition (the rule index reads the literals it requires).
    pub(crate) fn condition(&self) -> &Cond {
        &self.cond
    }

    /// The event category (`None` for `any`).
    pub fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }

    /// Does the document match: its `event.category` has the category (unless `any`), and the
    /// condition holds?
    pub fn matches(&self, doc: &dyn Document, opts: &EvalOptions) -> bool {
        if let Some(category) = &self.category {
            let has = doc.any_field(
                &self.category_field,
                &mut |v| matches!(v, Scalar::Str(s) if s == category),
            );
            if !has {
                return false;
            }
        }
        self.cond.eval(doc, opts)
    }

    /// The field names the filter reads (`event.category` when it names a category), sorted
    /// and without duplicates.
    pub fn fields_read(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.fields(&mut out);
        out.sort();
        out.dedup();
        out
    }

    fn fields(&self, out: &mut Vec<String>) {
        if self.category.is_some() {
            out.push("event.category".to_string());
        }
        cond_fields(&self.cond, out);
    }
}

fn cond_fields(c: &eval::Cond, out: &mut Vec<String>) {
    match c {
        eval::Cond::Const(_) => {}
        eval::Cond::And(v) | eval::Cond::Or(v) => v.iter().for_each(|c| cond_fields(c, out)),
        eval::Cond::Not(inner) => cond_fields(inner, out),
        eval::Cond::Field { path, .. } | eval::Cond::Exists(path) => {
            out.push(path.path().to_string())
        }
        eval::Cond::Script { paths, .. } => out.extend(paths.iter().map(|p| p.path().to_string())),
    }
}

/// A compiled join key (`by` expression) of a sequence or sample.
#[derive(Clone, Debug)]
pub struct JoinKey {
    expr: eval::Expr,
    paths: Vec<Field>,
    optional: bool,
}

impl JoinKey {
    fn compile(text: &str, e: &ast::Expr) -> Result<JoinKey, EqlError> {
        let optional = matches!(e.kind, ast::ExprKind::Field { optional: true, .. });
        let (expr, paths) = compile::value(text, e)?;
        Ok(JoinKey {
            expr,
            paths: paths.iter().map(|p| Field::new(p)).collect(),
            optional,
        })
    }

    /// The fields the key reads.
    pub fn paths(&self) -> &[Field] {
        &self.paths
    }

    /// Written `?field`: the key may be null (other keys must have a value to join).
    pub fn optional(&self) -> bool {
        self.optional
    }

    /// Whether the key is a plain field (the common case, `by process.entity_id`).
    pub fn is_field(&self) -> bool {
        matches!(self.expr, eval::Expr::Slot(0)) && self.paths.len() == 1
    }

    /// The key's value on `doc`, or `None` when the event cannot join on it.
    ///
    /// A field's value is the list of its values in document order: Elasticsearch reads join keys
    /// with the `fields` API, keeps every value of a multi-valued field, and compares keys as
    /// lists, so `[a, b]` joins only with `[a, b]`. A key without a value is `null` (the empty
    /// list): only a `?field` key may be `null` (Elasticsearch adds a `field != null` filter to
    /// every stage for the others). A computed key (`by length(x)`) needs each field it reads to
    /// have at most one value. More than [`MAX_KEY_VALUES`] values: the event cannot join.
    pub fn extract(&self, doc: &dyn Document, opts: &EvalOptions) -> Option<Vec<KeyAtom>> {
        let mut columns: Vec<Vec<eval::Val<'static>>> = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            let mut values = Vec::new();
            let mut over = false;
            doc.any_field(path, &mut |s| {
                if eval::ignored(&s, opts) {
                    return false;
                }
                if values.len() == MAX_KEY_VALUES {
                    over = true;
                    return true;
                }
                values.push(eval::Val::from_scalar(s).into_owned());
                false
            });
            if over {
                return None;
            }
            columns.push(values);
        }
        let atoms: Vec<KeyAtom> = if self.is_field() {
            columns
                .pop()
                .unwrap_or_default()
                .iter()
                .filter_map(KeyAtom::of)
                .collect()
        } else {
            if columns.iter().any(|c| c.len() > 1) {
                return None;
            }
            let env: Vec<eval::Val<'_>> = columns
                .iter()
                .map(|c| c.first().map_or(eval::Val::Null, eval::Val::borrowed))
                .collect();
            KeyAtom::of(&self.expr.eval(&env)).into_iter().collect()
        };
        (self.optional || !atoms.is_empty()).then_some(atoms)
    }
}

/// Most values of one field a join key takes (an argv can be long; a key that long joins nothing
/// real and would only cost memory).
pub const MAX_KEY_VALUES: usize = 1024;

/// One value of a join key, owned and hashable: sequences join events whose keys are equal.
/// Numbers and strings never equal each other (`1` is not `"1"`), as in Elasticsearch's key
/// comparison.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyAtom {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number, by its bits.
    Float(u64),
    /// A string.
    Str(Box<str>),
}

impl KeyAtom {
    fn of(v: &eval::Val<'_>) -> Option<KeyAtom> {
        match v {
            eval::Val::Null => None,
            eval::Val::Bool(b) => Some(KeyAtom::Bool(*b)),
            eval::Val::Int(i) => Some(KeyAtom::Int(*i)),
            eval::Val::Float(f) => Some(KeyAtom::Float(f.to_bits())),
            eval::Val::Str(s) => Some(KeyAtom::Str(s.as_ref().into())),
        }
    }

    /// The value as JSON (`null` for a float JSON cannot hold).
    pub fn to_json(&self) -> Value {
        match self {
            KeyAtom::Bool(b) => Value::Bool(*b),
            KeyAtom::Int(i) => Value::from(*i),
            KeyAtom::Float(bits) => serde_json::Number::from_f64(f64::from_bits(*bits))
                .map_or(Value::Null, Value::Number),
            KeyAtom::Str(s) => Value::from(s.as_ref()),
        }
    }

    /// Bytes it holds, for memory bounds.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<KeyAtom>()
            + match self {
                KeyAtom::Str(s) => s.len(),
                _ => 0,
            }
    }
}

/// One stage of a sequence or sample.
#[derive(Clone, Debug)]
pub struct SequenceStage {
    /// The stage's filter.
    pub filter: EventFilter,
    /// The stage's own join keys.
    pub by: Vec<JoinKey>,
    /// `with runs=N` (1 without it).
    pub runs: u32,
    /// `![ … ]`: the event must not happen.
    pub missing: bool,
}

impl SequenceStage {
    fn compile(text: &str, s: &ast::Stage) -> Result<SequenceStage, EqlError> {
        Ok(SequenceStage {
            filter: EventFilter::compile(text, &s.query)?,
            by: keys(text, &s.by)?,
            runs: s.runs.unwrap_or(1),
            missing: s.missing,
        })
    }
}

fn keys(text: &str, exprs: &[ast::Expr]) -> Result<Vec<JoinKey>, EqlError> {
    exprs.iter().map(|e| JoinKey::compile(text, e)).collect()
}

/// A compiled sequence query, for a stateful engine to run.
#[derive(Clone, Debug)]
pub struct Sequence {
    /// `sequence by …`: keys shared by every stage.
    pub by: Vec<JoinKey>,
    /// `with maxspan=…`, milliseconds.
    pub maxspan_ms: Option<u64>,
    /// The stages in order.
    pub stages: Vec<SequenceStage>,
    /// `until [ … ]`.
    pub until: Option<SequenceStage>,
}

/// A compiled sample query.
#[derive(Clone, Debug)]
pub struct Sample {
    /// `sample by …`
    pub by: Vec<JoinKey>,
    /// The stages.
    pub stages: Vec<SequenceStage>,
}

/// Most stages of one sequence, `runs` counted: each is a state of its machine.
pub const MAX_STAGES: usize = 256;

/// Elasticsearch's verifier rules for sequences: every stage (and `until`) has as many join keys,
/// at least one stage is not a missing event, and missing events need `maxspan`.
fn check_sequence(text: &str, s: &ast::SequenceAst) -> Result<(), EqlError> {
    let keys = |st: &ast::Stage| s.by.len() + st.by.len();
    let Some(first) = s.stages.first() else {
        return Err(EqlError::at(text, 0, "a sequence needs stages"));
    };
    for st in s.stages.iter().chain(s.until.as_deref()) {
        if keys(st) != keys(first) {
            return Err(EqlError::at(
                text,
                st.query.pos,
                format!(
                    "inconsistent number of join keys: {} expected (as the first stage) but {} found",
                    keys(first),
                    keys(st)
                ),
            ));
        }
    }
    let count: usize = s
        .stages
        .iter()
        .map(|st| st.runs.unwrap_or(1) as usize)
        .sum();
    if count > MAX_STAGES {
        return Err(EqlError::at(
            text,
            first.query.pos,
            format!("a sequence of {count} stages (runs counted) is more than {MAX_STAGES}"),
        ));
    }
    if s.stages.iter().all(|st| st.missing) {
        return Err(EqlError::at(
            text,
            first.query.pos,
            "a sequence needs at least one stage that is not a missing event (![ ])",
        ));
    }
    if s.maxspan_ms.is_none() {
        if let Some(st) = s.stages.iter().find(|st| st.missing) {
            return Err(EqlError::at(
                text,
                st.query.pos,
                "a sequence with missing events (![ ]) needs `with maxspan`",
            ));
        }
    }
    Ok(())
}

impl Query {
    fn compile(text: &str, tree: &ast::QueryAst) -> Result<Query, EqlError> {
        let mut fields = Vec::new();
        let kind = match tree {
            ast::QueryAst::Event(q) => {
                let f = EventFilter::compile(text, q)?;
                f.fields(&mut fields);
                QueryKind::Event(f)
            }
            ast::QueryAst::Sequence(s) => {
                check_sequence(text, s)?;
                let stages = s
                    .stages
                    .iter()
                    .map(|st| SequenceStage::compile(text, st))
                    .collect::<Result<Vec<_>, _>>()?;
                let until = s
                    .until
                    .as_deref()
                    .map(|st| SequenceStage::compile(text, st))
                    .transpose()?;
                let seq = Sequence {
                    by: keys(text, &s.by)?,
                    maxspan_ms: s.maxspan_ms,
                    stages,
                    until,
                };
                for st in seq.stages.iter().chain(&seq.until) {
                    st.filter.fields(&mut fields);
                    st.by
                        .iter()
                        .for_each(|k| fields.extend(k.paths.iter().map(|p| p.path().to_string())));
                }
                seq.by
                    .iter()
                    .for_each(|k| fields.extend(k.paths.iter().map(|p| p.path().to_string())));
                QueryKind::Sequence(seq)
            }
            ast::QueryAst::Sample(s) => {
                let sample = Sample {
                    by: keys(text, &s.by)?,
                    stages: s
                        .stages
                        .iter()
                        .map(|st| SequenceStage::compile(text, st))
                        .collect::<Result<Vec<_>, _>>()?,
                };
                for st in &sample.stages {
                    st.filter.fields(&mut fields);
                    st.by
                        .iter()
                        .for_each(|k| fields.extend(k.paths.iter().map(|p| p.path().to_string())));
                }
                sample
                    .by
                    .iter()
                    .for_each(|k| fields.extend(k.paths.iter().map(|p| p.path().to_string())));
                QueryKind::Sample(sample)
            }
        };
        fields.sort();
        fields.dedup();
        Ok(Query { kind, fields })
    }

    /// What kind of query this is.
    pub fn kind(&self) -> &QueryKind {
        &self.kind
    }

    /// True for `CATEGORY where …`; false for sequences and samples.
    pub fn is_single_event(&self) -> bool {
        matches!(self.kind, QueryKind::Event(_))
    }

    /// Does a single-event query match the document (default options)? Sequences and samples
    /// never match one document.
    pub fn matches(&self, doc: &Value) -> bool {
        self.matches_with(doc, &EvalOptions::default())
    }

    /// Does a single-event query match the document under the given options?
    pub fn matches_with(&self, doc: &dyn Document, opts: &EvalOptions) -> bool {
        match &self.kind {
            QueryKind::Event(f) => f.matches(doc, opts),
            QueryKind::Sequence(_) | QueryKind::Sample(_) => false,
        }
    }

    /// The field names the query reads, sorted and without duplicates.
    pub fn fields(&self) -> Vec<String> {
        self.fields.clone()
    }
}

impl std::str::FromStr for Query {
    type Err = EqlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text)
    }
}

#[cfg(test)]
mod tests;
mod value;
