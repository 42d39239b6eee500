//! `Inner`: the commit path (check, append, apply, wait for the fsync), the
//! rollback of records not known durable after a failed write, automatic
//! compaction and `save`. One lock order for all of them: the log's writer,
//! then the state, then the pending undos.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Inner, PENDING_BYTES, PENDING_TRIM_CHUNKS, Pending, SaveReport, SnapMeta};
use crate::error::{Error, Result};
use crate::options::Durability;
use crate::state::store::{Applied, Map, State, Undo};
use crate::storage::log::{self, Wal, Writer};
use crate::storage::record::{Record, Seq};
use crate::storage::snapshot::{self, Frozen, SnapshotInfo};

/// How much waits in the undos for the log to be synced ([`PENDING_BYTES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Crowding {
    /// Under the limit.
    Room,
    /// Over it: a sync is started on the side.
    Crowded,
    /// Over twice the limit: the writer syncs before it returns.
    Full,
}

impl Inner {
    /// The state for reading. Once the log has failed, first takes back
    /// every record not known durable (once), so no read shows one.
    #[inline]
    pub(super) fn read_state(&self) -> RwLockReadGuard<'_, State> {
        if self.wal.is_poisoned() {
            self.roll_back();
        }
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps how to undo record `seq` until it is known durable (called
    /// under the writer lock, so the log cannot fail between the apply and
    /// this). Returns how much is waiting for the log to be synced. Drops at
    /// most [`PENDING_TRIM_CHUNKS`] chunks of durable undos itself, so that a
    /// write never pays for a large sync's worth (the thread that waited for
    /// the sync drops those: [`Inner::drop_durable`]).
    pub(super) fn remember(&self, seq: Seq, undo: Undo) -> Crowding {
        // How far the log is synced, without the group-commit lock: a relaxed
        // bulk load took that lock at every write to learn that nothing was
        // (issue 18); a lower bound only ever drops fewer undos.
        let durable = self.wal.synced_lockless();
        let (held, done) = {
            let mut pending = self.pending();
            let done = pending.take_durable(durable, PENDING_TRIM_CHUNKS);
            (pending.push(seq, undo), done)
        };
        drop(done);
        match held {
            held if held >= 2 * PENDING_BYTES => Crowding::Full,
            held if held >= PENDING_BYTES => Crowding::Crowded,
            _ => Crowding::Room,
        }
    }

    /// Drops every undo the log's syncs made unnecessary, outside the
    /// pending lock (a million took 90-360 ms: long, but not a writer's),
    /// taking them a few hundred chunks at a time so that a writer never
    /// waits long for that lock.
    pub(super) fn drop_durable(&self) {
        let durable = self.wal.synced();
        loop {
            let done = self.pending().take_durable(durable, 256);
            if done.is_empty() {
                return;
            }
            drop(done);
        }
    }

    /// Syncs the log up to `seq` on a thread of its own (one at a time), so
    /// that the undos it makes droppable are freed without a writer waiting
    /// for the fsync or for their drop. A failed sync poisons the log: the
    /// next write reports it and the next read rolls back (as with any failed sync).
    fn relieve(self: &Arc<Self>, seq: Seq) {
        let inner = Arc::clone(self);
        // Without a thread the next writers find the undos growing, up to
        // twice the limit, where one of them syncs itself.
        spawn_alone(&self.relief, "redru-relieve", move || {
            if inner.wal.wait_durable(seq, "an earlier write").is_ok() {
                inner.drop_durable();
            }
        });
    }

    /// Takes back, newest first, every applied record after the last durable
    /// one. Runs once, on the first read after the log failed; the failure was
    /// set under the writer lock, after which nothing more is applied.
    #[cold]
    pub(super) fn roll_back(&self) {
        let mut pending = self.pending();
        if pending.rolled_back {
            return;
        }
        let durable = self.wal.synced();
        let mut state = self.write_state();
        let undos = std::iter::from_fn(|| pending.pop_back()).take_while(|(seq, _)| *seq > durable);
        state.roll_back(durable, undos.map(|(_, undo)| undo));
        pending.clear();
        pending.rolled_back = true;
    }

    /// A frozen copy of the map with every shard's key order built, for a
    /// listing. An open leaves every order deferred
    /// ([`Map::defer_orders`](crate::state::store::Map::defer_orders)), as
    /// does a bulk load into empty shards: the first listing sorts them on a
    /// frozen copy, outside the locks (136 ms at 1,000,000 keys: writers
    /// must not wait for it, issue 17), while writers note the keys they
    /// write to those shards; the orders are then installed with those keys
    /// applied, under the state's write lock for that long only. Every later
    /// write keeps the orders. One listing builds at a time.
    pub(super) fn frozen_in_order(&self) -> Map {
        {
            let state = self.read_state();
            if !state.map.orders_deferred() {
                return state.map.clone();
            }
        }
        let _building = self.order_build.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let mut frozen = {
                let mut state = self.write_state();
                if !state.map.orders_deferred() {
                    return state.map.clone();
                }
                state.map.start_catch_up();
                state.map.clone()
            };
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
            frozen.build_orders(threads);
            let built = frozen.take_orders();
            // The copy's shards go first, so the installed orders are not shared.
            drop(frozen);
            #[cfg(test)]
            tests::WHILE_SORTING.with(|hook| hook.take().map(|f| f(self)));
            let mut state = self.write_state();
            state.map.finish_catch_up(built);
            if !state.map.orders_deferred() {
                return state.map.clone();
            }
            // A restore installed a state of its own meanwhile (loaded, so
            // with every order deferred and none being caught up): the
            // orders built are not its keys', so build its own.
        }
    }

    pub(super) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn snap(&self) -> MutexGuard<'_, SnapMeta> {
        self.snap.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn commit(self: &Arc<Self>, record: Record) -> Result<Applied> {
        self.commit_with(record, None)
    }

    /// `parsed`: a `Set` record's value as the caller gave it, if it did.
    pub(super) fn check_writable(&self) -> Result<()> {
        if self.options.read_only { Err(Error::ReadOnly { dir: self.dir.clone() }) } else { Ok(()) }
    }

    pub(super) fn commit_with(self: &Arc<Self>, record: Record, parsed: Option<&Value>) -> Result<Applied> {
        let written = self.commit_checked(parsed, |_| Ok(Some((record, None))))?;
        Ok(written.map_or(Applied { existed: false }, |(_, applied)| applied))
    }

    /// Under the writer lock, `decide` sees the state after every record
    /// logged so far and returns the record to log (or None: nothing is
    /// logged), so that a conditional write's check and its record are one
    /// step. `decide` gets the time this write is judged at ([`Inner::now`],
    /// read once, under the lock: the record and its check see the same
    /// time). Returns the record's seq and what applying it found.
    pub(super) fn commit_decided(
        self: &Arc<Self>,
        parsed: Option<&Value>,
        decide: impl FnOnce(&Inner, u64) -> Result<Option<Record>>,
    ) -> Result<Option<(Seq, Applied)>> {
        self.commit_checked(parsed, |inner| {
            let now = inner.now();
            Ok(decide(inner, now)?.map(|record| (record, Some(now))))
        })
    }

    /// The commit path of [`Inner::commit_decided`]. `decide` also returns
    /// the time it judged the record at, if it read the clock; otherwise the
    /// check reads it only if it needs it (a unique index), so that a plain
    /// set reads no clock (issue 18).
    fn commit_checked(
        self: &Arc<Self>,
        parsed: Option<&Value>,
        decide: impl FnOnce(&Inner) -> Result<Option<(Record, Option<u64>)>>,
    ) -> Result<Option<(Seq, Applied)>> {
        self.check_writable()?;
        // Counted until acknowledged: the group commit's leader waits for
        // other writers only when there are some.
        let _in_flight = self.wal.enter();
        let (seq, applied, compact, crowded) = {
            let mut writer = self.wal.lock();
            self.wal.check_poisoned()?;
            // `decide` takes the state's read lock itself, for as long as
            // it needs it: `Db::update` must not hold it while the caller's
            // closure runs (a read from inside it could then deadlock
            // behind a rollback waiting to write).
            let Some((record, now)) = decide(self)? else { return Ok(None) };
            self.read_state().check_with(&record, parsed, || now.unwrap_or_else(|| self.now()))?;
            let seq = match writer.append(&record) {
                Ok(seq) => seq,
                Err(e) => {
                    // Part of the line may be in the file: nothing more may follow it.
                    self.wal.poison(&e);
                    return Err(e);
                }
            };
            let (applied, undo) = self.write_state().apply_undoable(seq, &record, parsed);
            // A record that only created keys keeps no undo (the rollback
            // finds those keys by their seq), and holds nothing alive.
            let crowded = if undo.is_needed() { self.remember(seq, undo) } else { Crowding::Room };
            if self.feed.wanted() {
                self.feed.offer(seq, record);
            }
            (seq, applied, self.wants_compaction(&writer), crowded)
        };
        if compact {
            self.start_compaction();
        }
        match crowded {
            _ if self.options.durability == Durability::Always => self.wal.wait_durable(seq, "this write")?,
            Crowding::Full => {
                // The disk is slower than the writers: this one waits, and
                // (having waited anyway) drops what the sync freed.
                self.wal.wait_durable(seq, "this write")?;
                self.drop_durable();
            }
            Crowding::Crowded => self.relieve(seq),
            Crowding::Room => {}
        }
        Ok(Some((seq, applied)))
    }

    pub(super) fn wants_compaction(&self, writer: &Writer) -> bool {
        if !self.options.auto_compact {
            return false;
        }
        let wal = writer.total_bytes();
        let snapshot = self.snap().bytes;
        // Backing off after a failure: retrying at every write would rotate
        // a new segment each time and fail again (a full disk).
        wal > self.options.auto_compact_min_bytes
            && wal as f64 > snapshot as f64 * self.options.auto_compact_ratio
            && wal >= self.compaction_retry_at.load(Ordering::Relaxed)
    }

    pub(super) fn start_compaction(self: &Arc<Self>) {
        let inner = Arc::clone(self);
        spawn_alone(&self.compactor, "redru-compact", move || {
            let outcome = inner.save();
            match &outcome {
                Ok(_) => inner.compactions.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    let grown = inner.wal.lock().total_bytes().saturating_add(inner.options.auto_compact_min_bytes);
                    inner.compaction_retry_at.store(grown.max(1), Ordering::Relaxed);
                    inner.failed_compactions.fetch_add(1, Ordering::Relaxed)
                }
            };
            *inner.last_compaction_error.lock().unwrap_or_else(|p| p.into_inner()) =
                outcome.err().map(|e| e.to_string());
        });
    }

    pub(super) fn save(&self) -> Result<SaveReport> {
        self.check_writable()?;
        let _one_at_a_time = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        // Sync the log before holding writers: the rotation's fsync below then
        // covers only what was appended in between (measured in benches/engine.rs).
        self.wal.sync_all()?;
        let held = Instant::now();
        let frozen = {
            let mut writer = self.wal.lock();
            self.wal.check_poisoned()?;
            let state = self.read_state();
            let snap = self.snap();
            if snap.exists && snap.seq == state.seq {
                return Ok(SaveReport {
                    seq: snap.seq.0,
                    keys: state.live_len(self.now()),
                    bytes: snap.bytes,
                    segments_removed: 0,
                    unchanged: true,
                    duration: started.elapsed(),
                    writers_blocked: started.elapsed(),
                });
            }
            drop(snap);
            let mut frozen = Frozen::of(&state, self.now());
            drop(state);
            // The rotation below leaves the log continuing in wal-<S+1>,
            // header first and durable before the snapshot exists: the
            // snapshot says so, so that emptying that segment is detected.
            frozen.continues = Some(frozen.seq.next());
            // Everything up to frozen.seq goes to older, synced segments.
            if let Err(failed) = writer.rotate() {
                // A segment that could not be created changed nothing.
                if !failed.intact {
                    self.wal.poison(&failed.error);
                }
                return Err(failed.error);
            }
            self.wal.mark_synced(writer.written());
            frozen
        };
        let writers_blocked = held.elapsed();
        let info: SnapshotInfo = snapshot::write_atomic(&*self.vfs, &self.dir, &frozen, self.options.observer())?;
        {
            let mut snap = self.snap();
            snap.seq = info.seq;
            snap.bytes = info.bytes;
            snap.exists = true;
        }
        // Unlinking happens without the writer lock: it is the slowest step writers would wait on.
        let covered = self.wal.lock().take_older(info.seq);
        let segments_removed = log::remove_segments(&*self.vfs, &self.dir, &covered)?;
        self.compaction_retry_at.store(0, Ordering::Relaxed);
        Ok(SaveReport {
            seq: info.seq.0,
            keys: info.keys,
            bytes: info.bytes,
            segments_removed,
            unchanged: false,
            duration: started.elapsed(),
            writers_blocked,
        })
    }
}

/// Runs `flush` (a sync, or handing the buffer to the OS) on the log every interval.
pub(super) fn spawn_flusher(
    inner: Weak<Inner>,
    every: Duration,
    flush: fn(&Wal) -> Result<()>,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    // A zero interval would spin on the writer lock.
    let every = every.max(Duration::from_millis(1));
    let spawned = std::thread::Builder::new().name("redru-flush".into()).spawn(move || {
        loop {
            match stopped.recv_timeout(every) {
                Err(mpsc::RecvTimeoutError::Timeout) => match inner.upgrade() {
                    // A failed sync or write poisons the log; the next write reports it.
                    Some(inner) => {
                        let _ = flush(&inner.wal);
                    }
                    None => return,
                },
                _ => return,
            }
        }
    });
    let handle =
        spawned.map_err(|e| Error::Io { action: "starting", path: "the log flush thread".into(), source: e })?;
    Ok((stop, handle))
}

/// Runs `work` on a thread of its own unless the one `slot` holds is still
/// running (then `work` is dropped: the running one does the same job);
/// a finished one is joined first. A thread that cannot be started leaves
/// the slot empty: the caller's next attempt tries again.
fn spawn_alone(slot: &Mutex<Option<JoinHandle<()>>>, name: &str, work: impl FnOnce() + Send + 'static) {
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if slot.as_ref().is_some_and(|h| !h.is_finished()) {
        return;
    }
    if let Some(done) = slot.take() {
        let _ = done.join();
    }
    if let Ok(handle) = std::thread::Builder::new().name(name.into()).spawn(work) {
        *slot = Some(handle);
    }
}

/// Waits for the thread `slot` holds, if any (at close).
pub(super) fn join_slot(slot: &Mutex<Option<JoinHandle<()>>>) {
    let handle = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(handle) = handle {
        let _ = handle.join();
    }
}

#[cfg(test)]
mod tests {
    use crate::{Db, Durability, Options};

    /// Something another thread does, run on the listing's thread.
    type Meanwhile = Box<dyn FnOnce(&super::Inner)>;

    thread_local! {
        /// Run by [`Inner::frozen_in_order`](super::Inner) on its thread
        /// between its sort and the install of the orders, with no lock
        /// held: what another thread may do meanwhile.
        pub(super) static WHILE_SORTING: std::cell::Cell<Option<Meanwhile>> = const { std::cell::Cell::new(None) };
    }

    /// A restore that installs its state while the first listing sorts
    /// (a loaded state: every order deferred, none being caught up) takes
    /// none of the orders built for the state before it: the listing sorts
    /// again, for the new state, and lists exactly its keys.
    #[test]
    fn a_state_installed_during_the_sort_gets_orders_of_its_own() -> crate::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::io("creating", "a temporary directory", e))?;
        let db: Db = Options::new().durability(Durability::Never).auto_compact(false).open(dir.path())?;
        for i in 0..3000u64 {
            db.set(format!("old:{i}").as_str(), crate::json!(i))?;
        }
        let mut restored = crate::state::store::State::default();
        let mut model: Vec<String> = (0..2000u64).map(|i| format!("new:{}", i * 7 % 2000)).collect();
        for key in &model {
            restored.map.insert(key.as_str().into(), crate::state::doc::Doc::from(crate::json!(1)), super::Seq(1));
        }
        // As a snapshot's load leaves it.
        restored.map.defer_orders();
        model.sort();
        WHILE_SORTING.with(|hook| {
            hook.set(Some(Box::new(move |inner: &super::Inner| *inner.write_state() = restored)));
        });
        assert_eq!(db.keys(), model);
        assert!(!db.inner.read_state().map.orders_deferred());
        Ok(())
    }

    /// Issue 17: a relaxed writer's set after a sync dropped every undo the
    /// sync made unnecessary, under the writer lock (a million: 90-360 ms,
    /// workload 10's longest stalls). A write drops at most a few chunks.
    #[test]
    fn a_write_after_a_sync_drops_a_bounded_number_of_undos() -> crate::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::io("creating", "a temporary directory", e))?;
        let db: Db = Options::new().durability(Durability::Never).auto_compact(false).open(dir.path())?;
        let n = 10_000;
        // Overwrites: a set that creates a key keeps no undo.
        for i in 0..n + 10 {
            db.set(format!("k{}", i % 10), crate::json!(i))?;
        }
        assert_eq!(db.inner.pending().len(), n);
        // A sync no caller waits for the drop of (as the log's own syncs).
        db.inner.wal.sync_all()?;
        db.set("k0", crate::json!(1))?;
        let kept = db.inner.pending().len();
        let bound = super::PENDING_TRIM_CHUNKS * 64;
        assert!(kept + bound > n, "one write dropped {} undos, at most {bound} expected", n + 1 - kept);
        // The thread that waited for a sync drops the rest.
        db.inner.drop_durable();
        assert!(db.inner.pending().len() <= 64 + 1);
        Ok(())
    }

    /// Issue 18: a new database keeps no key order while keys go in, nor
    /// does a reopened one; the first listing builds it, and later writes keep it. Every listing
    /// sees exactly the keys, in order, whether the orders were deferred,
    /// built, or kept write by write (deletes and undone writes included).
    #[test]
    fn listings_see_every_key_in_order_across_the_deferred_key_orders() -> crate::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::io("creating", "a temporary directory", e))?;
        let mut db: Db = Options::new().durability(Durability::Never).auto_compact(false).open(dir.path())?;
        assert!(db.inner.read_state().map.orders_deferred());
        let mut model = std::collections::BTreeSet::new();
        // Keys in an order unlike byte order, some deleted.
        for i in 0..3000u64 {
            let key = format!("k{}", i.wrapping_mul(7919) % 5000);
            db.set(key.as_str(), crate::json!(i))?;
            model.insert(key);
        }
        for key in model.iter().step_by(3).cloned().collect::<Vec<_>>() {
            assert!(db.delete(&key)?);
            model.remove(&key);
        }
        assert!(db.inner.read_state().map.orders_deferred());
        assert_eq!(db.keys(), model.iter().cloned().collect::<Vec<_>>());
        assert!(!db.inner.read_state().map.orders_deferred());
        for i in 0..500u64 {
            let key = format!("n{}", i.wrapping_mul(31) % 400);
            db.set(key.as_str(), crate::json!(i))?;
            model.insert(key);
        }
        db.delete("n7")?;
        model.remove("n7");
        assert_eq!(db.keys(), model.iter().cloned().collect::<Vec<_>>());
        let page = db.list(&crate::Listing::prefix("n1").limit(5));
        let expected: Vec<String> = model.iter().filter(|k| k.starts_with("n1")).take(5).cloned().collect();
        assert_eq!(page.items, expected);
        // Reopened, from the log and then from a snapshot: the open sorts
        // no keys, the first listing does.
        for save in [false, true] {
            if save {
                db.save()?;
            }
            db.close()?;
            db = Options::new().durability(Durability::Never).auto_compact(false).open(dir.path())?;
            assert!(db.inner.read_state().map.orders_deferred(), "the open sorted keys (saved: {save})");
            assert_eq!(db.keys(), model.iter().cloned().collect::<Vec<_>>());
            assert!(!db.inner.read_state().map.orders_deferred());
        }
        Ok(())
    }

    /// Issue 17: the first listing sorts the deferred orders outside the
    /// locks while a writer inserts and deletes; the keys written during
    /// the sort are in the installed orders, none missed, none left over.
    #[test]
    fn a_first_listing_during_writes_installs_orders_that_miss_nothing() -> crate::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::io("creating", "a temporary directory", e))?;
        let db: Db = Options::new().durability(Durability::Never).auto_compact(false).open(dir.path())?;
        for i in 0..20_000u64 {
            db.set(format!("k{i}").as_str(), crate::json!(i))?;
        }
        let writer = || -> crate::Result<()> {
            for i in 0..3000u64 {
                db.set(format!("w{i}").as_str(), crate::json!(i))?;
                if i % 3 == 0 {
                    db.delete(&format!("k{i}"))?;
                }
            }
            Ok(())
        };
        std::thread::scope(|s| -> crate::Result<()> {
            let writing = s.spawn(writer);
            for _ in 0..3 {
                let keys = db.keys();
                assert!(keys.windows(2).all(|w| w[0] < w[1]), "a listing is in order");
            }
            writing.join().expect("the writer thread")
        })?;
        let mut model: Vec<String> =
            (0..20_000u64).filter(|i| i % 3 != 0 || *i >= 3000).map(|i| format!("k{i}")).collect();
        model.extend((0..3000u64).map(|i| format!("w{i}")));
        model.sort();
        assert_eq!(db.keys(), model);
        assert!(!db.inner.read_state().map.orders_deferred());
        Ok(())
    }
}
