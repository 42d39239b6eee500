#!/usr/bin/env bash
# Resident memory of a shell process after `import FILE --replace` (and after `restore`), against the
# same data after a reopen, one line each: docs/benchmarks.md, "Import and restore".
# Usage: scripts/import-memory.sh REDRU_BINARY EXPORT_FILE WORK_DIR
set -euo pipefail
bin=$1 file=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
# Runs the shell in script mode on DIR with COMMANDS, waits until its output holds WAIT,
# prints "label VmRSS VmHWM" (KiB), then ends the script.
measure() {
    local label=$1 dir=$2 commands=$3 wait=$4
    local fifo="$work/fifo" out="$work/out"
    rm -f "$fifo" "$out" && mkfifo "$fifo"
    "$bin" -d "$dir" <"$fifo" >"$out" 2>&1 &
    local pid=$!
    exec 3>"$fifo"
    printf '%s\n' "$commands" >&3
    until grep -q "$wait" "$out"; do
        kill -0 "$pid" 2>/dev/null || { cat "$out"; exit 1; }
        sleep 0.2
    done
    sleep 0.5
    local rss hwm
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    exec 3>&-
    wait "$pid"
    echo "$label rss_kib=$rss peak_kib=$hwm"
}
measure "after-import" "$work/db" "import $file --replace" "pairs from"
measure "after-reopen" "$work/db" "get __absent__" "not found\|nil\|(none)\|^$"
cp "$work/db/database.json" "$work/copy.json"
measure "after-restore" "$work/db" "restore --file $work/copy.json" "restored"
measure "after-reopen2" "$work/db" "get __absent__" "not found\|nil\|(none)\|^$"
