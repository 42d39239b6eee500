//! [`Change`]: one change to one key (or to all of them) as the feed
//! delivers it, and how a logged record becomes the changes a prefix sees.
//!
//! Pure. Index definitions are not changes to data and are left out; a
//! batch gives one change per operation under the prefix, all with its seq.

use crate::state::change::{BatchOp, Record, Seq};
use crate::state::doc::Doc;

/// One change delivered by a [`Subscription`](crate::Subscription), with the
/// sequence number of the log record that made it. The changes of one atomic
/// batch come one after another with the same sequence number.
///
/// Non-exhaustive: kinds may be added (expiry will add one), so match with a
/// `_` arm.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// `key` now holds `value`.
    Set {
        /// The record's sequence number.
        seq: Seq,
        /// The key.
        key: String,
        /// Its new value.
        value: Doc,
    },
    /// `key` was deleted (a batch logs its deletes even of absent keys).
    Delete {
        /// The record's sequence number.
        seq: Seq,
        /// The key.
        key: String,
    },
    /// Every key was removed, under any prefix (`clear`, or a restore's
    /// first step: the sets after it in the same batch follow).
    Clear {
        /// The record's sequence number.
        seq: Seq,
    },
}

impl Change {
    /// The sequence number of the record that made the change.
    pub fn seq(&self) -> Seq {
        match self {
            Change::Set { seq, .. } | Change::Delete { seq, .. } | Change::Clear { seq } => *seq,
        }
    }

    /// The key changed (`None` for a clear).
    pub fn key(&self) -> Option<&str> {
        match self {
            Change::Set { key, .. } | Change::Delete { key, .. } => Some(key),
            Change::Clear { .. } => None,
        }
    }

    /// The new value, for a set.
    pub fn value(&self) -> Option<&Doc> {
        match self {
            Change::Set { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The operation's name, as the shell's `watch` prints it: `set`, `del`, `clear`.
    pub fn op(&self) -> &'static str {
        match self {
            Change::Set { .. } => "set",
            Change::Delete { .. } => "del",
            Change::Clear { .. } => "clear",
        }
    }
}

/// Appends to `out` the changes record `seq` makes to keys under `prefix`;
/// returns how many.
pub(crate) fn changes_of(seq: Seq, record: &Record, prefix: &str, out: &mut impl Extend<Change>) -> usize {
    let under = |key: &str| key.starts_with(prefix);
    let set = |key: &str, value: &Doc| Change::Set { seq, key: key.to_owned(), value: value.clone() };
    let del = |key: &str| Change::Delete { seq, key: key.to_owned() };
    match record {
        // A deadline is not a change of value: the key's expiry arrives as
        // the delete the sweeper logs.
        Record::Set(key, value) | Record::SetExpiring(key, value, _) if under(key) => {
            out.extend([set(key, value)]);
            1
        }
        Record::Delete(key) if under(key) => {
            out.extend([del(key)]);
            1
        }
        Record::Clear => {
            out.extend([Change::Clear { seq }]);
            1
        }
        Record::Batch(ops) => {
            let mut n = 0;
            for op in ops {
                let change = match op {
                    BatchOp::Set(key, value) | BatchOp::SetExpiring(key, value, _) if under(key) => set(key, value),
                    BatchOp::Delete(key) if under(key) => del(key),
                    BatchOp::Clear => Change::Clear { seq },
                    _ => continue,
                };
                out.extend([change]);
                n += 1;
            }
            n
        }
        Record::Set(..)
        | Record::SetExpiring(..)
        | Record::Expire(..)
        | Record::Delete(_)
        | Record::CreateIndex { .. }
        | Record::DropIndex(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Result<Doc, Box<dyn std::error::Error>> {
        Ok(Doc::parse(text)?)
    }

    #[test]
    fn a_prefix_sees_its_keys_every_clear_and_no_index_record() -> Result<(), Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        assert_eq!(changes_of(Seq(1), &Record::Set("user:1".into(), doc("1")?), "user:", &mut out), 1);
        assert_eq!(changes_of(Seq(2), &Record::Set("order:1".into(), doc("1")?), "user:", &mut out), 0);
        assert_eq!(changes_of(Seq(3), &Record::Delete("user:1".into()), "user:", &mut out), 1);
        assert_eq!(changes_of(Seq(4), &Record::Clear, "user:", &mut out), 1);
        assert_eq!(changes_of(Seq(5), &Record::DropIndex("name".into()), "", &mut out), 0);
        let batch = Record::Batch(vec![
            BatchOp::Clear,
            BatchOp::Set("user:2".into(), doc("2")?),
            BatchOp::Set("order:2".into(), doc("2")?),
            BatchOp::Delete("user:3".into()),
        ]);
        assert_eq!(changes_of(Seq(6), &batch, "user:", &mut out), 3);
        let seen: Vec<(u64, &str, Option<&str>)> = out.iter().map(|c| (c.seq().0, c.op(), c.key())).collect();
        assert_eq!(
            seen,
            [
                (1, "set", Some("user:1")),
                (3, "del", Some("user:1")),
                (4, "clear", None),
                (6, "clear", None),
                (6, "set", Some("user:2")),
                (6, "del", Some("user:3")),
            ]
        );
        Ok(())
    }
}
