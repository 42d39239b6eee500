//! The read methods of `Db`: gets, scans, index lookups, queries, stats.
//! Reads take the state's shared lock, or a frozen copy for long scans.
//! Every read judges expiry at the handle's clock: a key whose deadline has
//! come is invisible at once, whether or not the sweeper has removed it.

use std::sync::atomic::Ordering;

use std::ops::RangeBounds;

use serde_json::Value;

use super::{Db, Stats};
use crate::error::{Error, Result};
use crate::state::doc::Doc;
use crate::state::index::{FieldPath, IndexInfo};
use crate::state::listing::{Listing, Page};
use crate::state::query::{Query, QueryResult};
use crate::storage::record::Seq;

/// Keys from which a full-scan query runs on a thread of its own ([`Db::query`]).
/// Making the thread costs tens of microseconds: under 1 % of a scan of this many
/// values (about 15 ms, workload 10's 200,000 keys took 270-380 ms).
const SCAN_THREAD_MIN: usize = 10_000;

impl Db {
    /// The value of `key`: a shared handle to its JSON text, no copy and no
    /// parse. Read it with [`Doc::deserialize`] (into your own type) or
    /// [`Doc::to_value`]; [`Db::get_value`] and [`Db::get_as`] do both in one call.
    pub fn get(&self, key: &str) -> Option<Doc> {
        // The clock is read only if the key has a deadline (`Now`).
        self.inner.read_state().map.get(key, || self.inner.now()).cloned()
    }

    /// The value of `key` and the seq of the record that last wrote it, for
    /// an optimistic update: [`Batch::require_unchanged`](crate::Batch::require_unchanged) with that seq
    /// succeeds only if nothing wrote the key since. After a reopen, keys
    /// loaded from the snapshot report the snapshot's seq (the file keeps no
    /// per-key seq): never less than the true one.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// use redru::{Batch, json};
    /// db.set("n", json!(1))?;
    /// let (doc, seq) = db.get_with_seq("n").ok_or("missing")?;
    /// let next = doc.deserialize::<i64>()? + 1;
    /// db.batch(Batch::new().require_unchanged("n", seq).set("n", json!(next)))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn get_with_seq(&self, key: &str) -> Option<(Doc, Seq)> {
        self.inner.read_state().map.get_with_seq(key, || self.inner.now()).map(|(d, s)| (d.clone(), s))
    }

    /// The value of `key` parsed into a `serde_json::Value`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.get(key).map(|doc| doc.to_value())
    }

    /// The value of `key` deserialized into `T`; an error if it does not fit `T`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// #[derive(serde::Deserialize)]
    /// struct User { name: String }
    /// db.set("user:1", redru::json!({"name": "Alice", "age": 30}))?;
    /// let user: Option<User> = db.get_as("user:1")?;
    /// assert_eq!(user.map(|u| u.name).as_deref(), Some("Alice"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Deserialize`] (naming the key) if the stored value does not fit `T`.
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get(key)
            .map(|doc| {
                doc.deserialize().map_err(|e| match e {
                    Error::Deserialize { reason, .. } => Error::Deserialize { key: Some(key.to_owned()), reason },
                    other => other,
                })
            })
            .transpose()
    }

    /// Whether `key` exists.
    pub fn contains(&self, key: &str) -> bool {
        self.inner.read_state().map.get(key, || self.inner.now()).is_some()
    }

    /// Number of keys, exactly: keys whose deadline has come are not
    /// counted even before the sweeper removes them (the state keeps the
    /// deadlines in order, so this costs one step per such key).
    pub fn len(&self) -> usize {
        let now = self.inner.now();
        self.inner.read_state().live_len(now)
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key, sorted (byte order).
    pub fn keys(&self) -> Vec<String> {
        self.list(&Listing::all()).items
    }

    /// Every key starting with `prefix`, with its value, sorted by key.
    pub fn scan_prefix(&self, prefix: &str) -> Vec<(String, Doc)> {
        self.list_entries(&Listing::prefix(prefix)).items
    }

    /// The keys in `range`, in key order (byte order): `"user:".."user;"`,
    /// `"a"..="m"`, `"k"..`, `..`. For a prefix, a limit or a resume point,
    /// see [`Db::list`].
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// for k in ["user:2", "user:10", "team:1", "user:1"] {
    ///     db.set(k, redru::json!(1))?;
    /// }
    /// // ';' is the character after ':', so this is every key under "user:".
    /// assert_eq!(db.range("user:".."user;"), ["user:1", "user:10", "user:2"]);
    /// assert_eq!(db.range(.."user:1"), ["team:1"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn range<'a>(&self, range: impl RangeBounds<&'a str>) -> Vec<String> {
        self.list(&Listing::range(range)).items
    }

    /// One page of keys in key order, as `listing` says (a range, a prefix,
    /// a resume point, a limit): see [`Listing`] for an example. Walks the
    /// ordered key sets from the start, so a page of `n` keys costs about `n`
    /// steps whatever the database's size, and runs on a frozen copy of the
    /// state: writers never wait for it.
    pub fn list(&self, listing: &Listing) -> Page<String> {
        // The frozen copy is O(shards) to take; a writer copies a shard on its
        // first write to it while the copy is alive.
        let now = self.inner.now();
        let map = self.inner.frozen_in_order();
        listing.keys(&map, now)
    }

    /// Like [`Db::list`], with each key's value.
    pub fn list_entries(&self, listing: &Listing) -> Page<(String, Doc)> {
        let now = self.inner.now();
        let map = self.inner.frozen_in_order();
        listing.entries(&map, now)
    }

    /// The listing as it was before keys were kept in order: every key of a
    /// frozen copy scanned, those under `prefix` collected and sorted. Kept
    /// only as the benchmark's baseline (docs/benchmarks.md, workload 9).
    #[cfg(feature = "__internal_whitebox")]
    #[doc(hidden)]
    pub fn scan_sort_prefix(&self, prefix: &str) -> Vec<String> {
        let map = self.inner.read_state().map.clone();
        let mut keys: Vec<String> =
            map.iter(self.inner.now()).filter(|(k, _)| k.starts_with(prefix)).map(|(k, _)| k.to_string()).collect();
        keys.sort_unstable();
        keys
    }

    /// Every index with its statistics, by field.
    pub fn indexes(&self) -> Vec<IndexInfo> {
        self.inner.read_state().index_infos()
    }

    /// The keys (sorted) whose value's `field` equals `value`, through the
    /// index on `field`. Errors if there is no such index.
    ///
    /// # Errors
    /// - [`Error::InvalidFieldPath`] if `field` is not a field path.
    /// - [`Error::NoIndex`] if `field` has no index ([`Db::query`] scans instead).
    pub fn find(&self, field: &str, value: &Value) -> Result<Vec<String>> {
        let path = FieldPath::parse(field)?;
        let now = self.inner.now();
        let state = self.inner.read_state();
        let index = state.index(&path).ok_or_else(|| Error::NoIndex { field: path.to_string() })?;
        // The index lists expired keys until the sweeper removes them.
        Ok(index.find(value).filter(|k| state.map.get(k, now).is_some()).map(|k| k.to_string()).collect())
    }

    /// Like [`Db::find`], with each key's value.
    ///
    /// # Errors
    /// As [`Db::find`].
    pub fn find_entries(&self, field: &str, value: &Value) -> Result<Vec<(String, Doc)>> {
        let path = FieldPath::parse(field)?;
        let now = self.inner.now();
        let state = self.inner.read_state();
        let index = state.index(&path).ok_or_else(|| Error::NoIndex { field: path.to_string() })?;
        Ok(index.find(value).filter_map(|k| state.map.get(k, now).map(|v| (k.to_string(), v.clone()))).collect())
    }

    /// Runs a query: conditions joined by `and` (see [`Query::parse`]). An
    /// equality on an indexed field is answered through the index; otherwise
    /// the keys are scanned. The result says which plan ran.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = redru::Db::open(dir.path())?;
    /// use redru::{Query, json};
    /// db.set("u1", json!({"name": "Alice", "age": 30}))?;
    /// db.set("u2", json!({"name": "Alice", "age": 20}))?;
    /// db.create_index("name")?;
    /// let result = db.query(&Query::parse("name = Alice and age >= 25")?)?;
    /// assert_eq!(result.entries.len(), 1);
    /// assert!(result.plan.to_string().starts_with("index lookup on `name`"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// None today: a query is checked when it is parsed ([`Error::InvalidQuery`]
    /// from [`Query::parse`]); the `Result` leaves room for queries that can fail.
    pub fn query(&self, query: &Query) -> Result<QueryResult> {
        let now = self.inner.now();
        let state = self.inner.read_state();
        if let Some(result) = crate::state::query::run_indexed(&state, query, now) {
            return Ok(result);
        }
        // A scan runs on a frozen copy of the map (O(shards) to take), so
        // writers never wait for it however long it is; they copy a shard
        // on their first write to it while the copy is alive.
        let map = state.map.clone();
        drop(state);
        let scan = || crate::state::query::scan(&map, query, now);
        if map.len() < SCAN_THREAD_MIN {
            return Ok(scan());
        }
        // A long scan runs on a thread of its own: with glibc, a thread
        // allocates from its own arena, and the scan's allocations in the
        // caller's arena kept its lock busy enough that a writer freeing
        // into that arena waited 12-22 ms for it (issue 17, workload 10
        // at 200,000 keys: 4.6-6.2 ms this way). If no thread can be
        // made, the scan runs here.
        Ok(std::thread::scope(|s| match std::thread::Builder::new().name("redru-scan".into()).spawn_scoped(s, scan) {
            Ok(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => scan(),
        }))
    }

    /// Counters and sizes.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let (last_seq, wal_bytes, wal_segments) = {
            let w = inner.wal.lock();
            (w.written(), w.total_bytes(), w.segments())
        };
        let (snapshot_seq, snapshot_bytes) = {
            let s = inner.snap();
            (s.seq.0, s.bytes)
        };
        let now = inner.now();
        let state = inner.read_state();
        Stats {
            dir: inner.dir.clone(),
            keys: state.live_len(now),
            expiring: state.expiring_len(now),
            last_seq: last_seq.0,
            durable_seq: inner.wal.synced().0,
            snapshot_seq,
            snapshot_bytes,
            wal_bytes,
            wal_segments,
            wal_syncs: inner.wal.syncs(),
            durability: inner.options.durability.to_string(),
            compactions: inner.compactions.load(Ordering::Relaxed),
            failed_compactions: inner.failed_compactions.load(Ordering::Relaxed),
            last_compaction_error: inner.last_compaction_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            poisoned: inner.wal.check_poisoned().err().map(|e| e.to_string()),
            indexes: state.index_infos(),
        }
    }
}
