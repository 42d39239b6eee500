//! The log's durable point, published for readers that follow the log (the
//! change feed): the last sequence number an fsync covered, and whether the
//! log ended (failed or closed) so that no later record will become durable.
//!
//! Invariant: the published number only grows, and only ever names records
//! that are durable; once poisoned it stops, so a follower never passes a
//! record a rollback takes back. Publishing never waits for a follower.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// Followers in [`DurableWatch::wait_past`]: with none, publishing skips
    /// the lock and the condvar's wake-up (a `futex` call per durable write
    /// otherwise, on the writer's path).
    waiting: AtomicUsize,
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
            waiting: AtomicUsize::new(0),
        }
    }

    /// The last durable sequence number (no lock).
    pub fn durable(&self) -> Seq {
        Seq(self.durable.load(Ordering::SeqCst))
    }

    /// Records that everything up to `seq` is durable and wakes the followers.
    pub fn publish(&self, seq: Seq) {
        if self.durable.fetch_max(seq.0, Ordering::SeqCst) < seq.0 && self.waiting.load(Ordering::SeqCst) > 0 {
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
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // Counted before the first look at `durable` (both sequentially
        // consistent, as the publisher's store and load): either this look
        // sees the new number or the publisher sees a waiter and wakes it,
        // through the lock held here until the wait has begun.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let passed = self.wait_locked(guard, seq, until);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        passed
    }

    fn wait_locked(&self, mut guard: std::sync::MutexGuard<'_, ()>, seq: Seq, until: Instant) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Publishing wakes a follower that waits (it skips the wake-up only
    /// when none does), promptly rather than at the wait's 100 ms cap.
    #[test]
    fn a_waiting_follower_is_woken_by_the_publish() {
        let watch = std::sync::Arc::new(DurableWatch::new(Seq(0)));
        let mut took_all = Vec::new();
        for round in 1..=20u64 {
            let follower = {
                let watch = std::sync::Arc::clone(&watch);
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let passed = watch.wait_past(Seq(round - 1), started + Duration::from_secs(10));
                    (passed, started.elapsed())
                })
            };
            while watch.waiting.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            watch.publish(Seq(round));
            let (passed, took) = follower.join().expect("the follower thread");
            assert!(passed);
            took_all.push(took);
        }
        // A wake-up lost would leave every follower to its 100 ms cap; the
        // median keeps a loaded machine's odd slow thread from failing this.
        took_all.sort();
        assert!(took_all[10] < Duration::from_millis(50), "woken after {took_all:?}: by the cap, not the publish");
        // With no follower, publishing moves the number all the same.
        watch.publish(Seq(30));
        assert_eq!(watch.durable(), Seq(30));
    }
}
