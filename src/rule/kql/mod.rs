//! Kibana Query Language: lexer, parser and evaluator with Elastic's array semantics.
//!
//! Detection rules are written for Kibana, so a query must mean here what it means there:
//! `lex` reproduces the lexical rules of Kibana's grammar (kbn-es-query), `parse` builds a
//! boolean tree whose leaves test one field, and `eval` runs that tree on an ECS document the
//! way Elasticsearch runs the generated query on keyword fields: a leaf is true when any value
//! of its field matches. Compile once with [`parse()`], evaluate per event with
//! [`Query::matches`].

mod eval;
mod lex;
mod parse;
mod pattern;
mod shape;

pub use crate::document::{Document, Scalar};
pub use eval::{EvalOptions, Query};
pub use parse::{MAX_CLAUSES, MAX_QUERY_BYTES, MAX_WILDCARDS};

/// Compile KQL text into a [`Query`]; errors carry the 1-based line and column of the problem.
/// A query over [`MAX_QUERY_BYTES`], with more than [`MAX_CLAUSES`] field tests or a value with more
/// than [`MAX_WILDCARDS`] wildcards is refused: compiling it would take memory out of proportion
/// to any real rule.
pub fn parse(text: &str) -> Result<Query, KqlError> {
    parse::tree(text).map(Query::new)
}
pub(crate) use parse::{Leaf, Node, Test};
pub use shape::{Shape, ValueTest};

/// A query that cannot be compiled, with the 1-based line and character column of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct KqlError {
    /// What is wrong, e.g. `unexpected ')'`.
    pub message: String,
    /// Line of the offending text, from 1.
    pub line: usize,
    /// Column of the offending text in characters, from 1.
    pub column: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_line_and_column() {
        let e = KqlError {
            message: "unexpected ')'".to_string(),
            line: 2,
            column: 14,
        };
        assert_eq!(e.to_string(), "line 2, column 14: unexpected ')'");
    }
}
