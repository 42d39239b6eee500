#!/usr/bin/env bash
# One-shot `redru get` on a data directory, wall time (date) and CPU time (perf stat's task-clock,
# all threads), binaries interleaved run by run so that they share the machine's load:
# docs/benchmarks.md, "Import, restore and one-shot get".
# Usage: scripts/oneshot-get.sh DIR KEY RUNS BINARY...
set -euo pipefail
dir=$1 key=$2 runs=$3
shift 3
for ((r = 1; r <= runs; r++)); do
    for bin in "$@"; do
        start=$(date +%s%N)
        cpu=$(perf stat -x, -e task-clock "$bin" -d "$dir" get "$key" 2>&1 >/dev/null | awk -F, '/task-clock/ {print $1}')
        end=$(date +%s%N)
        echo "$bin wall_ms=$(((end - start) / 1000000)) cpu_ms=$cpu"
    done
done
