//! The log's durable point, published for readers that follow the log (the
//! change feed): the last sequence number an fsync covered, and whether the
//! log ended (failed or closed) so that no later record will become durable.
//!
//! Invariant: the published number only grows, and only ever names records
//! that are durable; once poisoned it stops, so a follower never passes a
//! record a rollback takes back. Publishing never waits for a follower.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::storage::record::Seq;

/// The durable sequence number, and a way to wait for it to move.
#[derive(Debug)]
pub struct DurableWatch {
    durable: AtomicU64,
    ended: AtomicBool,
    /// Why the log ended (the first reason wins).
    why: Mutex<Option<String>>,
    /// Held only to make check-then-wait and publish-then-notify one step each
    /// (no lost wake-up); never while doing anything else.
    lock: Mutex<()>,
    moved: Condvar,
}

impl DurableWatch {
    /// Starts at `durable` (what open found on disk).
    pub fn new(durable: Seq) -> DurableWatch {
        DurableWatch {
            durable: AtomicU64::new(durable.0),
            ended: AtomicBool::new(false),
            why: Mutex::new(None),
            lock: Mutex::new(()),
            moved: Condvar::new(),
        }
    }

    /// The last durable sequence number (no lock).
    pub fn durable(&self) -> Seq {
        Seq(self.durable.load(Ordering::Acquire))
    }

    /// Records that everything up to `seq` is durable and wakes the followers.
    pub fn publish(&self, seq: Seq) {
        if self.durable.fetch_max(seq.0, Ordering::AcqRel) < seq.0 {
            self.wake();
        }
    }

    /// No record after the current durable point will ever become durable
    /// through this handle: the log failed, or the database was closed.
    pub fn end(&self, why: impl Into<String>) {
        {
            let mut slot = self.why.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(why.into());
            }
        }
        self.ended.store(true, Ordering::Release);
        self.wake();
    }

    /// Why the log ended, if it did.
    pub fn ended(&self) -> Option<String> {
        if !self.ended.load(Ordering::Acquire) {
            return None;
        }
        self.why.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until the durable point passes `seq`, the log ends, or `until`.
    /// Returns whether the durable point passed `seq`.
    pub fn wait_past(&self, seq: Seq, until: Instant) -> bool {
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.durable() > seq {
                return true;
            }
            let now = Instant::now();
            if self.ended.load(Ordering::Acquire) || now >= until {
                return false;
            }
            // Capped, so that a caller with its own conditions looks again.
            let wait = (until - now).min(Duration::from_millis(100));
            guard = self.moved.wait_timeout(guard, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn wake(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.moved.notify_all();
    }
}
