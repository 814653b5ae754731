//! An alert: the ECS document of the exec that matched, plus which rule fired and the new-terms tuple
//! that made it new. Sinks render alerts; they never see rules or state.

use crate::rule::file::{Rule, Severity};
use serde_json::{json, Value};

/// One detection, ready for the sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// `rule.id` (Elastic's rule_id).
    pub rule_id: String,
    /// `rule.name`.
    pub rule_name: String,
    /// Rule severity (written as Elastic spells it: `low`, `medium`, `high`, `critical`).
    pub severity: Severity,
    /// Rule risk score, 0–100.
    pub risk_score: u32,
    /// Values of the rule's new_terms fields, in the rule's order (empty for plain query rules
    /// or with the gate off).
    pub new_terms: Vec<String>,
    /// The ECS document of the exec event.
    pub document: Value,
}

impl Alert {
    /// An alert of `rule` on `document` with the new-terms tuple that let it through.
    pub fn new(rule: &Rule, document: Value, new_terms: Vec<String>) -> Alert {
        Alert {
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            severity: rule.severity,
            risk_score: rule.risk_score,
            new_terms,
            document,
        }
    }

    /// The alert as one ECS JSON object: the document with `event.kind` = `alert`, plus `rule.*` and
    /// `new_terms`.
    pub fn to_json(&self) -> Value {
        let mut doc = self.document.clone();
        if let Some(obj) = doc.as_object_mut() {
            if let Some(Value::Object(event)) = obj.get_mut("event") {
                event.insert("kind".into(), json!("alert"));
            }
            obj.insert(
                "rule".into(),
                json!({
                    "id": self.rule_id,
                    "name": self.rule_name,
                    "severity": self.severity.as_str(),
                    "risk_score": self.risk_score,
                }),
            );
            obj.insert("new_terms".into(), json!(self.new_terms));
        }
        doc
    }
}
