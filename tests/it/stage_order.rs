//! Data flows one way: every module of `src/` may use only itself and the modules before it in
//! [`ORDER`]. This reads every `.rs` under `src/`, collects each path into the crate
//! (`use crate::x`, groups `use crate::{x, y::{z}}`, inline `crate::x::f()`, and `super::` /
//! `self::` paths resolved to the module they name) and fails naming `file:line` of every one
//! that points forward. Inside `src/rule/` it also refuses a cycle between the files of one
//! folder (KQL's `eval` reads `parse`'s tree, never the other way), and any source file with more
//! than [`MAX_FILE_LINES`] lines before its tests.
//!
//! The order, and why it differs from the README's one-line picture:
//! - `keyhash`, `stats`, `textfile` and `jsonline` (seeded hashing of integer keys, bounded file
//!   reading, counters, one display-safe JSON line) depend on nothing and serve every stage.
//! - `proc` and `procfs` (the process table and `/proc` reads) come before `source`: they use no
//!   stage, and the link watcher (`source::fanotify`) must read `/proc` the moment a link appears,
//!   before its creator exits.
//! - `names`, `catalog` and `document` (user names, the field list of every kind of document, and
//!   the document model rules query) come before `event`, which builds the documents.
//! - `state` (sled) comes before `rule`: the new-terms gate is written against its `TermStore`.
//! - `cli` comes after `daemon` (it names the daemon's source kinds) and `manpage` after `cli`
//!   (the man page renders the CLI's definitions).
//!
//! Test code is exempt: `#[cfg(test)]` items and `tests.rs` / `*_tests.rs` files may use a later
//! stage to check a module's output end to end (the file source's tests parse their frames as
//! audit records). Comments and string literals are not code, so a doc link may name any module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::repo;

/// The stages of `src/`, first to last. `main` is the binary (`src/main.rs`).
const ORDER: &[&str] = &[
    "keyhash", "stats", "textfile", "jsonline", "proc", "procfs", "source", "audit", "names",
    "catalog", "document", "event", "state", "rule", "alert", "sink", "config", "pipeline",
    "daemon", "cli", "manpage", "main",
];

/// Folders whose files must not use each other in a cycle.
const ACYCLIC_UNDER: &str = "rule";

/// One path into the crate: where it is written and the module path it names.
#[derive(Debug)]
struct Ref {
    line: usize,
    path: Vec<String>,
}

/// `src` with comments, string and character literals blanked (newlines kept, so lines still
/// count), then with every `#[cfg(test)]` item blanked too.
fn code_only(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in out.iter_mut().take(to.min(b.len())).skip(from) {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && ident(b[i - 1]);
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if !prev_ident && (b[i] == b'r' || b[i..].starts_with(b"br")) && {
            let k = i + if b[i] == b'r' { 1 } else { 2 };
            let hashes = b[k..].iter().take_while(|&&c| c == b'#').count();
            b.get(k + hashes) == Some(&b'"')
        } {
            let k = i + if b[i] == b'r' { 1 } else { 2 };
            let hashes = b[k..].iter().take_while(|&&c| c == b'#').count();
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let body = k + hashes + 1;
            let end = find(b, body, &close).map_or(b.len(), |p| p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A character literal ('x', '\n', '\u{1d}', 'é'), not a lifetime ('a, 'static).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p + 1)
            } else {
                let width = src
                    .get(i + 1..)
                    .and_then(|s| s.chars().next())
                    .map_or(1, char::len_utf8);
                (b.get(i + 1 + width) == Some(&b'\'')).then_some(i + 2 + width)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    // Test items: the item after `#[cfg(test)]` / `#[cfg(all(test, …))]`, to its `;` or `}`.
    for attr in [&b"#[cfg(test)]"[..], b"#[cfg(all(test,"] {
        let mut from = 0;
        while let Some(at) = find(&out, from, attr) {
            let mut j = at + attr.len();
            while j < out.len() && out[j] != b'{' && out[j] != b';' {
                j += 1;
            }
            if out.get(j) == Some(&b'{') {
                let mut depth = 0usize;
                while j < out.len() {
                    match out[j] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            blank(&mut out, at, j + 1);
            from = j + 1;
        }
    }
    out
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Tokens of `code` that matter to paths: identifiers, `::`, `{`, `}`, `,`, `*`, `;`, with their
/// line numbers; anything else is one "other" token.
fn tokens(code: &[u8]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < code.len() {
        let c = code[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < code.len() && (code[i].is_ascii_alphanumeric() || code[i] == b'_') {
                i += 1;
            }
            out.push((String::from_utf8_lossy(&code[start..i]).into_owned(), line));
        } else if code[i..].starts_with(b"::") {
            out.push(("::".to_string(), line));
            i += 2;
        } else {
            out.push(((c as char).to_string(), line));
            i += 1;
        }
    }
    out
}

/// Every leaf of the path (or `use` tree) at `toks[i..]`, each appended to `prefix`, with the line
/// of its first segment after the root.
fn leaves(
    toks: &[(String, usize)],
    mut i: usize,
    mut prefix: Vec<String>,
    line: Option<usize>,
    out: &mut Vec<Ref>,
) -> usize {
    let mut line = line;
    while let Some((tok, at)) = toks.get(i) {
        if tok == "{" {
            i += 1;
            while toks.get(i).is_some_and(|(t, _)| t != "}") {
                if toks[i].0 == "," {
                    i += 1;
                    continue;
                }
                i = leaves(toks, i, prefix.clone(), line, out);
            }
            return i + 1;
        }
        if tok == "*" {
            i += 1;
            break;
        }
        if !tok.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            break;
        }
        if tok != "self" {
            prefix.push(tok.clone());
        }
        line.get_or_insert(*at);
        i += 1;
        if toks.get(i).is_some_and(|(t, _)| t == "::") {
            i += 1;
        } else {
            break;
        }
    }
    // `x as y`: skip the alias.
    if toks.get(i).is_some_and(|(t, _)| t == "as") {
        i += 2;
    }
    out.push(Ref {
        line: line.unwrap_or(0),
        path: prefix,
    });
    i
}

/// The module path of a file under `src/` (`rule/kql/eval.rs` → `rule::kql::eval`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Every path into the crate written in the code of `src` (the file at module path `me`).
fn refs(src: &str, me: &[String], binary: bool) -> Vec<Ref> {
    let toks = tokens(&code_only(src));
    let mut out = Vec::new();
    let root = if binary { "auditsentry" } else { "crate" };
    for i in 0..toks.len() {
        let tok = toks[i].0.as_str();
        let after_sep = i > 0 && toks[i - 1].0 == "::";
        if after_sep || toks.get(i + 1).is_none_or(|(t, _)| t != "::") {
            continue;
        }
        let (prefix, j) = match tok {
            t if t == root => (Vec::new(), i + 2),
            "self" | "super" => {
                let mut base = me.to_vec();
                let mut j = i;
                while toks
                    .get(j)
                    .is_some_and(|(t, _)| t == "super" || t == "self")
                {
                    if toks[j].0 == "super" {
                        base.pop();
                    }
                    j += 2;
                }
                (base, j)
            }
            _ => continue,
        };
        leaves(&toks, j, prefix, None, &mut out);
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `tests.rs` and `*_tests.rs`: test modules kept in their own files.
fn is_test_file(rel: &Path) -> bool {
    rel.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == "tests" || s.ends_with("_tests"))
}

/// Does `module` (a path under `src/`) name a file or folder module?
fn is_module(src: &Path, module: &[String]) -> bool {
    let rel: PathBuf = module.iter().collect();
    src.join(&rel).with_extension("rs").is_file() || src.join(&rel).join("mod.rs").is_file()
}

/// The violations of the stage order and of the folder rule, one `file:line: …` each.
fn violations(src: &Path) -> Vec<String> {
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut bad = Vec::new();
    // (folder, from file, to file) → first place seen.
    let mut edges: BTreeMap<(Vec<String>, String, String), String> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(src).unwrap_or(file);
        if is_test_file(rel) {
            continue;
        }
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let me = module_of(rel);
        let binary = me == ["main"];
        let Some(my_stage) = me.first() else {
            continue;
        };
        let Some(my_rank) = rank(my_stage) else {
            bad.push(format!(
                "src/{}: module `{my_stage}` is not in ORDER: place it",
                rel.display()
            ));
            continue;
        };
        for r in refs(&text, &me, binary) {
            let place = format!("src/{}:{}", rel.display(), r.line);
            let Some(stage) = r.path.first() else {
                continue;
            };
            match rank(stage) {
                None => bad.push(format!(
                    "{place}: `{}` is not a stage in ORDER",
                    r.path.join("::")
                )),
                Some(to) if to > my_rank => bad.push(format!(
                    "{place}: `{my_stage}` uses `{}`, a later stage",
                    r.path.join("::")
                )),
                Some(_) => {}
            }
            let common = me.iter().zip(&r.path).take_while(|(a, b)| a == b).count();
            if common >= 1 && common < me.len() && common < r.path.len() && me[0] == ACYCLIC_UNDER {
                let folder = me[..common].to_vec();
                let to = r.path[..=common].to_vec();
                if is_module(src, &to) {
                    edges
                        .entry((folder, me[common].clone(), r.path[common].clone()))
                        .or_insert(place);
                }
            }
        }
    }
    // A cycle between files of one folder: each edge whose target reaches back to its source.
    let mut graph: BTreeMap<(&Vec<String>, &str), BTreeSet<&str>> = BTreeMap::new();
    for (folder, from, to) in edges.keys() {
        graph.entry((folder, from)).or_default().insert(to);
    }
    let reaches = |folder: &Vec<String>, from: &str, goal: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            if m == goal {
                return true;
            }
            if seen.insert(m.clone()) {
                if let Some(next) = graph.get(&(folder, m.as_str())) {
                    todo.extend(next.iter().map(|s| s.to_string()));
                }
            }
        }
        false
    };
    for ((folder, from, to), place) in &edges {
        if reaches(folder, to, from) {
            bad.push(format!(
                "{place}: `{0}::{from}` uses `{0}::{to}`, which uses it back (a cycle in src/{1})",
                folder.join("::"),
                folder.join("/")
            ));
        }
    }
    // Every top-level module has a place.
    for file in &files {
        let rel = file.strip_prefix(src).unwrap_or(file);
        if let Some(top) = module_of(rel).first() {
            if top != "lib" && rank(top).is_none() {
                bad.push(format!("src/{}: not in ORDER", rel.display()));
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn every_module_uses_only_earlier_stages() {
    let bad = violations(&repo("src"));
    assert!(
        bad.is_empty(),
        "{} imports against the stage order (tests/it/stage_order.rs):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Most lines of code a source file may hold before its tests: a file past it mixes concerns.
const MAX_FILE_LINES: usize = 800;

/// The lines of `src` before its first `#[cfg(test)]` (or `#[cfg(all(test, …))]`) item.
fn non_test_lines(src: &str) -> usize {
    src.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]") && !l.starts_with("#[cfg(all(test"))
        .count()
}

/// Every source file stays small enough to read as one concern.
#[test]
fn no_source_file_is_over_the_size_bound() {
    let mut files = Vec::new();
    rust_files(&repo("src"), &mut files);
    let big: Vec<String> = files
        .iter()
        .filter(|f| !is_test_file(f))
        .filter_map(|f| {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let n = non_test_lines(&text);
            (n > MAX_FILE_LINES).then(|| format!("{}: {n} lines before its tests", f.display()))
        })
        .collect();
    assert!(
        big.is_empty(),
        "over {MAX_FILE_LINES} lines: split them:\n{}",
        big.join("\n")
    );
    assert_eq!(non_test_lines("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
}

/// One error style: error types derive `thiserror::Error`, none implements the trait by hand.
#[test]
fn every_error_type_derives_its_error_impl() {
    let mut files = Vec::new();
    rust_files(&repo("src"), &mut files);
    let by_hand: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            text.lines()
                .enumerate()
                .filter(|(_, l)| {
                    l.contains("impl std::error::Error for") || l.contains("impl Error for")
                })
                .map(|(i, _)| format!("{}:{}", f.display(), i + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        by_hand.is_empty(),
        "hand-written Error impls (derive thiserror::Error):\n{}",
        by_hand.join("\n")
    );
}

/// The reader finds every form of path it must, and none in comments, strings or test items.
#[test]
fn paths_in_every_form_are_found() {
    let src = r##"
use crate::a::B;
use crate::{c, d::{e, f::G as H}, self as me};
use super::super::x::{self, y};
fn f() { crate::g::h(); let _ = "crate::s::t"; let _ = r#"crate::r::s"#; let c = '"'; crate::i::j }
// crate::comment::x
/* crate::block::x */
#[cfg(test)]
mod tests { use crate::test::x; }
pub(crate) fn k<'a>(_: &'a str) -> char { 'x' }
#[cfg(all(test, target_endian = "little"))]
fn only_in_tests() { crate::t::u(); }
"##;
    let me = ["rule".to_string(), "kql".to_string(), "parse".to_string()];
    let got: Vec<(usize, String)> = refs(src, &me, false)
        .into_iter()
        .map(|r| (r.line, r.path.join("::")))
        .collect();
    let want = [
        (2, "a::B"),
        (3, "c"),
        (3, "d::e"),
        (3, "d::f::G"),
        (3, ""),
        (4, "rule::x"),
        (4, "rule::x::y"),
        (5, "g::h"),
        (5, "i::j"),
    ];
    let want: Vec<(usize, String)> = want.iter().map(|(l, p)| (*l, p.to_string())).collect();
    assert_eq!(got, want);
}
