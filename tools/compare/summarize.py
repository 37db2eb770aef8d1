#!/usr/bin/env python3
"""Summarizes one compare.sh session directory: the bench JSON lines of every round
(ours, openvino, onnxruntime), the uptime records and the output agreement.

  .venv/bin/python summarize.py out/session-YYYYmmddTHHMMSSZ
  .venv/bin/python summarize.py out/session-A out/session-B   # pool sessions (same binary)

Per engine: the median of all timed runs pooled over the rounds (and the per-round
medians), min, peak RSS (largest over the rounds). Ratios ours/peer: per round (our
median of that round over theirs), and the median of those per-round ratios, which is
the figure to quote: both sides of a round ran back to back, so a machine that slows
down for a while slows both.
"""
import json
import os
import statistics
import sys

ORDER = ["ours", "openvino", "onnxruntime"]
QUIET_SHARE = 0.05  # an invocation counts as quiet when others used < 5 % of the CPUs
LABEL = {"ours": "brats-seg", "openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}


def load_jsonl(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    return out


def others_share(r):
    """Fraction of the machine's CPU capacity used by other processes while this
    invocation ran: (machine busy CPU s - its own CPU s) / (wall s * cores)."""
    proc, mach = r.get("process"), r.get("machine")
    if not proc or not mach:
        return None
    own = proc["user_s"] + proc["sys_s"]
    return max(0.0, mach["machine_busy_s"] - own) / (proc["wall_s"] * mach["nproc"])


def line(engine, result, proc, mach):
    """One progress line for compare.sh (arguments are JSON strings or 'null')."""
    r = json.loads(result)
    rec = {"process": json.loads(proc), "machine": json.loads(mach)}
    out = "   %-12s median %.3f s  min %.3f s  peak RSS %.0f MB" % (
        engine, r["median_s"], r["min_s"], r["peak_rss_bytes"] / 1e6)
    o = others_share(rec)
    if o is not None:
        out += "  | others used %.0f %% of the CPUs meanwhile" % (100 * o)
        if rec["machine"].get("quiet_waited_s"):
            out += " (waited %s s for a quiet machine)" % rec["machine"]["quiet_waited_s"]
    print(out)


def main():
    if sys.argv[1] == "--line":
        return line(*sys.argv[2:6])
    if sys.argv[1] == "--round-quiet":  # exit 0 when every invocation of that round was quiet
        rs = [r for r in load_jsonl(os.path.join(sys.argv[2], "rounds.jsonl"))
              if r["round"] == int(sys.argv[3])]
        ok = bool(rs) and all(others_share(r) is not None and others_share(r) < QUIET_SHARE
                              for r in rs)
        sys.exit(0 if ok else 1)
    dirs = sys.argv[1:]
    d = dirs[-1]
    metas, rounds = [], []
    for i, dd in enumerate(dirs):  # several sessions: pooled, rounds named "session/round"
        mp = os.path.join(dd, "meta.json")
        metas.append(json.load(open(mp)) if os.path.exists(mp) else {})
        for r in load_jsonl(os.path.join(dd, "rounds.jsonl")):  # {"round", "engine", "result", ...}
            if len(dirs) > 1:
                r["round"] = "%d/%s" % (i + 1, r["round"])
            rounds.append(r)
    by = {}
    for r in rounds:
        by.setdefault(r["engine"], []).append(r)
    engines = [e for e in ORDER if e in by]
    meta = metas[-1]

    lines = []
    p = lines.append
    if len(dirs) > 1:
        p("%d sessions pooled (rounds named session/round):" % len(dirs))
        for i, (dd, m) in enumerate(zip(dirs, metas)):
            p("  %d: %s  binary sha256 %s  weights %s" % (i + 1, os.path.basename(dd.rstrip("/")),
                                                         m.get("binary_sha256_16"), m.get("weights")))
        if len({m.get("binary_sha256_16") for m in metas}) > 1:
            p("WARNING: the sessions timed different brats-seg binaries")
        meta = {}
    if meta:
        p("session %s  size %s^3  threads %s  rounds %s x runs %s  (commit %s%s; binary built %s%s)" % (
            meta.get("started"), meta.get("size"), meta.get("threads"), meta.get("rounds"),
            meta.get("runs"), meta.get("commit"), ", tree dirty" if meta.get("dirty") else "",
            meta.get("binary_mtime"),
            ", sha256 " + meta["binary_sha256_16"] if meta.get("binary_sha256_16") else ""))
        if meta.get("weights"):
            p("  brats-seg weights: %s" % meta["weights"])
    for dd in dirs:
        for u in load_jsonl(os.path.join(dd, "uptime.jsonl")):
            p("  uptime %-28s %s" % (u["when"], u["uptime"]))
    p("")
    p("%-13s %9s %9s %9s %10s %9s %9s" % ("", "", "", "", "", "pooled", "by round"))
    hdr = "%-13s %9s %9s %9s %10s %9s %9s  %s" % (
        "engine", "median s", "min s", "GFLOP/s", "peak RSS", "ours/it", "ours/it",
        "per-round medians (s)")
    p(hdr)
    p("-" * (len(hdr) + 12))
    summary = {}
    ours_rounds = {r["round"]: r["result"]["median_s"] for r in by.get("ours", [])}
    for e in engines:
        rs = by[e]
        times = [t for r in rs for t in (r["result"].get("times_s") or [r["result"]["median_s"]])]
        med = statistics.median(times)
        mn = min(times)
        rss = max(r["result"]["peak_rss_bytes"] for r in rs)
        gflop = rs[0]["result"].get("gflop")
        per_round = [r["result"]["median_s"] for r in rs]
        ratios = [ours_rounds[r["round"]] / r["result"]["median_s"]
                  for r in rs if r["round"] in ours_rounds]
        ratio = statistics.median(ratios) if ratios else None
        summary[e] = {"median_s": med, "min_s": mn, "peak_rss_bytes": rss,
                      "per_round_median_s": per_round, "ratio_ours_over_it_per_round": ratios,
                      "ratio_ours_over_it": ratio, "n_runs": len(times),
                      "version": rs[0]["result"].get("version")}
        p("%-13s %9.3f %9.3f %9.1f %7.0f MB %9.3f %9s  %s" % (
            LABEL[e], med, mn, (gflop / med) if gflop else float("nan"), rss / 1e6,
            summary["ours"]["median_s"] / med if "ours" in summary else float("nan"),
            "%.3f" % ratio if ratio is not None else "-",
            " ".join("%.3f" % t for t in per_round)))
    p("")
    p("first 'ours/it' = ratio of the pooled medians; second = median over the rounds of")
    p("(our median in that round / its median in that round): quote the second (<1: ours faster).")
    for e in engines:
        if e != "ours":
            p("  ours/%s per round: %s" % (LABEL[e], " ".join(
                "%.3f" % r for r in summary[e]["ratio_ours_over_it_per_round"])))
    if any(others_share(r) is not None for r in rounds):
        p("")
        p("others' share of the CPUs during each invocation (0 = the machine was ours):")
        for e in engines:
            p("  %-13s %s" % (LABEL[e], " ".join(
                "%3.0f%%" % (100 * others_share(r)) if others_share(r) is not None else "  - "
                for r in by[e])))
            sh = [others_share(r) for r in by[e] if others_share(r) is not None]
            if sh:
                summary[e]["others_share_per_round"] = sh
        quiet = {e: [r for r in by[e] if others_share(r) is not None
                     and others_share(r) < QUIET_SHARE] for e in engines}
        p("")
        p("quiet invocations only (others' share < %.0f %%): the figures to quote on a shared "
          "machine" % (100 * QUIET_SHARE))
        p("%-13s %7s %9s %9s %9s  %s" % ("engine", "n inv", "median s", "min s", "ours/it",
                                          "rounds where both were quiet: ours/it"))
        qt = {e: [t for r in quiet[e] for t in (r["result"].get("times_s")
                                                 or [r["result"]["median_s"]])] for e in engines}
        for e in engines:
            if not qt[e]:
                p("%-13s %7d %9s %9s %9s" % (LABEL[e], 0, "-", "-", "-"))
                continue
            med = statistics.median(qt[e])
            both = []
            if e != "ours":
                oq = {r["round"]: r["result"]["median_s"] for r in quiet.get("ours", [])}
                both = [oq[r["round"]] / r["result"]["median_s"] for r in quiet[e]
                        if r["round"] in oq]
            ratio = (statistics.median(qt["ours"]) / med) if qt.get("ours") else None
            summary[e]["quiet"] = {"invocations": len(quiet[e]), "median_s": med,
                                   "min_s": min(qt[e]), "ratio_ours_over_it": ratio,
                                   "ratio_ours_over_it_rounds_both_quiet": both}
            p("%-13s %7d %9.3f %9.3f %9s  %s" % (
                LABEL[e], len(quiet[e]), med, min(qt[e]),
                "%.3f" % ratio if ratio is not None else "-",
                " ".join("%.3f" % x for x in both) if e != "ours" else ""))
    procs = {e: [r for r in by[e] if r.get("process")] for e in engines}
    if all(procs[e] for e in engines):
        p("")
        p("whole process (/usr/bin/time; load + warm-up + %s timed passes each; medians over "
          "the rounds):" % (metas[-1].get("runs", "?")))
        p("%-13s %9s %9s %10s %14s" % ("engine", "cpu s", "wall s", "max RSS", "ours/it cpu"))
        ours_cpu = {r["round"]: r["process"]["user_s"] + r["process"]["sys_s"]
                    for r in procs.get("ours", [])}
        for e in engines:
            rs = procs[e]
            cpu = statistics.median(r["process"]["user_s"] + r["process"]["sys_s"] for r in rs)
            wall = statistics.median(r["process"]["wall_s"] for r in rs)
            rss = max(r["process"]["maxrss_kb"] for r in rs) * 1024
            rr = [ours_cpu[r["round"]] / (r["process"]["user_s"] + r["process"]["sys_s"])
                  for r in rs if r["round"] in ours_cpu]
            summary[e]["process"] = {"cpu_s": cpu, "wall_s": wall, "maxrss_bytes": rss,
                                     "ratio_ours_over_it_cpu": statistics.median(rr) if rr else None}
            p("%-13s %9.2f %9.2f %7.0f MB %14s" % (
                LABEL[e], cpu, wall, rss / 1e6,
                "%.3f" % statistics.median(rr) if rr else "-"))
    vers = ", ".join("%s %s" % (LABEL[e], summary[e]["version"]) for e in engines
                     if summary[e]["version"])
    if vers:
        p("versions: " + vers)

    agree = load_jsonl(os.path.join(d, "agree.jsonl"))
    if agree:
        p("")
        p("output agreement on the same %s input (softmax, float32):" % agree[0].get("input"))
        for a in agree:
            p("  %-28s max |diff| %.3g   mean |diff| %.3g   argmax differs at %d of %d voxels"
              " (%d beyond a 1e-4 margin)" % (
                  a["pair"], a["max_abs_diff"], a["mean_abs_diff"], a["argmax_differs"],
                  a["voxels"], a["argmax_differs_beyond_1e-4"]))
    text = "\n".join(lines)
    print(text)
    if len(dirs) > 1:
        return
    with open(os.path.join(d, "summary.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"meta": meta, "engines": summary, "agreement": agree}, f, indent=1)


if __name__ == "__main__":
    main()
