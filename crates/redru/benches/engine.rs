//! redru's benchmark harness (issue 7): workloads 1-11 against baselines measured in the same run
//! (workload 9, the change feed, in engine/feed.rs; 10, keys in order, in engine/listing.rs; 11,
//! the cost of expiry, in engine/expiry.rs).
//!
//! `cargo bench --bench engine` prints one Markdown table (median and min-max over
//! `REDRU_BENCH_RUNS` runs, each ratio taken run by run) and writes it as JSON to
//! `bench-results/engine.json`. `REDRU_BENCH_QUICK=1` is a smoke run of well under a minute.
//! docs/benchmarks.md explains every row. Open time and resident memory are measured in a
//! fresh child process (this executable, run again with `--redru-child`).
//!
//! One file past 800 lines because workloads 1-8 share the run's `Config`, `Table` and datasets
//! and are read top to bottom as the report's rows; a workload with setup of its own (9, 10, 11)
//! lives in `engine/`.

use redru_testkit::bench as common;

#[path = "engine/expiry.rs"]
mod expiry;
#[path = "engine/feed.rs"]
mod feed;

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{
    Bound, BoxResult, CHUNKS, Config, RawLog, Rng, Table, child, fresh_dir, key, num, percentile_us, progress, value,
};
use redru::{Batch, Db, Durability, Options, Plan, Query, Value};
use serde_json::json;

#[path = "engine/listing.rs"]
mod listing;

const MIB: f64 = 1024.0 * 1024.0;

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--redru-child") {
        return child_main(&args[i + 1..]);
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: stay a no-op there.
        println!("redru engine benchmarks: run them with `cargo bench --bench engine` (or scripts/bench.sh)");
        return Ok(());
    }
    let cfg = Config::from_env("bench-results/engine.json");
    progress(&format!("config: {cfg:?}"));
    std::fs::create_dir_all(&cfg.dir)?;
    let mut t = Table::default();
    let mut extra = serde_json::Map::new();
    if cfg.wants(&[1]) {
        durable_single(&cfg, &mut t)?;
    }
    if cfg.wants(&[2]) {
        durable_threads(&cfg, &mut t)?;
    }
    if cfg.wants(&[3, 4, 5]) {
        load_get_reopen(&cfg, &mut t)?;
    }
    if cfg.wants(&[6]) {
        save_while_writing(&cfg, &mut t, &mut extra)?;
    }
    if cfg.wants(&[7]) {
        indexes(&cfg, &mut t)?;
    }
    if cfg.wants(&[8]) {
        ordered_indexes(&cfg, &mut t)?;
    }
    if cfg.wants(&[9]) {
        feed::change_feed(&cfg, &mut t)?;
    }
    if cfg.wants(&[10]) {
        listing::listing(&cfg, &mut t)?;
    }
    if cfg.wants(&[11]) {
        expiry::expiry_cost(&cfg, &mut t)?;
    }
    common::report(&cfg, "redru engine benchmarks", &t, Value::Object(extra))?;
    let _ = std::fs::remove_dir_all(&cfg.dir);
    Ok(())
}

/// Child mode: `open <dir>` opens a database, `naive <file>` replays the naive baseline's
/// file; either prints `{"ms":..,"rss_before":..,"rss":..,"keys":..}`.
fn child_main(args: &[String]) -> BoxResult<()> {
    let (mode, path) = match args {
        [mode, path, ..] => (mode.as_str(), Path::new(path)),
        _ => return Err("usage: --redru-child open|naive <path>".into()),
    };
    let rss_before = common::rss_bytes();
    let started = Instant::now();
    let keys = match mode {
        // With `REDRU_BENCH_LIST` set, also lists one page of keys after the open (the first
        // listing builds the key orders: docs/design.md, "Keys in order") and prints the
        // listing's time and the resident memory after it.
        "open" => {
            let db = Options::new().durability(Durability::Never).auto_compact(false).open(path)?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let rss = common::rss_bytes();
            let mut out = json!({"ms": ms, "rss_before": rss_before, "rss": rss, "keys": db.len()});
            if std::env::var_os("REDRU_BENCH_LIST").is_some() {
                let t = Instant::now();
                let page = db.list(&redru::Listing::prefix(key(1).as_str()).limit(10));
                out["list_ms"] = json!(t.elapsed().as_secs_f64() * 1e3);
                out["items"] = json!(page.items.len());
                out["rss_listed"] = json!(common::rss_bytes());
            }
            println!("{out}");
            return Ok(());
        }
        "naive" => naive_replay(path)?.len(),
        // For `perf record` / `valgrind --tool=callgrind`: one phase at a time (docs/benchmarks.md).
        // `profile-load-ttl`: the same load as `set_with_ttl` (1 h), workload 11's other half;
        // neither runs the sweeper, so the two differ only by the deadline.
        "profile-load" | "profile-load-ttl" | "profile-get" | "profile-save" => {
            let cfg = Config::from_env("");
            let db =
                Options::new().durability(Durability::Never).auto_compact(false).sweep_interval(None).open(path)?;
            let data = dataset(cfg.keys);
            let ttl = (mode == "profile-load-ttl").then_some(Duration::from_secs(3600));
            let started = Instant::now();
            for (k, v) in data {
                match ttl {
                    Some(ttl) => db.set_with_ttl(k, v, ttl)?,
                    None => db.set(k, v)?,
                }
            }
            db.sync()?;
            eprintln!("load: {:?}", started.elapsed());
            if mode == "profile-save" {
                eprintln!("{:?}", db.save()?);
            }
            if mode == "profile-get" {
                let keys: Vec<String> = (0..cfg.keys as u64).map(key).collect();
                let mut rng = Rng::new(7);
                let started = Instant::now();
                for _ in 0..cfg.gets {
                    black_box(db.get(&keys[rng.below(cfg.keys as u64) as usize]));
                }
                eprintln!("gets: {:?}", started.elapsed());
            }
            db.len()
        }
        // Workload 3's loops alone, for `valgrind --tool=callgrind --toggle-collect=engine::set_load`
        // (or `batch_load`, `naive_load`): `profile-w3-naive`, `-never`, `-buffered`, `-batch`.
        "profile-w3-naive" | "profile-w3-never" | "profile-w3-buffered" | "profile-w3-batch" => {
            let cfg = Config::from_env("");
            std::fs::create_dir_all(path)?;
            let data = dataset(cfg.keys);
            let started = Instant::now();
            let n = if mode == "profile-w3-naive" {
                naive_load(data, &path.join("naive.jsonl"))?.len()
            } else {
                let durability = if mode == "profile-w3-buffered" { Durability::Buffered } else { Durability::Never };
                let db = Options::new().durability(durability).auto_compact(false).open(path)?;
                let spent = if mode == "profile-w3-batch" { batch_load(&db, data)? } else { set_load(&db, data)? };
                drop(spent);
                db.len()
            };
            eprintln!("load: {:?}", started.elapsed());
            n
        }
        "profile-open" => relaxed(path)?.len(),
        // Workload 2's loop alone, for `perf stat` / `perf trace -s` / `perf sched` per set:
        // the first of `REDRU_BENCH_THREADS` threads, `REDRU_BENCH_DURABLE_OPS` x 8 durable sets
        // in all (as workload 2 at 8 threads or more); prints the rate and sets per fsync.
        "profile-w2" => {
            let cfg = Config::from_env("");
            let threads = cfg.threads.first().copied().unwrap_or(16).max(1);
            let per = (cfg.durable_ops * threads.min(8)).div_ceil(threads);
            let db = durable(path)?;
            let (elapsed, lat) = durable_sets(&db, threads, per)?;
            let syncs = db.stats().wal_syncs.max(1);
            eprintln!(
                "{threads} threads: {} sets in {elapsed:?}, {:.0}/s, {:.1} sets per fsync",
                lat.len(),
                lat.len() as f64 / elapsed.as_secs_f64(),
                lat.len() as f64 / syncs as f64
            );
            db.len()
        }
        // The first listing after a `Buffered` load into a new database sorts the deferred key
        // orders (docs/design.md, "Keys in order"): how long it takes, and the longest set of a
        // writer thread while it runs against the longest before it (one line of JSON).
        // `first-listing-open`: the same over an existing database (`profile-load` or
        // `profile-save` made it), opened here, so the listing is the first after an open;
        // also prints the resident memory after the open and after the listing.
        "first-listing" | "first-listing-open" => {
            let cfg = Config::from_env("");
            let db = Options::new().durability(Durability::Buffered).auto_compact(false).open(path)?;
            let open_ms = started.elapsed().as_secs_f64() * 1e3;
            let rss_open = common::rss_bytes();
            if mode == "first-listing" {
                for (k, v) in dataset(cfg.keys) {
                    db.set(k, v)?;
                }
            }
            let (stop, during) = (AtomicBool::new(false), AtomicBool::new(false));
            let (before_us, during_us) = (AtomicU64::new(0), AtomicU64::new(0));
            let (list_ms, items) = std::thread::scope(|s| -> BoxResult<(f64, usize)> {
                let writer = s.spawn(|| -> redru::Result<()> {
                    for i in 0u64.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let t = Instant::now();
                        db.set(format!("w:{}", i % 1000).as_str(), json!(i))?;
                        let us = t.elapsed().as_micros() as u64;
                        // Judged at its end: a set the listing held up counts as during it (the
                        // flag stays up for 50 ms after the listing).
                        let worst = if during.load(Ordering::Relaxed) { &during_us } else { &before_us };
                        worst.fetch_max(us, Ordering::Relaxed);
                    }
                    Ok(())
                });
                std::thread::sleep(Duration::from_millis(300));
                during.store(true, Ordering::Relaxed);
                let t = Instant::now();
                let page = db.list(&redru::Listing::prefix(key(1).as_str()).limit(10));
                let list_ms = t.elapsed().as_secs_f64() * 1e3;
                std::thread::sleep(Duration::from_millis(50));
                stop.store(true, Ordering::Relaxed);
                writer.join().map_err(|_| "the writer thread panicked")??;
                Ok((list_ms, page.items.len()))
            })?;
            let ms = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e3;
            println!(
                "{}",
                json!({"keys": db.len(), "first_list_ms": list_ms, "items": items,
                       "longest_set_during_ms": ms(&during_us), "longest_set_before_ms": ms(&before_us),
                       "open_ms": open_ms, "rss_open": rss_open, "rss_listed": common::rss_bytes()})
            );
            return Ok(());
        }
        // `get_value` over a database made by profile-save, for callgrind (`parsed_gets`).
        "profile-get-value" => {
            let cfg = Config::from_env("");
            let db = relaxed(path)?;
            let keys: Vec<String> = (0..cfg.keys as u64).map(key).collect();
            let mut rng = Rng::new(7);
            let picks: Vec<&str> = (0..cfg.gets).map(|_| keys[rng.below(cfg.keys as u64) as usize].as_str()).collect();
            let started = Instant::now();
            parsed_gets(&db, &picks);
            eprintln!("gets: {:?}", started.elapsed());
            db.len()
        }
        // What opening a snapshot is made of, phase by phase (`path`: a database.json).
        "profile-snapshot" => {
            let mut phases = serde_json::Map::new();
            let mut lap = |name: &str, since: Instant| {
                phases.insert(name.into(), json!(since.elapsed().as_secs_f64() * 1e3));
            };
            let t0 = Instant::now();
            let bytes = std::fs::read(path)?;
            lap("read_ms", t0);
            let t0 = Instant::now();
            redru::internal::snapshot::check_digest(path, &bytes, None)?;
            lap("sha256_ms", t0);
            let t0 = Instant::now();
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)?;
            lap("json_scan_no_values_ms", t0);
            let t0 = Instant::now();
            let doc: Value = serde_json::from_slice(&bytes)?;
            lap("json_to_value_tree_ms", t0);
            let t0 = Instant::now();
            drop(doc);
            lap("drop_value_tree_ms", t0);
            let t0 = Instant::now();
            let (state, _) = redru::internal::snapshot::parse(path, &bytes, None)?;
            lap("redru_snapshot_parse_ms", t0);
            let _ = started;
            println!("{}", Value::Object(phases));
            drop(state);
            return Ok(());
        }
        _ => return Err(format!("unknown child mode {mode}").into()),
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    println!("{}", json!({"ms": ms, "rss_before": rss_before, "rss": common::rss_bytes(), "keys": keys}));
    Ok(())
}

/// Gets parsed into `Value` trees (`Db::get_value`); its own function so that callgrind can
/// count it alone (`--toggle-collect=engine::parsed_gets`).
#[inline(never)]
fn parsed_gets(db: &Db, picks: &[&str]) {
    for key in picks {
        black_box(db.get_value(key));
    }
}

/// The naive baseline's file: one `{"key":..,"value":..}` line per set.
fn naive_line(out: &mut impl Write, k: &str, v: &Value) -> BoxResult<()> {
    out.write_all(b"{\"key\":")?;
    serde_json::to_writer(&mut *out, k)?;
    out.write_all(b",\"value\":")?;
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"}\n")?;
    Ok(())
}

/// Workload 3's naive baseline: a line per set into a `BufWriter`, the value into a
/// `HashMap`, one fdatasync at the end. Its own function (as [`set_load`] and [`batch_load`]),
/// so that callgrind can count it alone (`--toggle-collect=engine::naive_load`).
#[inline(never)]
fn naive_load(data: Vec<(String, Value)>, path: &Path) -> BoxResult<HashMap<String, Value>> {
    let mut naive: HashMap<String, Value> = HashMap::new();
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for (k, v) in data {
        naive_line(&mut out, &k, &v)?;
        naive.insert(k, v);
    }
    out.flush()?;
    out.get_ref().sync_data()?;
    Ok(naive)
}

/// Workload 3's load through `Db::set`, then `sync`. Each value outlives the loop (returned),
/// as in the naive baseline, which keeps it in its map: when the caller frees its `Value` is
/// the caller's business, and redru, which keeps the JSON text instead, would otherwise pay
/// the tree's ~12 frees in every set.
#[inline(never)]
fn set_load(db: &Db, data: Vec<(String, Value)>) -> BoxResult<Vec<Value>> {
    let mut spent = Vec::with_capacity(data.len());
    for (k, v) in data {
        db.set(k, &v)?;
        spent.push(v);
    }
    db.sync()?;
    Ok(spent)
}

/// Workload 3's load in batches of 1000 sets (one record and one write(2) each), then `sync`.
#[inline(never)]
fn batch_load(db: &Db, data: Vec<(String, Value)>) -> BoxResult<Vec<Value>> {
    let mut spent = Vec::with_capacity(data.len());
    let mut batch = Batch::new();
    for (k, v) in data {
        batch.push_set(k, &v);
        spent.push(v);
        if batch.len() == 1000 {
            db.batch(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        db.batch(batch)?;
    }
    db.sync()?;
    Ok(spent)
}

/// The naive baseline's reopen: parse every line, insert into a map.
fn naive_replay(path: &Path) -> BoxResult<HashMap<String, Value>> {
    #[derive(serde::Deserialize)]
    struct Line {
        key: String,
        value: Value,
    }
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut map = HashMap::new();
    for line in file.lines() {
        let line: Line = serde_json::from_str(&line?)?;
        map.insert(line.key, line.value);
    }
    Ok(map)
}

fn durable(dir: &Path) -> BoxResult<Db> {
    Ok(Options::new().durability(Durability::Always).open(dir)?)
}

fn relaxed(dir: &Path) -> BoxResult<Db> {
    Ok(Options::new().durability(Durability::Never).auto_compact(false).open(dir)?)
}

/// Workload 1: durable single-writer sets beside the raw append+fdatasync loop.
fn durable_single(cfg: &Config, t: &mut Table) -> BoxResult<()> {
    let (mut raw, mut over, mut rate, mut p50, mut p99) = (vec![], vec![], vec![], vec![], vec![]);
    for run in 0..cfg.runs {
        progress(&format!("1 durable single writer, run {}", run + 1));
        let dir = fresh_dir(cfg, "w1")?;
        let ops = cfg.durable_ops;
        let mut raw_log = RawLog::new(&dir, "raw-append.bin", ops, false)?;
        let mut over_log = RawLog::new(&dir, "raw-overwrite.bin", ops, true)?;
        let db = durable(&dir.join("db"))?;
        // The open's first preallocation (8 MiB of zeros, synced, on its own
        // thread) would land in the first timed chunk of all three loops; a
        // long-running writer meets one every 4 MiB of log, off its path.
        std::thread::sleep(Duration::from_millis(300));
        let mut lat = Vec::with_capacity(ops);
        let (mut raw_t, mut over_t, mut redru_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        // Interleaved in chunks: the three loops see the same disk load.
        let chunk = ops.div_ceil(CHUNKS);
        for c in 0..CHUNKS {
            let n_ops = chunk.min(ops.saturating_sub(c * chunk));
            raw_t += raw_log.run(n_ops)?;
            over_t += over_log.run(n_ops)?;
            let started = Instant::now();
            for n in (c * chunk) as u64..(c * chunk + n_ops) as u64 {
                let (k, v) = (key(n), value(n));
                let t0 = Instant::now();
                db.set(k, v)?;
                lat.push(t0.elapsed());
            }
            redru_t += started.elapsed();
        }
        raw.push(ops as f64 / raw_t.as_secs_f64());
        over.push(ops as f64 / over_t.as_secs_f64());
        rate.push(ops as f64 / redru_t.as_secs_f64());
        lat.sort_unstable();
        p50.push(percentile_us(&lat, 50.0));
        p99.push(percentile_us(&lat, 99.0));
        db.close()?;
    }
    let w = "1 durable 1 writer";
    t.add("raw", w, "raw 100 B append + fdatasync", "ops/s", &raw);
    t.add_vs(
        "raw_over",
        w,
        "raw 100 B overwrite (preallocated) + fdatasync",
        "ops/s",
        &over,
        "raw",
        "raw append",
        None,
    );
    t.add_vs(
        "w1",
        w,
        "redru set, Durability::Always",
        "ops/s",
        &rate,
        "raw",
        "raw append",
        Some((Bound::AtLeast, 0.9)),
    );
    t.add_vs(
        "w1_over",
        w,
        "redru set, Durability::Always (vs the preallocated loop)",
        "ops/s",
        &rate,
        "raw_over",
        "raw overwrite",
        Some((Bound::AtLeast, 0.9)),
    );
    t.add("w1_p50", w, "redru set p50 latency", "us", &p50);
    t.add("w1_p99", w, "redru set p99 latency", "us", &p99);
    Ok(())
}

/// Workload 2: durable sets from many threads (group commit).
fn durable_threads(cfg: &Config, t: &mut Table) -> BoxResult<()> {
    let w = "2 durable N threads";
    let mut counts: Vec<usize> = cfg.threads.iter().map(|&n| n.max(1)).collect();
    if !counts.contains(&1) {
        counts.insert(0, 1);
    }
    // Run by run, every thread count in turn: each ratio to 1 thread compares neighbours in time.
    let mut results: BTreeMap<usize, [Vec<f64>; 3]> = BTreeMap::new();
    for run in 0..cfg.runs {
        for &threads in &counts {
            progress(&format!("2 durable, {threads} threads, run {}", run + 1));
            let per = (cfg.durable_ops * threads.min(8)).div_ceil(threads);
            let dir = fresh_dir(cfg, "w2")?;
            let db = durable(&dir)?;
            let (elapsed, mut lat) = durable_sets(&db, threads, per)?;
            let [rate, p99, per_sync] = results.entry(threads).or_default();
            rate.push(lat.len() as f64 / elapsed.as_secs_f64());
            per_sync.push(lat.len() as f64 / db.stats().wal_syncs.max(1) as f64);
            lat.sort_unstable();
            p99.push(percentile_us(&lat, 99.0));
            db.close()?;
        }
    }
    for (threads, [rate, p99, per_sync]) in &results {
        let target = (*threads == 16).then_some((Bound::AtLeast, 8.0));
        let measure = format!("{threads} threads, Durability::Always");
        t.add_vs(&format!("w2_{threads}"), w, &measure, "ops/s", rate, "w2_1", "1 thread", target);
        t.add(&format!("w2_{threads}_p99"), w, &format!("{threads} threads p99 latency"), "us", p99);
        t.add(&format!("w2_{threads}_batch"), w, &format!("{threads} threads, sets per fsync"), "", per_sync);
    }
    Ok(())
}

/// `threads` threads, each making `per` durable sets at once (workload 2's loop): the time from
/// the start to the last acknowledgement, and every set's latency.
fn durable_sets(db: &Db, threads: usize, per: usize) -> BoxResult<(Duration, Vec<Duration>)> {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| -> BoxResult<(Duration, Vec<Duration>)> {
        let handles: Vec<_> = (0..threads)
            .map(|th| {
                let (db, barrier) = (&db, &barrier);
                s.spawn(move || -> redru::Result<Vec<Duration>> {
                    let mut lat = Vec::with_capacity(per);
                    barrier.wait();
                    for i in 0..per {
                        let n = (i * threads + th) as u64;
                        let (k, v) = (key(n), value(n));
                        let t0 = Instant::now();
                        db.set(k, v)?;
                        lat.push(t0.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let mut all = Vec::with_capacity(per * threads);
        for h in handles {
            all.extend(h.join().map_err(|_| "writer thread panicked")??);
        }
        Ok((started.elapsed(), all))
    })
}

/// The benchmark's value as a user's own type, for `get_as` (workload 4).
#[derive(serde::Deserialize)]
#[allow(dead_code)] // Read by deserializing only: the fields are what a get_as builds.
struct User {
    name: String,
    age: u64,
    city: String,
    email: String,
    tags: Vec<String>,
}

fn dataset(keys: usize) -> Vec<(String, Value)> {
    (0..keys as u64).map(|n| (key(n), value(n))).collect()
}

/// Workloads 3, 4 and 5 share one load per run: bulk load (3), random gets over it (4),
/// reopen from the log, save, reopen from the snapshot, memory and bytes on disk (5).
fn load_get_reopen(cfg: &Config, t: &mut Table) -> BoxResult<()> {
    let mut s: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut push = |name: &'static str, x: f64| s.entry(name).or_default().push(x);
    for run in 0..cfg.runs {
        progress(&format!("3-5 bulk load {} keys, gets, reopen, run {}", cfg.keys, run + 1));
        let dir = fresh_dir(cfg, "w3")?;
        // 3: the naive baseline, then redru, on the same data built beforehand.
        let data = dataset(cfg.keys);
        let naive_path = dir.join("naive.jsonl");
        let started = Instant::now();
        let naive = naive_load(data, &naive_path)?;
        push("naive_load", cfg.keys as f64 / started.elapsed().as_secs_f64());

        let timed_load = |db: &Db| -> BoxResult<f64> {
            let data = dataset(cfg.keys);
            let started = Instant::now();
            let spent = set_load(db, data)?;
            let rate = cfg.keys as f64 / started.elapsed().as_secs_f64();
            drop(spent);
            Ok(rate)
        };
        let db_dir = dir.join("db");
        let db = relaxed(&db_dir)?;
        push("load", timed_load(&db)?);
        // The same load with the log buffered in memory: one write(2) per 64 KiB.
        let buffered_dir = dir.join("buffered");
        let buffered = Options::new().durability(Durability::Buffered).auto_compact(false).open(&buffered_dir)?;
        push("load_buffered", timed_load(&buffered)?);
        buffered.close()?;
        std::fs::remove_dir_all(&buffered_dir)?;
        // The same load in batches of 1000 sets: one record and one write(2) per batch.
        let batch_dir = dir.join("batched");
        let batched = relaxed(&batch_dir)?;
        let data = dataset(cfg.keys);
        let started = Instant::now();
        let spent = batch_load(&batched, data)?;
        push("load_batch", cfg.keys as f64 / started.elapsed().as_secs_f64());
        drop(spent);
        batched.close()?;
        std::fs::remove_dir_all(&batch_dir)?;

        // 4: random gets, the same sequence of keys for everyone.
        let keys: Vec<String> = (0..cfg.keys as u64).map(key).collect();
        let mut rng = Rng::new(7 + run as u64);
        let picks: Vec<u32> = (0..cfg.gets).map(|_| rng.below(cfg.keys as u64) as u32).collect();
        let naive_get = |part: &[u32]| {
            for &i in part {
                black_box(naive.get(&keys[i as usize]).cloned());
            }
        };
        let redru_get = |part: &[u32]| {
            for &i in part {
                black_box(db.get(&keys[i as usize]));
            }
        };
        // A get that hands back a parsed value, as the naive clone does: a
        // `Value` tree (`get_value`) or the caller's own type (`get_as`).
        let redru_get_value = |part: &[u32]| {
            for &i in part {
                black_box(db.get_value(&keys[i as usize]));
            }
        };
        let redru_get_as = |part: &[u32]| {
            for &i in part {
                black_box(db.get_as::<User>(&keys[i as usize]).ok().flatten());
            }
        };
        let rate = |f: &(dyn Fn(&[u32]) + Sync), threads: usize| {
            let chunk = picks.len().div_ceil(threads);
            let started = Instant::now();
            std::thread::scope(|s| {
                for part in picks.chunks(chunk) {
                    s.spawn(move || f(part));
                }
            });
            picks.len() as f64 / started.elapsed().as_secs_f64()
        };
        // The floor of any map of shared values: one hash, no lock, no shards.
        let plain: HashMap<String, Arc<Value>> = naive.iter().map(|(k, v)| (k.clone(), Arc::new(v.clone()))).collect();
        let plain_get = |part: &[u32]| {
            for &i in part {
                black_box(plain.get(&keys[i as usize]).cloned());
            }
        };
        push("plain_get1", rate(&plain_get, 1));
        drop(plain);
        push("naive_get1", rate(&naive_get, 1));
        push("get1", rate(&redru_get, 1));
        // Each right after its own naive clone, so that the pair sees the same load.
        push("naive_get1_v", rate(&naive_get, 1));
        push("get_value1", rate(&redru_get_value, 1));
        push("naive_get1_a", rate(&naive_get, 1));
        push("get_as1", rate(&redru_get_as, 1));
        push("naive_get2", rate(&naive_get, 2));
        push("get2", rate(&redru_get, 2));
        drop(naive);

        // 5: reopen from the log, then from the snapshot, each in a fresh process.
        db.close()?;
        push("wal_bytes", common::dir_bytes(&db_dir) as f64 / MIB);
        let dir_arg = db_dir.to_string_lossy().into_owned();
        let open = child(&["--redru-child", "open", &dir_arg])?;
        push("open_wal", num(&open, "ms")?);
        push("rss_wal", num(&open, "rss")? / MIB);
        let db = relaxed(&db_dir)?;
        db.save()?;
        let snap_bytes = db.stats().snapshot_bytes as f64;
        db.close()?;
        push("snap_bytes", snap_bytes / MIB);
        push("snap_dir_bytes", common::dir_bytes(&db_dir) as f64 / MIB);
        let open = child(&["--redru-child", "open", &dir_arg])?;
        push("open_snap", num(&open, "ms")?);
        push("rss_snap", num(&open, "rss")? / MIB);
        push("rss_snap_delta", (num(&open, "rss")? - num(&open, "rss_before")?) / MIB);
        push("naive_bytes", std::fs::metadata(&naive_path)?.len() as f64 / MIB);
        let naive = child(&["--redru-child", "naive", &naive_path.to_string_lossy()])?;
        push("naive_replay", num(&naive, "ms")?);
        push("naive_rss", num(&naive, "rss")? / MIB);
    }
    let g = |name: &str| s.get(name).cloned().unwrap_or_default();
    let w3 = format!("3 bulk load {}k, relaxed", cfg.keys / 1000);
    t.add(
        "naive_load",
        &w3,
        "naive: HashMap + serde_json line per set, BufWriter, fdatasync",
        "sets/s",
        &g("naive_load"),
    );
    let measure = "redru set, Durability::Never, then sync";
    t.add_vs("load", &w3, measure, "sets/s", &g("load"), "naive_load", "naive load", Some((Bound::AtLeast, 1.0)));
    let measure = "redru set, Durability::Buffered, then sync";
    let target = Some((Bound::AtLeast, 1.0));
    t.add_vs("load_buffered", &w3, measure, "sets/s", &g("load_buffered"), "naive_load", "naive load", target);
    let measure = "redru batch() of 1000 sets, Durability::Never, then sync";
    t.add_vs("load_batch", &w3, measure, "sets/s", &g("load_batch"), "naive_load", "naive load", None);

    let w4 = format!("4 random gets ({}k over {}k keys)", cfg.gets / 1000, cfg.keys / 1000);
    t.add("naive_get1", &w4, "naive: HashMap get + clone the Value, 1 thread", "gets/s", &g("naive_get1"));
    t.add_vs(
        "get1",
        &w4,
        "redru get, 1 thread",
        "gets/s",
        &g("get1"),
        "naive_get1",
        "naive get+clone",
        Some((Bound::AtLeast, 10.0)),
    );
    // Issue 18: a get that parses, each against the naive clone measured just before it.
    let target = Some((Bound::AtLeast, 1.0));
    let what = "naive get+clone just before";
    t.add("naive_get1_v", &w4, "naive: get + clone, again (before get_value)", "gets/s", &g("naive_get1_v"));
    let measure = "redru get_value (a Value tree), 1 thread";
    t.add_vs("get_value1", &w4, measure, "gets/s", &g("get_value1"), "naive_get1_v", what, target);
    t.add("naive_get1_a", &w4, "naive: get + clone, again (before get_as)", "gets/s", &g("naive_get1_a"));
    let measure = "redru get_as::<User> (a struct of the value's fields), 1 thread";
    t.add_vs("get_as1", &w4, measure, "gets/s", &g("get_as1"), "naive_get1_a", what, target);
    let measure = "reference: plain HashMap<String, Arc<Value>> get + Arc clone";
    t.add_vs("plain_get1", &w4, measure, "gets/s", &g("plain_get1"), "naive_get1", "naive get+clone", None);
    t.add("naive_get2", &w4, "naive: get + clone, 2 threads", "gets/s", &g("naive_get2"));
    t.add_vs("get2", &w4, "redru get, 2 threads", "gets/s", &g("get2"), "naive_get2", "naive, 2 threads", None);

    let w5 = format!("5 reopen {}k keys", cfg.keys / 1000);
    t.add("naive_replay", &w5, "naive: replay its own file (fresh process)", "ms", &g("naive_replay"));
    let base = "naive replay";
    t.add_vs(
        "open_wal",
        &w5,
        "redru open, all in the log",
        "ms",
        &g("open_wal"),
        "naive_replay",
        base,
        Some((Bound::AtMost, 0.5)),
    );
    let target = Some((Bound::AtMost, 0.25));
    t.add_vs("open_snap", &w5, "redru open, all in the snapshot", "ms", &g("open_snap"), "naive_replay", base, target);
    t.add("naive_bytes", &w5, "naive file on disk", "MiB", &g("naive_bytes"));
    t.add_vs("wal_bytes", &w5, "redru log on disk", "MiB", &g("wal_bytes"), "naive_bytes", "naive file", None);
    t.add_vs("snap_bytes", &w5, "redru snapshot on disk", "MiB", &g("snap_bytes"), "naive_bytes", "naive file", None);
    t.add("naive_rss", &w5, "naive: resident memory after replay", "MiB", &g("naive_rss"));
    t.add_vs(
        "rss_snap",
        &w5,
        "redru resident memory after open (snapshot)",
        "MiB",
        &g("rss_snap"),
        "snap_bytes",
        "snapshot size",
        Some((Bound::AtMost, 2.0)),
    );
    t.add_vs(
        "rss_snap_delta",
        &w5,
        "  of which the data (VmRSS after - before open)",
        "MiB",
        &g("rss_snap_delta"),
        "snap_bytes",
        "snapshot size",
        None,
    );
    t.add_vs(
        "rss_wal",
        &w5,
        "redru resident memory after open (log)",
        "MiB",
        &g("rss_wal"),
        "naive_rss",
        "naive resident",
        None,
    );
    Ok(())
}

const PRE: u8 = 0;
const SAVING: u8 = 1;
const DONE: u8 = 2;

/// Workload 6: `save` of large databases while a writer thread sets in a loop (relaxed mode,
/// so fsync latency does not hide the blocking): how long save takes, the longest single set
/// meanwhile, and the engine's own `writers_blocked`.
fn save_while_writing(cfg: &Config, t: &mut Table, extra: &mut serde_json::Map<String, Value>) -> BoxResult<()> {
    for &size in &cfg.save_keys {
        progress(&format!("6 save: loading {size} keys"));
        let dir = fresh_dir(cfg, "w6")?;
        let db = relaxed(&dir)?;
        for n in 0..size as u64 {
            db.set(key(n), value(n))?;
        }
        db.sync()?;
        let (mut dur, mut blocked, mut reported, mut floor, mut sets) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut raw_app, mut raw_ovr) = (vec![], vec![]);
        for run in 0..cfg.runs {
            progress(&format!("6 save {size} keys, run {}", run + 1));
            let phase = AtomicU8::new(PRE);
            let stop = AtomicBool::new(false);
            let shared = redru::Doc::from(value(17));
            let mut rng = Rng::new(99);
            let set = || db.set(key(rng.below(size as u64)), &shared).map_err(Into::into);
            // Two probes of what the OS alone does to a writer meanwhile: a 100-byte append to
            // a growing file, and a 100-byte overwrite in a preallocated one (no fsync, ~10k/s).
            let mut append = RawLog::new(&dir, "probe-append.bin", 0, false)?;
            let mut over = RawLog::new(&dir, "probe-over.bin", 1 << 16, true)?;
            let mut appends = 0usize;
            let raw_append = || {
                std::thread::sleep(Duration::from_micros(50));
                append.write_one().map_err(Into::into)
            };
            let raw_over = || {
                std::thread::sleep(Duration::from_micros(50));
                appends = (appends + 1) % (1 << 16);
                over.write_one_at(appends).map_err(Into::into)
            };
            let (report, writer, probe_append, probe_over) = std::thread::scope(|s| -> BoxResult<_> {
                let writer = s.spawn(|| probe(&stop, &phase, set));
                let probe_append = s.spawn(|| probe(&stop, &phase, raw_append));
                let probe_over = s.spawn(|| probe(&stop, &phase, raw_over));
                std::thread::sleep(Duration::from_millis(200));
                phase.store(SAVING, Ordering::Release);
                let report = db.save();
                phase.store(DONE, Ordering::Release);
                stop.store(true, Ordering::Relaxed);
                let join = |h: std::thread::ScopedJoinHandle<'_, BoxResult<Probe>>| -> BoxResult<Probe> {
                    h.join().map_err(|_| "probe thread panicked")?
                };
                Ok((report?, join(writer)?, join(probe_append)?, join(probe_over)?))
            })?;
            let (pre_max, save_max, count) = (writer.pre_max, writer.save_max, writer.count);
            raw_app.push(probe_append.save_max.as_secs_f64() * 1e3);
            raw_ovr.push(probe_over.save_max.as_secs_f64() * 1e3);
            dur.push(report.duration.as_secs_f64() * 1e3);
            blocked.push(save_max.as_secs_f64() * 1e3);
            reported.push(report.writers_blocked.as_secs_f64() * 1e3);
            floor.push(pre_max.as_secs_f64() * 1e3);
            sets.push(count as f64);
        }
        db.close()?;
        let w = format!("6 save {}k keys", size / 1000);
        let id = format!("w6_{size}");
        t.add(&format!("{id}_dur"), &w, "save duration", "ms", &dur);
        t.hidden("50ms", &vec![50.0; cfg.runs]);
        let target = (size >= 1_000_000).then_some((Bound::AtMost, 1.0));
        t.add_vs(&id, &w, "longest single set while saving (writer thread)", "ms", &blocked, "50ms", "50 ms", target);
        t.add(&format!("{id}_rep"), &w, "SaveReport::writers_blocked", "ms", &reported);
        t.add(&format!("{id}_floor"), &w, "longest set in the 200 ms before save (noise floor)", "ms", &floor);
        let m = "OS probe: longest 100 B append (growing file, no fsync) while saving";
        t.add(&format!("{id}_probe_app"), &w, m, "ms", &raw_app);
        let m = "OS probe: longest 100 B overwrite (preallocated file, no fsync) while saving";
        t.add(&format!("{id}_probe_over"), &w, m, "ms", &raw_ovr);
        extra.insert(format!("save_{size}_sets_during_save"), json!(sets));
    }
    Ok(())
}

/// The longest single operation of a probe thread before and during a save.
struct Probe {
    pre_max: Duration,
    save_max: Duration,
    count: u64,
}

/// Runs `op` in a loop until `stop`, timing each call and sorting it by the save's `phase`.
fn probe(stop: &AtomicBool, phase: &AtomicU8, mut op: impl FnMut() -> BoxResult<()>) -> BoxResult<Probe> {
    let mut p = Probe { pre_max: Duration::ZERO, save_max: Duration::ZERO, count: 0 };
    while !stop.load(Ordering::Relaxed) {
        let before = phase.load(Ordering::Acquire);
        let t0 = Instant::now();
        op()?;
        let took = t0.elapsed();
        let after = phase.load(Ordering::Acquire);
        if before == SAVING || after == SAVING || before != after {
            p.save_max = p.save_max.max(took);
            p.count += 1;
        } else if before == PRE {
            p.pre_max = p.pre_max.max(took);
        }
    }
    Ok(p)
}

/// Workload 7: `find` on an indexed field vs a full scan, and relaxed write throughput with
/// 0, 1 and 3 indexes.
fn indexes(cfg: &Config, t: &mut Table) -> BoxResult<()> {
    let load = |dir: &Path, fields: &[&str]| -> BoxResult<(Db, f64)> {
        let db = relaxed(dir)?;
        for f in fields {
            db.create_index(f)?;
        }
        let data = dataset(cfg.keys);
        let started = Instant::now();
        for (k, v) in data {
            db.set(k, v)?;
        }
        db.sync()?;
        Ok((db, cfg.keys as f64 / started.elapsed().as_secs_f64()))
    };
    let (mut r0, mut r1, mut r3, mut create, mut find, mut scan) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let cities = 1000.min(cfg.keys as u64);
    for run in 0..cfg.runs {
        progress(&format!("7 indexes, run {}", run + 1));
        let dir = fresh_dir(cfg, "w7")?;
        let (db, rate) = load(&dir.join("0"), &[])?;
        r0.push(rate);
        let started = Instant::now();
        db.create_index("city")?;
        create.push(started.elapsed().as_secs_f64() * 1e3);
        let mut rng = Rng::new(run as u64);
        let queries = 2000;
        let started = Instant::now();
        for _ in 0..queries {
            let city = json!(format!("c{}", rng.below(cities)));
            black_box(db.find("city", &city)?);
        }
        find.push(queries as f64 / started.elapsed().as_secs_f64());
        let scans = 10;
        let started = Instant::now();
        for _ in 0..scans {
            let city = json!(format!("c{}", rng.below(cities)));
            // What a program without the index does: read every value, parse it, compare.
            let hits: Vec<String> = db
                .scan_prefix("")
                .into_iter()
                .filter(|(_, v)| v.to_value().get("city") == Some(&city))
                .map(|(k, _)| k)
                .collect();
            black_box(hits);
        }
        scan.push(scans as f64 / started.elapsed().as_secs_f64());
        db.close()?;
        r1.push(load(&dir.join("1"), &["city"])?.1);
        r3.push(load(&dir.join("3"), &["city", "age", "name"])?.1);
    }
    let w = format!("7 indexes at {}k keys", cfg.keys / 1000);
    t.add("create_index", &w, "create_index(\"city\")", "ms", &create);
    t.add("scan", &w, "full scan: scan_prefix(\"\") + filter on city", "queries/s", &scan);
    t.add_vs("find", &w, "find(\"city\", ..) through the index", "queries/s", &find, "scan", "full scan", None);
    t.add("idx0", &w, "relaxed sets, 0 indexes", "sets/s", &r0);
    t.add_vs("idx1", &w, "relaxed sets, 1 index (city)", "sets/s", &r1, "idx0", "0 indexes", None);
    t.add_vs("idx3", &w, "relaxed sets, 3 indexes (city, age, name)", "sets/s", &r3, "idx0", "0 indexes", None);
    Ok(())
}

/// Workload 8: an ordered index on `n` (each record's position, unique): a range returning
/// 100 keys and `sort by n desc limit 10` through it vs the same queries scanning, and relaxed
/// write throughput with one ordered index vs none.
fn ordered_indexes(cfg: &Config, t: &mut Table) -> BoxResult<()> {
    // 0: no index, 1: a hash index on n, 2: an ordered index on n.
    let load = |dir: &Path, kind: u8| -> BoxResult<(Db, f64)> {
        let db = relaxed(dir)?;
        match kind {
            1 => db.create_index("n")?,
            2 => db.create_ordered_index("n")?,
            _ => {}
        }
        let data: Vec<(String, Value)> = dataset(cfg.keys)
            .into_iter()
            .enumerate()
            .map(|(i, (k, mut v))| {
                if let Value::Object(m) = &mut v {
                    m.insert("n".into(), json!(i));
                }
                (k, v)
            })
            .collect();
        let started = Instant::now();
        for (k, v) in data {
            db.set(k, v)?;
        }
        db.sync()?;
        Ok((db, cfg.keys as f64 / started.elapsed().as_secs_f64()))
    };
    let top = Query::parse("exists n sort by n desc limit 10")?;
    let span = (cfg.keys as u64).saturating_sub(100).max(1);
    let range = |rng: &mut Rng| -> BoxResult<Query> {
        let low = rng.below(span);
        Ok(Query::parse(&format!("n >= {low} and n < {}", low + 100))?)
    };
    let (mut wh, mut w0, mut w1, mut scan, mut ranged, mut sorted, mut walked) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 0..cfg.runs {
        progress(&format!("8 ordered indexes, run {}", run + 1));
        let dir = fresh_dir(cfg, "w8")?;
        let (db, rate) = load(&dir.join("0"), 0)?;
        w0.push(rate);
        let mut rng = Rng::new(run as u64);
        let scans = 5;
        let started = Instant::now();
        for _ in 0..scans {
            let r = db.query(&range(&mut rng)?)?;
            if r.entries.len() != 100 {
                return Err(format!("{} keys in a range of 100 ({})", r.entries.len(), r.plan).into());
            }
        }
        scan.push(scans as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        for _ in 0..scans {
            black_box(db.query(&top)?);
        }
        sorted.push(scans as f64 / started.elapsed().as_secs_f64());
        db.close()?;
        wh.push(load(&dir.join("h"), 1)?.1);
        let (db, rate) = load(&dir.join("1"), 2)?;
        w1.push(rate);
        let queries = 2000;
        let started = Instant::now();
        for _ in 0..queries {
            let r = db.query(&range(&mut rng)?)?;
            if r.entries.len() != 100 {
                return Err(format!("{} keys in a range of 100 ({})", r.entries.len(), r.plan).into());
            }
        }
        ranged.push(queries as f64 / started.elapsed().as_secs_f64());
        let started = Instant::now();
        for _ in 0..queries {
            let r = db.query(&top)?;
            if !matches!(r.plan, Plan::OrderedWalk { stopped_early: true, .. }) {
                return Err(format!("not an ordered walk: {}", r.plan).into());
            }
        }
        walked.push(queries as f64 / started.elapsed().as_secs_f64());
        db.close()?;
    }
    let w = format!("8 ordered index at {}k keys", cfg.keys / 1000);
    t.add("oscan", &w, "query n >= X and n < X+100, scanning (no index)", "queries/s", &scan);
    t.add_vs("orange", &w, "the same through an ordered index on n", "queries/s", &ranged, "oscan", "scan", None);
    t.add("osort", &w, "query exists n sort by n desc limit 10, scanning", "queries/s", &sorted);
    t.add_vs("owalk", &w, "the same walking the ordered index", "queries/s", &walked, "osort", "full sort", None);
    t.add("ow0", &w, "relaxed sets, no index", "sets/s", &w0);
    t.add_vs("owh", &w, "relaxed sets, 1 hash index (n)", "sets/s", &wh, "ow0", "no index", None);
    t.add_vs("ow1", &w, "relaxed sets, 1 ordered index (n)", "sets/s", &w1, "ow0", "no index", None);
    Ok(())
}
