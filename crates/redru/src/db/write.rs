//! The write methods of `Db`: each builds a record and hands it to the
//! commit path in `inner`; `save` and `sync`.

use serde_json::Value;

use super::{Batch, Db, SaveReport, Update};
use crate::error::{Error, Result};
use crate::state::doc::{Doc, IntoDoc};
use crate::state::index::{FieldPath, IndexKind};
use crate::state::precondition::Precondition;
use crate::storage::record::{Record, Seq};

impl Db {
    /// [`Durability::Always`](crate::Durability::Always)).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// db.set("user:1", redru::json!({"name": "Alice"}))?;   // a Value
    /// db.set("n", redru::Doc::parse("12345678901234567890123")?)?; // JSON text, digits kept
    /// assert_eq!(db.get("n").map(|d| d.as_str().to_owned()).as_deref(), Some("12345678901234567890123"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// - [`Error::InvalidValue`] if a value could not be read back exactly once
    ///   stored (nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH), or using
    ///   serde_json's reserved member names): nothing is written.
    /// - [`Error::UniqueViolation`] if a unique index would see two keys share a
    ///   value: nothing is written.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn set<'a>(&self, key: impl Into<String>, value: impl IntoDoc<'a>) -> Result<()> {
        let (doc, parsed) = value.into_parts();
        self.inner.commit_with(Record::Set(key.into(), doc), parsed.as_deref()).map(|_| ())
    }

    /// [`Db::set`], returning the seq of the record written (what
    /// [`Db::get_with_seq`] reports for the key until it is written again).
    ///
    /// # Errors
    /// As [`Db::set`].
    pub fn set_with_seq<'a>(&self, key: impl Into<String>, value: impl IntoDoc<'a>) -> Result<Seq> {
        let (doc, parsed) = value.into_parts();
        let record = Record::Set(key.into(), doc);
        let written = self.inner.commit_decided(parsed.as_deref(), |_, _| Ok(Some(record)))?;
        Ok(written.map_or(Seq(0), |(seq, _)| seq))
    }

    /// An atomic read-modify-write of `key`: `f` gets the current value (None
    /// if absent or expired) and decides; a new value keeps the key's
    /// deadline, if it has one; no other write comes between the read and
    /// the write. Returns the seq of the record written, or None when
    /// nothing was (an [`Update::Keep`], or an [`Update::Delete`] of an absent key).
    ///
    /// `f` runs while every writer of this database waits: keep it quick (no
    /// I/O, no sleeping), and never write to this `Db` from it (that would
    /// deadlock). Reads from other threads are not held.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// use redru::{Update, json};
    /// for _ in 0..3 {
    ///     db.update("visits", |cur| {
    ///         let n = cur.and_then(|d| d.deserialize::<i64>().ok()).unwrap_or(0);
    ///         Update::Set(json!(n + 1).into())
    ///     })?;
    /// }
    /// assert_eq!(db.get_value("visits"), Some(json!(3)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Db::set`] (or [`Db::delete`]) for what `f` decided.
    pub fn update(&self, key: &str, f: impl FnOnce(Option<&Doc>) -> Update) -> Result<Option<Seq>> {
        let written = self.inner.commit_decided(None, |inner, now| {
            // A copy of the handle, so `f` runs without the state's lock.
            let (current, exp) = {
                let state = inner.read_state();
                (state.map.get(key, now).cloned(), state.map.expiry(key, now).flatten())
            };
            Ok(match f(current.as_ref()) {
                // A new value keeps the key's deadline, as Redis's INCR does.
                Update::Set(doc) => match exp {
                    Some(exp) => Some(Record::SetExpiring(key.to_owned(), doc, exp)),
                    None => Some(Record::Set(key.to_owned(), doc)),
                },
                Update::Delete if current.is_some() => Some(Record::Delete(key.to_owned())),
                Update::Delete | Update::Keep => None,
            })
        })?;
        Ok(written.map(|(seq, _)| seq))
    }

    /// Writes `new` to `key` only if its current value equals `expected`
    /// (None: only if it is absent), atomically. Returns the seq of the record written.
    ///
    /// # Errors
    /// - [`Error::ConditionFailed`] if the key does not hold `expected`:
    ///   nothing is written; the error says what it holds.
    /// - Otherwise as [`Db::set`].
    pub fn compare_and_set<'a>(&self, key: &str, expected: Option<&Value>, new: impl IntoDoc<'a>) -> Result<Seq> {
        let condition = match expected {
            Some(v) => Precondition::Equals(key.to_owned(), v.clone()),
            None => Precondition::Absent(key.to_owned()),
        };
        let (doc, parsed) = new.into_parts();
        let record = Record::Set(key.to_owned(), doc);
        let written = self.inner.commit_decided(parsed.as_deref(), |inner, now| {
            condition.check(&inner.read_state().map, 0, now)?;
            Ok(Some(record))
        })?;
        Ok(written.map_or(Seq(0), |(seq, _)| seq))
    }

    /// Adds `by` to the integer at `key` (absent counts as 0), atomically;
    /// returns the new value.
    ///
    /// # Errors
    /// - [`Error::InvalidValue`] if the key holds anything but an integer
    ///   (within i64), or the sum overflows: nothing is written.
    /// - Otherwise as [`Db::set`].
    pub fn incr(&self, key: &str, by: i64) -> Result<i64> {
        let mut outcome = Ok(0);
        self.update(key, |current| {
            let n = match current {
                None => Ok(0),
                Some(doc) => {
                    doc.as_str().parse::<i64>().map_err(|_| format!("it holds {}, not an integer", doc.as_str()))
                }
            };
            outcome = n.and_then(|n| n.checked_add(by).ok_or_else(|| format!("{n} + {by} overflows a 64-bit integer")));
            match &outcome {
                Ok(sum) => Update::Set(Doc::from(Value::from(*sum))),
                Err(_) => Update::Keep,
            }
        })?;
        outcome.map_err(|reason| Error::InvalidValue { key: Some(key.to_owned()), reason })
    }

    /// Removes `key`; returns whether it existed. A delete of a missing key
    /// is not logged.
    ///
    /// # Errors
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        if !self.contains(key) {
            // Still refuse on a poisoned handle, like any write.
            self.inner.wal.check_poisoned()?;
            return Ok(false);
        }
        self.inner.commit(Record::Delete(key.to_owned())).map(|a| a.existed)
    }

    /// Applies every operation of `batch` atomically: one log record, all or
    /// nothing; only if its conditions hold (checked against the state just
    /// before, under the writer lock).
    ///
    /// # Errors
    /// - [`Error::ConditionFailed`] naming the first condition that does not
    ///   hold: nothing is written or logged.
    /// - [`Error::InvalidValue`] if a value could not be read back exactly once
    ///   stored (nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH), or using
    ///   serde_json's reserved member names): nothing is written.
    /// - [`Error::UniqueViolation`] if a unique index would see two keys share a
    ///   value: nothing is written.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn batch(&self, batch: Batch) -> Result<()> {
        let Batch { ops, conditions, ttls } = batch;
        self.inner
            .commit_decided(None, |inner, now| {
                let state = inner.read_state();
                for (i, condition) in conditions.iter().enumerate() {
                    condition.check(&state.map, i, now)?;
                }
                Ok(Some(Record::Batch(Batch::resolve(ops, &ttls, &state.map, now))))
            })
            .map(|_| ())
    }

    /// Removes every key (index definitions stay). Returns how many there were.
    ///
    /// # Errors
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn clear(&self) -> Result<usize> {
        let before = self.len();
        self.inner.commit(Record::Clear)?;
        Ok(before)
    }

    /// Creates a hash index on a field path (`name`, `address.city`, `tags.0`, `$`).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// db.set("user:1", redru::json!({"address": {"city": "Oslo"}}))?;
    /// if !db.indexes().iter().any(|i| i.field == "address.city") {
    ///     db.create_index("address.city")?; // kept across reopen: create it once
    /// }
    /// assert_eq!(db.find("address.city", &redru::json!("Oslo"))?, ["user:1"]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// - [`Error::InvalidFieldPath`] if `field` is not a field path.
    /// - [`Error::IndexExists`] if `field` already has an index.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn create_index(&self, field: &str) -> Result<()> {
        self.create_index_of(field, false, IndexKind::Hash)
    }

    /// Creates an ordered index on a field path: equality lookups as a hash
    /// index, and besides them the field values in order, so that `<`, `<=`,
    /// `>`, `>=` and `between` on the field, and `sort by` it with a
    /// `limit`, examine only the keys they need. The order across types is
    /// docs/design.md's ("Ordered indexes"): numbers by value, strings by
    /// code point. Costs more per write and more memory than a hash index.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// db.create_ordered_index("age")?;
    /// db.set("user:1", redru::json!({"age": 31}))?;
    /// db.set("user:2", redru::json!({"age": 19.5}))?;
    /// let r = db.query(&redru::Query::parse("age between 18 and 30")?)?;
    /// assert_eq!(r.entries[0].0, "user:2");
    /// assert!(r.plan.to_string().starts_with("index range on `age`"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Db::create_index`].
    pub fn create_ordered_index(&self, field: &str) -> Result<()> {
        self.create_index_of(field, false, IndexKind::Ordered)
    }

    /// Creates an index of any kind (restore recreates a backup's as they were).
    pub(crate) fn create_index_of(&self, field: &str, unique: bool, kind: IndexKind) -> Result<()> {
        let path = FieldPath::parse(field)?;
        self.inner.commit(Record::CreateIndex { field: path.as_str().to_owned(), unique, kind }).map(|_| ())
    }

    /// Creates a unique hash index: refused if two keys already share a
    /// value, and afterwards every write that would make two keys share one
    /// is refused with [`Error::UniqueViolation`], changing nothing.
    ///
    /// # Errors
    /// - [`Error::InvalidFieldPath`] if `field` is not a field path.
    /// - [`Error::IndexExists`] if `field` already has an index.
    /// - [`Error::UniqueViolation`] if two keys already share a value of `field`.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn create_unique_index(&self, field: &str) -> Result<()> {
        self.create_index_of(field, true, IndexKind::Hash)
    }

    /// Removes the index on `field`.
    ///
    /// # Errors
    /// - [`Error::InvalidFieldPath`] if `field` is not a field path.
    /// - [`Error::NoIndex`] if `field` has no index.
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn drop_index(&self, field: &str) -> Result<()> {
        let path = FieldPath::parse(field)?;
        self.inner.commit(Record::DropIndex(path.as_str().to_owned())).map(|_| ())
    }

    /// Writes a new snapshot and drops the log records it holds. Writers
    /// are held only while the state is frozen (a copy-on-write clone) and
    /// the log is rotated, not while the snapshot is written.
    ///
    /// # Errors
    /// - [`Error::Io`] if the snapshot cannot be written, synced or renamed into
    ///   place, or the log cannot be rotated: the previous snapshot and the log
    ///   stay as they were, nothing acknowledged is lost.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn save(&self) -> Result<SaveReport> {
        self.inner.save()
    }

    /// Makes every write so far durable (useful with the relaxed modes).
    ///
    /// # Errors
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn sync(&self) -> Result<()> {
        self.inner.wal.sync_all()?;
        // The caller waited for the fsync anyway: it drops the undos the
        // fsync made unnecessary, rather than the next writers.
        self.inner.drop_durable();
        Ok(())
    }
}
