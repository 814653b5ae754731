//! Why a rule file could not be loaded: one error type naming the file and the place.

use crate::rule::eql;
use crate::rule::kql;
use crate::textfile::TextFileError;

use super::*;

/// Why a rule file could not be loaded; every variant names the file (or directory).
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file or directory could not be read, is no regular file, or is over
    /// [`MAX_RULE_FILE_BYTES`].
    #[error("{file}: {error}")]
    Io {
        /// Path as given.
        file: String,
        /// Why (in the message, so not also the `source()`).
        error: TextFileError,
    },
    /// A directory holds more rule files than [`MAX_RULE_FILES`].
    #[error("{dir}: more than {MAX_RULE_FILES} rule files")]
    TooManyFiles {
        /// The directory as given.
        dir: String,
    },
    /// TOML syntax error, or a key of the wrong TOML type.
    #[error("{file}: line {line}, column {column}: {message}")]
    Toml {
        /// Path as given.
        file: String,
        /// 1-based line in the file (0 when the parser gave no position).
        line: usize,
        /// 1-based column in characters (0 when the parser gave no position).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A key the loader needs is absent.
    #[error("{file}: missing required key `{key}`")]
    Missing {
        /// Path as given.
        file: String,
        /// Dotted key, e.g. `rule.rule_id`.
        key: &'static str,
    },
    /// A key has a value the loader cannot use.
    #[error("{file}: `{key}` = {value:?}: {reason}")]
    Invalid {
        /// Path as given.
        file: String,
        /// Dotted key.
        key: &'static str,
        /// The offending value as written.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// `rule.type` is not `query`, `new_terms`, `threshold` or `eql`.
    #[error("{file}: rule type {rule_type:?} is not supported (only \"query\", \"new_terms\", \"threshold\" and \"eql\")")]
    UnsupportedType {
        /// Path as given.
        file: String,
        /// The type, e.g. `threshold`.
        rule_type: String,
    },
    /// `rule.language` is not `kuery` or `eql`, or does not go with `rule.type`.
    #[error("{file}: query language {language:?} is not supported for rule type {rule_type:?} (kuery with query, new_terms or threshold, eql with eql)")]
    UnsupportedLanguage {
        /// Path as given.
        file: String,
        /// The language, e.g. `esql`, `lucene`.
        language: String,
        /// The rule type it came with.
        rule_type: String,
    },
    /// The KQL query does not parse. Line and column are within the query text.
    #[error("{file}: query line {}, column {}: {}", .error.line, .error.column, .error.message)]
    Kql {
        /// Path as given.
        file: String,
        /// The parser's error.
        error: kql::KqlError,
    },
    /// The paths named no rule file at all (empty directories): a rule set that cannot alert.
    #[error("{paths}: no rules loaded (no *.toml rule files found there)")]
    NoRules {
        /// Every path searched, as given, separated by `, `.
        paths: String,
    },
    /// The EQL query does not compile. Line and column are within the query text.
    #[error("{file}: query line {}, column {}: {}", .error.line, .error.column, .error.message)]
    Eql {
        /// Path as given.
        file: String,
        /// The compiler's error.
        error: eql::EqlError,
    },
    /// The query compiles but this agent cannot run it (a sequence, or events it does not make).
    #[error("{file}: {reason}")]
    UnsupportedQuery {
        /// Path as given.
        file: String,
        /// Why, e.g. `sequence queries are not supported yet`.
        reason: String,
    },
    /// The query names events of a category this agent does not make (`file where …`).
    #[error("{file}: {what} on {category:?} events: this agent makes {} events only", crate::catalog::categories().collect::<Vec<_>>().join(", "))]
    UnsupportedCategory {
        /// Path as given.
        file: String,
        /// `EQL query` or `EQL sequence with a stage`.
        what: &'static str,
        /// The category, e.g. `file`.
        category: String,
    },
    /// The rule reads fields that no document of its events can hold (Elastic Defend's own
    /// `process.Ext.*`, code signatures, …): it could never match, or never exclude, what it
    /// does in Elastic, so it is refused.
    #[error("{file}: needs fields this agent does not provide: {}", .fields.join(", "))]
    MissingFields {
        /// Path as given.
        file: String,
        /// The fields, sorted.
        fields: Vec<String>,
    },
    /// Two files define the same `rule_id`; the second one is refused.
    #[error("{file}: rule_id {rule_id} is already defined in {first}")]
    DuplicateId {
        /// The later file.
        file: String,
        /// The duplicated id.
        rule_id: String,
        /// The file that defined it first.
        first: String,
    },
}

impl RuleError {
    /// The file (or directory) the error is about.
    pub fn file(&self) -> &str {
        match self {
            RuleError::Io { file, .. }
            | RuleError::Toml { file, .. }
            | RuleError::Missing { file, .. }
            | RuleError::Invalid { file, .. }
            | RuleError::UnsupportedType { file, .. }
            | RuleError::UnsupportedLanguage { file, .. }
            | RuleError::Kql { file, .. }
            | RuleError::Eql { file, .. }
            | RuleError::UnsupportedQuery { file, .. }
            | RuleError::UnsupportedCategory { file, .. }
            | RuleError::MissingFields { file, .. }
            | RuleError::DuplicateId { file, .. } => file,
            RuleError::NoRules { paths } => paths,
            RuleError::TooManyFiles { dir } => dir,
        }
    }
}
