//! The change feed: [`Db::subscribe`] and the [`Subscription`] it returns,
//! which delivers every durable change to keys under a prefix, in log order,
//! each with its sequence number, and resumes from a sequence number.
//!
//! Invariants: a change is delivered only once the log's durable point (the
//! group commit's fsync) has passed its record, so a record a failed fsync
//! rolls back is never seen; writers never wait for a subscription (`hub`:
//! a bounded ring they drop the oldest record of); a subscription behind the
//! ring reads the same records from the log files (`storage::log::Follower`).

mod change;
mod hub;

pub use change::Change;
pub(crate) use hub::Hub;

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{Db, Inner};
use crate::error::{Error, Result};
use crate::options::Durability;
use crate::state::change::{Record, Seq};
use crate::state::doc::Doc;
use crate::storage::log::{DurableWatch, Followed, Follower};
use crate::storage::vfs::Vfs;

/// Records taken from the ring or the log at a time: bounds both how long
/// the ring's lock is held and how much a subscription holds in memory.
const BATCH: usize = 1024;

/// In [`Durability::Never`] and [`Durability::Buffered`], nothing syncs the
/// log by itself; a subscription waiting for records that were written but
/// not synced syncs it, at most this often (writers do not wait for it).
const NUDGE_EVERY: Duration = Duration::from_millis(10);

/// One delivered item, or a record none of whose changes is under the prefix
/// (kept so that [`Subscription::position`] moves past it in order).
enum Item {
    /// A change, and whether it is the last of its record.
    Change(Change, bool),
    /// Every record up to this one was seen.
    Passed(Seq),
}

/// A subscription to the change feed: every durable change to keys under a
/// prefix, in log order ([`Db::subscribe`]).
///
/// Iterate it (`next` blocks until a change is durable), or poll it with
/// [`try_next`](Subscription::try_next) and
/// [`next_timeout`](Subscription::next_timeout). It ends with an error when
/// the feed cannot go on (the database was closed or a log write failed:
/// [`Error::FeedStopped`]; the records it needs were compacted away:
/// [`Error::FeedTruncated`]); after that the iterator returns `None`.
///
/// Store [`position`](Subscription::position) after processing a change, and
/// pass it as `from` to resume: it never points into the middle of a batch.
pub struct Subscription {
    prefix: String,
    hub: Arc<Hub>,
    watch: Arc<DurableWatch>,
    /// Only to sync the log in the relaxed modes; never kept alive by this.
    inner: Weak<Inner>,
    vfs: Arc<dyn Vfs>,
    follower: Follower,
    /// The next record to read.
    next: Seq,
    /// Every change of every record up to this one has been returned.
    position: Seq,
    queue: VecDeque<Item>,
    scratch: Vec<(Seq, Arc<Record>)>,
    nudge: bool,
    nudged: Option<Instant>,
    finished: bool,
}

impl Db {
    /// Subscribes to every change to keys starting with `prefix` (`""`: all
    /// keys) made by a record after sequence number `from`, or after the
    /// last record written when `from` is `None`. Changes are delivered in
    /// log order, once each, and only once they are durable: in
    /// [`Durability::Always`] when the group commit's fsync returned; in
    /// `Periodic` at the next periodic fsync; in `Never` and `Buffered` the
    /// waiting subscription syncs the log itself (at most every 10 ms), so a
    /// subscriber never sees a write that a crash or a failed fsync could
    /// take back. Writers never wait for a subscription: one that falls
    /// behind its in-memory buffer ([`Options::feed_buffer`](crate::Options::feed_buffer))
    /// reads the log files instead, which also serves `from` after a
    /// restart. docs/design.md, "The change feed", has the details.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// use redru::{Change, json};
    /// let db = redru::Db::open(dir.path())?;
    /// let mut feed = db.subscribe("user:", None)?;
    /// db.set("user:1", json!({"name": "Alice"}))?;
    /// db.set("order:7", json!(1))?; // not under the prefix
    /// db.delete("user:1")?;
    /// let first = feed.next().ok_or("feed ended")??;
    /// assert!(matches!(&first, Change::Set { key, .. } if key == "user:1"));
    /// let second = feed.next().ok_or("feed ended")??;
    /// assert_eq!((second.op(), second.seq().0), ("del", 3));
    /// // Store feed.position(); after a restart, resume from it:
    /// let resumed = db.subscribe("user:", Some(feed.position()))?;
    /// # drop(resumed);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// - [`Error::FeedAhead`] if `from` is after the last record written
    ///   (a number from another database).
    /// - [`Error::FeedTruncated`] if compaction already removed the records
    ///   after `from` from the log: resync with [`Db::subscribe_with_state`].
    /// - [`Error::Io`] if the log's directory cannot be listed.
    pub fn subscribe(&self, prefix: &str, from: Option<Seq>) -> Result<Subscription> {
        let inner = &self.inner;
        let (start, last) = {
            let writer = inner.wal.lock();
            let last = writer.written();
            let start = match from {
                Some(from) if from > last => return Err(Error::FeedAhead { from: from.0, last: last.0 }),
                Some(from) => from,
                None => last,
            };
            // Under the writer lock: every record after `last` reaches the ring.
            inner.feed.register(last);
            (start, last)
        };
        let sub = Subscription::new(inner, prefix, start);
        if start < last && !sub.hub.holds(start.next()) {
            // Said now rather than at the first `next`.
            if let Some(first_available) = sub.follower.missing(&*sub.vfs)? {
                return Err(Error::FeedTruncated { from: start.0, first_available: first_available.0 });
            }
        }
        Ok(sub)
    }

    /// Every key under `prefix` with its value as of one durable record,
    /// sorted by key, and a subscription to the changes after that record
    /// ([`Subscription::position`] is its sequence number): how a subscriber
    /// starts, or resyncs after [`Error::FeedTruncated`]. Writers are held
    /// only for a copy-on-write clone of the map; the caller then waits for
    /// that record to be durable (syncing the log itself in the relaxed modes).
    ///
    /// # Errors
    /// [`Error::WriteFailed`] or [`Error::Poisoned`] if the log cannot make
    /// the state durable (the subscription would show nothing more).
    pub fn subscribe_with_state(&self, prefix: &str) -> Result<(Vec<(String, Doc)>, Subscription)> {
        let inner = &self.inner;
        let (map, last) = {
            let writer = inner.wal.lock();
            let map = inner.read_state().map.clone();
            inner.feed.register(writer.written());
            (map, writer.written())
        };
        let now = inner.now();
        let sub = Subscription::new(inner, prefix, last);
        inner.wal.wait_durable(last, "the state read for the change feed")?;
        let mut entries: Vec<(String, Doc)> =
            map.iter(now).filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.to_string(), v.clone())).collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok((entries, sub))
    }
}

impl Subscription {
    /// Called right after `hub.register()`: dropping it unregisters.
    fn new(inner: &Arc<Inner>, prefix: &str, start: Seq) -> Subscription {
        Subscription {
            prefix: prefix.to_owned(),
            hub: Arc::clone(&inner.feed),
            watch: inner.wal.watch(),
            inner: Arc::downgrade(inner),
            vfs: Arc::clone(&inner.vfs),
            follower: Follower::new(&inner.dir, start.next()),
            next: start.next(),
            position: start,
            queue: VecDeque::new(),
            scratch: Vec::with_capacity(BATCH),
            nudge: matches!(inner.options.durability, Durability::Never | Durability::Buffered),
            nudged: None,
            finished: false,
        }
    }

    /// The prefix it follows.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The sequence number up to which every change has been returned: pass
    /// it as `from` to [`Db::subscribe`] to go on after a restart. It moves
    /// past a batch only with the batch's last change under the prefix, and
    /// past records with no change under it as they are read.
    pub fn position(&self) -> Seq {
        self.position
    }

    /// The next change if one is durable now, without waiting.
    ///
    /// # Errors
    /// As the iterator's (see [`Subscription`]); once it has failed, it
    /// fails again (the iterator returns `None`).
    pub fn try_next(&mut self) -> Result<Option<Change>> {
        self.next_until(Some(Instant::now()))
    }

    /// The next change, waiting at most `timeout` for one to be durable.
    ///
    /// # Errors
    /// As the iterator's (see [`Subscription`]).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(&mut self, until: Option<Instant>) -> Result<Option<Change>> {
        // Every error is final: the iterator ends after it.
        self.next_or_wait(until).inspect_err(|_| self.finished = true)
    }

    fn next_or_wait(&mut self, until: Option<Instant>) -> Result<Option<Change>> {
        loop {
            match self.queue.pop_front() {
                Some(Item::Change(change, last)) => {
                    if last {
                        self.position = change.seq();
                    }
                    return Ok(Some(change));
                }
                Some(Item::Passed(seq)) => self.position = seq,
                None => {
                    if !self.fill(until)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Queues the records after `next` that are durable, from the ring or
    /// the log files, waiting for one until `until` (forever: `None`).
    /// False when nothing came in time.
    fn fill(&mut self, until: Option<Instant>) -> Result<bool> {
        loop {
            let durable = self.watch.durable();
            if self.next <= durable {
                if self.read(durable)? {
                    return Ok(true);
                }
                // The files do not show the durable records yet (a rename
                // in flight): look again shortly.
                if until.is_some_and(|t| Instant::now() >= t) {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if let Some(reason) = self.watch.ended() {
                return Err(Error::FeedStopped { position: self.position.0, reason });
            }
            self.nudge_sync();
            let now = Instant::now();
            if until.is_some_and(|t| now >= t) {
                return Ok(false);
            }
            let wake = until.map_or(now + NUDGE_EVERY, |t| t.min(now + NUDGE_EVERY));
            self.watch.wait_past(durable, wake);
        }
    }

    /// Queues records `next..=durable` (one batch); false if none was found.
    fn read(&mut self, durable: Seq) -> Result<bool> {
        let before = self.next;
        let mut records = std::mem::take(&mut self.scratch);
        records.clear();
        if self.hub.copy(self.next, durable, BATCH, &mut records) {
            for (seq, record) in &records {
                self.queue_record(*seq, record);
            }
        } else {
            self.follower.skip_to(self.next);
            let mut read = Vec::new();
            let outcome = self.follower.read(&*self.vfs, durable, BATCH, |seq, record| read.push((seq, record)));
            for (seq, record) in &read {
                self.queue_record(*seq, record);
            }
            if let Followed::Truncated { first_available } = outcome? {
                return Err(Error::FeedTruncated { from: self.position.0, first_available: first_available.0 });
            }
        }
        records.clear();
        self.scratch = records;
        Ok(self.next > before)
    }

    fn queue_record(&mut self, seq: Seq, record: &Record) {
        let start = self.queue.len();
        let mut changes = Vec::new();
        change::changes_of(seq, record, &self.prefix, &mut changes);
        let count = changes.len();
        for (i, change) in changes.into_iter().enumerate() {
            self.queue.push_back(Item::Change(change, i + 1 == count));
        }
        if self.queue.len() == start {
            match self.queue.back_mut() {
                Some(Item::Passed(passed)) => *passed = seq,
                _ => self.queue.push_back(Item::Passed(seq)),
            }
        }
        self.next = seq.next();
    }

    /// In the modes where nothing else syncs the log, syncs it when records
    /// this subscription waits for were written (at most every [`NUDGE_EVERY`]).
    fn nudge_sync(&mut self) {
        if !self.nudge || self.hub.appended() < self.next || self.nudged.is_some_and(|t| t.elapsed() < NUDGE_EVERY) {
            return;
        }
        self.nudged = Some(Instant::now());
        if let Some(inner) = self.inner.upgrade() {
            // A failure poisons the log, which ends the watch: reported by `fill`.
            let _ = inner.wal.sync_all();
        }
    }
}

impl Iterator for Subscription {
    type Item = Result<Change>;

    /// The next change, waiting until one is durable; `None` only after an
    /// error was returned.
    fn next(&mut self) -> Option<Result<Change>> {
        if self.finished {
            return None;
        }
        self.next_until(None).transpose()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister();
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("prefix", &self.prefix)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}
