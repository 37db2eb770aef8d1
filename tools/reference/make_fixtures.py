#!/usr/bin/env python3
"""Builds every golden reference for brats-seg from the seeded synthetic weights.

  python make_fixtures.py                 # 32^3 fixtures into fixtures/ (committed)
  python make_fixtures.py --size 128      # 128^3 into out/128/ (git-ignored, slow)

Steps (each one asserted, the script stops on the first failure):
 1. Table: topology.param_table() (written from MODEL.md) must equal MXNet's
    list_arguments()/infer_shape() of the rebuilt symbol, name for name, shape for
    shape, in order. Written to fixtures/param_table.json for the Rust table test.
 2. Full .params: all 225 synthetic tensors saved by MXNet itself (mx.nd.save, table
    order) must be exactly 152,788,159 bytes, the size of the official file. Kept in
    out/ (git-ignored); its SHA-256 goes into the manifest so the Rust .params writer
    can be proven byte-identical on the full model.
 3. tiny.params: a few real names/shapes saved by MXNet (format fixture, committed).
 4. Forward passes: MXNet (float32) and ref_f64 (independent numpy float64). Stores
    input, float64 softmaxes, a few net128 intermediates (depth slab D in [0, 4) for
    the wide ones) and MXNet's softmax as .npy float32, with manifest.json.
"""
import argparse
import hashlib
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import synth  # noqa: E402
import topology  # noqa: E402
import ref_f64  # noqa: E402

OFFICIAL_PARAMS_SIZE = 152_788_159
TINY_NAMES = [
    "seg_onlynet128conv1sep_conv_bias",
    "seg_onlynet128rb1norm1_gamma",
    "seg_onlynet128rb1norm1_beta",
    "convolution11_weight",
    "convolution11_bias",
    "seg_onlynet32rb7norm2_gamma",
]
CHECKSUM_NAMES = [
    "seg_onlynet128conv1sep_conv_weight",
    "seg_onlynet128rb1norm1_gamma",
    "seg_onlynet128up_conv2_1_weight",
    "seg_onlynet32rb4conv2sep_conv_weight",
    "convolution0_bias",
    "convolution11_weight",
]
# (key, description, crop depth slab?)
TAPS = [
    ("net32_softmax", "softmax(net32) over channels, float64 reference", False),
    ("net64_softmax", "softmax(net64) over channels, float64 reference", False),
    ("softmax", "final output softmax(net128), float64 reference", False),
    ("net128_conv1", "net128 conv1 output (before rb1), float64", True),
    ("net128_rb1", "net128 rb1 output (residual sum), float64", True),
    ("net128_rb1_gmax", "group max of net128 rb1 = skip2, float64", True),
    ("net128_up2", "net128 up_conv2_1 deconv output, float64", True),
    ("net128_c2", "net128 c2 output (1x1 over concat(up2, skip2); rb7's input), float64", True),
    ("net128_rb7", "net128 rb7 output (input of fconv3), float64", True),
    ("net128_logits", "net128 fconv3 logits (convolution11), float64", True),
]
SLAB = 4  # depth slices kept for wide intermediates


def sha256_f32(a):
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_table(mx_model, size):
    out, _ = mx_model.build()
    names = out.list_arguments()
    shapes, _, aux = out.infer_shape(data_crop=(1, 4, size, size, size))
    assert not out.list_auxiliary_states(), "the symbol must have no aux states"
    got = [(n, tuple(s)) for n, s in zip(names, shapes) if n != "data_crop"]
    want = [(p.name, tuple(p.shape)) for p in topology.param_table()]
    assert len(want) == 225, len(want)
    assert got == want, "MXNet's argument list differs from topology.param_table()"
    assert want[0][0] == "seg_onlynet128conv1sep_conv_weight" and want[-1][0] == "convolution11_bias"
    return out


def save_params(mx, path, tensors):
    mx.nd.save(path, {"arg:" + n: mx.nd.array(t, dtype="float32") for n, t in tensors})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", type=int, default=32, help="input side, a multiple of 32")
    ap.add_argument("--out", default=None, help="output folder (default fixtures/ for 32, out/SIZE/ otherwise)")
    ap.add_argument("--work", default=os.path.join(HERE, "out"), help="folder for the full .params (git-ignored)")
    args = ap.parse_args()
    if args.size % 32 or args.size <= 0:
        sys.exit("--size must be a positive multiple of 32")
    out_dir = args.out or (os.path.join(HERE, "fixtures") if args.size == 32
                           else os.path.join(HERE, "out", str(args.size)))
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)

    import mxnet as mx
    import mx_model

    # 1. table
    sym = check_table(mx_model, args.size)
    table = topology.param_table()
    with open(os.path.join(out_dir, "param_table.json"), "w") as f:
        json.dump([{"name": p.name, "shape": list(p.shape), "kind": p.kind, "fan_in": p.fan_in}
                   for p in table], f, indent=0)
        f.write("\n")
    print("table: 225 parameters, MXNet order and shapes agree")

    # synthetic weights
    t0 = time.time()
    weights = [(p.name, synth.synth_tensor(args.seed, p)) for p in table]
    wdict = dict(weights)
    all_hash = hashlib.sha256()
    for _, t in weights:
        all_hash.update(np.ascontiguousarray(t, dtype="<f4").tobytes())
    print("synthetic weights: %.1f s" % (time.time() - t0))

    # 2. full .params, written by MXNet
    full = os.path.join(args.work, "synthetic-seed%d.params" % args.seed)
    save_params(mx, full, weights)
    full_size = os.path.getsize(full)
    assert full_size == OFFICIAL_PARAMS_SIZE, (full_size, OFFICIAL_PARAMS_SIZE)
    full_sha = sha256_file(full)
    back = mx.nd.load(full)
    assert list(back) == ["arg:" + n for n, _ in weights]
    print("full .params: %d bytes == official size; sha256 %s" % (full_size, full_sha))

    # 3. tiny.params (format fixture)
    tiny_path = os.path.join(out_dir, "tiny.params")
    save_params(mx, tiny_path, [(n, wdict[n]) for n in TINY_NAMES])

    # 4. forward passes
    x = synth.synth_input(args.seed, (1, 4, args.size, args.size, args.size))
    t0 = time.time()
    ref = ref_f64.forward({n: t.astype(np.float64) for n, t in weights}, x[0].astype(np.float64))
    t_ref = time.time() - t0
    _, mtaps = mx_model.build()
    keys = [k for k, _, _ in TAPS]
    grp = mx.sym.Group([mtaps[k] for k in keys])
    bind_args = {n: mx.nd.array(t, dtype="float32") for n, t in weights}
    bind_args["data_crop"] = mx.nd.array(x, dtype="float32")
    t0 = time.time()
    ex = grp.bind(mx.cpu(), args=bind_args, grad_req="null")
    mx_out = {k: o.asnumpy() for k, o in zip(keys, ex.forward(is_train=False))}
    t_mx = time.time() - t0
    # The symbol used for the table check has the same output as the taps' softmax.
    assert sym.list_outputs() == ["blockgrad7_output"], sym.list_outputs()
    print("float64 reference %.1f s, MXNet %.1f s" % (t_ref, t_mx))

    manifest = {
        "what": "golden references for brain-tumor-segmentation-0001 on synthetic weights",
        "seed": args.seed,
        "size": args.size,
        "instance_norm_eps": ref_f64.EPS,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "mxnet": mx.__version__},
        "tensors": {},
        "max_abs_diff_mxnet_vs_float64": {},
    }

    def store(key, arr, desc, source, crop):
        full_shape = list(arr.shape)
        if crop:
            sl = [[0, s] for s in full_shape]
            sl[2] = [0, min(SLAB, full_shape[2])]
            arr = arr[:, :, sl[2][0]:sl[2][1]]
        else:
            sl = None
        fname = key + ".npy"
        np.save(os.path.join(out_dir, fname), np.ascontiguousarray(arr, dtype="<f4"))
        manifest["tensors"][key] = {"file": fname, "shape": full_shape, "crop": sl,
                                    "stored_shape": list(arr.shape), "source": source,
                                    "description": desc}

    store("input", x, "synthetic input (u(seed, 'input', i) + 1) / 2, NCDHW", "synthetic", False)
    for key, desc, crop in TAPS:
        r = ref[key][None]
        m = mx_out[key]
        assert r.shape == m.shape, (key, r.shape, m.shape)
        manifest["max_abs_diff_mxnet_vs_float64"][key] = float(np.abs(m - r).max())
        store(key, r, desc, "float64", crop)
    store("mxnet_softmax", mx_out["softmax"], "final softmax computed by MXNet 1.9.1 (float32)", "mxnet", False)

    sm = ref["softmax"]
    counts = np.bincount(sm.argmax(0).ravel(), minlength=4)
    maxp = sm.max(0)
    manifest["softmax_stats"] = {
        "argmax_counts": [int(c) for c in counts],
        "min_prob": float(sm.min()), "max_prob": float(sm.max()),
        "max_prob_percentiles_1_50_99": [float(v) for v in np.percentile(maxp, [1, 50, 99])],
        "logits_abs_max": float(np.abs(ref["net128_logits"]).max()),
    }
    assert (counts > 0).all(), "softmax saturated: a class never wins"
    assert 0.0 < sm.min() and sm.max() < 1.0

    manifest["synthetic_checksums"] = {
        "algorithm": "sha256 of the little-endian float32 bytes in C order",
        "tensors": {n: sha256_f32(wdict[n]) for n in CHECKSUM_NAMES},
        "all_parameters_in_table_order": all_hash.hexdigest(),
        "input": sha256_f32(x),
    }
    manifest["params_file"] = {
        "written_by": "mxnet %s mx.nd.save of {'arg:' + name: tensor} in table order" % mx.__version__,
        "size": full_size, "official_size": OFFICIAL_PARAMS_SIZE, "sha256": full_sha,
        "local_copy": os.path.relpath(full, HERE),
    }
    manifest["tiny_params"] = {
        "file": "tiny.params", "written_by": "mxnet %s mx.nd.save, this order" % mx.__version__,
        "names": TINY_NAMES, "size": os.path.getsize(tiny_path), "sha256": sha256_file(tiny_path),
    }
    manifest["param_table"] = "param_table.json"
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("max |MXNet - float64|:")
    for k, v in manifest["max_abs_diff_mxnet_vs_float64"].items():
        print("  %-18s %.3e" % (k, v))
    print("softmax argmax counts", list(counts), "min/max prob %.3g / %.6f" % (sm.min(), sm.max()))
    print("wrote", out_dir)


if __name__ == "__main__":
    main()
