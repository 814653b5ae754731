//! `rules check --coverage`: for every rule file, whether this agent runs it and, if not, why
//! (the query's syntax, fields its events cannot hold, a rule type or event category it does
//! not handle), then the counts per query language and rule type. The same checks refuse those
//! rules when an agent loads them; this only reports them all instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rule::eql::{self, ast::QueryAst};
use crate::rule::file::{self, RuleError, MAX_RULE_FILE_BYTES};
use crate::textfile;

/// What became of one rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It loads: the agent runs it.
    Loaded,
    /// Its query does not compile, or uses syntax the agent does not run (EQL samples).
    Syntax(String),
    /// It reads fields no document of its events can hold (named).
    Fields(Vec<String>),
    /// It queries events of a category the agent does not make.
    Category(String),
    /// Its rule type or query language is not one the agent runs.
    Type(String),
    /// Anything else: unreadable, a key missing or invalid, a duplicate rule id.
    Error(String),
}

impl Outcome {
    /// The column of the summary table this outcome counts in.
    pub fn column(&self) -> usize {
        match self {
            Outcome::Loaded => 0,
            Outcome::Syntax(_) => 1,
            Outcome::Fields(_) => 2,
            Outcome::Category(_) => 3,
            Outcome::Type(_) => 4,
            Outcome::Error(_) => 5,
        }
    }
}

/// The summary table's outcome columns, in [`Outcome::column`] order.
pub const COLUMNS: [&str; 6] = ["loaded", "syntax", "fields", "category", "type", "error"];

/// One rule file's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file as found.
    pub file: String,
    /// `rule.language` (`kuery`, `eql`, `esql`, …), `-` when the file has none.
    pub language: String,
    /// `rule.type`, with EQL split into `eql`, `eql sequence` and `eql sample`; `-` when none.
    pub rule_type: String,
    /// What became of it.
    pub outcome: Outcome,
}

impl Entry {
    /// The report line: `OUTCOME: FILE [LANGUAGE TYPE]: DETAIL`.
    pub fn line(&self) -> String {
        let (what, detail) = match &self.outcome {
            Outcome::Loaded => ("loaded", String::new()),
            Outcome::Syntax(why) => ("unsupported syntax", why.clone()),
            Outcome::Fields(fields) => ("needs fields", fields.join(", ")),
            Outcome::Category(why) => ("unsupported category", why.clone()),
            Outcome::Type(why) => ("unsupported type", why.clone()),
            Outcome::Error(why) => ("error", why.clone()),
        };
        let mut line = format!(
            "{what}: {} [{} {}]",
            self.file, self.language, self.rule_type
        );
        if !detail.is_empty() {
            let _ = write!(line, ": {detail}");
        }
        line
    }
}

/// The report of every rule file `paths` name, in load order (as `rules check` loads them).
pub fn coverage(paths: &[PathBuf]) -> Vec<Entry> {
    let mut entries = Vec::new();
    for result in file::check(paths) {
        let (file, outcome) = match result {
            Ok(rule) => (rule.source, Outcome::Loaded),
            Err(e) => (e.file().to_string(), refused(&e)),
        };
        let (language, rule_type) = shape(Path::new(&file));
        entries.push(Entry {
            file,
            language,
            rule_type,
            outcome,
        });
    }
    entries
}

/// The outcome of a refused file, its reason without the file name in front.
fn refused(e: &RuleError) -> Outcome {
    let text = e.to_string();
    let why = text
        .strip_prefix(e.file())
        .and_then(|t| t.strip_prefix(": "))
        .unwrap_or(&text)
        .to_string();
    match e {
        RuleError::Kql { .. } | RuleError::Eql { .. } | RuleError::UnsupportedQuery { .. } => {
            Outcome::Syntax(why)
        }
        RuleError::MissingFields { fields, .. } => Outcome::Fields(fields.clone()),
        RuleError::UnsupportedCategory { category, .. } => {
            Outcome::Category(format!("{category:?} events"))
        }
        RuleError::UnsupportedType { .. } | RuleError::UnsupportedLanguage { .. } => {
            Outcome::Type(why)
        }
        _ => Outcome::Error(why),
    }
}

#[derive(Deserialize)]
struct Shape {
    rule: Option<ShapeRule>,
}

#[derive(Deserialize)]
struct ShapeRule {
    #[serde(rename = "type")]
    rule_type: Option<String>,
    language: Option<String>,
    query: Option<String>,
}

/// A rule file's language and type as the report names them (`-` for what it cannot tell).
fn shape(path: &Path) -> (String, String) {
    let unknown = || ("-".to_string(), "-".to_string());
    let Ok(text) = textfile::read(path, MAX_RULE_FILE_BYTES) else {
        return unknown();
    };
    let Some(rule) = toml::from_str::<Shape>(&text).ok().and_then(|s| s.rule) else {
        return unknown();
    };
    let language = rule.language.unwrap_or_else(|| "-".to_string());
    let mut rule_type = rule.rule_type.unwrap_or_else(|| "-".to_string());
    if rule_type == "eql" {
        let query = rule.query.unwrap_or_default();
        let kind = match eql::parse_ast(&query) {
            Ok(QueryAst::Sequence(_)) => "eql sequence",
            Ok(QueryAst::Sample(_)) => "eql sample",
            Ok(QueryAst::Event(_)) => "eql",
            // Unparsed: the keyword that opens it.
            Err(_) if query.trim_start().starts_with("sequence") => "eql sequence",
            Err(_) if query.trim_start().starts_with("sample") => "eql sample",
            Err(_) => "eql",
        };
        rule_type = kind.to_string();
    }
    (language, rule_type)
}

/// The summary: one row per (language, type) with its count in each [`COLUMNS`] outcome, a
/// total row, then the fields refused rules need most, with how many rules need each.
pub fn summary(entries: &[Entry]) -> String {
    let mut rows: BTreeMap<(String, String), [usize; 6]> = BTreeMap::new();
    let mut total = [0usize; 6];
    let mut wanted: BTreeMap<&str, usize> = BTreeMap::new();
    for e in entries {
        let row = rows
            .entry((e.language.clone(), e.rule_type.clone()))
            .or_default();
        row[e.outcome.column()] += 1;
        total[e.outcome.column()] += 1;
        if let Outcome::Fields(fields) = &e.outcome {
            for f in fields {
                *wanted.entry(f).or_default() += 1;
            }
        }
    }
    let mut out = String::new();
    let _ = write!(out, "{:<10} {:<14} {:>5}", "language", "type", "rules");
    for c in COLUMNS {
        let _ = write!(out, " {c:>8}");
    }
    out.push('\n');
    let mut row_line = |language: &str, rule_type: &str, counts: &[usize; 6]| {
        let _ = write!(
            out,
            "{language:<10} {rule_type:<14} {:>5}",
            counts.iter().sum::<usize>()
        );
        for n in counts {
            let _ = write!(out, " {n:>8}");
        }
        out.push('\n');
    };
    for ((language, rule_type), counts) in &rows {
        row_line(language, rule_type, counts);
    }
    row_line("total", "", &total);
    if !wanted.is_empty() {
        let mut by_count: Vec<(&str, usize)> = wanted.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = by_count
            .iter()
            .take(20)
            .map(|(f, n)| format!("{f} ({n})"))
            .collect();
        let more = by_count.len().saturating_sub(20);
        let _ = write!(out, "fields refused rules need: {}", listed.join(", "));
        if more > 0 {
            let _ = write!(out, ", and {more} more");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn rule(language: &str, rule_type: &str, query: &str) -> String {
        format!(
            "[rule]\nrule_id = \"{rule_type}-{}\"\nname = \"n\"\ndescription = \"d\"\n\
             severity = \"low\"\nrisk_score = 21\ntype = \"{rule_type}\"\nlanguage = \"{language}\"\n\
             query = '''\n{query}\n'''\n",
            query.len()
        )
    }

    #[test]
    fn every_file_gets_its_outcome_and_the_table_counts_them() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write(d, "a.toml", &rule("kuery", "query", "process.name:ln"));
        write(
            d,
            "b.toml",
            &rule("eql", "eql", "process where process.Ext.ancestry : \"x\""),
        );
        write(d, "c.toml", &rule("eql", "eql", "iam where true"));
        write(
            d,
            "d.toml",
            &rule(
                "eql",
                "eql",
                "sequence [process where true] [process where (",
            ),
        );
        write(d, "e.toml", &rule("esql", "esql", "from logs-*"));
        write(d, "f.toml", "[rule]\n");
        let entries = coverage(&[d.to_path_buf()]);
        let lines: Vec<String> = entries
            .iter()
            .map(|e| e.line().replace(&format!("{}/", d.display()), ""))
            .collect();
        assert_eq!(lines[0], "loaded: a.toml [kuery query]");
        assert_eq!(
            lines[1],
            "needs fields: b.toml [eql eql]: process.Ext.ancestry"
        );
        assert_eq!(
            lines[2],
            "unsupported category: c.toml [eql eql]: \"iam\" events"
        );
        assert!(
            lines[3].starts_with("unsupported syntax: d.toml [eql eql sequence]: query line"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with("unsupported type: e.toml [esql esql]: rule type \"esql\""),
            "{}",
            lines[4]
        );
        assert_eq!(
            lines[5],
            "error: f.toml [- -]: missing required key `rule.type`"
        );
        let table = summary(&entries);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(
            rows[0].split_whitespace().collect::<Vec<_>>(),
            [
                "language", "type", "rules", "loaded", "syntax", "fields", "category", "type",
                "error"
            ]
        );
        let row = |i: usize| rows[i].split_whitespace().collect::<Vec<_>>();
        assert_eq!(row(1), ["-", "-", "1", "0", "0", "0", "0", "0", "1"]);
        assert_eq!(row(2), ["eql", "eql", "2", "0", "0", "1", "1", "0", "0"]);
        assert_eq!(
            row(3),
            ["eql", "eql", "sequence", "1", "0", "1", "0", "0", "0", "0"]
        );
        assert_eq!(row(4), ["esql", "esql", "1", "0", "0", "0", "0", "1", "0"]);
        assert_eq!(
            row(5),
            ["kuery", "query", "1", "1", "0", "0", "0", "0", "0"]
        );
        assert_eq!(row(6), ["total", "6", "1", "1", "1", "1", "1", "1"]);
        assert_eq!(
            rows[7],
            "fields refused rules need: process.Ext.ancestry (1)"
        );
    }
}
