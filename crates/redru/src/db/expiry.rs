//! Expiry on `Db`: writes with a deadline, `expire`, `persist`, `ttl`, and
//! the sweeper that removes expired keys by logging their deletion.
//!
//! Every deadline is decided under the writer lock from the handle's clock
//! and logged as an absolute time, so replay never reads a clock. A key is
//! invisible from its deadline on (the reads check); the sweeper only frees
//! what it held, a few hundred keys per record so writers wait little.

use std::cell::Cell;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::{Db, Inner};
use crate::error::{Error, Result};
use crate::state::doc::IntoDoc;
use crate::storage::record::{BatchOp, Expiry, Record};

/// Keys one sweeper record deletes: applying 256 deletes holds writers well
/// under a millisecond (docs/benchmarks.md), and each record is small.
const SWEEP_BATCH: usize = 256;

/// What [`Db::ttl`] finds, as Redis's `TTL` distinguishes it (-2, -1, or the time left).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// No such key (or it has expired). Redis answers -2.
    Missing,
    /// The key exists and never expires. Redis answers -1.
    Persistent,
    /// The key expires at `at`, `left` from now (never zero: at its
    /// deadline a key is already [`Ttl::Missing`]).
    Expires {
        /// Time left, in whole milliseconds.
        left: Duration,
        /// The deadline.
        at: SystemTime,
    },
}

impl Ttl {
    /// The time left, if the key expires.
    pub fn left(self) -> Option<Duration> {
        match self {
            Ttl::Expires { left, .. } => Some(left),
            _ => None,
        }
    }
}

impl Db {
    /// Sets `key` to `value`, expiring `ttl` from now: from then on no read
    /// sees it, and the sweeper removes it. The deadline is logged as an
    /// absolute wall-clock time (ms since the Unix epoch), rounded up to a
    /// whole millisecond. A zero `ttl` deletes the key (it would be invisible
    /// at once). A later [`Db::set`] of the key clears the deadline.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// use std::time::Duration;
    /// db.set_with_ttl("session:1", redru::json!({"user": 7}), Duration::from_secs(600))?;
    /// assert!(db.ttl("session:1").left().is_some_and(|left| left <= Duration::from_secs(600)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Db::set`].
    pub fn set_with_ttl<'a>(&self, key: impl Into<String>, value: impl IntoDoc<'a>, ttl: Duration) -> Result<()> {
        self.set_expiring(key.into(), value, |now| Some(Expiry::after(now, ttl)))
    }

    /// Sets `key` to `value`, expiring at `at` (a time already past deletes the key).
    ///
    /// # Errors
    /// As [`Db::set`].
    pub fn set_expiring_at<'a>(&self, key: impl Into<String>, value: impl IntoDoc<'a>, at: SystemTime) -> Result<()> {
        self.set_expiring(key.into(), value, |_| Some(Expiry::from_system_time(at)))
    }

    /// Sets `key` to `value`, keeping the deadline the key has (Redis's
    /// `SET ... KEEPTTL`); like [`Db::set`] if it has none or is absent.
    ///
    /// # Errors
    /// As [`Db::set`].
    pub fn set_keep_ttl<'a>(&self, key: impl Into<String>, value: impl IntoDoc<'a>) -> Result<()> {
        self.set_expiring(key.into(), value, |_| None)
    }

    /// The write behind the `set_*` forms: `deadline(now)` gives the key's
    /// deadline; None keeps the one it has (KEEPTTL).
    fn set_expiring<'a>(
        &self,
        key: String,
        value: impl IntoDoc<'a>,
        deadline: impl FnOnce(u64) -> Option<Expiry>,
    ) -> Result<()> {
        let (doc, parsed) = value.into_parts();
        self.inner
            .commit_decided(parsed.as_deref(), |inner, now| {
                let exp = match deadline(now) {
                    Some(exp) => Some(exp),
                    None => inner.read_state().map.expiry(&key, now).flatten(),
                };
                Ok(Some(match exp {
                    None => Record::Set(key, doc),
                    Some(exp) if exp.0 > now => Record::SetExpiring(key, doc, exp),
                    // Already due: the same outcome as a delete, and nothing expired is stored.
                    Some(_) if inner.read_state().map.get(&key, now).is_some() => Record::Delete(key),
                    Some(_) => return Ok(None),
                }))
            })
            .map(|_| ())
    }

    /// Gives `key` a deadline `ttl` from now, replacing any it had. Returns
    /// whether the key exists (false: nothing changed). A zero `ttl`
    /// deletes the key, as Redis's `EXPIRE k 0` does.
    ///
    /// # Errors
    /// - [`Error::Io`] if the log cannot be written or synced: the write is not
    ///   acknowledged, and the handle refuses writes ([`Error::Poisoned`]) until reopened.
    /// - [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.change_deadline(key, |now| Some(Expiry::after(now, ttl)))
    }

    /// Gives `key` the deadline `at` (a time already past deletes the key).
    /// Returns whether the key exists.
    ///
    /// # Errors
    /// As [`Db::expire`].
    pub fn expire_at(&self, key: &str, at: SystemTime) -> Result<bool> {
        self.change_deadline(key, |_| Some(Expiry::from_system_time(at)))
    }

    /// Removes the deadline of `key`. Returns whether it had one (false if
    /// the key is absent or never expired; nothing is logged then), as
    /// Redis's `PERSIST` answers 1 or 0.
    ///
    /// # Errors
    /// As [`Db::expire`].
    pub fn persist(&self, key: &str) -> Result<bool> {
        self.change_deadline(key, |_| None)
    }

    fn change_deadline(&self, key: &str, deadline: impl FnOnce(u64) -> Option<Expiry>) -> Result<bool> {
        let changed = Cell::new(false);
        self.inner.commit_decided(None, |inner, now| {
            // A key expired but not yet swept is absent: changing its
            // deadline must not bring it back.
            let Some(current) = inner.read_state().map.expiry(key, now) else { return Ok(None) };
            let record = match deadline(now) {
                Some(exp) if exp.0 <= now => Record::Delete(key.to_owned()),
                Some(exp) => Record::Expire(key.to_owned(), Some(exp)),
                None if current.is_none() => return Ok(None),
                None => Record::Expire(key.to_owned(), None),
            };
            changed.set(true);
            Ok(Some(record))
        })?;
        Ok(changed.get())
    }

    /// Whether `key` exists and, if it expires, when.
    pub fn ttl(&self, key: &str) -> Ttl {
        let now = self.inner.now();
        match self.inner.read_state().map.expiry(key, now) {
            None => Ttl::Missing,
            Some(None) => Ttl::Persistent,
            Some(Some(exp)) => Ttl::Expires { left: Duration::from_millis(exp.0 - now), at: exp.to_system_time() },
        }
    }

    /// Removes every key expired by now, logging their deletion (records of
    /// at most 256 deletes, so writers wait little for each). Returns how
    /// many it removed. The background sweeper ([`Options::sweep_interval`](crate::Options::sweep_interval))
    /// does this on its own; call it to free the space at a known moment.
    ///
    /// # Errors
    /// - [`Error::ReadOnly`] on a read-only handle.
    /// - [`Error::Io`], [`Error::Poisoned`] as [`Db::delete`].
    pub fn sweep_expired(&self) -> Result<usize> {
        self.inner.sweep()
    }
}

impl Inner {
    /// One sweep: records of up to [`SWEEP_BATCH`] deletes until no key is due.
    pub(super) fn sweep(self: &Arc<Self>) -> Result<usize> {
        self.check_writable()?;
        let mut removed = 0;
        loop {
            let taken = Cell::new(0);
            self.commit_decided(None, |inner, now| {
                // Chosen under the writer lock: no write can come between
                // finding a key expired and logging its deletion.
                let due = inner.read_state().expired(now, SWEEP_BATCH);
                taken.set(due.len());
                Ok(match due.len() {
                    0 => None,
                    1 => due.into_iter().next().map(|k| Record::Delete(k.to_string())),
                    _ => Some(Record::Batch(due.into_iter().map(|k| BatchOp::Delete(k.to_string())).collect())),
                })
            })?;
            removed += taken.get();
            if taken.get() < SWEEP_BATCH {
                return Ok(removed);
            }
        }
    }

    /// Whether a key's deadline has come (a look at the earliest one).
    fn sweep_due(&self) -> bool {
        let next = self.read_state().next_deadline();
        next.is_some_and(|e| e.0 <= self.now())
    }
}

/// Sweeps every interval while the handle lives. Holds only a `Weak`, so it
/// never keeps the database open; errors (a poisoned log) wait for the next
/// write to be reported.
pub(super) fn spawn_sweeper(inner: Weak<Inner>, every: Duration) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    let every = every.max(Duration::from_millis(1));
    let spawned = std::thread::Builder::new().name("redru-sweep".into()).spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
            let Some(inner) = inner.upgrade() else { return };
            if inner.sweep_due() {
                let _ = inner.sweep();
            }
        }
    });
    let handle =
        spawned.map_err(|e| Error::Io { action: "starting", path: "the expiry sweeper thread".into(), source: e })?;
    Ok((stop, handle))
}
