//! Workload 9: the change feed (`Db::subscribe`). Writers' rate in the relaxed mode
//! without a subscriber (the baseline, same run), with a subscriber that reads nothing
//! while they write (the slowest possible: writers must not notice it), and with one
//! following on another thread; how fast the following subscriber gets the changes, and
//! how fast a subscriber that fell behind the in-memory ring reads them back from the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redru::{Db, Value};

use super::common::{BoxResult, Config, Table, fresh_dir, progress};
use super::{dataset, relaxed};

const W: &str = "9 change feed";

fn write_all(db: &Db, data: &[(String, Value)]) -> BoxResult<f64> {
    let started = Instant::now();
    for (k, v) in data {
        db.set(k.as_str(), v.clone())?;
    }
    Ok(data.len() as f64 / started.elapsed().as_secs_f64())
}

/// Reads `n` changes; errors if the feed stalls for 30 s.
fn drain(sub: &mut redru::Subscription, n: usize) -> BoxResult<()> {
    for _ in 0..n {
        sub.next_timeout(Duration::from_secs(30))?.ok_or("the change feed stalled")?;
    }
    Ok(())
}

pub fn change_feed(cfg: &Config, t: &mut Table) -> BoxResult<()> {
    let data = Arc::new(dataset(cfg.keys));
    let n = data.len();
    let (mut alone, mut paused, mut live, mut follow, mut catch_up) = (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..cfg.runs {
        progress(&format!("9 change feed, run {}", run + 1));
        let db = relaxed(&fresh_dir(cfg, "w9")?)?;
        alone.push(write_all(&db, &data)?);
        db.close()?;

        let db = relaxed(&fresh_dir(cfg, "w9")?)?;
        let mut sub = db.subscribe("", None)?;
        paused.push(write_all(&db, &data)?);
        // All but the ring's last 65,536 records come back from the log files.
        let started = Instant::now();
        drain(&mut sub, n)?;
        catch_up.push(n as f64 / started.elapsed().as_secs_f64());
        drop(sub);
        db.close()?;

        let db = Arc::new(relaxed(&fresh_dir(cfg, "w9")?)?);
        let mut sub = db.subscribe("", None)?;
        let started = Instant::now();
        let reader = std::thread::spawn(move || -> Result<Instant, String> {
            drain(&mut sub, n).map_err(|e| e.to_string())?;
            Ok(Instant::now())
        });
        live.push(write_all(&db, &data)?);
        let done = reader.join().map_err(|_| "the reader panicked")??;
        follow.push(n as f64 / (done - started).as_secs_f64());
        Arc::try_unwrap(db).map_err(|_| "the database is still shared")?.close()?;
    }
    t.add("w9_alone", W, "relaxed sets, no subscriber", "ops/s", &alone);
    t.add_vs("w9_paused", W, "relaxed sets, a subscriber reading nothing", "ops/s", &paused, "w9_alone", "alone", None);
    t.add_vs("w9_live", W, "relaxed sets, a subscriber following", "ops/s", &live, "w9_alone", "alone", None);
    t.add("w9_follow", W, "changes delivered to the following subscriber", "changes/s", &follow);
    t.add("w9_catch_up", W, "changes read back by the paused one (mostly from the log)", "changes/s", &catch_up);
    Ok(())
}
