#!/usr/bin/env python3
"""Where does a peer drift from the float64 reference? Runs the cascade with the
reference fixtures' intermediates as extra outputs (build_onnx.build_model(taps=True))
in OpenVINO or ONNX Runtime and prints max |diff| per tap against a fixture directory
of tools/reference (each tap cropped as its manifest says).

  .venv/bin/python probe_taps.py --engine openvino --size 128   # ../reference/out/128 (make_fixtures.py --size 128)
  .venv/bin/python probe_taps.py --engine openvino --size 32    # ../reference/fixtures
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import build_onnx  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, choices=["openvino", "onnxruntime"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fixtures", default=None,
                    help="default: ../reference/fixtures for 32, ../reference/out/SIZE otherwise")
    ap.add_argument("--ov-config", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    fx = a.fixtures or os.path.join(build_onnx.REF, "fixtures" if a.size == 32 else "out/%d" % a.size)
    man = json.load(open(os.path.join(fx, "manifest.json")))
    x = np.load(os.path.join(fx, "input.npy"))
    assert x.shape == (1, 4, a.size, a.size, a.size), x.shape

    model = build_onnx.build_model(a.size, 1, taps=True)
    names = [o.name for o in model.graph.output]
    keys = ["softmax"] + build_onnx.TAP_KEYS
    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "taps.onnx")
        import onnx
        onnx.save(model, path)
        del model
        if a.engine == "openvino":
            import openvino as ov
            cfg = {"INFERENCE_NUM_THREADS": a.threads, "INFERENCE_PRECISION_HINT": "f32"}
            cfg.update(dict(kv.split("=", 1) for kv in a.ov_config))
            cm = ov.Core().compile_model(path, "CPU", cfg)
            res = cm([x])
            outs = [res[cm.output(i)] for i in range(len(names))]
        else:
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            outs = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(
                names, {build_onnx.INPUT_NAME: x})
    mxd = man.get("max_abs_diff_mxnet_vs_float64", {})
    print("%-18s %12s %12s   (%s, %d^3)" % ("tap", a.engine, "mxnet", a.engine, a.size))
    for k, got in zip(keys, outs):
        t = man["tensors"][k]
        want = np.load(os.path.join(fx, t["file"]))
        if t.get("crop"):
            got = got[tuple(slice(lo, hi) for lo, hi in t["crop"])]
        d = np.abs(got.astype(np.float64) - want.astype(np.float64)).max()
        print("%-18s %12.3g %12s" % (k, d, "%.3g" % mxd[k] if k in mxd else "-"))


if __name__ == "__main__":
    main()
