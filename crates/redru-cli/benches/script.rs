//! Scripts at full speed (issue 12, point 10): the same 200,000 `set` lines
//! run as a script in each `--durability` mode and inside one `begin` ...
//! `commit`, against `import` of the same pairs, through the real binary.
//!
//! `cargo bench -p redru-cli --bench script`; `REDRU_BENCH_SCRIPT_LINES`
//! (default 200000), `REDRU_BENCH_RUNS` (default 3) and `REDRU_BENCH_DIR`
//! (default `target/bench-data`: the disk measured) change it. Prints a
//! Markdown table: median and spread of each row's seconds, and its median
//! ratio to `import`, taken run by run.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_redru");

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn value(i: usize) -> String {
    format!(
        "{{\"name\":\"user{i}\",\"age\":{},\"city\":\"c{}\",\"email\":\"user{i}@example.com\",\"tags\":[\"a\",\"b\"]}}",
        i % 100,
        i % 1000
    )
}

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Runs `redru --dir DIR ARGS < input` on a fresh directory; returns the seconds it took.
fn timed(work: &Path, args: &[&str], input: &Path) -> Result<f64> {
    let dir = work.join("db");
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let status = Command::new(BIN)
        .arg("--dir")
        .arg(&dir)
        .args(args)
        .env("REDRU_HISTORY", "")
        .stdin(std::fs::File::open(input)?)
        .stdout(Stdio::null())
        .status()?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("redru {args:?} failed: {status}").into());
    }
    Ok(seconds)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let lines = env_or("REDRU_BENCH_SCRIPT_LINES", 200_000);
    let runs = env_or("REDRU_BENCH_RUNS", 3).max(1);
    let base = std::env::var_os("REDRU_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data"));
    std::fs::create_dir_all(&base)?;
    let work = tempfile::tempdir_in(&base)?;
    let w = work.path();
    let script: String = (0..lines).map(|i| format!("set user:{i} {}\n", value(i))).collect();
    std::fs::write(w.join("sets.redru"), &script)?;
    std::fs::write(w.join("batch.redru"), format!("begin\n{script}commit\n"))?;
    let dump: String = (0..lines).map(|i| format!("{{\"key\":\"user:{i}\",\"value\":{}}}\n", value(i))).collect();
    std::fs::write(w.join("dump.jsonl"), dump)?;

    let rows: [(&str, Vec<&str>, &str); 5] = [
        ("`import` of the same pairs (baseline)", vec!["import", "-"], "dump.jsonl"),
        ("script, `--durability always` (default)", vec!["--durability", "always"], "sets.redru"),
        ("script, `--durability buffered`", vec!["--durability", "buffered"], "sets.redru"),
        ("script, `--durability never`", vec!["--durability", "never"], "sets.redru"),
        ("script in one `begin` ... `commit`, always", vec!["--durability", "always"], "batch.redru"),
    ];
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for run in 0..runs {
        for (i, (name, args, input)) in rows.iter().enumerate() {
            let s = timed(w, args, &w.join(input))?;
            eprintln!("run {}/{runs}: {name}: {s:.2} s", run + 1);
            seconds[i].push(s);
        }
    }
    println!("{lines} lines, {runs} runs; seconds: median (min-max); ratio to import: median of the runs' ratios\n");
    println!("| workload | seconds | x import |");
    println!("|---|---|---|");
    for (i, (name, _, _)) in rows.iter().enumerate() {
        let s = &seconds[i];
        let min = s.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.iter().copied().fold(0.0, f64::max);
        let ratio = median(s.iter().zip(&seconds[0]).map(|(a, b)| a / b).collect());
        println!("| {name} | {:.2} ({min:.2}-{max:.2}) | {ratio:.1} |", median(s.clone()));
    }
    Ok(())
}
