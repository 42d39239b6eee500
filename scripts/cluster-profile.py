#!/usr/bin/env python3
"""Attributes a profile of cluster nodes to activities (docs/cluster.md, "Figures",
issue 15's sixth round): reads `perf script -F pid,tid,ip,sym,dso` of a
`perf record --call-graph dwarf` on stdin and prints, per process, the share of
samples by activity, each sample going to the first rule below that matches any
frame of its stack (and how much of that share was in the kernel).

    perf record -F 499 --call-graph dwarf,16384 -p LEADER,F1,F2 -o cluster.data -- sleep 4
    perf script -i cluster.data -F pid,tid,ip,sym,dso | scripts/cluster-profile.py
"""
import collections
import re
import sys

# In priority order: a sample of the log's fsync inside openraft's core counts as the fsync.
RULES = [
    ("the log's write and fsync", r"log_store::writer|LogStore::write_queued"),
    # The zeros written ahead of the log's appends, on their own thread (issue 15, seventh round).
    ("the log's zeros (preallocation)", r"log_store::zeros"),
    ("snapshots", r"snapshot"),
    ("network: send (encode, send)", r"network::write_frame|network::write_rpc"),
    ("network: receive (recv, decode)", r"network::read_frame|network::read_rpc"),
    ("the log's line encoding", r"log_store::segments.*append|codec::encode"),
    ("the log's reads (entry clones)", r"RaftLogReader"),
    ("apply into the Db", r"state_machine::apply_one|RaftStateMachine.*apply|redru::db::Db>::batch"),
    ("batcher / forwarder", r"node::run_batcher|node::propose_group|Batcher>::enqueue|node::run_forwarder"
     r"|node::forward_group|node::forwarded_writes"),
    ("client connections (redru_server)", r"redru_server::"),
    ("openraft replication", r"ReplicationCore"),
    ("openraft core", r"RaftCore|openraft::"),
    ("tokio scheduler, parking", r"tokio::runtime::(scheduler|park|driver|io::driver|time|blocking)"),
]


def main():
    rules = [(name, re.compile(pattern)) for name, pattern in RULES]
    counts = collections.defaultdict(collections.Counter)
    kernel = collections.defaultdict(collections.Counter)
    pid, frames = None, []

    def flush():
        if pid is None:
            return
        name = next((n for n, rx in rules if any(rx.search(f) for f in frames)), "other")
        counts[pid][name] += 1
        if frames and frames[0].endswith("[kernel.kallsyms])"):
            kernel[pid][name] += 1

    for line in sys.stdin:
        if line.strip() and not line[0].isspace():
            flush()
            m = re.match(r"\s*(\d+)/(\d+)", line)
            pid, frames = (int(m.group(1)) if m else None), []
        elif line.strip():
            frames.append(line.strip())
    flush()
    for p, c in sorted(counts.items()):
        total = sum(c.values())
        print(f"pid {p}: {total} samples")
        for name, k in c.most_common():
            print(f"  {name:38s} {100 * k / total:5.1f}%  (kernel {100 * kernel[p][name] / total:4.1f}%)")


if __name__ == "__main__":
    main()
