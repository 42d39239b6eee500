//! Three naive bulk loads of the harness's data (workload 3), alternated run by run: why the
//! harness's naive baseline is about twice as fast as one written independently
//! (docs/benchmarks.md, "The naive baseline"). `moved`: the harness's, data built before the
//! timer, key and value moved into the map; `cloned`: a store API taking `(&str, &Value)`, which
//! must clone both into its map; `built`: the data made inside the timed loop.
//!
//! `cargo run --release -p redru-testkit --example naive_baselines -- DIR [KEYS] [RUNS]`

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::time::Instant;

use redru_testkit::bench::{key, value};
use serde_json::Value;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn line(out: &mut impl Write, k: &str, v: &Value) -> BoxResult<()> {
    out.write_all(b"{\"key\":")?;
    serde_json::to_writer(&mut *out, k)?;
    out.write_all(b",\"value\":")?;
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"}\n")?;
    Ok(())
}

fn load(dir: &str, mode: &str, n: u64) -> BoxResult<f64> {
    let data: Vec<(String, Value)> =
        if mode == "built" { Vec::new() } else { (0..n).map(|i| (key(i), value(i))).collect() };
    let started = Instant::now();
    let mut map: HashMap<String, Value> = HashMap::new();
    let mut out = BufWriter::new(std::fs::File::create(format!("{dir}/{mode}.jsonl"))?);
    match mode {
        "moved" => {
            for (k, v) in data {
                line(&mut out, &k, &v)?;
                map.insert(k, v);
            }
        }
        "cloned" => {
            for (k, v) in &data {
                line(&mut out, k, v)?;
                map.insert(k.clone(), v.clone());
            }
        }
        _ => {
            for i in 0..n {
                let (k, v) = (key(i), value(i));
                line(&mut out, &k, &v)?;
                map.insert(k, v);
            }
        }
    }
    out.flush()?;
    out.get_ref().sync_data()?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(map);
    Ok(rate)
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).ok_or("usage: naive_baselines DIR [KEYS] [RUNS]")?;
    let n: u64 = args.get(2).map_or(Ok(200_000), |s| s.parse())?;
    let runs: u32 = args.get(3).map_or(Ok(5), |s| s.parse())?;
    std::fs::create_dir_all(dir)?;
    for run in 1..=runs {
        let moved = load(dir, "moved", n)?;
        let cloned = load(dir, "cloned", n)?;
        let built = load(dir, "built", n)?;
        println!(
            "run {run}: moved {:.0}k/s, cloned {:.0}k/s, built {:.0}k/s; moved/cloned {:.2}, moved/built {:.2}",
            moved / 1e3,
            cloned / 1e3,
            built / 1e3,
            moved / cloned,
            moved / built
        );
    }
    Ok(())
}
