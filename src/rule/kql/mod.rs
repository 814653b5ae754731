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
mod shape;

pub use eval::{Document, EvalOptions, Query, Scalar};
pub use parse::{parse, MAX_CLAUSES, MAX_QUERY_BYTES, MAX_WILDCARDS};
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
