//! Surveys the EQL queries of detection-rules TOML files: how many parse, how many compile, and why
//! the others do not. Usage: `cargo run --example eql_survey -- DIR_OR_FILE...`
//!
//! Prints one line per query that fails (file, kind, error) and a summary per kind of query
//! (single-event, sequence, sample).

use std::path::{Path, PathBuf};

use auditsentry::rule::eql::{self, ast::QueryAst};

fn files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            entries.sort();
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| e.extension().is_some_and(|x| x == "toml")),
            );
        } else {
            out.push(p.clone());
        }
    }
    out
}

fn eql_query(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    let rule = value.get("rule")?;
    if rule.get("language")?.as_str()? != "eql" {
        return None;
    }
    Some(rule.get("query")?.as_str()?.to_string())
}

fn main() {
    let paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let mut counts = std::collections::BTreeMap::<&str, (usize, usize, usize)>::new();
    for path in files(&paths) {
        let Some(query) = eql_query(&path) else {
            continue;
        };
        let (kind, parsed) = match eql::parse_ast(&query) {
            Ok(QueryAst::Event(_)) => ("single-event", true),
            Ok(QueryAst::Sequence(_)) => ("sequence", true),
            Ok(QueryAst::Sample(_)) => ("sample", true),
            Err(e) => {
                let kind = if query.trim_start().starts_with("sequence") {
                    "sequence"
                } else if query.trim_start().starts_with("sample") {
                    "sample"
                } else {
                    "single-event"
                };
                println!("{}: {kind}: does not parse: {e}", path.display());
                (kind, false)
            }
        };
        let compiled = parsed
            && match eql::parse(&query) {
                Ok(_) => true,
                Err(e) => {
                    println!("{}: {kind}: does not compile: {e}", path.display());
                    false
                }
            };
        let entry = counts.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += usize::from(parsed);
        entry.2 += usize::from(compiled);
    }
    for (kind, (total, parsed, compiled)) in counts {
        println!("{kind}: {parsed} of {total} parse, {compiled} compile");
    }
}
