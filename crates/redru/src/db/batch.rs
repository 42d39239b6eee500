//! `Batch`: sets, deletes and preconditions applied atomically; `Update`, what
//! an `update` closure decides.

use serde_json::Value;

use crate::state::doc::Doc;
use crate::state::precondition::Precondition;
use crate::storage::record::{BatchOp, Seq};

/// An atomic group of sets and deletes: all are applied, or none. With
/// conditions (`require_*`), only if every condition holds just before it is
/// applied; otherwise nothing is written or logged and the error
/// ([`Error::ConditionFailed`](crate::Error::ConditionFailed)) names the first condition that failed.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = redru::Db::open(dir.path())?;
/// use serde_json::json;
/// db.batch(redru::Batch::new().set("a", json!(1)).set("b", json!(2)).delete("c"))?;
/// assert_eq!(db.len(), 2);
/// # Ok(())
/// # }
/// ```
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let db = redru::Db::open(dir.path())?;
/// use serde_json::json;
/// let seq = db.set_with_seq("stock", json!(3))?;
/// let order = redru::Batch::new().require_absent("order:1").require_unchanged("stock", seq);
/// db.batch(order.clone().set("order:1", json!({"qty": 1})).set("stock", json!(2)))?;
/// // The same batch again: `order:1` now exists, nothing is written.
/// assert!(matches!(db.batch(order.set("stock", json!(1))), Err(redru::Error::ConditionFailed { .. })));
/// assert_eq!(db.get_value("stock"), Some(json!(2)));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub(super) ops: Vec<BatchOp>,
    pub(super) conditions: Vec<Precondition>,
}

/// What [`Db::update`](crate::Db::update)'s closure decides for the key.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Write this value.
    Set(Doc),
    /// Remove the key (nothing is logged if it is absent).
    Delete,
    /// Leave the key as it is (nothing is logged).
    Keep,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }
    /// Adds a set.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<Doc>) -> Batch {
        self.ops.push(BatchOp::Set(key.into(), value.into()));
        self
    }
    /// Adds a delete.
    pub fn delete(mut self, key: impl Into<String>) -> Batch {
        self.ops.push(BatchOp::Delete(key.into()));
        self
    }
    /// Removes every key; the operations after it apply to an empty map
    /// (`Batch::new().clear().set(..)` replaces the whole content atomically).
    pub fn clear(mut self) -> Batch {
        self.ops.push(BatchOp::Clear);
        self
    }
    /// Requires `key` to be absent when the batch is applied.
    pub fn require_absent(mut self, key: impl Into<String>) -> Batch {
        self.conditions.push(Precondition::Absent(key.into()));
        self
    }
    /// Requires `key` to exist and equal `value` (as JSON values: `1` and
    /// `1.0` differ, member order does not matter) when the batch is applied.
    pub fn require_equals(mut self, key: impl Into<String>, value: impl Into<Value>) -> Batch {
        self.conditions.push(Precondition::Equals(key.into(), value.into()));
        self
    }
    /// Requires `key` to exist and to have been written by no record after
    /// `seq` (as [`Db::get_with_seq`](crate::Db::get_with_seq) reported it) when the batch is applied.
    pub fn require_unchanged(mut self, key: impl Into<String>, seq: Seq) -> Batch {
        self.conditions.push(Precondition::Unchanged(key.into(), seq));
        self
    }
    /// Adds a condition in place.
    pub fn push_condition(&mut self, condition: Precondition) {
        self.conditions.push(condition);
    }
    /// The conditions, in the order they were added.
    pub fn conditions(&self) -> &[Precondition] {
        &self.conditions
    }
    /// Adds a set in place.
    pub fn push_set(&mut self, key: impl Into<String>, value: impl Into<Doc>) {
        self.ops.push(BatchOp::Set(key.into(), value.into()));
    }
    /// Adds a delete in place.
    pub fn push_delete(&mut self, key: impl Into<String>) {
        self.ops.push(BatchOp::Delete(key.into()));
    }
    /// Number of operations (conditions not counted).
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
