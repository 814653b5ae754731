//! The rules an agent runs: files and directories expanded, loaded, checked for duplicates and
//! summarised; the built-in seed rule when none is configured.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

use super::*;

/// Loads every rule named by `paths` and stops at the first error. A directory contributes its
/// `*.toml` files sorted by name (dot-files and subdirectories skipped); a `rule_id` defined twice
/// is an error, and so is a set of paths that yields no rule at all ([`RuleError::NoRules`]).
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    let mut failed = None;
    each_rule(paths, &mut |result| match result {
        Ok(rule) => {
            rules.push(rule);
            true
        }
        Err(e) => {
            failed = Some(e);
            false
        }
    });
    failed.map_or(Ok(rules), Err)
}

/// The rules an agent runs: those `paths` name, or the built-in seed rule when no path is
/// configured at all (`paths` empty). A configured path that is missing or empty is an error,
/// never a silent fall-back to the built-in rule.
pub fn load_configured(paths: &[PathBuf]) -> Result<Vec<Rule>, RuleError> {
    if paths.is_empty() {
        return Ok(vec![builtin()]);
    }
    load_paths(paths)
}

/// One line saying which rules run and where they came from, for start and reload messages:
/// `2 rule(s) from /etc/auditsentry/rules: ID "NAME", ID "NAME"`.
pub fn summary(rules: &[Rule], paths: &[PathBuf]) -> String {
    const LISTED: usize = 20;
    let origin = if paths.is_empty() {
        "built in (no rule path configured)".to_string()
    } else {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        format!("from {}", names.join(", "))
    };
    let mut list: Vec<String> = rules
        .iter()
        .take(LISTED)
        .map(|r| format!("{} {:?}", r.id, r.name))
        .collect();
    if rules.len() > LISTED {
        list.push(format!("… and {} more", rules.len() - LISTED));
    }
    format!("{} rule(s) {origin}: {}", rules.len(), list.join(", "))
}

/// Like [`load_paths`] but keeps going: one result per file (or per unreadable directory), in load
/// order, for `rules check` to print. A duplicate `rule_id` makes the later file's result an error;
/// paths that name no rule file give one [`RuleError::NoRules`].
pub fn check(paths: &[PathBuf]) -> Vec<Result<Rule, RuleError>> {
    let mut results = Vec::new();
    each_rule(paths, &mut |result| {
        results.push(result);
        true
    });
    results
}

/// Hands every rule `paths` name (or why it could not be loaded) to `take`, in load order, until
/// `take` returns false; a set of paths with no rule file gives one [`RuleError::NoRules`].
fn each_rule(paths: &[PathBuf], take: &mut dyn FnMut(Result<Rule, RuleError>) -> bool) {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut any = false;
    for entry in expand(paths) {
        any = true;
        let result = entry.and_then(|path| load_file(&path)).and_then(|rule| {
            if let Some(first) = seen.get(&rule.id) {
                return Err(RuleError::DuplicateId {
                    file: rule.source.clone(),
                    rule_id: rule.id.clone(),
                    first: first.clone(),
                });
            }
            seen.insert(rule.id.clone(), rule.source.clone());
            Ok(rule)
        });
        if !take(result) {
            return;
        }
    }
    if !any {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        take(Err(RuleError::NoRules {
            paths: names.join(", "),
        }));
    }
}

/// Paths → rule files: files as given, directories replaced by their sorted `*.toml` files
/// (subdirectories skipped; any other entry is loaded, so a FIFO or device is named, not skipped).
fn expand(paths: &[PathBuf]) -> Vec<Result<PathBuf, RuleError>> {
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(Ok(path.clone()));
            continue;
        }
        let io_err = |e: std::io::Error| RuleError::Io {
            file: path.display().to_string(),
            error: e.into(),
        };
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                out.push(Err(io_err(e)));
                continue;
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let name = entry.file_name();
                    let p = entry.path();
                    let is_toml = p.extension().is_some_and(|ext| ext == "toml");
                    let hidden = name.to_string_lossy().starts_with('.');
                    if is_toml && !hidden && !p.is_dir() {
                        files.push((name, p));
                    }
                    if files.len() > MAX_RULE_FILES {
                        out.push(Err(RuleError::TooManyFiles {
                            dir: path.display().to_string(),
                        }));
                        files.clear();
                        break;
                    }
                }
                Err(e) => out.push(Err(io_err(e))),
            }
        }
        files.sort();
        out.extend(files.into_iter().map(|(_, p)| Ok(p)));
    }
    out
}

/// The seed rule compiled into the binary ([`BUILTIN_TOML`]), with `source` = `builtin`.
pub fn builtin() -> Rule {
    // The text is a compile-time constant and a unit test loads it, so this cannot fail at run time.
    load_str(BUILTIN_TOML, BUILTIN_SOURCE).expect("the builtin rule file is valid (tested)")
}
