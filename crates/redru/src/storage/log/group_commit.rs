//! Group commit: writers on many threads share fsyncs. One leader syncs for
//! all records appended before its fsync started and wakes exactly the
//! writers it covered; a failed fsync poisons the log for every writer.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;

use super::watch::DurableWatch;
use super::writer::Writer;
use crate::error::{Error, Result};
use crate::storage::record::Seq;

pub(super) struct SyncState {
    synced: Seq,
    /// Some thread is syncing (or has been handed the role and is about to).
    leader: bool,
    poisoned: Option<String>,
    syncs: u64,
    /// Writers parked until an fsync covers their record, oldest first.
    pub(super) waiters: Vec<Waiter>,
}

impl SyncState {
    /// Takes out the waiters whose records are durable now.
    fn take_covered(&mut self) -> Vec<Arc<Parked>> {
        let synced = self.synced;
        let mut covered = Vec::new();
        self.waiters.retain(|w| {
            let keep = w.seq > synced;
            if !keep {
                covered.push(Arc::clone(&w.parked));
            }
            keep
        });
        covered
    }
}

/// A writer parked in [`Wal::wait_durable`]: the record it waits for, and how to wake it.
pub(super) struct Waiter {
    seq: Seq,
    parked: Arc<Parked>,
}

/// Wakes one parked writer with what it needs to know, so that it need not
/// take the sync lock again: each fsync wakes only the writers it covered,
/// and they do not queue on a lock on their way out.
struct Parked {
    thread: Thread,
    outcome: AtomicU8,
}

/// Still waiting.
const WAITING: u8 = 0;
/// An fsync covered the record: it is durable.
const COVERED: u8 = 1;
/// The leader handed its role on: sync on behalf of the waiters.
const LEAD: u8 = 2;
/// Something else changed (the log was poisoned): look again under the lock.
const RECHECK: u8 = 3;

impl Parked {
    fn new() -> Arc<Parked> {
        Arc::new(Parked { thread: std::thread::current(), outcome: AtomicU8::new(WAITING) })
    }

    /// Parks until woken, then says why.
    fn wait(&self) -> u8 {
        loop {
            match self.outcome.load(Ordering::Acquire) {
                WAITING => std::thread::park(),
                outcome => return outcome,
            }
        }
    }

    /// Called with the waiter already out of the list, so it is woken once.
    fn wake(&self, outcome: u8) {
        self.outcome.store(outcome, Ordering::Release);
        self.thread.unpark();
    }
}

/// The log: the writer behind a mutex, and the group-commit state.
pub struct Wal {
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    /// Set (under the sync lock) when `poisoned` is, so that writes check it without that lock.
    poisoned: AtomicBool,
    /// `synced`, published for the change feed's followers.
    watch: Arc<DurableWatch>,
    /// Threads in a write ([`Wal::enter`]), from before the writer lock to
    /// their acknowledgement: the leader lets others append before its
    /// fsync only if there are any.
    writers: AtomicUsize,
}

/// A write in progress (see [`Wal::enter`]); counted until dropped.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Wal {
    /// Wraps a writer whose records up to `synced` are already durable.
    pub fn new(writer: Writer, synced: Seq) -> Wal {
        Wal {
            writer: Mutex::new(writer),
            sync: Mutex::new(SyncState { synced, leader: false, poisoned: None, syncs: 0, waiters: Vec::new() }),
            poisoned: AtomicBool::new(false),
            watch: Arc::new(DurableWatch::new(synced)),
            writers: AtomicUsize::new(0),
        }
    }

    /// The durable point as followers of the log see it (the change feed).
    pub fn watch(&self) -> Arc<DurableWatch> {
        Arc::clone(&self.watch)
    }

    /// Locks the writer. Writers hold it while they check, append and apply,
    /// which is what keeps log order and apply order the same.
    pub fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the caller as a writer until the returned guard is dropped:
    /// held across the append and the wait for durability, so that a leader
    /// knows whether another writer may still join its fsync.
    pub fn enter(&self) -> InFlight<'_> {
        self.writers.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.writers)
    }

    pub(super) fn sync_state(&self) -> MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a write or sync failed (cheap: no lock).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Refuses with [`Error::Poisoned`] if an earlier write or sync failed.
    pub fn check_poisoned(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.sync_state().poisoned {
            Some(cause) => Err(Error::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Marks the log unusable after a failed write or sync, and wakes every
    /// waiting writer to report it.
    pub fn poison(&self, error: &Error) {
        let mut state = self.sync_state();
        if state.poisoned.is_none() {
            state.poisoned = Some(error.to_string());
            self.poisoned.store(true, Ordering::Release);
        }
        let waiters = std::mem::take(&mut state.waiters);
        drop(state);
        // Followers stop at `synced`, which no longer moves: what follows it is rolled back.
        self.watch.end(format!("a log write failed ({error})"));
        for w in waiters {
            w.parked.wake(RECHECK);
        }
    }

    /// Number of fsyncs of the log so far (group commit makes it smaller than
    /// the number of writes).
    pub fn syncs(&self) -> u64 {
        self.sync_state().syncs
    }

    /// A durable sequence number read without the sync lock: at most
    /// [`Wal::synced`] (published just after it moves), so what it calls
    /// durable is.
    pub fn synced_lockless(&self) -> Seq {
        self.watch.durable()
    }

    /// The last durable sequence number.
    pub fn synced(&self) -> Seq {
        self.sync_state().synced
    }

    /// Returns once every record up to `seq` is durable (group commit: one
    /// thread at a time syncs, on behalf of every record appended before its
    /// sync started; the others park until an fsync covers their record).
    /// `what` names the caller in the error if the log fails meanwhile
    /// ("this write"): the failure is then this caller's own, since a record
    /// is never appended to a poisoned log.
    pub fn wait_durable(&self, seq: Seq, what: &'static str) -> Result<()> {
        let mut state = self.sync_state();
        loop {
            // Durable is durable, even on a log that failed since: `synced`
            // stops moving once the log is poisoned, and the rollback keeps
            // exactly the records up to it, so every write acknowledged here
            // stays readable and every one refused is taken back.
            if state.synced >= seq {
                return Ok(());
            }
            if let Some(cause) = &state.poisoned {
                return Err(Error::WriteFailed { what, cause: cause.clone() });
            }
            if state.leader {
                let parked = Parked::new();
                state.waiters.push(Waiter { seq, parked: Arc::clone(&parked) });
                drop(state);
                match parked.wait() {
                    COVERED => return Ok(()),
                    LEAD => {}
                    _ => {
                        state = self.sync_state();
                        continue;
                    }
                }
            } else {
                state.leader = true;
                drop(state);
            }
            self.lead()?;
            state = self.sync_state();
        }
    }

    /// Syncs on behalf of every record appended so far, as the leader, then
    /// wakes the waiters the fsync covered and hands the role to the oldest
    /// one it did not (if any). Fails only if the log was already poisoned
    /// or the buffer could not be written.
    fn lead(&self) -> Result<()> {
        // Let other writers append first, so that this fsync covers them too
        // (16 threads: ~8 -> ~14 records per fsync, benches/engine.rs).
        // Yielding only when some wait for the writer lock is too little
        // (6.8 records per fsync): the writers just woken by the last fsync
        // are about to write again. A writer alone
        // (counted: itself) skips it: `sched_yield` is a system call per
        // durable write, and on a loaded machine it hands the core to
        // another process (27 us on average, docs/benchmarks.md).
        if self.writers.load(Ordering::Relaxed) > 1 {
            std::thread::yield_now();
        }
        let prepared = {
            let mut w = self.lock();
            // Never write records to the file once the log is poisoned.
            match self.check_poisoned().and_then(|()| w.flush()) {
                Ok(()) => Ok((
                    Arc::clone(&w.file),
                    w.segment.path.clone(),
                    w.written,
                    w.segment_bytes,
                    w.segment.first,
                    w.skip_sync,
                    w.zeros_watch(),
                )),
                Err(e) => {
                    // Under the writer lock: nothing is appended after the lost records.
                    self.poison(&e);
                    Err(e)
                }
            }
        };
        let (file, path, target, target_bytes, first, skip, zeros) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                self.sync_state().leader = false;
                return Err(e);
            }
        };
        // An extension's failed fsync of the same file may have taken the
        // error meant for these records: then this sync proves nothing.
        let sync = || {
            file.sync().and_then(|()| match zeros.and_then(|z| z.sync_failure()) {
                Some(why) => Err(std::io::Error::other(why)),
                None => Ok(()),
            })
        };
        let result = if skip { Ok(()) } else { sync().map_err(|e| Error::io("syncing", path, e)) };
        {
            let mut w = self.lock();
            let same_segment = w.segment.first == first;
            match &result {
                Ok(()) if same_segment => w.synced_bytes = w.synced_bytes.max(target_bytes),
                Ok(()) => {}
                Err(e) => {
                    // Poison under the writer lock, so no record is appended
                    // between the cut and the refusal.
                    self.poison(e);
                    if same_segment {
                        w.cut_unsynced();
                    }
                }
            }
        }
        let mut state = self.sync_state();
        state.leader = false;
        state.syncs += 1;
        // Once poisoned (by another writer's failed append meanwhile), the
        // durable point stays where the rollback took the state back to.
        if result.is_ok() && state.poisoned.is_none() {
            state.synced = state.synced.max(target);
            // Under the sync lock, so a poisoning cannot slip in between and
            // let a follower see a record the rollback takes back.
            self.watch.publish(state.synced);
        }
        let covered = state.take_covered();
        let next = if state.poisoned.is_none() && !state.waiters.is_empty() {
            state.leader = true;
            Some(state.waiters.remove(0).parked)
        } else {
            None
        };
        drop(state);
        if let Some(next) = next {
            next.wake(LEAD);
        }
        for parked in covered {
            parked.wake(COVERED);
        }
        Ok(())
    }

    /// Hands buffered records to the OS without syncing them; a failure
    /// poisons the log.
    pub fn flush(&self) -> Result<()> {
        let mut w = self.lock();
        self.check_poisoned()?;
        w.flush().inspect_err(|e| self.poison(e))
    }

    /// Makes everything appended so far durable. On a log that failed
    /// before, [`Error::Poisoned`]; if it fails now, [`Error::WriteFailed`].
    pub fn sync_all(&self) -> Result<()> {
        let target = {
            let w = self.lock();
            self.check_poisoned()?;
            w.written
        };
        self.wait_durable(target, "this sync")
    }

    /// Records that everything up to `seq` is durable (after a rotation synced it).
    pub fn mark_synced(&self, seq: Seq) {
        let mut state = self.sync_state();
        state.synced = state.synced.max(seq);
        self.watch.publish(state.synced);
        let covered = state.take_covered();
        drop(state);
        for parked in covered {
            parked.wake(COVERED);
        }
    }
}
