//! Kibana Query Language: lexer, parser and evaluator with Elastic's array semantics.

pub mod lex;
pub mod parse;
pub mod eval;
