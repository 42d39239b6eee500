#!/usr/bin/env bash
# The cluster's figures (docs/cluster.md, "Figures"), in one run on one machine:
# 1. durable SET throughput of a three-node `redru serve --cluster` (through the leader, and
#    through a follower, which forwards) as a ratio of a single `redru serve` (appendfsync always),
#    both measured here with the same redis-benchmark load: -t set -c 50, no pipelining unless
#    REDRU_BENCH_CLUSTER_P;
# 2. leader failover: SIGKILL the leader, then SET through the other nodes until one is
#    acknowledged; the time between, REDRU_BENCH_CLUSTER_FAILOVERS samples (the killed node is
#    restarted and caught up between samples).
#
# Needs redis-benchmark and redis-cli (Debian: redis-tools). Sizes: REDRU_BENCH_CLUSTER_N
# (requests per throughput test, default 50000), REDRU_BENCH_CLUSTER_FAILOVERS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${REDRU_BENCH_CLUSTER_N:-50000}"
pipeline="${REDRU_BENCH_CLUSTER_P:-1}"
samples="${REDRU_BENCH_CLUSTER_FAILOVERS:-5}"
work="$(mktemp -d)"
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --quiet --release -p redru-cli
bin=$PWD/target/release/redru
export REDRU_CLUSTER_SECRET="bench-secret-$(date +%s%N)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
now_ms() { date +%s%3N; }
rps() { redis-benchmark -p "$1" -c 50 -P "$pipeline" -t set -n "$n" -r 100000 --csv 2>/dev/null | tail -n 1 | tr -d '"' | cut -d, -f2; }

# The single server.
single_port=$(free_port)
"$bin" --dir "$work/single" serve --port "$single_port" 2>>"$work/single.log" & single_pid=$!
wait_port "$single_port"
single=$(rps "$single_port")
kill "$single_pid"; wait "$single_pid" 2>/dev/null || true

# Three nodes.
declare -a port peer pid
start_node() { # index (1..3)
    "$bin" --dir "$work/n$1" serve --port "${port[$1]}" --cluster --node-id "$1" \
        --cluster-addr "127.0.0.1:${peer[$1]}" 2>>"$work/n$1.log" &
    pid[$1]=$!
    wait_port "${port[$1]}"
}
for i in 1 2 3; do port[$i]=$(free_port); peer[$i]=$(free_port); start_node "$i"; done
redis-cli -p "${port[1]}" REDRU.CLUSTER INIT >/dev/null
sleep 1
redis-cli -p "${port[1]}" REDRU.CLUSTER ADDLEARNER 2 "127.0.0.1:${peer[2]}" >/dev/null
redis-cli -p "${port[1]}" REDRU.CLUSTER ADDLEARNER 3 "127.0.0.1:${peer[3]}" >/dev/null
redis-cli -p "${port[1]}" REDRU.CLUSTER MEMBERSHIP 1 2 3 >/dev/null
leader_of() { for i in 1 2 3; do
    if redis-cli -p "${port[$i]}" INFO replication 2>/dev/null | grep -q 'redru_raft_role:leader'; then echo "$i"; return; fi
done; echo 0; }
leader=$(leader_of)
via_leader=$(rps "${port[$leader]}")
follower=$(( leader % 3 + 1 ))
via_follower=$(rps "${port[$follower]}")

echo "| load | requests/s | ratio to one server |"
echo "|---|---|---|"
echo "| one \`redru serve\` (appendfsync always) | $single | 1.00 |"
awk -v s="$single" -v l="$via_leader" -v f="$via_follower" 'BEGIN {
    printf "| three nodes, through the leader | %s | %.2f |\n", l, l / s
    printf "| three nodes, through a follower (forwarded) | %s | %.2f |\n", f, f / s }'

# Failovers.
times=()
for s in $(seq "$samples"); do
    leader=$(leader_of)
    [ "$leader" = 0 ] && { sleep 1; leader=$(leader_of); }
    kill -9 "${pid[$leader]}"; wait "${pid[$leader]}" 2>/dev/null || true
    start=$(now_ms)
    acked=""
    for _ in $(seq 2000); do
        for i in 1 2 3; do
            [ "$i" = "$leader" ] && continue
            if [ "$(redis-cli -p "${port[$i]}" SET failover "$s" 2>/dev/null)" = "OK" ]; then acked=1; break; fi
        done
        [ -n "$acked" ] && break
        sleep 0.01
    done
    times+=($(( $(now_ms) - start )))
    start_node "$leader"
    sleep 2
done
echo
echo "failover, SIGKILL of the leader to the first acknowledged SET (ms, $samples samples): ${times[*]}"
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "min %d, median %d, max %d ms\n", a[1], a[int((NR+1)/2)], a[NR]}'
