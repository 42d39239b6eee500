//! A change to the state, as the log records it: [`Record`] (set, delete,
//! batch, clear, expiry, index definitions), its sequence number [`Seq`] and
//! the absolute deadline of an expiring key ([`Expiry`]).
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

/// When a key expires: an absolute wall-clock time, milliseconds since the
/// Unix epoch (UTC). Absolute, not a time to live, so that replaying the log
/// or loading the snapshot on any machine, at any later time, gives the same
/// answer. The key is visible while the clock reads less than this, and
/// invisible from this millisecond on. Always at least 1 (0 is "never" in
/// the map's slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry(pub u64);

impl Expiry {
    /// The deadline as a `SystemTime`.
    pub fn to_system_time(self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0)
    }

    /// The deadline `time` names, in whole milliseconds rounded up (a key
    /// never expires before the time asked); times before 1970 give the
    /// earliest deadline, which has always passed.
    pub fn from_system_time(time: std::time::SystemTime) -> Expiry {
        let since = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let ms = since.as_millis() + u128::from(!since.subsec_nanos().is_multiple_of(1_000_000));
        Expiry(u64::try_from(ms).unwrap_or(u64::MAX).max(1))
    }

    /// The deadline `ttl` after `now_ms`, rounded up to a whole millisecond.
    pub fn after(now_ms: u64, ttl: std::time::Duration) -> Expiry {
        let ms = ttl.as_millis() + u128::from(!ttl.subsec_nanos().is_multiple_of(1_000_000));
        Expiry(now_ms.saturating_add(u64::try_from(ms).unwrap_or(u64::MAX)).max(1))
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
    /// Insert or replace `key`, expiring at the deadline.
    SetExpiring(String, Doc, Expiry),
    /// Give an existing `key` a deadline, or (None) remove its deadline; a
    /// no-op if the key is absent.
    Expire(String, Option<Expiry>),
}

/// A mutation, as logged.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Insert or replace a key (with no deadline: a key that had one loses it).
    Set(String, Doc),
    /// Insert or replace a key that expires at the deadline.
    SetExpiring(String, Doc, Expiry),
    /// Give an existing key a deadline, or (None) remove its deadline; a
    /// no-op if the key is absent when replayed.
    Expire(String, Option<Expiry>),
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
