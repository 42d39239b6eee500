//! A change to the state, as the log records it: [`Record`] (set, delete,
//! batch, clear, index definitions) and its sequence number [`Seq`].
//!
//! Pure data: the state applies records (`State::apply`), the storage layer
//! encodes them as log lines (storage::record). Neither form knows the other.

use crate::state::doc::Doc;
use crate::state::index::IndexKind;

/// A record's sequence number: strictly increasing by one across the whole log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl Seq {
    /// The sequence number after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One operation of an atomic batch.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchOp {
    /// Insert or replace `key`.
    Set(String, Doc),
    /// Remove `key` (a no-op if it is absent).
    Delete(String),
    /// Remove every key (what follows in the batch is applied to an empty map).
    Clear,
}

/// A mutation, as logged.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Insert or replace a key.
    Set(String, Doc),
    /// Remove a key.
    Delete(String),
    /// Several operations applied all together or not at all.
    Batch(Vec<BatchOp>),
    /// Remove every key (index definitions stay).
    Clear,
    /// Define an index on a field path.
    CreateIndex {
        /// The field path, as the user wrote it.
        field: String,
        /// Whether two keys may share a value.
        unique: bool,
        /// Hash or ordered (logged as `"ordered":true`; absent means hash).
        kind: IndexKind,
    },
    /// Remove an index definition.
    DropIndex(String),
}
