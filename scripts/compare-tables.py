#!/usr/bin/env python3
"""Compares a new benchmark table (scripts/bench.sh's bench-results/table.md) with the table
docs/benchmarks.md claimed before, row by row, and says for each figure whether it reproduced.

usage: scripts/compare-tables.py OLD.md NEW.md   (OLD may be docs/benchmarks.md itself: the
first table under "## The table" is read)

A row's figure is its ratio when it has one (ratios are what carry over between machines and
runs), else its median. "reproduced" means the new median lies inside the old min-max spread
(widened by 10 % either side: three to five runs give a narrow spread); otherwise "no: higher"
or "no: lower" says which way the figure moved (whether that is better depends on the row: a
rate, a time, a peer's rate over redru's). A row with a target also says whether the target is
met in each.
"""
import re
import sys

def read_table(path):
    text = open(path, encoding="utf-8").read()
    if "## The table" in text:
        text = text.split("## The table", 1)[1]
    rows, started = {}, False
    for line in text.splitlines():
        if line.startswith("| workload | measure"):
            started = True
            continue
        if not started:
            continue
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 9 or set(cells[0]) <= {"-", ":"}:
            continue
        rows[(cells[0], cells[1])] = cells
    return rows


SUFFIX = {"k": 1e3, "M": 1e6}


def number(cell):
    m = re.match(r"^\*{0,2}([0-9.]+)([kM]?)(x|\s|$)", cell)
    if not m:
        return None
    return float(m.group(1)) * SUFFIX.get(m.group(2), 1.0)


def spread(cell):
    parts = cell.replace("*", "").split("-")
    if len(parts) != 2:
        return None
    lo, hi = number(parts[0]), number(parts[1])
    return (lo, hi) if lo is not None and hi is not None else None


def figure(cells):
    """(value, spread, unit, is_ratio) of a row."""
    if cells[5]:
        return number(cells[5]), spread(cells[6]), "x", True
    unit = cells[2].split()[-1] if " " in cells[2] else ""
    return number(cells[2]), spread(cells[3]), unit, False


def main(old_path, new_path):
    old, new = read_table(old_path), read_table(new_path)
    print("| workload | measure | before (figure, min-max) | now (figure, min-max) | reproduced | target | met before | met now |")
    print("|---|---|---:|---:|:-:|---:|:-:|:-:|")
    counts = {}
    for key, cells in old.items():
        before, before_spread, unit, is_ratio = figure(cells)
        if key not in new:
            verdict, now_text = "not measured", ""
        else:
            now_cells = new[key]
            now, _, _, _ = figure(now_cells)
            now_text = f"{now_cells[5] or now_cells[2]} ({now_cells[6] or now_cells[3]})"
            if before is None or now is None or before_spread is None:
                verdict = "?"
            else:
                lo, hi = before_spread
                lo, hi = lo * 0.9, hi * 1.1
                if lo <= now <= hi:
                    verdict = "yes"
                else:
                    verdict = "no: higher" if now > hi else "no: lower"
        counts[verdict] = counts.get(verdict, 0) + 1
        met_now = new[key][8] if key in new else ""
        print(f"| {key[0]} | {key[1]} | {cells[5] or cells[2]} ({cells[6] or cells[3]}) | {now_text} | {verdict} | {cells[7]} | {cells[8]} | {met_now} |")
    for key in new:
        if key not in old:
            counts["new row"] = counts.get("new row", 0) + 1
    print()
    print("rows:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
