//! `Batch`: sets, deletes, deadlines and preconditions applied atomically;
//! `Update`, what an `update` closure decides. A time to live in a batch is
//! turned into an absolute deadline when the batch is committed, under the
//! writer lock, so the log holds only absolute times.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::state::doc::Doc;
use crate::state::precondition::Precondition;
use crate::state::store::Map;
use crate::storage::record::{BatchOp, Expiry, Seq};

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
    /// Operations given a time to live: (position in `ops`, ttl), made
    /// absolute at commit ([`Batch::resolve`]).
    pub(super) ttls: Vec<(usize, Duration)>,
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
    /// Adds a set of a key that expires `ttl` after the batch is applied (a
    /// zero ttl deletes the key, as Redis's `EXPIRE k 0` does).
    pub fn set_with_ttl(mut self, key: impl Into<String>, value: impl Into<Doc>, ttl: Duration) -> Batch {
        self.ttls.push((self.ops.len(), ttl));
        self.ops.push(BatchOp::SetExpiring(key.into(), value.into(), Expiry(1)));
        self
    }
    /// Adds a set of a key that expires at `at` (a time already past deletes it).
    pub fn set_expiring_at(mut self, key: impl Into<String>, value: impl Into<Doc>, at: SystemTime) -> Batch {
        self.push_set_expiring(key, value, Expiry::from_system_time(at));
        self
    }
    /// Gives `key` a deadline `ttl` after the batch is applied, if it exists
    /// then (a zero ttl deletes it).
    pub fn expire(mut self, key: impl Into<String>, ttl: Duration) -> Batch {
        self.ttls.push((self.ops.len(), ttl));
        self.ops.push(BatchOp::Expire(key.into(), Some(Expiry(1))));
        self
    }
    /// Gives `key` the deadline `at`, if it exists when the batch is applied.
    pub fn expire_at(mut self, key: impl Into<String>, at: SystemTime) -> Batch {
        self.ops.push(BatchOp::Expire(key.into(), Some(Expiry::from_system_time(at))));
        self
    }
    /// Removes the deadline of `key`, if it exists when the batch is applied.
    pub fn persist(mut self, key: impl Into<String>) -> Batch {
        self.ops.push(BatchOp::Expire(key.into(), None));
        self
    }
    /// Adds a set with an absolute deadline in place (import and restore).
    pub fn push_set_expiring(&mut self, key: impl Into<String>, value: impl Into<Doc>, at: Expiry) {
        self.ops.push(BatchOp::SetExpiring(key.into(), value.into(), at));
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

impl Batch {
    /// The operations to log at `now` (ms since the epoch), against `map`:
    /// times to live become deadlines; a set or expire whose deadline has
    /// passed becomes a delete (the key would be invisible at once); a
    /// deadline change of a key that is not live at that point of the batch
    /// is dropped, so that replay, which applies it to whatever the map holds,
    /// can never bring an expired key back.
    pub(super) fn resolve(ops: Vec<BatchOp>, ttls: &[(usize, Duration)], map: &Map, now: u64) -> Vec<BatchOp> {
        use std::collections::HashMap;
        let mut ops = ops;
        for &(i, ttl) in ttls {
            match ops.get_mut(i) {
                Some(BatchOp::SetExpiring(_, _, exp)) | Some(BatchOp::Expire(_, Some(exp))) => {
                    *exp = Expiry::after(now, ttl);
                }
                _ => {}
            }
        }
        // What earlier operations of the batch made of a key: live or not.
        // Only a deadline change reads it, so it is kept only up to the last
        // one: a batch of sets builds no map (a copy of every key and a hash
        // insert were a sixth of a 1000-set batch's cost, issue 18).
        let mut seen: HashMap<String, bool> = HashMap::new();
        let track_until = ops.iter().rposition(|op| matches!(op, BatchOp::Expire(..))).unwrap_or(0);
        let mut cleared = false;
        let mut out = Vec::with_capacity(ops.len());
        for (i, op) in ops.into_iter().enumerate() {
            let op = match op {
                BatchOp::SetExpiring(k, _, exp) | BatchOp::Expire(k, Some(exp)) if exp.0 <= now => BatchOp::Delete(k),
                BatchOp::Expire(k, exp) => {
                    let live = match seen.get(&k) {
                        Some(live) => *live,
                        None => !cleared && map.get(&k, now).is_some(),
                    };
                    if !live {
                        continue;
                    }
                    BatchOp::Expire(k, exp)
                }
                other => other,
            };
            match &op {
                _ if i >= track_until => {}
                BatchOp::Set(k, _) | BatchOp::SetExpiring(k, _, _) => {
                    seen.insert(k.clone(), true);
                }
                BatchOp::Delete(k) => {
                    seen.insert(k.clone(), false);
                }
                BatchOp::Clear => {
                    seen.clear();
                    cleared = true;
                }
                BatchOp::Expire(..) => {}
            }
            out.push(op);
        }
        out
    }
}
