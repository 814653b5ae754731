//! A read-only view of a compiled query's boolean tree, for code that derives a policy from a
//! rule's query instead of copying its values by hand (the path-aware detector reads the seed
//! rule's path lists here, so they cannot drift from the rule).

use super::eval::Query;
use super::parse::{Node, Test};

/// One node of a compiled query.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape<'a> {
    /// The empty query: every document matches.
    All,
    /// All children match.
    And(Vec<Shape<'a>>),
    /// At least one child matches.
    Or(Vec<Shape<'a>>),
    /// The child does not match.
    Not(Box<Shape<'a>>),
    /// A test on one field (a value list `field:(a or b)` is one test per value).
    Test {
        /// Dotted field name, e.g. `process.args`.
        field: &'a str,
        /// What a value must satisfy.
        value: ValueTest,
    },
}

/// What a field value must satisfy, as written in the query.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueTest {
    /// `field:*`.
    Exists,
    /// A value without wildcards: exact equality.
    Text(String),
    /// A value with `*`: the literal text between the stars, in order (`/bin/*` is
    /// `["/bin/", ""]`, `/*/.*` is `["/", "/.", ""]`; adjacent stars count as one).
    Wildcard(Vec<String>),
    /// A range test (`field < bound` and friends).
    Range,
}

impl Query {
    /// The query's boolean tree, as compiled.
    pub fn shape(&self) -> Shape<'_> {
        shape_of(self.root())
    }
}

fn shape_of(node: &Node) -> Shape<'_> {
    match node {
        Node::MatchAll => Shape::All,
        Node::And(items) => Shape::And(items.iter().map(shape_of).collect()),
        Node::Or(items) => Shape::Or(items.iter().map(shape_of).collect()),
        Node::Not(inner) => Shape::Not(Box::new(shape_of(inner))),
        Node::Leaf(leaf) => Shape::Test {
            field: leaf.field.path(),
            value: match &leaf.test {
                Test::Exists => ValueTest::Exists,
                Test::Equals { text, .. } => ValueTest::Text(text.clone()),
                Test::Wildcard(pattern) => ValueTest::Wildcard(pattern.pieces()),
                Test::Range { .. } => ValueTest::Range,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::kql::parse;

    fn test(field: &str, value: ValueTest) -> Shape<'_> {
        Shape::Test { field, value }
    }

    #[test]
    fn shape_mirrors_the_tree_and_splits_wildcards_at_stars() {
        let q = parse("a:x and b:(/bin/* or /*/.*) and not c:* and d > 3").unwrap();
        let pieces = |p: &[&str]| ValueTest::Wildcard(p.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            q.shape(),
            Shape::And(vec![
                test("a", ValueTest::Text("x".into())),
                Shape::Or(vec![
                    test("b", pieces(&["/bin/", ""])),
                    test("b", pieces(&["/", "/.", ""])),
                ]),
                Shape::Not(Box::new(test("c", ValueTest::Exists))),
                test("d", ValueTest::Range),
            ])
        );
        assert_eq!(parse("").unwrap().shape(), Shape::All);
        assert_eq!(
            parse("a:x**y").unwrap().shape(),
            test("a", pieces(&["x", "y"]))
        );
    }
}
