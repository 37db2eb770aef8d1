#!/usr/bin/env python3
"""Builds the ONNX graph of the brain-tumor-segmentation-0001 cascade (MODEL.md)
with the seeded synthetic weights, for side-by-side runs in OpenVINO and ONNX Runtime.

  .venv/bin/python build_onnx.py                      # out/cascade-s128-seed1.onnx
  .venv/bin/python build_onnx.py --size 32 --verify   # and check it at 32^3 with ORT
  .venv/bin/python build_onnx.py --verify-only        # only the 32^3 check

The graph is static per input size S: input `data_crop` f32 [1, 4, S, S, S], output
`softmax` f32 [1, 4, S, S, S]. Operators (opset 17): Conv (grouped 3x3x3 pad 1,
stride-2 3x3x3 pad 1, 1x1), InstanceNormalization eps=1e-3, Relu, Add, group max as
4 x Slice + Max, ConvTranspose k2 s2 without bias, Concat (upsampled, skip, cascade
input), AveragePool k4 s4 / k2 s2 of the input, Softmax(axis=1) after each net.

The weights come from tools/reference/synth.py and tools/reference/topology.py
(imported read-only: the same spec the Rust engine implements), checked against the
SHA-256 recorded in tools/reference/fixtures/manifest.json before anything is built.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.normpath(os.path.join(HERE, "..", "reference"))
sys.path.insert(0, REF)

import synth  # noqa: E402
import topology  # noqa: E402
from topology import F, G, PREFIX, NET_INDEX  # noqa: E402

OPSET = 17
EPS = 1e-3  # MXNet InstanceNorm default (MODEL.md)
INPUT_NAME = "data_crop"
OUTPUT_NAME = "softmax"
TAP_KEYS = ["net32_softmax", "net64_softmax", "net128_conv1", "net128_rb1", "net128_rb1_gmax",
            "net128_up2", "net128_rb7", "net128_logits"]


def default_path(size, seed):
    return os.path.join(HERE, "out", "cascade-s%d-seed%d.onnx" % (size, seed))


def synth_weights(seed, check=True):
    """name -> float32 array for all 225 parameters, in table order."""
    table = topology.param_table()
    weights = {}
    h = hashlib.sha256()
    for spec in table:
        t = synth.synth_tensor(seed, spec)
        weights[spec.name] = t
        h.update(np.ascontiguousarray(t, dtype="<f4").tobytes())
    if check and seed == 1:
        man = json.load(open(os.path.join(REF, "fixtures", "manifest.json")))
        want = man["synthetic_checksums"]["all_parameters_in_table_order"]
        if h.hexdigest() != want:
            raise SystemExit("synthetic weights differ from the reference manifest: %s != %s"
                             % (h.hexdigest(), want))
    return table, weights


class Builder:
    def __init__(self, weights):
        self.w = weights
        self.nodes = []
        self.inits = {}
        self.used = set()
        self.n = 0
        self.taps = {}  # fixture key (tools/reference manifest) -> tensor name

    def tmp(self, hint):
        self.n += 1
        return "%s_%d" % (hint, self.n)

    def init(self, name):
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(self.w[name], name)
            self.used.add(name)
        return name

    def const_i64(self, name, values):
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)
        return name

    def node(self, op, inputs, hint, **attrs):
        out = self.tmp(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # --- layers -------------------------------------------------------------
    def conv(self, x, base, k=3, stride=1, groups=1):
        p = k // 2
        return self.node("Conv", [x, self.init(base + "_weight"), self.init(base + "_bias")],
                         base, kernel_shape=[k] * 3, pads=[p] * 6, strides=[stride] * 3,
                         group=groups, dilations=[1] * 3)

    def inorm(self, x, base):
        return self.node("InstanceNormalization",
                         [x, self.init(base + "_gamma"), self.init(base + "_beta")],
                         base, epsilon=EPS)

    def relu(self, x, hint):
        return self.node("Relu", [x], hint)

    def rb(self, x, net, rb, groups):
        p = PREFIX + net + rb
        h = self.relu(self.inorm(x, p + "norm1"), net + rb + "relu1")
        h = self.conv(h, p + "conv1sep_conv", 3, 1, groups)
        h = self.relu(self.inorm(h, p + "norm2"), net + rb + "relu2")
        h = self.conv(h, p + "conv2sep_conv", 3, 1, groups)
        return self.node("Add", [x, h], net + rb + "sum")

    def gmax(self, x, channels, hint):
        """out[c] = max_g x[g*C/4 + c]: four channel Slices, then one Max."""
        c = channels // G
        axes = self.const_i64("axes_1", [1])
        parts = []
        for g in range(G):
            s = self.const_i64("slice_start_%d" % (g * c), [g * c])
            e = self.const_i64("slice_end_%d" % ((g + 1) * c), [(g + 1) * c])
            parts.append(self.node("Slice", [x, s, e, axes], hint + "_slice%d" % g))
        return self.node("Max", parts, hint + "_gmax")

    def deconv(self, x, base):
        return self.node("ConvTranspose", [x, self.init(base + "_weight")], base,
                         kernel_shape=[2, 2, 2], strides=[2, 2, 2], pads=[0] * 6,
                         dilations=[1] * 3, group=1)

    def concat(self, parts, hint):
        return self.node("Concat", parts, hint, axis=1)

    def softmax(self, x, hint):
        return self.node("Softmax", [x], hint, axis=1)

    def unet(self, x, net, stack0=None, stack1=None):
        f = {"net32": 4 * F, "net64": 2 * F, "net128": F}[net]
        p = PREFIX + net
        pw = lambda i: "convolution%d" % (4 * NET_INDEX[net] + i)  # noqa: E731
        c1 = self.conv(x, p + "conv1sep_conv", 3, 1, G)
        rb1 = self.rb(c1, net, "rb1", G)
        rb2 = self.rb(self.conv(rb1, p + "pool1", 3, 2, G), net, "rb2", G)
        rb3 = self.rb(self.conv(rb2, p + "pool2", 3, 2, G), net, "rb3", G)
        rb4 = self.rb(self.conv(rb3, p + "pool3", 3, 2, G), net, "rb4", G)
        up4 = self.deconv(self.gmax(rb4, 32 * f, net + "rb4"), p + "up_conv4_1")
        cat = [up4, self.gmax(rb3, 16 * f, net + "rb3")] + ([stack0] if stack0 else [])
        rb5 = self.rb(self.conv(self.concat(cat, net + "cat0"), pw(0), 1), net, "rb5", 1)
        up3 = self.deconv(rb5, p + "up_conv3_1")
        cat = [up3, self.gmax(rb2, 8 * f, net + "rb2")] + ([stack1] if stack1 else [])
        rb6 = self.rb(self.conv(self.concat(cat, net + "cat1"), pw(1), 1), net, "rb6", 1)
        up2 = self.deconv(rb6, p + "up_conv2_1")
        skip2 = self.gmax(rb1, 4 * f, net + "rb1")
        rb7 = self.rb(self.conv(self.concat([up2, skip2], net + "cat2"), pw(2), 1),
                      net, "rb7", 1)
        logits = self.conv(rb7, pw(3), 1)
        self.taps.update({net + "_conv1": c1, net + "_rb1": rb1, net + "_rb1_gmax": skip2,
                          net + "_up2": up2, net + "_rb7": rb7, net + "_logits": logits})
        return logits


def build_model(size, seed=1, taps=False):
    """taps=True adds the reference fixtures' intermediates as extra graph outputs
    (net32_softmax, net64_softmax, net128_conv1 ... net128_logits), for probe_taps.py."""
    if size % 32:
        raise SystemExit("size must be a multiple of 32, got %d" % size)
    table, weights = synth_weights(seed)
    b = Builder(weights)
    d64 = b.node("AveragePool", [INPUT_NAME], "avgpool2", kernel_shape=[2] * 3, strides=[2] * 3)
    d32 = b.node("AveragePool", [INPUT_NAME], "avgpool4", kernel_shape=[4] * 3, strides=[4] * 3)
    sm32 = b.softmax(b.unet(d32, "net32"), "softmax_lbl32")
    sm64 = b.softmax(b.unet(d64, "net64", stack1=sm32), "softmax_lbl64")
    b.taps.update({"net32_softmax": sm32, "net64_softmax": sm64})
    logits = b.unet(INPUT_NAME, "net128", stack0=sm32, stack1=sm64)
    b.nodes.append(helper.make_node("Softmax", [logits], [OUTPUT_NAME], name=OUTPUT_NAME, axis=1))

    missing = [s.name for s in table if s.name not in b.used]
    if missing or len(b.used) != len(table):
        raise SystemExit("graph does not use every parameter: missing %s" % missing)

    shape = [1, 4, size, size, size]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, shape)]
    if taps:
        ch = {"net32_softmax": (4, 4), "net64_softmax": (4, 2), "net128_conv1": (4 * F, 1),
              "net128_rb1": (4 * F, 1), "net128_rb1_gmax": (F, 1), "net128_up2": (2 * F, 1),
              "net128_rb7": (2 * F, 1), "net128_logits": (4, 1)}
        for k in TAP_KEYS:
            c, div = ch[k]
            outputs.append(helper.make_tensor_value_info(
                b.taps[k], TensorProto.FLOAT, [1, c] + [size // div] * 3))
    graph = helper.make_graph(
        b.nodes, "brain_tumor_segmentation_0001_synthetic_seed%d" % seed,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, shape)],
        outputs, initializer=list(b.inits.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="brats-seg tools/compare")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ensure_model(size, seed=1, path=None):
    """Path of the .onnx for this size/seed, building it if it is not there."""
    path = path or default_path(size, seed)
    if not os.path.exists(path):
        m = build_model(size, seed)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        onnx.save(m, path)
    return path


def verify(path32):
    """ORT vs the float64 reference fixture at 32^3 (seed 1)."""
    import onnxruntime as ort
    x = np.load(os.path.join(REF, "fixtures", "input.npy"))
    want = np.load(os.path.join(REF, "fixtures", "softmax.npy"))
    mx_sm = np.load(os.path.join(REF, "fixtures", "mxnet_softmax.npy"))
    # the fixture input is synth_input(1, shape): check that too
    assert np.array_equal(x, synth.synth_input(1, x.shape)), "fixture input != synth_input"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path32, so, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    d = np.abs(got.astype(np.float64) - want.astype(np.float64))
    top2 = np.sort(want.astype(np.float64), axis=1)
    margin = top2[:, -1] - top2[:, -2]
    am_ok = (got.argmax(1) == want.argmax(1)) | (margin <= 1e-5)
    res = {
        "max_abs_diff_vs_float64": float(d.max()),
        "max_abs_diff_vs_mxnet": float(np.abs(got - mx_sm).max()),
        "argmax_mismatch_beyond_1e-5_margin": int((~am_ok).sum()),
    }
    print("ORT at 32^3 vs float64 reference: max |diff| %.3g, vs MXNet %.3g, argmax "
          "mismatches beyond a 1e-5 margin: %d" % (res["max_abs_diff_vs_float64"],
                                                   res["max_abs_diff_vs_mxnet"],
                                                   res["argmax_mismatch_beyond_1e-5_margin"]))
    ok = res["max_abs_diff_vs_float64"] <= 1e-4 and res["argmax_mismatch_beyond_1e-5_margin"] == 0
    try:
        import openvino as ov
        core = ov.Core()
        cm = core.compile_model(path32, "CPU", {"INFERENCE_NUM_THREADS": 2,
                                                "INFERENCE_PRECISION_HINT": "f32"})
        got_ov = cm([x])[cm.output(0)]
        res["openvino_max_abs_diff_vs_float64"] = float(np.abs(got_ov.astype(np.float64) - want).max())
        print("OpenVINO at 32^3 vs float64 reference: max |diff| %.3g"
              % res["openvino_max_abs_diff_vs_float64"])
        ok = ok and res["openvino_max_abs_diff_vs_float64"] <= 1e-4
    except ImportError:
        print("(openvino not installed: its 32^3 check skipped)")
    print("verify:", "OK" if ok else "FAILED")
    return ok, res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-o", "--output", default=None)
    ap.add_argument("--force", action="store_true", help="rebuild even if the file exists")
    ap.add_argument("--verify", action="store_true",
                    help="also build the 32^3 model and check it against the float64 fixture")
    ap.add_argument("--verify-only", action="store_true")
    a = ap.parse_args()

    if not a.verify_only:
        path = a.output or default_path(a.size, a.seed)
        if a.force and os.path.exists(path):
            os.remove(path)
        t0 = time.time()
        ensure_model(a.size, a.seed, path)
        print("wrote %s (%.1f MB, %.1f s)" % (path, os.path.getsize(path) / 1e6, time.time() - t0))
    if a.verify or a.verify_only:
        p32 = default_path(32, 1)
        ensure_model(32, 1, p32)
        ok, _ = verify(p32)
        if not ok:
            sys.exit(1)


if __name__ == "__main__":
    main()
