//! Judging a run on the simulated file system after power loss, shared by the
//! power-loss suite (tests/crash_sim.rs) and the `model` fuzz target, so the
//! fuzzer asserts everything the suite does: the run broke no ordering rule
//! and failed no operation on a healthy disk; every crash image reopens to
//! the state after a record between "acknowledged" and "started", with
//! acknowledged backups intact; a crash during recovery, or after a write
//! that follows recovery, changes nothing acknowledged.

use super::model::{Config, Run};
use super::{Rng, SimFs, SimState};
use redru::Durability;

/// What an exploration found.
#[derive(Default)]
pub struct Tally {
    /// Crash images reopened and judged.
    pub states: u64,
    /// Of them, crashes during a recovery.
    pub recovery_crashes: u64,
    /// Of them, writes after a recovery checked after a second crash.
    pub writes_after_recovery: u64,
    /// Points in the run a crash was taken at.
    pub crash_points: u64,
    /// Operations that failed on a healthy disk, images that reopened wrong.
    pub failures: Vec<String>,
    /// Ordering rules broken, acknowledged writes lost or undurable.
    pub rule_breaches: Vec<String>,
}

impl Tally {
    /// Adds `other`'s counts and findings.
    pub fn merge(&mut self, other: Tally) {
        self.states += other.states;
        self.recovery_crashes += other.recovery_crashes;
        self.writes_after_recovery += other.writes_after_recovery;
        self.crash_points += other.crash_points;
        self.failures.extend(other.failures);
        self.rule_breaches.extend(other.rule_breaches);
    }
}

/// How crash images are reopened.
pub const RECOVER: Config = Config { durability: Durability::Always, auto_compact: None, skip_sync: false };

/// Opens `image` and checks it; sometimes crashes during that recovery and
/// checks the second recovery too, or writes after recovery and crashes again.
pub fn check_image(run: &Run, n: u64, image: SimState, rng: &mut Rng, tally: &mut Tally) -> Result<(), String> {
    let (lo, hi) = run.bounds(n);
    let fs = SimFs::from_state(image);
    run.check_backups(&fs, n)?;
    let dir = run.dir();
    let crash_recovery = rng.chance(1, 4);
    fs.record(crash_recovery);
    let db = RECOVER.options(fs.vfs()).open(dir).map_err(|e| format!("reopen failed: {e}"))?;
    fs.record(false);
    let k = run.check_recovered(&db, lo, hi)?;
    tally.states += 1;
    if crash_recovery {
        drop(db);
        let history = fs.take_history();
        if history.is_empty() {
            return Ok(());
        }
        let at = rng.below_usize(history.len());
        let again = SimFs::from_state(history[at].crash_image(rng));
        let db = RECOVER
            .options(again.vfs())
            .open(dir)
            .map_err(|e| format!("reopen after a crash during recovery (at mutation {at}) failed: {e}"))?;
        let k2 = run
            .check_recovered(&db, lo, hi)
            .map_err(|e| format!("after a crash during recovery (at mutation {at}): {e}"))?;
        if k2 != k {
            return Err(format!("a crash during recovery changed the outcome: record {k}, then {k2}"));
        }
        tally.recovery_crashes += 1;
        tally.states += 1;
    } else if rng.chance(1, 4) {
        // The recovered log must take new writes that survive the next crash.
        db.set("after-recovery", redru::json!(k)).map_err(|e| format!("write after recovery failed: {e}"))?;
        drop(db);
        let again = SimFs::from_state(fs.state().crash_image(rng));
        let db = RECOVER
            .options(again.vfs())
            .open(dir)
            .map_err(|e| format!("reopen after a write after recovery failed: {e}"))?;
        if db.get_value("after-recovery").as_ref() != Some(&redru::json!(k)) || db.stats().last_seq != k + 1 {
            return Err(format!("a write acknowledged after recovery (record {}) was lost", k + 1));
        }
        tally.writes_after_recovery += 1;
        tally.states += 1;
    }
    Ok(())
}

/// What the run itself broke, before any crash: the file system's ordering
/// rules, writes acknowledged but not durable or lost while running, and any
/// operation that failed on a healthy disk (index conflicts are expected).
pub fn check_run(run: &Run, fs: &SimFs, context: &str, tally: &mut Tally) {
    for breach in fs.violations().into_iter().chain(run.undurable.iter().cloned()).chain(run.lost.iter().cloned()) {
        tally.rule_breaches.push(format!("{context}: {breach}"));
    }
    for e in &run.events {
        if let Some(error) = &e.error
            && !error.contains("unique index")
            && !error.contains("index on")
            && !error.contains("there is no index")
        {
            tally.failures.push(format!("{context}: {} failed on a healthy disk: {error}", e.op));
        }
    }
}
