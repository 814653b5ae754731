//! The rule index must not change a verdict: every rule is run over the same documents once through
//! the index and once against every event, and the matches must be the same. Documents are the execs
//! of the samples (and, in the corpus step, of the shared corpus) and generated process, file and
//! network documents whose values are drawn from the rules' own literals in mixed case, so that
//! rules do match. Rules: this project's own (the seed rule, the test rule files, the differential
//! test's EQL queries, a few KQL queries) in every run, and a detection-rules checkout's Linux and
//! cross-platform rules when `AUDITSENTRY_DETECTION_RULES` names one.

use super::view::for_each_exec;
use super::{repo, sample_inputs, shared_inputs};
use auditsentry::rule::file::{self, Rule};
use auditsentry::rule::index::RuleSet;
use auditsentry::rule::kql::{Document, EvalOptions};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The variable naming a detection-rules checkout (its `rules/linux` and `rules/cross-platform`).
const CHECKOUT_VAR: &str = "AUDITSENTRY_DETECTION_RULES";

/// Generated documents per run.
const GENERATED: usize = 20_000;

/// KQL queries of this test's own, beside the rule files' and the EQL queries.
const KQL: &[&str] = &[
    "process.name:(ln or LN or cp) and process.args:*tmp*",
    "event.category:process and process.parent.name:bash",
    "process.name:ln or process.parent.name:sh",
    "not process.name:ln",
    "process.name:(0 or ln) and process.executable:*",
    "user.id:(0 or 1000) and process.name:*",
    "event.action:(exec or rename) and file.name:*",
    "user.id:0 and event.type:start",
];

/// A rule of `language` running `query`.
fn rule(id: usize, language: &str, query: &str) -> Option<Rule> {
    let kind = if language == "eql" { "eql" } else { "query" };
    let text = format!(
        "[rule]\nrule_id = \"index-{id}\"\nname = \"n\"\ndescription = \"d\"\nseverity = \"low\"\n\
         risk_score = 1\ntype = \"{kind}\"\nlanguage = \"{language}\"\nquery = '''\n{query}\n'''\n"
    );
    file::load_str(&text, "index test").ok()
}

/// Every loadable rule of `paths` (the others are the coverage report's business).
fn loadable(paths: &[PathBuf]) -> Vec<Rule> {
    file::check(paths).into_iter().flatten().collect()
}

/// The project's own rules.
fn own_rules() -> Vec<Rule> {
    let mut rules = vec![file::builtin()];
    rules.extend(loadable(&[
        repo("tests/data/coverage"),
        repo("tests/data/filenet/rules"),
        repo("tests/data/stateful/rules"),
    ]));
    let eql = std::fs::read_to_string(repo("tests/eql_diff/queries.eql")).unwrap();
    let queries: Vec<&str> = eql
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("//"))
        .collect();
    let before = rules.len();
    rules.extend(
        queries
            .iter()
            .enumerate()
            .filter_map(|(i, q)| rule(i, "eql", q)),
    );
    assert!(rules.len() - before > 100, "the EQL queries did not load");
    rules.extend(
        KQL.iter()
            .enumerate()
            .map(|(i, q)| rule(1000 + i, "kuery", q).unwrap()),
    );
    rules
}

/// Candidate values for generated documents: the words and quoted strings of the rules' queries,
/// without wildcards.
fn literals(rules: &[Rule]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rule in rules {
        let text = &rule.query_text;
        for (i, quoted) in text.split('"').enumerate() {
            if i % 2 == 1 {
                out.push(quoted.replace("\\\\", "\\"));
            }
        }
        out.extend(
            text.split(|c: char| c.is_whitespace() || "()[]\",:=".contains(c))
                .map(String::from),
        );
    }
    for s in &mut out {
        s.retain(|c| c != '*' && c != '?');
    }
    out.retain(|s| !s.is_empty() && s.len() < 200);
    out.sort();
    out.dedup();
    out
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }

    /// A value of the pool in one of three cases, sometimes a number, sometimes one of `usual`.
    fn value(&mut self, pool: &[String], usual: &[&str]) -> Value {
        let text = match self.below(16) {
            0 => return json!(self.below(3)),
            1..=6 if !usual.is_empty() => usual[self.below(usual.len())].to_string(),
            _ => pool[self.below(pool.len())].clone(),
        };
        match self.below(4) {
            0 => json!(text.to_uppercase()),
            1 => json!(text.to_lowercase()),
            _ => json!(text),
        }
    }
}

/// A generated document: process, file or network, its fields drawn from `pool`.
fn generate(rng: &mut Rng, pool: &[String]) -> Value {
    let mut doc = json!({"host": {"os": {"type": "linux"}}});
    let fields: &[(&str, &[&str])] = &[
        ("event.category", &["process", "file", "network"]),
        ("event.type", &["start", "creation", "change", "end"]),
        (
            "event.action",
            &["exec", "rename", "creation", "connection_attempted"],
        ),
        ("process.name", &["ln", "bash", "sh", "cp", "busybox"]),
        ("process.parent.name", &["bash", "sh", "sudo"]),
        ("process.executable", &["/bin/ln", "/usr/bin/python3"]),
        ("process.parent.executable", &["/bin/bash"]),
        ("process.args", &["-s", "/bin/ls", "/tmp/x", "ln"]),
        ("process.command_line", &[]),
        ("process.working_directory", &["/tmp", "/root"]),
        ("file.name", &["x.sh", ".bashrc"]),
        ("file.extension", &["sh", "so"]),
        ("file.path", &["/tmp/x.sh", "/etc/passwd"]),
        ("user.id", &["0", "1000"]),
        ("user.name", &["root", "www-data"]),
        ("destination.port", &[]),
        ("destination.ip", &["10.0.0.1", "127.0.0.1"]),
    ];
    for (path, usual) in fields {
        if rng.below(8) == 0 {
            continue;
        }
        let value = if rng.below(6) == 0 {
            let n = rng.below(4);
            Value::Array((0..n).map(|_| rng.value(pool, usual)).collect())
        } else {
            rng.value(pool, usual)
        };
        doc.as_object_mut().unwrap().insert(path.to_string(), value);
    }
    doc
}

/// What is called on each document.
type Visit<'a> = dyn FnMut(&dyn Document) + 'a;

/// Runs every rule of `rules` over the documents, through the index and without it; panics at the
/// first difference. Returns (matches, rule tests the index saved).
fn compare(rules: Vec<Rule>, docs: &mut dyn FnMut(&mut Visit<'_>)) -> (usize, usize) {
    let opts = EvalOptions::default();
    let mut all = RuleSet::unindexed(rules.clone());
    let mut indexed = RuleSet::new(rules);
    let (mut matches, mut saved, mut docs_seen) = (0, 0, 0);
    docs(&mut |doc| {
        docs_seen += 1;
        let want: Vec<&str> = all
            .candidates(doc)
            .filter(|r| r.query.matches_with(doc, &opts))
            .map(|r| r.id.as_str())
            .collect();
        let mut tested = 0;
        let got: Vec<&str> = indexed
            .candidates(doc)
            .inspect(|_| tested += 1)
            .filter(|r| r.query.matches_with(doc, &opts))
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(got, want, "document {docs_seen}");
        matches += want.len();
        saved += all.rules().len() - tested;
    });
    assert!(docs_seen > 0);
    (matches, saved)
}

/// Generated documents from the rules' literals, then the execs of `inputs`.
fn documents(rules: &[Rule], inputs: &[PathBuf]) -> impl FnMut(&mut Visit<'_>) {
    let pool = literals(rules);
    // Each rule's own literals too: documents made of one rule's values satisfy its conjunctions
    // far more often than documents made of everyone's.
    // Most of them get the event fields of an exec (or of the rule's category), which nearly every
    // rule requires.
    let own: Vec<(Vec<String>, &'static str)> = rules
        .iter()
        .map(|r| {
            let category = ["file", "network"]
                .into_iter()
                .find(|c| r.query_text.starts_with(&format!("{c} where")))
                .unwrap_or("process");
            (literals(std::slice::from_ref(r)), category)
        })
        .filter(|(l, _)| !l.is_empty())
        .collect();
    let inputs = inputs.to_vec();
    move |f| {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..GENERATED {
            if i % 2 == 0 || own.is_empty() {
                f(&generate(&mut rng, &pool));
            } else {
                let (pool, category) = &own[rng.below(own.len())];
                let mut doc = generate(&mut rng, pool);
                if rng.below(4) != 0 {
                    let map = doc.as_object_mut().unwrap();
                    map.insert("event.category".into(), json!(category));
                    map.insert("event.type".into(), json!("start"));
                    map.insert("event.action".into(), json!("exec"));
                }
                f(&doc);
            }
        }
        for input in &inputs {
            for_each_exec(input, &mut |view| {
                f(view);
                f(&view.document());
            });
        }
    }
}

#[test]
fn the_index_changes_no_verdict_of_the_projects_rules() {
    let rules = own_rules();
    let (matches, saved) = compare(rules.clone(), &mut documents(&rules, &sample_inputs()));
    assert!(
        matches > 10_000,
        "only {matches} matches: the test proves little"
    );
    assert!(saved > 0, "the index tested every rule on every document");
}

#[test]
#[ignore = "needs a detection-rules checkout: AUDITSENTRY_DETECTION_RULES=DIR (reads DIR/rules/linux and DIR/rules/cross-platform)"]
fn the_index_changes_no_verdict_of_a_detection_rules_checkout() {
    let Some(dir) = std::env::var_os(CHECKOUT_VAR) else {
        eprintln!("skipped: {CHECKOUT_VAR} is not set (a detection-rules checkout)");
        return;
    };
    let dir = PathBuf::from(dir).join("rules");
    let rules = loadable(&[dir.join("linux"), dir.join("cross-platform")]);
    assert!(
        rules.len() > 100,
        "only {} rules loaded from {}",
        rules.len(),
        dir.display()
    );
    let (matches, saved) = compare(rules.clone(), &mut documents(&rules, &sample_inputs()));
    let stats = RuleSet::new(rules.clone()).stats();
    eprintln!(
        "{} rules ({} keyed, {} always tested): {matches} matches, {saved} rule tests saved",
        rules.len(),
        stats.keyed,
        stats.always
    );
    assert!(matches > 0);
}

/// The shared corpus beside the checkout: run by the corpus step of scripts/test-all.sh.
mod shared_corpus {
    use super::*;

    #[test]
    #[ignore = "corpus: reads ../shared (scripts/test-all.sh runs it)"]
    fn the_index_changes_no_verdict_of_the_projects_rules_on_the_shared_corpus() {
        let rules = own_rules();
        let (matches, _) = compare(rules.clone(), &mut documents(&rules, &shared_inputs()));
        assert!(matches > 10_000);
    }
}
