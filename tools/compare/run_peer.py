#!/usr/bin/env python3
"""Times the ONNX cascade (build_onnx.py) in OpenVINO or ONNX Runtime, like
`brats-seg bench`: load once, one warm-up, N timed inferences of the same synthetic
input; prints median/min seconds, GFLOP/s and peak RSS, last stdout line JSON.

  .venv/bin/python run_peer.py --engine openvino --size 128 --threads 2 --runs 3 --json
  .venv/bin/python run_peer.py --engine onnxruntime --size 128 --threads 2 --runs 3 --json
  .venv/bin/python run_peer.py --engine openvino --runs 0 --input x.npy --save-output y.npy

OpenVINO: core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": T,
"INFERENCE_PRECISION_HINT": "f32"}), one InferRequest, input tensor set once.
ONNX Runtime: CPUExecutionProvider, intra_op_num_threads=T, inter_op 1, all graph
optimizations, input and output bound once (IOBinding), so neither side pays a
per-run allocation or copy of the 128 MB output that the Rust bench does not pay.

The input is synth_input(1, [1, 4, S, S, S]) from tools/reference/synth.py (the same
tensor `brats-seg bench --synthetic` feeds itself), cached as out/input-sS-seed1.npy so
that generating it does not show in the peak RSS; --input FILE uses any other .npy.
Peak RSS is getrusage(RUSAGE_SELF).ru_maxrss of this process (Python, numpy, the
engine, the model as loaded, input and output).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# Same count as `brats-seg bench` (the convolutions: 203.13 GMAC = 406.27 GFLOP at 128^3;
# MODEL.md's card figure 409.996 also counts the cheap layers), so GFLOP/s compare 1:1.
GFLOP_128 = 406.268674048


def input_path(size, seed=1):
    return os.path.join(HERE, "out", "input-s%d-seed%d.npy" % (size, seed))


def ensure_input(size, seed=1):
    """Writes synth_input(seed, [1,4,S,S,S]) once, in a child process so its
    float64/uint64 temporaries never count in this process's peak RSS."""
    path = input_path(size, seed)
    if not os.path.exists(path):
        import subprocess
        code = ("import sys, numpy as np; sys.path.insert(0, %r); import synth; "
                "x = synth.synth_input(%d, (1, 4, %d, %d, %d)); np.save(%r, x)"
                % (os.path.join(HERE, "..", "reference"), seed, size, size, size, path + ".tmp.npy"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([sys.executable, "-c", code], check=True)
        os.replace(path + ".tmp.npy", path)
    return path


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


class OpenVINORunner:
    def __init__(self, model_path, threads, x, extra=None):
        import openvino as ov
        self.version = ov.get_version()
        core = ov.Core()
        cfg = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        cfg.update(extra or {})
        self.compiled = core.compile_model(model_path, "CPU", cfg)
        keys = ("INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT",
                "NUM_STREAMS", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING") + tuple(
                    k for k in cfg if k not in ("INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT"))
        keys = tuple(dict.fromkeys(keys))
        self.config = {k: str(self.compiled.get_property(k)).replace("<Type: ", "").strip(">'")
                       for k in keys}
        self.req = self.compiled.create_infer_request()
        self.req.set_input_tensor(ov.Tensor(x))  # shares x's memory

    def run(self):
        self.req.infer()

    def output(self):
        return np.array(self.req.get_output_tensor().data, copy=True)


class OrtRunner:
    def __init__(self, model_path, threads, x, extra=None):
        import onnxruntime as ort
        self.version = ort.__version__
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
        self.config = {"intra_op_num_threads": threads, "inter_op_num_threads": 1,
                       "providers": self.sess.get_providers()}
        self.out = np.empty(x.shape, dtype=np.float32)
        self.binding = self.sess.io_binding()
        self.binding.bind_cpu_input(self.sess.get_inputs()[0].name, x)
        self.binding.bind_output(self.sess.get_outputs()[0].name, "cpu", 0, np.float32,
                                 list(self.out.shape), self.out.ctypes.data)

    def run(self):
        self.sess.run_with_iobinding(self.binding)

    def output(self):
        return self.out.copy()


def main():
    ap = argparse.ArgumentParser(description="time the ONNX cascade in OpenVINO or ONNX Runtime")
    ap.add_argument("--engine", required=True, choices=["openvino", "onnxruntime"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5, help="timed runs after the warm-up (0: warm-up only)")
    ap.add_argument("--seed", type=int, default=1, help="synthetic weights and input seed")
    ap.add_argument("--model", default=None, help=".onnx to load (default: out/cascade-sS-seedN.onnx, built if missing)")
    ap.add_argument("--input", default=None, help="f32 .npy [1,4,S,S,S] (default: synth_input, cached)")
    ap.add_argument("--save-output", default=None, help="write the softmax of the last run as .npy")
    ap.add_argument("--json", action="store_true", help="end stdout with one JSON object")
    ap.add_argument("--ov-config", action="append", default=[], metavar="KEY=VALUE",
                    help="extra OpenVINO compile property (exploration only; the comparison "
                         "uses the two defaults above), e.g. ENABLE_CPU_PINNING=NO")
    a = ap.parse_args()

    model = a.model
    if model is None:
        import build_onnx  # noqa: E402  (imports onnx only when the model must be found/built)
        model = build_onnx.default_path(a.size, a.seed)
        if not os.path.exists(model):
            import subprocess
            subprocess.run([sys.executable, os.path.join(HERE, "build_onnx.py"), "--size",
                            str(a.size), "--seed", str(a.seed)], check=True)
    x = np.load(a.input or ensure_input(a.size, a.seed))
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape != (1, 4, a.size, a.size, a.size):
        sys.exit("input shape %s does not match --size %d" % (x.shape, a.size))

    t0 = time.perf_counter()
    extra = dict(kv.split("=", 1) for kv in a.ov_config)
    if extra and a.engine != "openvino":
        sys.exit("--ov-config is for --engine openvino")
    runner = (OpenVINORunner if a.engine == "openvino" else OrtRunner)(model, a.threads, x, extra)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    runner.run()  # warm-up
    warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        runner.run()
        times.append(time.perf_counter() - t0)
    if a.save_output:
        np.save(a.save_output, runner.output())

    gflop = GFLOP_128 * (a.size / 128.0) ** 3
    med = statistics.median(times) if times else warmup_s
    mn = min(times) if times else warmup_s
    rss = peak_rss_bytes()
    res = {
        "engine": a.engine, "version": runner.version, "config": runner.config,
        "size": a.size, "threads": a.threads, "runs": a.runs,
        "median_s": med, "min_s": mn, "gflop": gflop, "gflops": gflop / med,
        "peak_rss_bytes": rss, "load_s": load_s, "warmup_s": warmup_s, "times_s": times,
    }
    print("%s %s, %d^3, %d threads: load %.2f s, warm-up %.3f s" % (
        a.engine, runner.version, a.size, a.threads, load_s, warmup_s))
    print("runs %d: median %.3f s, min %.3f s, %.1f GFLOP/s, peak RSS %.0f MB" % (
        a.runs, med, mn, gflop / med, rss / 1e6))
    if a.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
