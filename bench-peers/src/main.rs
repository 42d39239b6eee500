//! redru beside the embedded stores a user would pick instead (fjall, redb, sled,
//! persistent-kv): workloads 1-5 of issue 7, each store in its own durable mode for 1-2 and its
//! relaxed mode for 3-5, every figure divided by redru's (or the raw fdatasync loop's) in the
//! same run.
//!
//! `cargo run --release --manifest-path bench-peers/Cargo.toml` prints one Markdown table and
//! writes `bench-results/peers.json`; `-- --merge A.json B.json` prints the rows of earlier
//! result files as one table (scripts/bench.sh uses it). The environment variables are those
//! of the bench harness (crates/redru-testkit/src/bench.rs), plus `REDRU_BENCH_PEERS` (which stores, comma-separated) and
//! `REDRU_BENCH_PEER_THREADS`.

use redru_testkit::bench as common;

use std::hint::black_box;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::{Bound, BoxResult, Config, Rng, Row, Table, child, fresh_dir, key, num, percentile_us, progress, value};
use serde_json::{Value, json};

const MIB: f64 = 1024.0 * 1024.0;
const ALL: [&str; 5] = ["redru", "fjall", "redb", "sled", "persistent-kv"];

/// One store behind the operations the workloads need. Values arrive as owned JSON
/// (what a user has); the byte stores serialize them, redru keeps them.
trait Store: Send + Sync {
    fn set(&self, key: String, value: Value) -> BoxResult<()>;
    /// Looks up `keys[picks[i]]` for each pick the way the store reads best; returns hits.
    fn get_many(&self, keys: &[String], picks: &[u32]) -> BoxResult<usize>;
    /// Makes every write so far durable.
    fn sync(&self) -> BoxResult<()>;
}

struct Redru(redru::Db);

impl Store for Redru {
    fn set(&self, key: String, value: Value) -> BoxResult<()> {
        Ok(self.0.set(key, value)?)
    }
    fn get_many(&self, keys: &[String], picks: &[u32]) -> BoxResult<usize> {
        Ok(picks.iter().filter(|&&i| black_box(self.0.get(&keys[i as usize])).is_some()).count())
    }
    fn sync(&self) -> BoxResult<()> {
        Ok(self.0.sync()?)
    }
}

struct Fjall {
    keyspace: fjall::Keyspace,
    items: fjall::PartitionHandle,
    durable: bool,
}

impl Store for Fjall {
    fn set(&self, key: String, value: Value) -> BoxResult<()> {
        self.items.insert(key, serde_json::to_vec(&value)?)?;
        if self.durable {
            self.keyspace.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(())
    }
    fn get_many(&self, keys: &[String], picks: &[u32]) -> BoxResult<usize> {
        let mut hits = 0;
        for &i in picks {
            hits += usize::from(black_box(self.items.get(&keys[i as usize])?).is_some());
        }
        Ok(hits)
    }
    fn sync(&self) -> BoxResult<()> {
        Ok(self.keyspace.persist(fjall::PersistMode::SyncAll)?)
    }
}

const REDB_TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("data");

struct Redb {
    db: redb::Database,
    durable: bool,
    /// Relaxed commits since the last durable one: redb frees pages only at durable commits.
    relaxed: std::sync::atomic::AtomicUsize,
}

impl Redb {
    fn commit(&self, durability: redb::Durability, kv: Option<(&str, &[u8])>) -> BoxResult<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability);
        {
            let mut table = txn.open_table(REDB_TABLE)?;
            if let Some((k, v)) = kv {
                table.insert(k, v)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl Store for Redb {
    fn set(&self, key: String, value: Value) -> BoxResult<()> {
        let bytes = serde_json::to_vec(&value)?;
        let relaxed = self.relaxed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let durability =
            if self.durable || relaxed % 1000 == 999 { redb::Durability::Immediate } else { redb::Durability::None };
        self.commit(durability, Some((&key, &bytes)))
    }
    fn get_many(&self, keys: &[String], picks: &[u32]) -> BoxResult<usize> {
        // One read transaction for the whole loop: redb's cheapest way to read.
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_TABLE)?;
        let mut hits = 0;
        for &i in picks {
            hits += usize::from(black_box(table.get(keys[i as usize].as_str())?).is_some());
        }
        Ok(hits)
    }
    fn sync(&self) -> BoxResult<()> {
        self.commit(redb::Durability::Immediate, None)
    }
}

struct Sled {
    db: sled::Db,
    durable: bool,
}

impl Store for Sled {
    fn set(&self, key: String, value: Value) -> BoxResult<()> {
        self.db.insert(key.as_bytes(), serde_json::to_vec(&value)?)?;
        if self.durable {
            self.db.flush()?;
        }
        Ok(())
    }
    fn get_many(&self, keys: &[String], picks: &[u32]) -> BoxResult<usize> {
        let mut hits = 0;
        for &i in picks {
            hits += usize::from(black_box(self.db.get(keys[i as usize].as_bytes())?).is_some());
        }
        Ok(hits)
    }
    fn sync(&self) -> BoxResult<()> {
        self.db.flush()?;
        Ok(())
    }
}

struct Pkv(persistent_kv::PersistentKeyValueStore<String, Vec<u8>>);

impl Store for Pkv {
    fn set(&self, key: String, value: Value) -> BoxResult<()> {
        self.0.set(key, serde_json::to_vec(&value)?).map_err(|e| e.to_string())?;
        Ok(())
    }
    fn get_many(&self, keys: &[String], picks: &[u32]) -> BoxResult<usize> {
        Ok(picks.iter().filter(|&&i| black_box(self.0.get(&keys[i as usize])).is_some()).count())
    }
    fn sync(&self) -> BoxResult<()> {
        // BlockNoExplicitSync has no sync call of its own; writes are in the OS already.
        Ok(())
    }
}

/// Opens `kind` in `dir`: durable (every write fsynced before it returns) or relaxed (written
/// to the OS, fsynced at `sync`).
fn open(kind: &str, dir: &Path, durable: bool) -> BoxResult<Box<dyn Store>> {
    Ok(match kind {
        "redru" => {
            let mode = if durable { redru::Durability::Always } else { redru::Durability::Buffered };
            Box::new(Redru(redru::Options::new().durability(mode).auto_compact(false).open(dir)?))
        }
        "fjall" => {
            let keyspace = fjall::Config::new(dir).manual_journal_persist(durable).open()?;
            let items = keyspace.open_partition("items", fjall::PartitionCreateOptions::default())?;
            Box::new(Fjall { keyspace, items, durable })
        }
        "redb" => {
            let db = redb::Database::create(dir.join("data.redb"))?;
            let store = Redb { db, durable, relaxed: Default::default() };
            store.commit(redb::Durability::Immediate, None)?;
            Box::new(store)
        }
        "sled" => Box::new(Sled { db: sled::Config::new().path(dir).open()?, durable }),
        "persistent-kv" => {
            let sync_mode = if durable {
                persistent_kv::SyncMode::BlockAndSync
            } else {
                persistent_kv::SyncMode::BlockNoExplicitSync
            };
            let config = persistent_kv::Config { sync_mode, silent: true, ..Default::default() };
            Box::new(Pkv(persistent_kv::PersistentKeyValueStore::new(dir, config).map_err(|e| e.to_string())?))
        }
        other => return Err(format!("unknown store {other}").into()),
    })
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let (kind, dir) = match &args[i + 1..] {
            [kind, dir, ..] => (kind.as_str(), Path::new(dir)),
            _ => return Err("usage: --child <store> <dir>".into()),
        };
        let before = common::rss_bytes();
        let started = Instant::now();
        let store = open(kind, dir, false)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        println!("{}", json!({"ms": ms, "rss_before": before, "rss": common::rss_bytes()}));
        drop(store);
        return Ok(());
    }
    if let Some(i) = args.iter().position(|a| a == "--merge") {
        return merge(&args[i + 1..]);
    }
    let mut cfg = Config::from_env("bench-results/peers.json");
    if std::env::var("REDRU_BENCH_RUNS").is_err() {
        // Five stores per run: three runs keep a full run within a few minutes.
        cfg.runs = cfg.runs.min(3);
    }
    if std::env::var("REDRU_BENCH_DURABLE_OPS").is_err() {
        // Some peers fsync more than once per write: keep a full run within minutes.
        cfg.durable_ops = cfg.durable_ops.min(1000);
    }
    let threads: Vec<usize> = std::env::var("REDRU_BENCH_PEER_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .filter(|l: &Vec<usize>| !l.is_empty())
        .unwrap_or_else(|| vec![1, 16, 64]);
    let peers: Vec<String> = std::env::var("REDRU_BENCH_PEERS")
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_else(|_| ALL.iter().map(|s| s.to_string()).collect());
    progress(&format!("config: {cfg:?}, threads {threads:?}, stores {peers:?}"));
    std::fs::create_dir_all(&cfg.dir)?;
    let mut samples: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for run in 0..cfg.runs {
        // 1: every store at once, in interleaved chunks, beside the raw loop.
        progress(&format!("1 durable single writer, all stores, run {}", run + 1));
        for (id, x) in durable_single(&cfg, &peers)? {
            samples.entry(id).or_default().push(x);
        }
        // 2: thread count by thread count, the stores one after the other.
        for &th in &threads {
            for kind in &peers {
                progress(&format!("2 {kind}, {th} threads, run {}", run + 1));
                let x = durable_threads(&cfg, kind, th.max(1))?;
                samples.entry(format!("{kind}/w2_{}", th.max(1))).or_default().push(x);
            }
        }
        for kind in &peers {
            progress(&format!("3-5 {kind}, run {}", run + 1));
            for (name, x) in relaxed_load(&cfg, kind, run)? {
                samples.entry(format!("{kind}/{name}")).or_default().push(x);
            }
        }
    }
    let mut t = Table::default();
    let g = |id: &str| samples.get(id).cloned().unwrap_or_default();
    let rows: Vec<(&str, String, &str, Option<&str>)> = {
        let mut rows = vec![("w1", "1 durable 1 writer: sets/s".to_owned(), "ops/s", Some("raw/w1"))];
        rows.push(("w1_p99", "1 durable 1 writer: p99".into(), "us", None));
        for th in &threads {
            rows.push((leak(format!("w2_{th}")), format!("2 durable {th} threads: sets/s"), "ops/s", None));
        }
        rows.push(("load", format!("3 bulk load {}k relaxed: sets/s", cfg.keys / 1000), "sets/s", None));
        rows.push(("get1", format!("4 random gets, 1 thread ({}k keys)", cfg.keys / 1000), "gets/s", None));
        rows.push(("get2", "4 random gets, 2 threads".into(), "gets/s", None));
        rows.push(("open", "5 reopen after the bulk load (fresh process)".into(), "ms", None));
        rows.push(("bytes", "5 bytes on disk after the bulk load".into(), "MiB", None));
        rows.push(("rss", "5 resident memory after reopen".into(), "MiB", None));
        rows
    };
    t.add("raw/w1", "1 durable 1 writer: sets/s", "raw 100 B append + fdatasync (interleaved)", "ops/s", &g("raw/w1"));
    for (id, workload, unit, baseline) in &rows {
        for kind in &peers {
            let mine = format!("{kind}/{id}");
            let measure = format!("{kind} ({})", mode_name(kind, id));
            match baseline {
                Some(b) => t.add_vs(&mine, workload, &measure, unit, &g(&mine), b, "raw append", None),
                None if kind == "redru" => t.add(&mine, workload, &measure, unit, &g(&mine)),
                None => t.add_vs(&mine, workload, &measure, unit, &g(&mine), &format!("redru/{id}"), "redru", None),
            }
        }
        if *id == "load" && peers.iter().any(|p| p == "redru") {
            let (m, g_never) = ("redru (Durability::Never)", g("redru/load_never"));
            t.add_vs("redru/load_never", workload, m, unit, &g_never, "redru/load", "redru", None);
        }
    }
    if peers.iter().any(|p| p == "redru") {
        let w = "5 redru after save (fresh process)";
        t.add("redru/snap_open", w, "redru open, all in the snapshot", "ms", &g("redru/snap_open"));
        t.add("redru/snap_bytes", w, "redru snapshot on disk", "MiB", &g("redru/snap_bytes"));
        let m = "redru resident memory after open (snapshot)";
        t.add_vs("redru/snap_rss", w, m, "MiB", &g("redru/snap_rss"), "redru/snap_bytes", "snapshot size", None);
    }
    if peers.iter().any(|p| p == "fjall") && peers.iter().any(|p| p == "redru") {
        let w = "target: durable single writer";
        t.hidden("fjall_w1", &g("fjall/w1"));
        let m = "redru durable single writer";
        t.add_vs("redru_w1_vs_fjall", w, m, "ops/s", &g("redru/w1"), "fjall_w1", "fjall", Some((Bound::AtLeast, 1.0)));
        let w = "target: bulk load";
        t.hidden("fjall_load", &g("fjall/load"));
        t.add_vs(
            "redru_vs_fjall",
            w,
            "redru relaxed bulk load",
            "sets/s",
            &g("redru/load"),
            "fjall_load",
            "fjall",
            Some((Bound::AtLeast, 1.5)),
        );
    }
    common::report(&cfg, "redru beside its peers", &t, json!({"threads": threads, "stores": peers}))?;
    // REDRU_BENCH_KEEP: leave the stores' directories, to open them again
    // alone (docs/benchmarks.md, round three).
    if std::env::var_os("REDRU_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&cfg.dir);
    }
    Ok(())
}

/// A `&'static str` for a row id made at run time (a handful per process).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn mode_name(kind: &str, id: &str) -> &'static str {
    let durable = id.starts_with("w1") || id.starts_with("w2");
    match (kind, durable) {
        ("redru", true) => "Durability::Always",
        ("redru", false) => "Durability::Buffered",
        ("fjall", true) => "persist(SyncData) per set",
        ("fjall", false) => "default journal, persist at end",
        ("redb", true) => "txn per set, Immediate",
        ("redb", false) => "txn per set, None; every 1000th Immediate",
        ("sled", true) => "flush per set",
        ("sled", false) => "default, flush at end",
        ("persistent-kv", true) => "BlockAndSync",
        ("persistent-kv", false) => "BlockNoExplicitSync",
        _ => "",
    }
}

/// Workload 1 on every store at once: each store's sets and the raw loop run in turn, chunk
/// by chunk, so that all of them see the same disk weather. Returns `(id, figure)` pairs.
fn durable_single(cfg: &Config, peers: &[String]) -> BoxResult<Vec<(String, f64)>> {
    let ops = cfg.durable_ops;
    let raw_dir = fresh_dir(cfg, "peer-raw")?;
    let mut raw = common::RawLog::new(&raw_dir, "raw-append.bin", ops, false)?;
    let mut stores = Vec::new();
    for kind in peers {
        let dir = fresh_dir(cfg, &format!("peer-{kind}-w1"))?;
        stores.push((kind.clone(), open(kind, &dir, true)?, Vec::with_capacity(ops), Duration::ZERO));
    }
    // Let each store settle after its open (redru preallocates its log's
    // first 8 MiB on a thread of its own): the timed loops see none of it.
    std::thread::sleep(Duration::from_millis(300));
    let mut raw_t = Duration::ZERO;
    let chunk = ops.div_ceil(common::CHUNKS);
    for c in 0..common::CHUNKS {
        let n_ops = chunk.min(ops.saturating_sub(c * chunk));
        raw_t += raw.run(n_ops)?;
        for (_, store, lat, total) in &mut stores {
            let started = Instant::now();
            for n in (c * chunk) as u64..(c * chunk + n_ops) as u64 {
                let (k, v) = (key(n), value(n));
                let t0 = Instant::now();
                store.set(k, v)?;
                lat.push(t0.elapsed());
            }
            *total += started.elapsed();
        }
    }
    let mut out = vec![("raw/w1".to_owned(), ops as f64 / raw_t.as_secs_f64())];
    for (kind, store, mut lat, total) in stores {
        drop(store);
        out.push((format!("{kind}/w1"), ops as f64 / total.as_secs_f64()));
        lat.sort_unstable();
        out.push((format!("{kind}/w1_p99"), percentile_us(&lat, 99.0)));
    }
    Ok(out)
}

/// Workload 2 on one store: `durable_ops` durable sets shared by `th` threads; returns sets/s.
fn durable_threads(cfg: &Config, kind: &str, th: usize) -> BoxResult<f64> {
    let dir = fresh_dir(cfg, &format!("peer-{kind}"))?;
    let store = open(kind, &dir, true)?;
    let per = cfg.durable_ops.div_ceil(th);
    let barrier = Barrier::new(th + 1);
    let elapsed = std::thread::scope(|s| -> BoxResult<Duration> {
        let handles: Vec<_> = (0..th)
            .map(|t| {
                let (store, barrier) = (&store, &barrier);
                s.spawn(move || -> BoxResult<()> {
                    barrier.wait();
                    for i in 0..per {
                        let n = (i * th + t) as u64;
                        store.set(key(n), value(n))?;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        for h in handles {
            h.join().map_err(|_| "writer thread panicked")??;
        }
        Ok(started.elapsed())
    })?;
    Ok((per * th) as f64 / elapsed.as_secs_f64())
}

/// Workloads 3-5 on one store in its relaxed mode; returns `(measure id, figure)` pairs.
fn relaxed_load(cfg: &Config, kind: &str, run: usize) -> BoxResult<Vec<(String, f64)>> {
    let mut out = Vec::new();
    // 3: relaxed bulk load, then a sync.
    let dir = fresh_dir(cfg, &format!("peer-{kind}"))?;
    let store = open(kind, &dir, false)?;
    let data: Vec<(String, Value)> = (0..cfg.keys as u64).map(|n| (key(n), value(n))).collect();
    let started = Instant::now();
    for (k, v) in data {
        store.set(k, v)?;
    }
    store.sync()?;
    out.push(("load".into(), cfg.keys as f64 / started.elapsed().as_secs_f64()));
    // 4: random gets from 1 and 2 threads.
    let keys: Vec<String> = (0..cfg.keys as u64).map(key).collect();
    let mut rng = Rng::new(7 + run as u64);
    let picks: Vec<u32> = (0..cfg.gets).map(|_| rng.below(cfg.keys as u64) as u32).collect();
    for th in [1usize, 2] {
        let chunk = picks.len().div_ceil(th);
        let started = Instant::now();
        let hits = std::thread::scope(|s| -> BoxResult<usize> {
            let handles: Vec<_> = picks
                .chunks(chunk)
                .map(|part| s.spawn(|| store.get_many(&keys, part).map_err(|e| e.to_string())))
                .collect();
            let mut hits = 0;
            for h in handles {
                hits += h.join().map_err(|_| "reader thread panicked")??;
            }
            Ok(hits)
        })?;
        if hits != picks.len() {
            return Err(format!("{kind}: {hits} of {} gets found their key", picks.len()).into());
        }
        out.push((format!("get{th}"), picks.len() as f64 / started.elapsed().as_secs_f64()));
    }
    // 5: reopen in a fresh process; bytes on disk.
    drop(store);
    out.push(("bytes".into(), common::dir_bytes(&dir) as f64 / MIB));
    let answer = child(&["--child", kind, &dir.to_string_lossy()])?;
    out.push(("open".into(), num(&answer, "ms")?));
    out.push(("rss".into(), num(&answer, "rss")? / MIB));
    if kind == "redru" {
        // The same load in `Durability::Never` (one write(2) per set), for comparison.
        let never_dir = fresh_dir(cfg, "peer-redru-never")?;
        let never = redru::Options::new().durability(redru::Durability::Never).auto_compact(false).open(&never_dir)?;
        let data: Vec<(String, Value)> = (0..cfg.keys as u64).map(|n| (key(n), value(n))).collect();
        let started = Instant::now();
        for (k, v) in data {
            never.set(k, v)?;
        }
        never.sync()?;
        out.push(("load_never".into(), cfg.keys as f64 / started.elapsed().as_secs_f64()));
        never.close()?;
        std::fs::remove_dir_all(&never_dir)?;
        // The same data after `save`: opened from the snapshot alone.
        let db = redru::Options::new().auto_compact(false).open(&dir)?;
        let snap_bytes = db.save()?.bytes as f64;
        db.close()?;
        let answer = child(&["--child", kind, &dir.to_string_lossy()])?;
        out.push(("snap_open".into(), num(&answer, "ms")?));
        out.push(("snap_rss".into(), num(&answer, "rss")? / MIB));
        out.push(("snap_bytes".into(), snap_bytes / MIB));
    }
    Ok(out)
}

/// Prints the rows of earlier result files as one table, after the machine they ran on.
fn merge(files: &[String]) -> BoxResult<()> {
    let mut rows: Vec<Row> = Vec::new();
    let mut machine = None;
    for file in files {
        let doc: Value = serde_json::from_slice(&std::fs::read(file)?)?;
        let part: Vec<Row> = serde_json::from_value(doc.get("rows").cloned().unwrap_or(Value::Null))?;
        rows.extend(part);
        machine = machine.or_else(|| doc.get("machine").cloned());
    }
    if let Some(Value::Object(m)) = machine {
        for (k, v) in m {
            match v {
                Value::String(s) => println!("- {k}: {}", s.replace('\n', "\n  ")),
                other => println!("- {k}: {other}"),
            }
        }
        println!();
    }
    println!("{}", common::markdown(&rows));
    Ok(())
}
