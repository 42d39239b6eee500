//! Progress of the long operations (opening a large directory, writing a
//! snapshot, backups, restores, verify, repair, compaction): what an observer
//! set with [`Options::progress`](crate::Options::progress) is told, and the
//! meter the storage loops advance.
//!
//! A leaf module (like `error`): the storage layer advances meters without
//! knowing who listens. Reports are throttled to about 200 per stage, so an
//! observer may draw a bar from each one; a stage always ends with a report
//! whose `done` equals its `total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What part of a long operation is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Checking a snapshot's SHA-256 before parsing it (bytes): an open,
    /// `verify`.
    CheckSnapshot,
    /// Parsing a snapshot's entries (bytes); a restore hashes them in the
    /// same pass, with no `CheckSnapshot` before.
    LoadSnapshot,
    /// Replaying the log after the snapshot (bytes).
    ReplayLog,
    /// Writing a snapshot: `save`, compaction, a backup (keys).
    WriteSnapshot,
    /// Checking log segments record by record: `verify`, `repair` (bytes).
    CheckLog,
}

/// What a stage counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unit {
    /// Bytes of a file.
    Bytes,
    /// Keys written.
    Keys,
}

impl Stage {
    /// What `done` and `total` count.
    pub fn unit(self) -> Unit {
        match self {
            Stage::WriteSnapshot => Unit::Keys,
            _ => Unit::Bytes,
        }
    }

    /// A few words for a progress bar: "loading the snapshot".
    pub fn describe(self) -> &'static str {
        match self {
            Stage::CheckSnapshot => "checking the snapshot",
            Stage::LoadSnapshot => "loading the snapshot",
            Stage::ReplayLog => "replaying the log",
            Stage::WriteSnapshot => "writing a snapshot",
            Stage::CheckLog => "checking the log",
        }
    }
}

/// One report: `done` of `total` (in [`Stage::unit`]) of `stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The running stage.
    pub stage: Stage,
    /// How much is done.
    pub done: u64,
    /// How much there is (known before the stage starts).
    pub total: u64,
}

/// Receives [`Progress`] reports, from whichever thread does the work (several
/// at once when a snapshot loads on several cores, so two reports of one
/// stage may arrive out of order: keep the largest `done`). It runs inside
/// the operation: keep it quick.
pub type Observer = Arc<dyn Fn(&Progress) + Send + Sync>;

/// An observer in [`Options`](crate::Options), which is `Debug`.
#[derive(Clone)]
pub(crate) struct Observed(pub(crate) Observer);

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// About this many reports per stage.
const STEPS: u64 = 200;

/// Counts one stage's work and reports it to the observer, if any, every
/// 1/[`STEPS`] of the total. `advance` is one atomic add when no report is
/// due, so hot loops (and threads in parallel) can call it freely.
pub(crate) struct Meter<'a> {
    observer: Option<&'a Observer>,
    stage: Stage,
    total: u64,
    step: u64,
    done: AtomicU64,
}

impl<'a> Meter<'a> {
    /// Starts `stage` of `total` (reports 0 of `total`).
    pub(crate) fn start(observer: Option<&'a Observer>, stage: Stage, total: u64) -> Meter<'a> {
        let meter = Meter { observer, stage, total, step: (total / STEPS).max(1), done: AtomicU64::new(0) };
        meter.report(0);
        meter
    }

    /// Counts `n` more done.
    pub(crate) fn advance(&self, n: u64) {
        if self.observer.is_none() || n == 0 {
            return;
        }
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        // Report when this call crossed a step boundary (one thread does).
        if before / self.step != after / self.step {
            self.report(after.min(self.total));
        }
    }

    /// Ends the stage: reports `total` of `total` whatever was counted (a
    /// stage may skip work it counted in the total, or count less).
    pub(crate) fn finish(self) {
        self.report(self.total);
    }

    fn report(&self, done: u64) {
        if let Some(observer) = self.observer {
            observer(&Progress { stage: self.stage, done, total: self.total });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn reports_are_throttled_and_end_at_the_total() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let observer: Observer = Arc::new(move |p: &Progress| sink.lock().unwrap().push(p.done));
        let meter = Meter::start(Some(&observer), Stage::ReplayLog, 10_000);
        for _ in 0..10_000 {
            meter.advance(1);
        }
        meter.finish();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.first(), Some(&0));
        assert_eq!(seen.last(), Some(&10_000));
        assert!(seen.len() <= STEPS as usize + 3, "{} reports", seen.len());
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn counting_past_the_total_reports_the_total() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let observer: Observer = Arc::new(move |p: &Progress| sink.lock().unwrap().push(p.done));
        let meter = Meter::start(Some(&observer), Stage::WriteSnapshot, 3);
        meter.advance(10);
        assert!(seen.lock().unwrap().iter().all(|&d| d <= 3));
    }
}
