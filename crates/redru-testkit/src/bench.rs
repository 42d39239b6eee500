//! What the engine bench (benches/engine.rs) and the peers crate (bench-peers/) share: the
//! workload's keys and values, the configuration from environment variables, the physical-limit
//! baseline, statistics, the machine description and the result table (Markdown on stdout, JSON
//! on disk). Every figure is kept per run so that ratios are taken run by run, against a baseline
//! measured in the same run, before the median is taken.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::error::Error;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The error type of the harness: anything, with its message.
pub type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The key of record `n`: `user:n`.
pub fn key(n: u64) -> String {
    format!("user:{n}")
}

/// The value of record `n`, about 90 bytes as JSON. Record 17 is
/// `{"name":"user17","age":17,"city":"c17","email":"user17@example.com","tags":["a","b"]}`;
/// ages repeat every 100 records and cities every 1000, so an index lookup finds a
/// realistic handful of keys.
pub fn value(n: u64) -> Value {
    json!({
        "name": format!("user{n}"),
        "age": n % 100,
        "city": format!("c{}", n % 1000),
        "email": format!("user{n}@example.com"),
        "tags": ["a", "b"],
    })
}

pub use crate::rng::Rng;

/// The sizes and repetitions of a run, from environment variables.
///
/// `REDRU_BENCH_QUICK=1` switches every default to a smoke-test size (well under a minute);
/// each `REDRU_BENCH_*` variable below overrides one number.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// `REDRU_BENCH_RUNS`: repetitions of each workload (median and spread are over these).
    pub runs: usize,
    /// `REDRU_BENCH_DURABLE_OPS`: durable sets per run of workload 1 (and per thread count in 2).
    pub durable_ops: usize,
    /// `REDRU_BENCH_THREADS`: thread counts of workload 2, comma-separated.
    pub threads: Vec<usize>,
    /// `REDRU_BENCH_KEYS`: keys of the bulk load (workloads 3, 4, 5 and 7).
    pub keys: usize,
    /// `REDRU_BENCH_GETS`: random gets of workload 4.
    pub gets: usize,
    /// `REDRU_BENCH_SAVE_KEYS`: database sizes of workload 6, comma-separated.
    pub save_keys: Vec<usize>,
    /// `REDRU_BENCH_ONLY`: the workloads to run, comma-separated (all if unset).
    pub only: Vec<usize>,
    /// `REDRU_BENCH_DIR`: where the databases are made (on the disk being measured).
    pub dir: PathBuf,
    /// `REDRU_BENCH_OUT`: the JSON file written.
    pub out: PathBuf,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    let parsed: Option<Vec<usize>> =
        std::env::var(name).ok().map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect());
    match parsed {
        Some(list) if !list.is_empty() => list,
        _ => default.to_vec(),
    }
}

impl Config {
    /// Reads the environment; `default_out` is the JSON file written unless `REDRU_BENCH_OUT` says otherwise.
    pub fn from_env(default_out: &str) -> Config {
        let quick = std::env::var("REDRU_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let (runs, durable_ops, keys, gets, save_keys): (usize, usize, usize, usize, &[usize]) = if quick {
            (3, 300, 20_000, 100_000, &[20_000, 50_000])
        } else {
            (5, 3_000, 200_000, 1_000_000, &[200_000, 1_000_000])
        };
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("target"));
        Config {
            runs: env_usize("REDRU_BENCH_RUNS", runs).max(1),
            durable_ops: env_usize("REDRU_BENCH_DURABLE_OPS", durable_ops).max(10),
            threads: env_list("REDRU_BENCH_THREADS", &[1, 2, 4, 8, 16, 64]),
            keys: env_usize("REDRU_BENCH_KEYS", keys).max(1000),
            gets: env_usize("REDRU_BENCH_GETS", gets).max(1000),
            save_keys: env_list("REDRU_BENCH_SAVE_KEYS", save_keys),
            only: env_list("REDRU_BENCH_ONLY", &[]),
            dir: std::env::var("REDRU_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|_| target.join("bench-data")),
            out: std::env::var("REDRU_BENCH_OUT").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(default_out)),
        }
    }
}

impl Config {
    /// Whether any of `workloads` was asked for.
    pub fn wants(&self, workloads: &[usize]) -> bool {
        self.only.is_empty() || workloads.iter().any(|w| self.only.contains(w))
    }
}

/// A fresh, empty directory `name` under the bench directory.
pub fn fresh_dir(cfg: &Config, name: &str) -> BoxResult<PathBuf> {
    let dir = cfg.dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The physical limit of a durable log: 100-byte records, each followed by fdatasync, appended
/// to a growing file (`preallocated == false`, what a plain log does) or written over a file
/// whose space was written and synced beforehand (what a log that preallocates would pay).
/// Call [`RawLog::run`] in chunks interleaved with the measured engine, so that both see the
/// same disk weather on a shared machine.
pub struct RawLog {
    file: File,
    path: PathBuf,
    preallocated: bool,
    offset: u64,
}

impl RawLog {
    /// Creates the file `name` in `dir`, room for `ops` records when preallocated.
    pub fn new(dir: &Path, name: &str, ops: usize, preallocated: bool) -> BoxResult<RawLog> {
        use std::os::unix::fs::FileExt;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let file = if preallocated {
            let file = OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
            file.write_all_at(&vec![0u8; ops * 100 + 4096], 0)?;
            file.sync_all()?;
            file
        } else {
            OpenOptions::new().append(true).create(true).open(&path)?
        };
        Ok(RawLog { file, path, preallocated, offset: 0 })
    }

    /// Writes and fdatasyncs `ops` records; returns the time taken.
    pub fn run(&mut self, ops: usize) -> BoxResult<Duration> {
        use std::os::unix::fs::FileExt;
        let line = [b'x'; 100];
        let started = Instant::now();
        for _ in 0..ops {
            if self.preallocated {
                self.file.write_all_at(&line, self.offset)?;
            } else {
                self.file.write_all(&line)?;
            }
            self.offset += 100;
            self.file.sync_data()?;
        }
        Ok(started.elapsed())
    }
}

impl RawLog {
    /// Writes one 100-byte record at the end (or at the next offset), without syncing.
    pub fn write_one(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let line = [b'y'; 100];
        if self.preallocated {
            self.file.write_all_at(&line, self.offset)?;
        } else {
            self.file.write_all(&line)?;
        }
        self.offset += 100;
        Ok(())
    }

    /// Overwrites record slot `slot` of a preallocated file, without syncing.
    pub fn write_one_at(&mut self, slot: usize) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(&[b'y'; 100], (slot * 100) as u64)
    }
}

impl Drop for RawLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How many chunks a durable measurement is cut into, to interleave it with its baseline.
pub const CHUNKS: usize = 10;

/// Ops per second of the plain append loop, `ops` records in one go.
pub fn raw_append_fdatasync(dir: &Path, ops: usize) -> BoxResult<f64> {
    let mut raw = RawLog::new(dir, "raw-append.bin", ops, false)?;
    Ok(ops as f64 / raw.run(ops)?.as_secs_f64())
}

/// Latency percentile `p` (0..=100) of `sorted` latencies, in microseconds.
pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// The process's resident set size (VmRSS), in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Total size of the files under `path`.
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs this executable again with `args` and parses the JSON object it prints last on stdout.
/// Measurements of resident memory and open time run there, in a process that has allocated
/// nothing before.
pub fn child(args: &[&str]) -> BoxResult<Value> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe).args(args).output()?;
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).ok_or("child printed no JSON")?;
    Ok(serde_json::from_str(line)?)
}

/// A number from a child's JSON answer.
pub fn num(v: &Value, field: &str) -> BoxResult<f64> {
    v.get(field).and_then(Value::as_f64).ok_or_else(|| format!("child answer has no `{field}`: {v}").into())
}

/// Whether a target is a floor or a ceiling on a ratio.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The ratio must be at least the value.
    AtLeast,
    /// The ratio must be at most the value.
    AtMost,
}

/// A target from issue 7.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    /// Floor or ceiling.
    pub bound: Bound,
    /// The limit.
    pub value: f64,
    /// Whether the median ratio meets it.
    pub met: bool,
}

/// Median and spread of per-run samples.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Median over the runs.
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Every run's figure, in run order.
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarises `samples` (at least one).
    pub fn of(samples: &[f64]) -> Summary {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Summary {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            samples: samples.to_vec(),
        }
    }
}

/// A figure compared with another measured in the same runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Versus {
    /// What the figure is divided by.
    pub baseline: String,
    /// figure / baseline, run by run.
    pub ratio: Summary,
    /// The target for the ratio, if it sets one.
    pub target: Option<Target>,
}

/// One line of the result table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// Which workload (1-7, or a peer's name).
    pub workload: String,
    /// What was measured.
    pub measure: String,
    /// Its unit.
    pub unit: String,
    /// The figure over the runs.
    pub value: Summary,
    /// The comparison, if any.
    pub versus: Option<Versus>,
}

/// The rows of a run, in order, by measure name for ratio lookups.
#[derive(Default)]
pub struct Table {
    /// The rows, in the order they were added.
    pub rows: Vec<Row>,
    samples: BTreeMap<String, Vec<f64>>,
}

impl Table {
    /// Adds a row without comparison; `id` names its samples for later ratios.
    pub fn add(&mut self, id: &str, workload: &str, measure: &str, unit: &str, samples: &[f64]) {
        self.samples.insert(id.to_owned(), samples.to_vec());
        self.rows.push(Row {
            workload: workload.to_owned(),
            measure: measure.to_owned(),
            unit: unit.to_owned(),
            value: Summary::of(samples),
            versus: None,
        });
    }

    /// Adds a row compared run by run with the samples of `baseline_id` (divided by `scale`,
    /// for targets against a fixed number), with an optional target on the ratio.
    #[allow(clippy::too_many_arguments)]
    pub fn add_vs(
        &mut self,
        id: &str,
        workload: &str,
        measure: &str,
        unit: &str,
        samples: &[f64],
        baseline_id: &str,
        baseline_name: &str,
        target: Option<(Bound, f64)>,
    ) {
        self.add(id, workload, measure, unit, samples);
        let base = self.samples.get(baseline_id).cloned().unwrap_or_default();
        let ratios: Vec<f64> = samples.iter().zip(base.iter()).map(|(a, b)| a / b).collect();
        let ratio = Summary::of(&ratios);
        let target = target.map(|(bound, value)| Target {
            bound,
            value,
            met: match bound {
                Bound::AtLeast => ratio.median >= value,
                Bound::AtMost => ratio.median <= value,
            },
        });
        if let Some(row) = self.rows.last_mut() {
            row.versus = Some(Versus { baseline: baseline_name.to_owned(), ratio, target });
        }
    }

    /// Registers samples usable as a baseline without printing a row.
    pub fn hidden(&mut self, id: &str, samples: &[f64]) {
        self.samples.insert(id.to_owned(), samples.to_vec());
    }
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt_ratio(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The rows as one Markdown table: median, spread (min-max over runs), ratio to the same-run
/// baseline (median and spread of the per-run ratios), the target and whether it is met.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | measure | median | min-max | vs (same run) | ratio | min-max | target | met |\n|---|---|---:|---:|---|---:|---:|---:|:-:|\n",
    );
    for row in rows {
        let v = &row.value;
        let unit = if row.unit.is_empty() { String::new() } else { format!(" {}", row.unit) };
        let (vs, ratio, spread, target, met) = match &row.versus {
            None => (String::new(), String::new(), String::new(), String::new(), String::new()),
            Some(vs) => {
                let (target, met) = match &vs.target {
                    None => (String::new(), String::new()),
                    Some(t) => (
                        format!("{} {}", if t.bound == Bound::AtLeast { ">=" } else { "<=" }, fmt_ratio(t.value)),
                        if t.met { "yes".into() } else { "**no**".into() },
                    ),
                };
                (
                    vs.baseline.clone(),
                    format!("{}x", fmt_ratio(vs.ratio.median)),
                    format!("{}-{}", fmt_ratio(vs.ratio.min), fmt_ratio(vs.ratio.max)),
                    target,
                    met,
                )
            }
        };
        out.push_str(&format!(
            "| {} | {} | {}{unit} | {}-{} | {vs} | {ratio} | {spread} | {target} | {met} |\n",
            row.workload,
            row.measure,
            fmt_num(v.median),
            fmt_num(v.min),
            fmt_num(v.max),
        ));
    }
    out
}

/// What the numbers ran on.
pub fn machine(cfg: &Config) -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|s| s.trim_start_matches([' ', '\t', ':']));
    let mem = read("/proc/meminfo").lines().find(|l| l.starts_with("MemTotal")).map(|l| l.to_owned());
    let df = std::process::Command::new("df")
        .arg("-h")
        .arg(&cfg.dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu.unwrap_or("?"),
        "memory": mem.unwrap_or_default(),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "disk": df,
    })
}

/// Prints the table on stdout and writes it, with the machine and the configuration, as JSON.
pub fn report(cfg: &Config, title: &str, table: &Table, extra: Value) -> BoxResult<()> {
    println!("\n## {title}\n");
    println!("{}", markdown(&table.rows));
    let doc = json!({
        "title": title,
        "machine": machine(cfg),
        "config": cfg,
        "rows": table.rows,
        "extra": extra,
    });
    if let Some(parent) = cfg.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = File::create(&cfg.out)?;
    serde_json::to_writer_pretty(&mut file, &doc)?;
    file.write_all(b"\n")?;
    println!("(written to {})", cfg.out.display());
    Ok(())
}

/// Prints progress on stderr, so stdout stays the table.
pub fn progress(what: &str) {
    eprintln!("[bench] {what}");
}
