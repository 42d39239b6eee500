//! Workload 11: what a time to live costs a set, in the relaxed mode (so the disk does not hide
//! it): `set_with_ttl` of fresh keys against `set` of fresh keys, each in its own database,
//! measured in the same run (the order alternates between runs). Target: at most 10 % slower.

use std::path::Path;
use std::time::{Duration, Instant};

use super::common::{Bound, BoxResult, Config, Table, fresh_dir, key, progress, value};
use redru::{Db, Durability, Options};

fn relaxed(dir: &Path) -> BoxResult<Db> {
    // No sweeper: nothing expires during the run, and its wake-ups would only add noise.
    Ok(Options::new().durability(Durability::Never).auto_compact(false).sweep_interval(None).open(dir)?)
}

/// Sets per second loading `cfg.keys` fresh keys, with a time to live or without.
fn load(cfg: &Config, dir: &Path, ttl: Option<Duration>) -> BoxResult<f64> {
    let db = relaxed(dir)?;
    let data: Vec<_> = (0..cfg.keys as u64).map(|n| (key(n), value(n))).collect();
    let started = Instant::now();
    for (k, v) in data {
        match ttl {
            Some(ttl) => db.set_with_ttl(k, v, ttl)?,
            None => db.set(k, v)?,
        }
    }
    db.sync()?;
    let rate = cfg.keys as f64 / started.elapsed().as_secs_f64();
    db.close()?;
    Ok(rate)
}

pub fn expiry_cost(cfg: &Config, t: &mut Table) -> BoxResult<()> {
    let (mut plain, mut with_ttl) = (Vec::new(), Vec::new());
    let hour = Some(Duration::from_secs(3600));
    for run in 0..cfg.runs {
        progress(&format!("11 expiry, run {}", run + 1));
        let dir = fresh_dir(cfg, "w11")?;
        if run % 2 == 0 {
            plain.push(load(cfg, &dir.join("plain"), None)?);
            with_ttl.push(load(cfg, &dir.join("ttl"), hour)?);
        } else {
            with_ttl.push(load(cfg, &dir.join("ttl"), hour)?);
            plain.push(load(cfg, &dir.join("plain"), None)?);
        }
    }
    let w = format!("11 expiry at {}k keys", cfg.keys / 1000);
    t.add("ttl_plain", &w, "relaxed sets, no ttl", "sets/s", &plain);
    let target = Some((Bound::AtLeast, 0.9));
    t.add_vs("ttl_set", &w, "relaxed set_with_ttl (1 h)", "sets/s", &with_ttl, "ttl_plain", "plain sets", target);
    Ok(())
}
