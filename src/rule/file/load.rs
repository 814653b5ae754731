//! One rule file's TOML → a validated [`Rule`]: the raw shape, the query compiled, the
//! new-terms and threshold settings checked.

use std::path::Path;

use serde::Deserialize;

use crate::catalog;
use crate::rule::eql;
use crate::rule::kql;
use crate::rule::line_column;
use crate::rule::threshold::{self, Threshold};
use crate::textfile;

use super::*;

// ---- raw TOML shape (everything optional, so that missing keys get our own error) ----

#[derive(Deserialize)]
struct RawFile {
    rule: Option<RawRule>,
}

#[derive(Deserialize)]
struct RawRule {
    rule_id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    severity: Option<String>,
    risk_score: Option<i64>,
    #[serde(rename = "type")]
    rule_type: Option<String>,
    language: Option<String>,
    query: Option<String>,
    max_signals: Option<i64>,
    from: Option<String>,
    interval: Option<String>,
    new_terms: Option<RawNewTerms>,
    threshold: Option<RawThreshold>,
}

#[derive(Deserialize)]
struct RawThreshold {
    field: Option<OneOrMany>,
    value: Option<i64>,
    cardinality: Option<Vec<RawCardinality>>,
}

/// Kibana takes `threshold.field` as one name or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawCardinality {
    field: Option<String>,
    value: Option<i64>,
}

#[derive(Deserialize)]
struct RawNewTerms {
    field: Option<String>,
    value: Option<Vec<String>>,
    history_window_start: Option<Vec<RawParam>>,
}

#[derive(Deserialize)]
struct RawParam {
    field: Option<String>,
    value: Option<String>,
}

/// Reads and validates one rule file; `source` of the rule is the path as given.
pub fn load_file(path: &Path) -> Result<Rule, RuleError> {
    let source = path.display().to_string();
    let text = textfile::read(path, MAX_RULE_FILE_BYTES).map_err(|e| RuleError::Io {
        file: source.clone(),
        error: e,
    })?;
    load_str(&text, &source)
}

/// Validates rule TOML `text`; `source` names it in errors and becomes [`Rule::source`].
pub fn load_str(text: &str, source: &str) -> Result<Rule, RuleError> {
    let file = || source.to_string();
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => line_column(text, span.start),
            None => (0, 0),
        };
        RuleError::Toml {
            file: file(),
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })?;
    let missing = |key: &'static str| RuleError::Missing { file: file(), key };
    let invalid = |key: &'static str, value: String, reason: &'static str| RuleError::Invalid {
        file: file(),
        key,
        value,
        reason,
    };

    let r = raw.rule.ok_or_else(|| missing("rule"))?;

    // Type and language first: an ML rule lacks a query, and "unsupported type" is the useful
    // message for it, not "missing query".
    let rule_type = r.rule_type.ok_or_else(|| missing("rule.type"))?;
    if !["query", "new_terms", "threshold", "eql"].contains(&rule_type.as_str()) {
        return Err(RuleError::UnsupportedType {
            file: file(),
            rule_type,
        });
    }
    let language = r.language.ok_or_else(|| missing("rule.language"))?;
    if (language == "eql") != (rule_type == "eql") || !["kuery", "eql"].contains(&language.as_str())
    {
        return Err(RuleError::UnsupportedLanguage {
            file: file(),
            language,
            rule_type,
        });
    }

    let id = r.rule_id.ok_or_else(|| missing("rule.rule_id"))?;
    if id.trim().is_empty() {
        return Err(invalid("rule.rule_id", id, "must not be empty"));
    }
    let name = r.name.ok_or_else(|| missing("rule.name"))?;
    let description = r.description.ok_or_else(|| missing("rule.description"))?;
    let severity_text = r.severity.ok_or_else(|| missing("rule.severity"))?;
    let severity = Severity::parse(&severity_text).ok_or_else(|| {
        invalid(
            "rule.severity",
            severity_text.clone(),
            "expected low, medium, high or critical",
        )
    })?;
    let risk = r.risk_score.ok_or_else(|| missing("rule.risk_score"))?;
    let risk_score = u32::try_from(risk)
        .ok()
        .filter(|v| *v <= 100)
        .ok_or_else(|| invalid("rule.risk_score", risk.to_string(), "expected 0 to 100"))?;
    let max_signals = match r.max_signals {
        None => DEFAULT_MAX_SIGNALS,
        Some(v) => u32::try_from(v).ok().filter(|v| *v >= 1).ok_or_else(|| {
            invalid(
                "rule.max_signals",
                v.to_string(),
                "expected a positive integer",
            )
        })?,
    };
    let from = r.from.unwrap_or_else(|| DEFAULT_FROM.to_string());
    if parse_now_minus_ms(&from).is_none() {
        return Err(invalid("rule.from", from, DATE_MATH_EXPECTED));
    }
    let interval = r.interval.unwrap_or_else(|| DEFAULT_INTERVAL.to_string());
    if parse_duration_ms(&interval).is_none() {
        return Err(invalid(
            "rule.interval",
            interval,
            "expected <N><unit> with N >= 1 and unit one of s, m, h, d, w",
        ));
    }

    let kind = match rule_type.as_str() {
        "new_terms" => new_terms_kind(r.new_terms, source)?,
        "threshold" => threshold_kind(r.threshold, &interval, &from, source)?,
        _ => RuleKind::Query,
    };

    let query_text = r.query.ok_or_else(|| missing("rule.query"))?;
    let query = if language == "eql" {
        RuleQuery::Eql(eql_query(&query_text, source)?)
    } else {
        RuleQuery::Kql(kql::parse(&query_text).map_err(|error| RuleError::Kql {
            file: file(),
            error,
        })?)
    };

    check_fields(&query, &kind, source)?;

    Ok(Rule {
        id,
        name,
        description,
        severity,
        risk_score,
        language,
        query_text,
        query,
        kind,
        max_signals,
        from,
        interval,
        source: source.to_string(),
    })
}

/// Compiles an EQL rule's query and checks that this agent can run it: a single-event query or a
/// sequence whose every event (stages and `until`) is of a category the agent makes, or `any`.
fn eql_query(text: &str, source: &str) -> Result<eql::Query, RuleError> {
    let query = eql::parse(text).map_err(|error| RuleError::Eql {
        file: source.to_string(),
        error,
    })?;
    let unsupported = |reason: String| RuleError::UnsupportedQuery {
        file: source.to_string(),
        reason,
    };
    let filters: Vec<&eql::EventFilter> = match query.kind() {
        eql::QueryKind::Event(filter) => vec![filter],
        eql::QueryKind::Sequence(seq) => seq
            .stages
            .iter()
            .chain(&seq.until)
            .map(|st| &st.filter)
            .collect(),
        eql::QueryKind::Sample(_) => {
            return Err(unsupported(
                "EQL sample queries are not supported".to_string(),
            ))
        }
    };
    let what = if query.is_single_event() {
        "EQL query"
    } else {
        "EQL sequence with a stage"
    };
    for filter in filters {
        if let Some(other) = filter.category().filter(|c| catalog::kind(c).is_none()) {
            return Err(RuleError::UnsupportedCategory {
                file: source.to_string(),
                what,
                category: other.to_string(),
            });
        }
    }
    Ok(query)
}

/// Refuses a rule that reads a field its events cannot hold ([`RuleError::MissingFields`]): the
/// query's fields (an EQL filter's against its own category, with its join keys), and the
/// new-terms or threshold fields.
fn check_fields(query: &RuleQuery, kind: &RuleKind, source: &str) -> Result<(), RuleError> {
    let mut missing: Vec<String> = Vec::new();
    let mut check = |category: Option<&str>, fields: &[String]| {
        missing.extend(
            catalog::missing(category, fields)
                .into_iter()
                .map(str::to_string),
        );
    };
    match query {
        RuleQuery::Kql(q) => check(None, &q.fields()),
        RuleQuery::Eql(q) => match q.kind() {
            eql::QueryKind::Event(filter) => check(filter.category(), &filter.fields_read()),
            eql::QueryKind::Sequence(seq) => {
                let shared: Vec<String> = seq
                    .by
                    .iter()
                    .flat_map(|k| k.paths().iter().map(|p| p.path().to_string()))
                    .collect();
                for stage in seq.stages.iter().chain(&seq.until) {
                    let mut fields = stage.filter.fields_read();
                    fields.extend(shared.iter().cloned());
                    fields.extend(
                        stage
                            .by
                            .iter()
                            .flat_map(|k| k.paths().iter().map(|p| p.path().to_string())),
                    );
                    check(stage.filter.category(), &fields);
                }
            }
            // Refused before this (samples are not run).
            eql::QueryKind::Sample(_) => {}
        },
    }
    match kind {
        RuleKind::Query => {}
        RuleKind::NewTerms { fields, .. } => check(None, fields),
        RuleKind::Threshold(t) => {
            let mut fields = t.fields.clone();
            fields.extend(t.cardinality.iter().map(|(f, _)| f.clone()));
            check(None, &fields);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    missing.dedup();
    Err(RuleError::MissingFields {
        file: source.to_string(),
        fields: missing,
    })
}

/// Kibana accepts at most five threshold fields.
pub const MAX_THRESHOLD_FIELDS: usize = 5;

fn threshold_kind(
    raw: Option<RawThreshold>,
    interval: &str,
    from: &str,
    source: &str,
) -> Result<RuleKind, RuleError> {
    let err = KeyErrors(source);
    let t = raw.ok_or_else(|| err.missing("rule.threshold"))?;
    let fields: Vec<String> = match t.field {
        None => Vec::new(),
        Some(OneOrMany::One(f)) => vec![f],
        Some(OneOrMany::Many(v)) => v,
    }
    .into_iter()
    .filter(|f| !f.trim().is_empty())
    .collect();
    if fields.len() > MAX_THRESHOLD_FIELDS {
        return Err(err.invalid(
            "rule.threshold.field",
            format!("{fields:?}"),
            "expected at most five field names",
        ));
    }
    let value = t.value.ok_or_else(|| err.missing("rule.threshold.value"))?;
    let value = u64::try_from(value)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            err.invalid(
                "rule.threshold.value",
                value.to_string(),
                "expected a positive integer",
            )
        })?;
    let cardinality = match t.cardinality.unwrap_or_default().as_slice() {
        [] => None,
        [one] => {
            let field = one
                .field
                .clone()
                .filter(|f| !f.trim().is_empty())
                .ok_or_else(|| err.missing("rule.threshold.cardinality.field"))?;
            let n = one
                .value
                .ok_or_else(|| err.missing("rule.threshold.cardinality.value"))?;
            let n = u64::try_from(n)
                .ok()
                .filter(|n| *n <= threshold::MAX_DISTINCT as u64)
                .ok_or_else(|| {
                    err.invalid(
                        "rule.threshold.cardinality.value",
                        n.to_string(),
                        "expected 0 to 10000",
                    )
                })?;
            Some((field, n))
        }
        more => {
            return Err(err.invalid(
                "rule.threshold.cardinality",
                format!("{} entries", more.len()),
                "expected at most one cardinality entry (Kibana uses one)",
            ))
        }
    };
    let (Some(interval_ms), Some(from_ms)) =
        (parse_duration_ms(interval), parse_now_minus_ms(from))
    else {
        return Err(err.invalid("rule.interval", interval.to_string(), DATE_MATH_EXPECTED));
    };
    threshold::check_windows(interval_ms, from_ms).map_err(|reason| {
        RuleError::UnsupportedQuery {
            file: source.to_string(),
            reason,
        }
    })?;
    Ok(RuleKind::Threshold(Threshold {
        fields,
        value,
        cardinality,
    }))
}

/// The errors of one rule file's key checks.
struct KeyErrors<'a>(&'a str);

impl KeyErrors<'_> {
    fn missing(&self, key: &'static str) -> RuleError {
        RuleError::Missing {
            file: self.0.to_string(),
            key,
        }
    }

    fn invalid(&self, key: &'static str, value: String, reason: &'static str) -> RuleError {
        RuleError::Invalid {
            file: self.0.to_string(),
            key,
            value,
            reason,
        }
    }
}

pub(super) const DATE_MATH_EXPECTED: &str =
    "expected Elastic date math now-<N><unit> with N >= 1 and unit one of s, m, h, d, w";

fn new_terms_kind(raw: Option<RawNewTerms>, source: &str) -> Result<RuleKind, RuleError> {
    let err = KeyErrors(source);
    let nt = raw.ok_or_else(|| err.missing("rule.new_terms"))?;
    let field = nt
        .field
        .ok_or_else(|| err.missing("rule.new_terms.field"))?;
    if field != "new_terms_fields" {
        return Err(err.invalid(
            "rule.new_terms.field",
            field,
            "expected \"new_terms_fields\"",
        ));
    }
    let fields = nt
        .value
        .ok_or_else(|| err.missing("rule.new_terms.value"))?;
    if fields.is_empty()
        || fields.len() > MAX_NEW_TERMS_FIELDS
        || fields.iter().any(|f| f.trim().is_empty())
    {
        return Err(err.invalid(
            "rule.new_terms.value",
            format!("{fields:?}"),
            "expected one to three non-empty field names",
        ));
    }
    let params = nt
        .history_window_start
        .ok_or_else(|| err.missing("rule.new_terms.history_window_start"))?;
    let param = params
        .into_iter()
        .find(|p| p.field.as_deref() == Some("history_window_start"))
        .ok_or_else(|| err.missing("rule.new_terms.history_window_start"))?;
    let value = param
        .value
        .ok_or_else(|| err.missing("rule.new_terms.history_window_start.value"))?;
    let history_window_ms = parse_now_minus_ms(&value).ok_or_else(|| {
        err.invalid(
            "rule.new_terms.history_window_start",
            value.clone(),
            DATE_MATH_EXPECTED,
        )
    })?;
    Ok(RuleKind::NewTerms {
        fields,
        history_window_ms,
    })
}

/// Elastic date math `now-<N><unit>` (unit s, m, h, d, w; N ≥ 1) → milliseconds; None otherwise.
/// Rounding (`/d`), calendar units (M, y) and anchors other than `now` are not supported.
pub fn parse_now_minus_ms(text: &str) -> Option<u64> {
    parse_duration_ms(text.strip_prefix("now-")?)
}

/// A duration `<N><unit>` (unit s, m, h, d, w; N ≥ 1) → milliseconds; None otherwise or on overflow.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let unit = text.chars().last()?;
    let digits = text.get(..text.len() - unit.len_utf8())?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    if n == 0 {
        return None;
    }
    let unit_ms: u64 = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 604_800_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}
