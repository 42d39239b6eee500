//! Workload 10 (issue 17): listing keys in order against the full scan and sort it replaced,
//! and the longest stall of a concurrent writer while a full-scan query runs, at
//! `REDRU_BENCH_KEYS` keys (docs/benchmarks.md runs it at 1,000,000).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use redru::{Batch, Listing, Query};

use super::common::{Bound, BoxResult, Config, Rng, Table, fresh_dir, key, progress, value};
use super::{DONE, PRE, SAVING, probe, relaxed};

/// Prefixes `user:P` with exactly 111 keys under them (`user:P`, `user:P0`..`user:P9`,
/// `user:P00`..`user:P99`): P has as many digits as the largest P with `P99` below `keys`.
fn prefixes(keys: usize) -> (u64, u64) {
    let hi = (keys / 100) as u64;
    let digits = hi.saturating_sub(1).max(1).ilog10();
    (10u64.pow(digits), hi.max(10u64.pow(digits) + 1))
}

pub fn listing(cfg: &Config, t: &mut Table) -> BoxResult<()> {
    let (lo, hi) = prefixes(cfg.keys);
    let (mut scan, mut ordered, mut paged, mut stall, mut floor, mut query_ms) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 0..cfg.runs {
        progress(&format!("10 keys in order, {} keys, run {}", cfg.keys, run + 1));
        let dir = fresh_dir(cfg, "w10")?;
        let db = relaxed(&dir)?;
        let mut batch = Batch::new();
        for n in 0..cfg.keys as u64 {
            batch.push_set(key(n), value(n));
            if batch.len() == 1000 {
                db.batch(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            db.batch(batch)?;
        }
        let mut rng = Rng::new(run as u64);
        let prefix = |rng: &mut Rng| format!("user:{}", lo + rng.below(hi - lo));

        // The listing before keys were kept in order: scan every key, filter, sort.
        let scans = 5;
        let started = Instant::now();
        for _ in 0..scans {
            let keys = db.scan_sort_prefix(&prefix(&mut rng));
            if keys.len() < 100 {
                return Err(format!("{} keys under a prefix, 111 expected", keys.len()).into());
            }
            black_box(keys.into_iter().take(100).collect::<Vec<_>>());
        }
        scan.push(scans as f64 / started.elapsed().as_secs_f64());

        // The load's new keys have no key order yet: the first listing sorts
        // them once (docs/design.md, "Keys in order"); the pages below time
        // the steady state, as before that was deferred.
        black_box(db.list(&Listing::all().limit(1)));
        let queries = 2000;
        let started = Instant::now();
        for _ in 0..queries {
            let page = db.list(&Listing::prefix(prefix(&mut rng)).limit(100));
            if page.items.len() != 100 || page.next.is_none() {
                return Err(format!("{} keys in a page of 100", page.items.len()).into());
            }
        }
        ordered.push(queries as f64 / started.elapsed().as_secs_f64());

        // A page from a cursor anywhere in the keys.
        let started = Instant::now();
        for _ in 0..queries {
            // Every key after `user:P` (P as for the prefixes) is under `user:`: at least 100.
            let after = format!("user:{}", lo + rng.below(hi - lo));
            let page = db.list(&Listing::prefix("user:").after(after).limit(100));
            if page.items.len() != 100 {
                return Err(format!("{} keys in a page of 100", page.items.len()).into());
            }
        }
        paged.push(queries as f64 / started.elapsed().as_secs_f64());

        // A writer setting random keys in a loop while full-scan queries run (no index).
        let full_scan = Query::parse("city = c17 and age = 17")?;
        let phase = AtomicU8::new(PRE);
        let stop = AtomicBool::new(false);
        let shared = redru::Doc::from(value(17));
        let mut writer_rng = Rng::new(77 + run as u64);
        let keys = cfg.keys as u64;
        let set = || db.set(key(writer_rng.below(keys)), &shared).map_err(Into::into);
        let (writer, took) = std::thread::scope(|s| -> BoxResult<_> {
            let writer = s.spawn(|| probe(&stop, &phase, set));
            std::thread::sleep(Duration::from_millis(200));
            phase.store(SAVING, Ordering::Release);
            let started = Instant::now();
            let result = db.query(&full_scan);
            let took = started.elapsed();
            // The control: the writer alone for as long again (a loaded machine stalls
            // threads by itself; the longer the window, the longer its longest stall).
            phase.store(PRE, Ordering::Release);
            std::thread::sleep(took);
            phase.store(DONE, Ordering::Release);
            stop.store(true, Ordering::Relaxed);
            let writer = writer.join().map_err(|_| "writer thread panicked")??;
            let result = result?;
            if result.entries.is_empty() {
                return Err("the full-scan query found nothing".into());
            }
            Ok((writer, took))
        })?;
        stall.push(writer.save_max.as_secs_f64() * 1e3);
        floor.push(writer.pre_max.as_secs_f64() * 1e3);
        query_ms.push(took.as_secs_f64() * 1e3);
        db.close()?;
    }
    let w = format!("10 keys in order at {}k keys", cfg.keys / 1000);
    let m = "100 keys by prefix, full scan + sort (the listing before)";
    t.add("kscan", &w, m, "queries/s", &scan);
    let m = "list(prefix, limit 100) through the ordered keys";
    let target = Some((Bound::AtLeast, 100.0));
    t.add_vs("klist", &w, m, "queries/s", &ordered, "kscan", "full scan + sort", target);
    let m = "list(user:, after a random key, limit 100)";
    t.add_vs("kpage", &w, m, "queries/s", &paged, "kscan", "full scan + sort", None);
    t.add("kquery", &w, "full-scan query (city = c17 and age = 17), duration", "ms", &query_ms);
    t.hidden("5ms", &vec![5.0; cfg.runs]);
    let m = "longest single set while the full-scan query ran (writer thread)";
    t.add_vs("kstall", &w, m, "ms", &stall, "5ms", "5 ms", Some((Bound::AtMost, 1.0)));
    let m = "longest set with no query: 200 ms before, as long again after (noise floor)";
    t.add("kfloor", &w, m, "ms", &floor);
    Ok(())
}
