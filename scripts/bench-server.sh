#!/usr/bin/env bash
# redis-benchmark against `redru serve` (appendfsync always: every reply after its fsync) and
# against redis-server with appendfsync always and everysec, side by side in one run, on the same
# machine, with the same load: -c 50 -P 16 -t set,get, 3-byte values unless REDRU_BENCH_SERVER_D.
# Prints a Markdown table (requests/s, p50, p99, ratios to Redis always), fsyncs per SET for redru,
# and resident memory after REDRU_BENCH_SERVER_KEYS distinct keys.
#
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools).
# Sizes: REDRU_BENCH_SERVER_N (requests per test, default 200000), REDRU_BENCH_SERVER_KEYS
# (distinct keys for the memory row, default 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${REDRU_BENCH_SERVER_N:-200000}"
keys="${REDRU_BENCH_SERVER_KEYS:-1000000}"
size="${REDRU_BENCH_SERVER_D:-3}"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --quiet --release -p redru-cli
bin=target/release/redru

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

# One server: name, pid, port. Prints "name test rps p50 p99" lines.
measure() {
    local name=$1 port=$2
    redis-benchmark -p "$port" -c 50 -P 16 -t set,get -n "$n" -d "$size" -r 100000 --csv 2>/dev/null \
        | tail -n +2 | tr -d '"' | awk -F, -v name="$name" '{print name, $1, $2, $5, $7}'
}

fill() { # distinct keys for the memory row
    redis-benchmark -p "$1" -c 50 -P 64 -t set -n "$keys" -r "$keys" -d "$size" -q >/dev/null 2>&1 || true
}

results="$work/results"
: > "$results"
memory=""

# redru serve, durable replies.
port=$(free_port)
$bin --dir "$work/redru" serve --port "$port" 2>"$work/redru.log" &
pid=$!
wait_port "$port"
measure "redru-always" "$port" >> "$results"
syncs=$(redis-cli -p "$port" info persistence | tr -d '\r' | awk -F: '/redru_wal_syncs/ {print $2}')
fill "$port"
memory="$memory redru=$(rss_mib $pid)MiB($(redis-cli -p "$port" dbsize)keys)"
redis-cli -p "$port" shutdown >/dev/null 2>&1 || true
wait $pid || true

for mode in always everysec; do
    port=$(free_port)
    mkdir -p "$work/redis-$mode"
    redis-server --port "$port" --dir "$work/redis-$mode" --save '' --appendonly yes --appendfsync "$mode" \
        --daemonize no --logfile "$work/redis-$mode.log" &
    pid=$!
    wait_port "$port"
    measure "redis-$mode" "$port" >> "$results"
    if [ "$mode" = always ]; then
        fill "$port"
        memory="$memory redis=$(rss_mib $pid)MiB($(redis-cli -p "$port" dbsize)keys)"
    fi
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait $pid || true
done

echo "| server | test | requests/s | p50 ms | p99 ms | vs Redis always |"
echo "|---|---|---|---|---|---|"
awk '{ key=$2; if ($1=="redis-always") base[key]=$3; row[NR]=$0 }
     END { for (i=1;i<=NR;i++) { split(row[i], f, " "); printf "| %s | %s | %.0f | %s | %s | %.2fx |\n", f[1], f[2], f[3], f[4], f[5], f[3]/base[f[2]] } }' "$results"
echo
echo "redru fsyncs during the SET test: $syncs for $n SETs ($(python3 -c "print(round($syncs/$n, 4))") per SET)"
echo "resident memory after $keys distinct ${size}-byte SETs:$memory"
