#!/usr/bin/env python3
"""Compares two softmax .npy files [1, 4, D, H, W]: max and mean |diff|, and how many
voxels have a different argmax (all, and those where the first file's top two
probabilities are more than 1e-4 apart). Prints one JSON line.

  .venv/bin/python agree.py A.npy B.npy --pair "ours vs openvino" --input synth_input
"""
import argparse
import json

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--pair", default="a vs b")
    ap.add_argument("--input", default="")
    x = ap.parse_args()
    a = np.load(x.a, mmap_mode="r")
    b = np.load(x.b, mmap_mode="r")
    if a.shape != b.shape:
        raise SystemExit("shapes differ: %s vs %s" % (a.shape, b.shape))
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    d = np.abs(a - b)
    am_a, am_b = a.argmax(1), b.argmax(1)
    top2 = np.sort(a, axis=1)
    margin = top2[:, -1] - top2[:, -2]
    differs = am_a != am_b
    print(json.dumps({
        "pair": x.pair, "input": x.input, "shape": list(a.shape),
        "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean(dtype=np.float64)),
        "voxels": int(am_a.size), "argmax_differs": int(differs.sum()),
        "argmax_differs_beyond_1e-4": int((differs & (margin > 1e-4)).sum()),
    }))


if __name__ == "__main__":
    main()
