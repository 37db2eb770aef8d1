#!/usr/bin/env python3
"""Summarize `cargo bench -p brats-kernels` results as a markdown table.

Reads criterion's estimates under target/criterion/<isa>_<threads>t/<layer>/new/ and the
throughput it recorded (FLOPs or bytes per iteration), and prints the median rate per
layer, ISA and thread count: GFLOP/s for the convolutions and the deconvolution, GB/s for
the instance norm. Optional argument: the measured FMA peak in GFLOP/s for 2 threads and
for 1 thread (e.g. from `brats-seg profile`), to add a "% of peak" column.

    python3 tools/criterion_table.py [PEAK_2T PEAK_1T]
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
peaks = {2: float(sys.argv[1]), 1: float(sys.argv[2])} if len(sys.argv) > 2 else None
rows = {}
for bench in sorted(root.glob("*/*/new/benchmark.json")):
    meta = json.loads(bench.read_text())
    est = json.loads((bench.parent / "estimates.json").read_text())
    group, layer = meta["group_id"], meta["function_id"] or meta["value_str"]
    if "/" not in group:
        continue
    isa, threads = group.split("/")
    threads = int(threads.rstrip("t"))
    tp = meta.get("throughput") or {}
    secs = est["median"]["point_estimate"] / 1e9
    if "Elements" in tp:
        rate, unit = tp["Elements"] / secs / 1e9, "GFLOP/s"
    elif "Bytes" in tp:
        rate, unit = tp["Bytes"] / secs / 1e9, "GB/s"
    else:
        continue
    rows.setdefault((layer, unit), {})[(isa, threads)] = rate

cols = sorted({k for r in rows.values() for k in r}, key=lambda k: (["avx512", "avx2", "portable"].index(k[0]), k[1]))
print("| layer | unit | " + " | ".join(f"{i} {t}t" for i, t in cols) + " |")
print("|---|---|" + "---|" * len(cols))
for (layer, unit), r in rows.items():
    cells = []
    for c in cols:
        v = r.get(c)
        if v is None:
            cells.append("")
        elif peaks and unit == "GFLOP/s" and c[0] == "avx512":
            cells.append(f"{v:.1f} ({100 * v / peaks[c[1]]:.0f} %)")
        else:
            cells.append(f"{v:.1f}")
    print(f"| {layer} | {unit} | " + " | ".join(cells) + " |")
