//! The change feed's hub: the ring of the latest records that every
//! subscription reads from, filled by the commit path under the log's writer
//! lock (so in log order), and how many subscriptions are open.
//!
//! Invariant: the ring holds consecutive sequence numbers, or nothing; a
//! writer never waits for a subscriber. Full, it drops its oldest record,
//! and a subscriber behind it reads the log files instead. With no
//! subscription open, writers only read one atomic.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::state::change::{BatchOp, Record, Seq};

/// The ring also stops at this many bytes of keys and values (estimated),
/// whatever its length in records: the values are mostly shared with the
/// map, but a record replaced since is kept alive only by the ring.
pub(crate) const FEED_BUFFER_BYTES: usize = 32 << 20;

pub(crate) struct Hub {
    active: AtomicUsize,
    ring: Mutex<Ring>,
    limit_records: usize,
    /// The last sequence number offered (the log's end, while a subscription is open).
    appended: AtomicU64,
}

#[derive(Default)]
struct Ring {
    records: VecDeque<(Seq, Arc<Record>, usize)>,
    bytes: usize,
}

impl Ring {
    fn clear(&mut self) {
        self.records.clear();
        self.bytes = 0;
    }
}

impl Hub {
    pub(crate) fn new(limit_records: usize) -> Hub {
        Hub {
            active: AtomicUsize::new(0),
            ring: Mutex::new(Ring::default()),
            limit_records: limit_records.max(1),
            appended: AtomicU64::new(0),
        }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any subscription is open (the commit path's only cost otherwise).
    pub(crate) fn wanted(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// A subscription opens. Called under the writer lock, with the last
    /// record appended, so that every record after it is offered to the ring.
    pub(crate) fn register(&self, last: Seq) {
        // Records written while nobody subscribed count as appended too
        // (a subscription in the relaxed modes syncs for them).
        self.appended.fetch_max(last.0, Ordering::AcqRel);
        if self.active.fetch_add(1, Ordering::AcqRel) == 0 {
            // What it held stopped being filled when the last subscription
            // closed: starting again empty keeps it consecutive.
            self.ring().clear();
        }
    }

    /// A subscription closes; the last one frees the ring.
    pub(crate) fn unregister(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A racing register may clear it too, or a record may land in
            // between: either way `offer` keeps the ring consecutive.
            self.ring().clear();
        }
    }

    /// The last sequence number offered.
    pub(crate) fn appended(&self) -> Seq {
        Seq(self.appended.load(Ordering::Acquire))
    }

    /// Keeps record `seq` for the subscriptions (called by the commit path,
    /// under the writer lock, after the record was appended and applied).
    pub(crate) fn offer(&self, seq: Seq, record: Record) {
        let bytes = record_bytes(&record);
        let mut ring = self.ring();
        if ring.records.back().is_some_and(|(last, _, _)| last.next() != seq) {
            // A record reached the log some other way: never leave a hole.
            ring.clear();
        }
        ring.records.push_back((seq, Arc::new(record), bytes));
        ring.bytes += bytes;
        while ring.records.len() > self.limit_records || (ring.bytes > FEED_BUFFER_BYTES && ring.records.len() > 1) {
            if let Some((_, _, dropped)) = ring.records.pop_front() {
                ring.bytes -= dropped;
            }
        }
        drop(ring);
        self.appended.fetch_max(seq.0, Ordering::AcqRel);
    }

    /// Copies records `next..=upto` (at most `max`) into `out`, if the ring
    /// holds `next`; false if it does not (read the log instead). Holds the
    /// ring's lock only to clone that many handles.
    pub(crate) fn copy(&self, next: Seq, upto: Seq, max: usize, out: &mut Vec<(Seq, Arc<Record>)>) -> bool {
        let ring = self.ring();
        let Some((first, _, _)) = ring.records.front() else { return false };
        if next < *first {
            return false;
        }
        let start = (next.0 - first.0) as usize;
        if start >= ring.records.len() {
            return false;
        }
        let count = (upto.0.saturating_sub(next.0) as usize).saturating_add(1).min(max);
        out.extend(ring.records.range(start..).take(count).map(|(seq, record, _)| (*seq, Arc::clone(record))));
        true
    }

    /// Whether the ring holds `seq`.
    pub(crate) fn holds(&self, seq: Seq) -> bool {
        let ring = self.ring();
        match (ring.records.front(), ring.records.back()) {
            (Some((first, _, _)), Some((last, _, _))) => *first <= seq && seq <= *last,
            _ => false,
        }
    }
}

/// About what a record keeps alive: its keys and values, plus the handles.
fn record_bytes(record: &Record) -> usize {
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match record {
            Record::Set(key, value) | Record::SetExpiring(key, value, _) => key.len() + value.as_str().len(),
            Record::Expire(key, _) => key.len(),
            Record::Delete(key) => key.len(),
            Record::Batch(ops) => ops
                .iter()
                .map(|op| match op {
                    BatchOp::Set(key, value) | BatchOp::SetExpiring(key, value, _) => {
                        key.len() + value.as_str().len() + 32
                    }
                    BatchOp::Expire(key, _) => key.len() + 32,
                    BatchOp::Delete(key) => key.len() + 32,
                    BatchOp::Clear => 8,
                })
                .sum(),
            Record::Clear | Record::CreateIndex { .. } | Record::DropIndex(_) => 0,
        }
}
