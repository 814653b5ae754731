//! KQL evaluation: a compiled query tree run against one ECS document — any [`Document`]: a
//! `serde_json::Value`, or a typed view that answers field lookups without building JSON (the
//! pipeline's hot path, see `event::ExecView`).
//!
//! Semantics are those of the Elasticsearch query Kibana generates, on keyword fields:
//! - A leaf `field:x` is true when any value of the field matches: fields resolve by walking
//!   nested objects and literal dotted keys (`"process.args"`) at any level, arrays are
//!   flattened, nulls and objects are not values. So `f:(A and B and not C)` means some value
//!   matches A, some (maybe other) value matches B, and no value matches C; `not f:x` is true
//!   when the field is missing.
//! - Strings match as keywords (exact, case-sensitive); numbers and booleans by their JSON text.
//! - `*` matches any run of characters, `/` and the empty run included, over the whole value.
//!   Matching is linear: segments between stars are found left to right with a substring search,
//!   so megabyte-long argv values cost one pass per pattern, never backtracking.
//! - With [`EvalOptions::ignore_above`], string values longer than the limit (bytes) behave as
//!   absent, as Elastic Defend's `ignore_above: 1024` keyword mapping makes them.
//!
//! Evaluation does not allocate, except to format an exotic number that does not fit in a small
//! stack buffer.

use std::fmt::Write as _;

use serde_json::{Number, Value};

use crate::document::{Document, Scalar};

use super::lex::RangeOp;
use super::parse::{parse_number, Bound, Leaf, Node, Test};
use super::pattern::same;

/// Evaluation switches that change how documents are indexed, not what the query says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvalOptions {
    /// Treat string values longer than this many bytes as absent (Elastic Defend keyword fields
    /// use 1024). `None`, the default, matches values of any length: attackers pad arguments.
    pub ignore_above: Option<usize>,
}

/// A compiled KQL query: parse once with [`parse`](super::parse()), evaluate on every event.
#[derive(Clone, Debug)]
pub struct Query {
    root: Node,
    fields: Vec<String>,
}

impl Query {
    pub(crate) fn new(root: Node) -> Self {
        let mut fields = Vec::new();
        collect_fields(&root, &mut fields);
        fields.sort();
        fields.dedup();
        Query { root, fields }
    }

    /// The compiled tree (tests, and the rule index, which reads the literals it requires).
    pub(crate) fn root(&self) -> &Node {
        &self.root
    }

    /// Does the document match, with default options (no `ignore_above` limit)?
    pub fn matches(&self, doc: &Value) -> bool {
        self.matches_with(doc, &EvalOptions::default())
    }

    /// Does the document match under the given options?
    pub fn matches_with(&self, doc: &dyn Document, opts: &EvalOptions) -> bool {
        eval(&self.root, doc, opts)
    }

    /// The field names the query reads, sorted and without duplicates.
    pub fn fields(&self) -> Vec<String> {
        self.fields.clone()
    }
}

impl std::str::FromStr for Query {
    type Err = super::KqlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        super::parse(text)
    }
}

fn collect_fields(node: &Node, out: &mut Vec<String>) {
    match node {
        Node::MatchAll => {}
        Node::And(items) | Node::Or(items) => {
            for item in items {
                collect_fields(item, out);
            }
        }
        Node::Not(inner) => collect_fields(inner, out),
        Node::Leaf(leaf) => out.push(leaf.field.path().to_string()),
    }
}

fn eval(node: &Node, doc: &dyn Document, opts: &EvalOptions) -> bool {
    match node {
        Node::MatchAll => true,
        Node::And(items) => items.iter().all(|n| eval(n, doc, opts)),
        Node::Or(items) => items.iter().any(|n| eval(n, doc, opts)),
        Node::Not(inner) => !eval(inner, doc, opts),
        Node::Leaf(leaf) => doc.any_field(&leaf.field, &mut |v| leaf_matches(leaf, v, opts)),
    }
}

fn leaf_matches(leaf: &Leaf, value: Scalar<'_>, opts: &EvalOptions) -> bool {
    match value {
        Scalar::Str(s) => {
            if opts.ignore_above.is_some_and(|limit| s.len() > limit) {
                return false;
            }
            test_text(&leaf.test, s)
        }
        Scalar::Bool(b) => test_text(&leaf.test, if b { "true" } else { "false" }),
        Scalar::Num(n) => test_number(&leaf.test, &n),
    }
}

fn test_text(test: &Test, s: &str) -> bool {
    match test {
        Test::Exists => true,
        Test::Equals { text, .. } => same(s.as_bytes(), text.as_bytes()),
        Test::Wildcard(pattern) => pattern.matches(s),
        Test::Range { op, bound } => match bound {
            Bound::Number(b) => parse_number(s).is_some_and(|v| compare(*op, &v, b)),
            Bound::Text(b) => compare(*op, s, b.as_str()),
        },
    }
}

fn test_number(test: &Test, n: &Number) -> bool {
    match test {
        Test::Exists => true,
        Test::Equals {
            number: Some(want), ..
        } if n.as_f64() == Some(*want) => true,
        Test::Range {
            op,
            bound: Bound::Number(b),
        } => n.as_f64().is_some_and(|v| compare(*op, &v, b)),
        _ => {
            let mut buf = StackText::default();
            if write!(buf, "{n}").is_ok() {
                test_text(test, buf.as_str())
            } else {
                test_text(test, &n.to_string())
            }
        }
    }
}

fn compare<T: PartialOrd + ?Sized>(op: RangeOp, value: &T, bound: &T) -> bool {
    match op {
        RangeOp::Lt => value < bound,
        RangeOp::Le => value <= bound,
        RangeOp::Gt => value > bound,
        RangeOp::Ge => value >= bound,
    }
}

/// A small fixed buffer to format numbers into without allocating; errors when full.
struct StackText {
    buf: [u8; 40],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; 40],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use serde_json::json;

    fn q(text: &str) -> Query {
        match parse(text) {
            Ok(q) => q,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    #[test]
    fn fields_resolve_nested_dotted_and_arrays() {
        let query = q("a.b.c:x");
        assert!(query.matches(&json!({"a": {"b": {"c": "x"}}})));
        assert!(query.matches(&json!({"a.b.c": "x"})));
        assert!(query.matches(&json!({"a": {"b.c": ["y", "x"]}})));
        assert!(query.matches(&json!({"a.b": {"c": "x"}})));
        assert!(query.matches(&json!({"a": [{"b": {"c": "y"}}, {"b": [{"c": ["x"]}]}]})));
        assert!(!query.matches(&json!({"a": {"b": {"c": {"x": 1}}}})));
        assert!(!query.matches(&json!({"a": {"b": "x"}})));
        assert!(!query.matches(&json!("x")));
    }

    #[test]
    fn numbers_and_booleans_match_by_their_text() {
        assert!(q("process.pid:42").matches(&json!({"process": {"pid": 42}})));
        assert!(q("process.pid:042").matches(&json!({"process": {"pid": 42}})));
        assert!(q("process.pid:4*").matches(&json!({"process": {"pid": 42}})));
        assert!(!q("process.pid:43").matches(&json!({"process": {"pid": 42}})));
        assert!(q("x:true").matches(&json!({"x": true})));
        assert!(!q("x:true").matches(&json!({"x": false})));
        assert!(q("x:1.5").matches(&json!({"x": 1.5})));
        assert!(q("x:\"1.5\"").matches(&json!({"x": "1.5"})));
        assert!(!q("x:\"042\"").matches(&json!({"x": "42"})));
    }

    #[test]
    fn exists_and_null() {
        let exists = q("f:*");
        assert!(exists.matches(&json!({"f": ""})));
        assert!(exists.matches(&json!({"f": [null, 0]})));
        assert!(!exists.matches(&json!({"f": null})));
        assert!(!exists.matches(&json!({"f": []})));
        assert!(!exists.matches(&json!({"g": 1})));
        let not_x = q("not f:x");
        assert!(not_x.matches(&json!({})));
        assert!(not_x.matches(&json!({"f": "y"})));
        assert!(!not_x.matches(&json!({"f": ["y", "x"]})));
    }

    #[test]
    fn quoted_values_are_literal() {
        let quoted = q(r#"f:"a b*""#);
        assert!(quoted.matches(&json!({"f": "a b*"})));
        assert!(!quoted.matches(&json!({"f": "a bc"})));
        assert!(q(r"f:a\*").matches(&json!({"f": "a*"})));
        assert!(!q(r"f:a\*").matches(&json!({"f": "ab"})));
        assert!(q(r"f:a\**").matches(&json!({"f": "a*b"})));
        assert!(!q(r"f:a\**").matches(&json!({"f": "ab"})));
        assert!(q(r"f:\and").matches(&json!({"f": "and"})));
        assert!(q(r"f:a\:b\(c\)").matches(&json!({"f": "a:b(c)"})));
        assert!(q("f:a b").matches(&json!({"f": "a b"})));
    }

    #[test]
    fn value_lists_are_per_document_over_arrays() {
        let query = q("f:(a* and *b and not c)");
        assert!(query.matches(&json!({"f": ["ax", "xb"]})));
        assert!(query.matches(&json!({"f": "ab"})));
        assert!(!query.matches(&json!({"f": ["ax", "xb", "c"]})));
        assert!(!query.matches(&json!({"f": ["ax"]})));
        assert!(!query.matches(&json!({})));
    }

    #[test]
    fn ranges_compare_numbers_and_numeric_strings() {
        let doc = json!({"n": 5, "s": "7", "t": "abc", "m": [1, 10]});
        assert!(q("n > 4").matches(&doc));
        assert!(!q("n > 5").matches(&doc));
        assert!(q("n >= 5").matches(&doc));
        assert!(q("n <= 5").matches(&doc));
        assert!(!q("n < 5").matches(&doc));
        assert!(q("s < 10").matches(&doc));
        assert!(!q("t < 10").matches(&doc));
        assert!(q("t < abd").matches(&doc));
        assert!(q("m > 5 and m < 5").matches(&doc));
        assert!(!q("missing < 5").matches(&doc));
    }

    #[test]
    fn ignore_above_hides_long_values_entirely() {
        let doc = json!({"f": ["short", "x".repeat(2000)]});
        let limit = EvalOptions {
            ignore_above: Some(1024),
        };
        assert!(q("f:x*").matches(&doc));
        assert!(!q("f:x*").matches_with(&doc, &limit));
        assert!(q("f:short").matches_with(&doc, &limit));
        let long_only = json!({"f": "x".repeat(1025)});
        assert!(q("f:*").matches(&long_only));
        assert!(!q("f:*").matches_with(&long_only, &limit));
        assert!(q("not f:*").matches_with(&long_only, &limit));
        let exactly = json!({"f": "x".repeat(1024)});
        assert!(q("f:*").matches_with(&exactly, &limit));
    }

    #[test]
    fn empty_query_matches_everything() {
        assert!(q("").matches(&json!({})));
    }

    #[test]
    fn fields_are_sorted_and_deduplicated() {
        assert_eq!(
            q("b:1 or a:(x and y) or not b:2 or \"c d\" > 1").fields(),
            vec!["a".to_string(), "b".to_string(), "c d".to_string()]
        );
    }

    const SEED: &str = r#"host.os.type:linux and event.category:process and event.type:start and event.action:exec and process.parent.executable:* and
(process.name:ln or process.name:busybox and process.args:ln or process.name:cp and process.args:--symbolic-link) and
process.args:(
  (
    /bin/* or /lib/* or /lib64/* or /sbin/* or /usr/bin/* or /usr/lib/* or /usr/lib64/* or /usr/local/bin/* or
    /usr/local/lib/* or /usr/local/lib64/* or /usr/local/sbin/* or /usr/sbin/*
  ) and (
    /*/.* or /dev/shm/* or /home/* or /root/* or /tmp/* or /var/tmp/*
  ) and
  not (/usr/bin/coreutils or /tmp/mkinitcpio* or /var/tmp/dracut* or /var/tmp/mkinitramfs*)
)"#;

    fn exec(name: &str, args: &[&str]) -> Value {
        json!({
            "host": {"os": {"type": "linux"}},
            "event": {"category": ["process"], "type": ["start"], "action": "exec"},
            "process": {
                "name": name,
                "args": args,
                "parent": {"executable": "/usr/bin/bash"}
            }
        })
    }

    #[test]
    fn seed_query_fields() {
        assert_eq!(
            q(SEED).fields(),
            [
                "event.action",
                "event.category",
                "event.type",
                "host.os.type",
                "process.args",
                "process.name",
                "process.parent.executable",
            ]
            .map(String::from)
            .to_vec()
        );
    }

    #[test]
    fn seed_query_positives() {
        let seed = q(SEED);
        let positives = [
            exec("ln", &["ln", "-s", "/usr/bin/id", "/tmp/x"]),
            exec("busybox", &["ln", "-s", "/bin/sh", "/dev/shm/sh"]),
            exec(
                "cp",
                &["cp", "--symbolic-link", "/usr/sbin/sshd", "/home/u/sshd"],
            ),
            exec("ln", &["ln", "-sf", "/tmp/payload", "/usr/bin/id"]),
            exec("ln", &["ln", "-s", "/usr/lib/python3", "/opt/.x/py"]),
            exec("ln", &["ln", "-s", "/lib64/libc.so.6", "/opt/x/./y"]),
            exec("ln", &["ln", "-s", "/sbin/init", "/root/init"]),
            exec("ln", &["ln", "-s", "/usr/local/bin/t", "/var/tmp/t"]),
        ];
        for (i, doc) in positives.iter().enumerate() {
            assert!(seed.matches(doc), "positive {i}: {doc}");
        }
        // Flattened (dotted-key) form of the first positive.
        let flat = json!({
            "host.os.type": "linux", "event.category": "process", "event.type": "start",
            "event.action": "exec", "process.name": "ln",
            "process.args": ["ln", "-s", "/usr/bin/id", "/tmp/x"],
            "process.parent.executable": "/usr/bin/bash"
        });
        assert!(seed.matches(&flat));
    }

    #[test]
    fn seed_query_negatives() {
        let seed = q(SEED);
        let mut no_parent = exec("ln", &["ln", "-s", "/usr/bin/id", "/tmp/x"]);
        if let Some(process) = no_parent.get_mut("process").and_then(Value::as_object_mut) {
            process.remove("parent");
        }
        let mut windows = exec("ln", &["ln", "-s", "/usr/bin/id", "/tmp/x"]);
        windows["host"]["os"]["type"] = json!("windows");
        let negatives = [
            exec("ln", &["ln", "-s", "/usr/bin/coreutils", "/tmp/x"]),
            exec("ln", &["ln", "-s", "/usr/bin/id", "/tmp/mkinitcpio.x"]),
            exec("ln", &["ln", "-s", "/usr/bin/id", "/var/tmp/dracut.y"]),
            no_parent,
            windows,
            exec("ln", &["ln", "-s", "/usr/bin/id", "/TMP/x"]),
            exec("ln", &["ln", "-s", "/usr/binary/x", "/tmp/x"]),
            exec("cp", &["cp", "/usr/bin/id", "/tmp/x"]),
            exec("busybox", &["busybox", "cp", "/usr/bin/id", "/tmp/x"]),
            exec("ln", &["ln", "-s", "/usr/bin/id", "/opt/x"]),
            exec("ln", &["ln", "-s", "/etc/passwd", "/tmp/x"]),
            exec("ln", &["ln", "-s", "/usr/bin/id", "/.x"]),
            exec("mv", &["ln", "-s", "/usr/bin/id", "/tmp/x"]),
        ];
        for (i, doc) in negatives.iter().enumerate() {
            assert!(!seed.matches(doc), "negative {i}: {doc}");
        }
    }

    #[test]
    fn seed_query_with_ignore_above() {
        let seed = q(SEED);
        let long_target = format!("/tmp/{}", "x".repeat(1995));
        assert_eq!(long_target.len(), 2000);
        let doc = exec("ln", &["ln", "-s", "/usr/bin/id", &long_target]);
        assert!(seed.matches(&doc));
        let limit = EvalOptions {
            ignore_above: Some(1024),
        };
        assert!(!seed.matches_with(&doc, &limit));
        let short = exec("ln", &["ln", "-s", "/usr/bin/id", "/tmp/x"]);
        assert!(seed.matches_with(&short, &limit));
    }

    #[test]
    fn seed_query_on_a_megabyte_argument() {
        let seed = q(SEED);
        // A pathological shape for a backtracking matcher: `/` and `.` everywhere.
        let huge = format!("/tmp/{}", "/a.".repeat((1 << 20) / 3));
        let doc = exec("ln", &["ln", "-s", "/usr/bin/id", &huge]);
        assert!(seed.matches(&doc));
        let doc = exec("ln", &["ln", "-s", &huge, "/opt/x"]);
        assert!(!seed.matches(&doc));
    }
}
