//! The wall clock that expiry reads: [`Clock`], the real [`SystemClock`]
//! (the default) and [`ManualClock`], which tests set by hand.
//!
//! A leaf like `error`: the handle reads it, the state never does (it takes
//! the time as a number, so replay cannot depend on when it runs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, in milliseconds since the Unix epoch (UTC).
///
/// The handle never lets time run backwards for its keys: it remembers the
/// latest reading, so a clock stepped back (by NTP, or a test) delays
/// expiry rather than bringing expired keys back.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock ([`SystemTime::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told: for tests of expiry at exact
/// boundaries. Share it (`Arc`) between the test and [`Options::clock`](crate::Options::clock).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use std::{sync::Arc, time::Duration};
/// use redru::{ManualClock, Options, json};
/// let clock = Arc::new(ManualClock::new(1_000_000));
/// let db = Options::new().clock(clock.clone()).open(dir.path())?;
/// db.set_with_ttl("session", json!("x"), Duration::from_secs(10))?;
/// clock.advance(Duration::from_millis(9_999));
/// assert!(db.contains("session"));
/// clock.advance(Duration::from_millis(1));
/// assert!(!db.contains("session"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock that reads `ms` (milliseconds since the epoch) until moved.
    pub fn new(ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(ms))
    }

    /// Sets the time.
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (whole milliseconds).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| Some(t.saturating_add(ms)));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
