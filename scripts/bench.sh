#!/usr/bin/env bash
# Reruns every benchmark of docs/benchmarks.md: redru's workloads 1-11 against baselines measured
# in the same run (cargo bench --bench engine), then workloads 1-5 beside fjall, redb, sled and
# persistent-kv (the bench-peers crate, its own workspace), and prints both as one table.
#
# Results: bench-results/engine.json, bench-results/peers.json, bench-results/table.md.
# Sizes and repetitions come from REDRU_BENCH_* variables (crates/redru-testkit/src/bench.rs);
# REDRU_BENCH_QUICK=1 is a smoke run of about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${REDRU_BENCH_RESULTS:-bench-results}"
mkdir -p "$out"
# Absolute: cargo runs the engine bench in crates/redru, where a relative path would land.
out="$(cd "$out" && pwd)"
REDRU_BENCH_OUT="$out/engine.json" cargo bench -p redru --bench engine
REDRU_BENCH_OUT="$out/peers.json" cargo run --release --manifest-path bench-peers/Cargo.toml
echo
echo "# One table"
cargo run --quiet --release --manifest-path bench-peers/Cargo.toml -- --merge "$out/engine.json" "$out/peers.json" \
    | tee "$out/table.md"
