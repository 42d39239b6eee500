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
# REDRU_BENCH_CLUSTER_BIN measures a prebuilt binary (alternate two builds in one session).
# REDRU_BENCH_CLUSTER_CATCHUP_KEYS=N times a wiped node catching up N keys (step 3, at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${REDRU_BENCH_CLUSTER_N:-50000}"
pipeline="${REDRU_BENCH_CLUSTER_P:-1}"
samples="${REDRU_BENCH_CLUSTER_FAILOVERS:-5}"
work="$(mktemp -d)"
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
# REDRU_BENCH_CLUSTER_BIN: a prebuilt `redru` to measure instead (to alternate two builds).
bin="${REDRU_BENCH_CLUSTER_BIN:-}"
if [ -z "$bin" ]; then cargo build --quiet --release -p redru-cli; bin=$PWD/target/release/redru; fi
export REDRU_CLUSTER_SECRET="bench-secret-$(date +%s%N)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
now_ms() { date +%s%3N; }
# CPU time (user + system, ms) the given processes have used so far: with rps, the CPU each
# write costs (a figure the machine's load moves far less than requests/s).
cpu_ms() { local t=0; for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done
    echo $(( t * 1000 / $(getconf CLK_TCK) )); }
# Voluntary context switches (thread wake-ups, mostly) of the given processes' live threads so
# far: with n, the switches each write costs (issue 15's fifth round cut them; a thread that
# ends during a test drops out of the count, so compare runs of one build with care).
switches() { local t=0 f v; for p in "$@"; do for f in /proc/"$p"/task/*/status; do
        v=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$f" 2>/dev/null) || v=0; t=$(( t + ${v:-0} )); done; done
    echo "$t"; }
rps() { redis-benchmark -p "$1" -c 50 -P "$pipeline" -t set -n "$n" -r 100000 --csv 2>/dev/null | tail -n 1 | tr -d '"' | cut -d, -f2; }

# The single server.
single_port=$(free_port)
"$bin" --dir "$work/single" serve --port "$single_port" 2>>"$work/single.log" & single_pid=$!
wait_port "$single_port"
c0=$(cpu_ms "$single_pid"); s0=$(switches "$single_pid")
single=$(rps "$single_port")
single_cpu=$(( $(cpu_ms "$single_pid") - c0 )); single_sw=$(( $(switches "$single_pid") - s0 ))
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
# The leader's last log index: entries per test, so writes per entry (the group size).
last_index() { redis-cli -p "${port[$leader]}" INFO replication | tr -d '\r' |
    awk -F: '/^redru_last_log_index:/ {print $2}'; }
c0=$(cpu_ms "${pid[@]}"); s0=$(switches "${pid[@]}"); i0=$(last_index)
via_leader=$(rps "${port[$leader]}")
c1=$(cpu_ms "${pid[@]}"); s1=$(switches "${pid[@]}"); i1=$(last_index)
follower=$(( leader % 3 + 1 ))
via_follower=$(rps "${port[$follower]}")
c2=$(cpu_ms "${pid[@]}"); s2=$(switches "${pid[@]}"); i2=$(last_index)

echo "| load | requests/s | ratio to one server | CPU per write (all nodes) | writes per Raft entry | voluntary switches per write |"
echo "|---|---|---|---|---|---|"
awk -v s="$single" -v l="$via_leader" -v f="$via_follower" -v n="$n" -v sc="$single_cpu" \
    -v lc=$(( c1 - c0 )) -v fc=$(( c2 - c1 )) -v le=$(( i1 - i0 )) -v fe=$(( i2 - i1 )) \
    -v ss="$single_sw" -v ls=$(( s1 - s0 )) -v fs=$(( s2 - s1 )) 'BEGIN {
    printf "| one `redru serve` (appendfsync always) | %s | 1.00 | %.0f us | | %.2f |\n", s, sc * 1000 / n, ss / n
    printf "| three nodes, through the leader | %s | %.2f | %.0f us | %.1f | %.2f |\n", l, l / s, lc * 1000 / n, n / (le > 0 ? le : 1), ls / n
    printf "| three nodes, through a follower (forwarded) | %s | %.2f | %.0f us | %.1f | %.2f |\n", f, f / s, fc * 1000 / n, n / (fe > 0 ? fe : 1), fs / n }'

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

# Catch-up of a wiped node (REDRU_BENCH_CLUSTER_CATCHUP_KEYS keys, default 0: skipped): load the
# keys through the leader (MSET of 1,000 keys each, pipelined), snapshot and purge the log on the
# leader, SIGKILL a follower, drop it from the membership, wipe its directory, start it again
# empty, ADDLEARNER it, and time until its applied index reaches the leader's.
keys="${REDRU_BENCH_CLUSTER_CATCHUP_KEYS:-0}"
if [ "$keys" -gt 0 ]; then
    sleep 2
    leader=$(leader_of)
    lport=${port[$leader]}
    python3 - "$keys" > "$work/load.resp" <<'PY'
import sys
n = int(sys.argv[1]); out = sys.stdout.buffer
def resp(args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))
for start in range(0, n, 1000):
    args = [b"MSET"]
    for i in range(start, min(n, start + 1000)):
        args += [b"key:%08d" % i, b'{"n":%d,"name":"user %d"}' % (i, i)]
    resp(args)
PY
    start=$(now_ms)
    redis-cli -p "$lport" --pipe < "$work/load.resp" > "$work/pipe.out"
    load_ms=$(( $(now_ms) - start ))
    dbsize=$(redis-cli -p "$lport" DBSIZE)
    snap_index=$(redis-cli -p "$lport" REDRU.CLUSTER SNAPSHOT)
    victim=$(( leader % 3 + 1 ))
    others=""; for i in 1 2 3; do [ "$i" != "$victim" ] && others="$others $i"; done
    kill -9 "${pid[$victim]}"; wait "${pid[$victim]}" 2>/dev/null || true
    # shellcheck disable=SC2086
    redis-cli -p "$lport" REDRU.CLUSTER MEMBERSHIP $others >/dev/null
    rm -rf "$work/n$victim"
    start_node "$victim"
    target=$(redis-cli -p "$lport" INFO replication | tr -d '\r' | awk -F: '/^redru_last_applied:/ {print $2}')
    hwm() { awk '/^VmHWM/ {printf "%d MiB", $2 / 1024}' "/proc/$1/status"; }
    rss() { awk '/^VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$1/status"; }
    # The leader's peak so far is the load's; reset it (clear_refs 5: VmHWM := VmRSS) so that the
    # peak printed below "during the catch-up" is the snapshot transfer's alone.
    load_peak=$(hwm "${pid[$leader]}"); before_rss=$(rss "${pid[$leader]}")
    echo 5 > "/proc/${pid[$leader]}/clear_refs"
    start=$(now_ms)
    redis-cli -p "$lport" REDRU.CLUSTER ADDLEARNER "$victim" "127.0.0.1:${peer[$victim]}" >/dev/null
    for _ in $(seq 36000); do
        got=$(redis-cli -p "${port[$victim]}" INFO replication 2>/dev/null | tr -d '\r' |
            awk -F: '/^redru_last_applied:/ {print $2}')
        [ -n "$got" ] && [ "$got" -ge "$target" ] && break
        sleep 0.05
    done
    catchup_ms=$(( $(now_ms) - start ))
    vkeys=$(redis-cli -p "${port[$victim]}" DBSIZE)
    snap_bytes=$(du -b "$work/n$leader/snapshots"/snapshot-*.json 2>/dev/null | awk '{s += $1} END {print s}')
    echo
    echo "catch-up: $dbsize keys loaded in $load_ms ms (MSET of 1,000, pipelined); snapshot at index" \
        "$snap_index, $snap_bytes bytes"
    echo "catch-up: wiped node $victim applied index $target with $vkeys keys in $catchup_ms ms" \
        "(from ADDLEARNER)"
    echo "catch-up: memory, leader peak $load_peak while loading ($before_rss before the catch-up)," \
        "peak $(hwm "${pid[$leader]}") during the catch-up (now $(rss "${pid[$leader]}")); wiped node" \
        "peak $(hwm "${pid[$victim]}") (now $(rss "${pid[$victim]}"))"
fi
