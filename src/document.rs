//! The document model rules query: a document yields the scalar values of a dotted field path,
//! the way Elasticsearch sees an indexed document's keyword fields. Events (`event`) implement it
//! without building JSON; any `serde_json::Value` implements it too.

use std::sync::OnceLock;

use serde_json::{Number, Value};

use crate::catalog::{field_id, FieldId};

/// A field path as a rule names it, resolved once when the rule loads to its number among the
/// catalog's paths, so a typed document answers it without comparing names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Field {
    path: Box<str>,
    id: Option<FieldId>,
}

impl Field {
    /// The field at `path` (any path: one no document holds has no id and never has values).
    pub fn new(path: &str) -> Field {
        Field {
            path: path.into(),
            id: field_id(path),
        }
    }

    /// The dotted path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Its number in [`crate::catalog::paths`], when some document can hold it.
    pub fn id(&self) -> Option<FieldId> {
        self.id
    }
}

/// A document type's own slot for each catalog field, looked up by a [`Field`]'s number: built
/// once from the type's path matcher, so a lookup costs one index instead of comparing names.
/// A table serves one matcher (a `static` in the type's [`Slotted`] impl).
pub struct SlotTable<S>(OnceLock<Vec<Option<S>>>);

impl<S: Copy> SlotTable<S> {
    /// An empty table (filled on first use).
    pub const fn new() -> Self {
        SlotTable(OnceLock::new())
    }

    /// The slot of `field`; `of` maps a path to its slot (used for paths outside the catalog).
    pub fn get(&self, field: &Field, of: fn(&str) -> Option<S>) -> Option<S> {
        let Some(id) = field.id() else {
            return of(field.path());
        };
        let table = self
            .0
            .get_or_init(|| crate::catalog::paths().iter().map(|p| of(p)).collect());
        table.get(id.index()).copied().flatten()
    }
}

impl<S: Copy> Default for SlotTable<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// One scalar value of a document field, as a keyword field would index it.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar<'a> {
    /// A string.
    Str(&'a str),
    /// A number (matched by value, or by its JSON text).
    Num(Number),
    /// A boolean (matched as `true` / `false`).
    Bool(bool),
}

/// Something KQL can query: it yields the scalar values of a dotted field path, arrays flattened,
/// nulls and objects skipped (Elasticsearch's view of a document's fields).
pub trait Document {
    /// Calls `f` on each value of the dotted `path` until it returns true; true if one did.
    fn any_value(&self, path: &str, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool;

    /// [`Document::any_value`] of a resolved field: typed documents answer by its number.
    fn any_field(&self, field: &Field, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
        self.any_value(field.path(), f)
    }
}

/// A document answered from a typed event: each path it can hold maps to one of its slots, read
/// on demand; lookups by resolved [`Field`] go through the type's [`SlotTable`].
pub trait Slotted {
    /// One field the type answers.
    type Slot: Copy + 'static;
    /// The slot of `path`, if the type can hold it.
    fn slot(path: &str) -> Option<Self::Slot>;
    /// Calls `f` on each value of `slot` until it returns true; true if one did.
    fn read(&self, slot: Self::Slot, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool;
    /// The type's own table (a `static` in its impl).
    fn table() -> &'static SlotTable<Self::Slot>;
}

impl<T: Slotted> Document for T {
    fn any_value(&self, path: &str, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
        T::slot(path).is_some_and(|slot| self.read(slot, f))
    }

    fn any_field(&self, field: &Field, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
        T::table()
            .get(field, T::slot)
            .is_some_and(|slot| self.read(slot, f))
    }
}

impl Document for Value {
    fn any_value(&self, path: &str, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
        any_value(self, path, f)
    }
}

/// Call `f` on each value of the dotted `path` under `node` until it returns true: nested objects
/// and literal dotted keys (`"process.args"`) at any level alike.
fn any_value(node: &Value, path: &str, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
    match node {
        Value::Object(map) => {
            // Every split of the path at a dot: nested objects and flattened dotted keys alike.
            for (dot, _) in path.match_indices('.') {
                let (Some(head), Some(rest)) = (path.get(..dot), path.get(dot + 1..)) else {
                    continue;
                };
                if let Some(child) = map.get(head) {
                    if any_value(child, rest, f) {
                        return true;
                    }
                }
            }
            map.get(path).is_some_and(|v| any_leaf(v, f))
        }
        Value::Array(items) => items.iter().any(|item| any_value(item, path, f)),
        _ => false,
    }
}

/// Call `f` on each scalar of a field's value, flattening arrays; nulls and objects are skipped.
fn any_leaf(value: &Value, f: &mut dyn FnMut(Scalar<'_>) -> bool) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| any_leaf(item, f)),
        Value::Null | Value::Object(_) => false,
        Value::String(s) => f(Scalar::Str(s)),
        Value::Number(n) => f(Scalar::Num(n.clone())),
        Value::Bool(b) => f(Scalar::Bool(*b)),
    }
}
