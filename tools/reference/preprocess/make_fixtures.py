"""Reference pre- and postprocessing for brats-preprocess, written from MODEL.md and the
original training code's description (nibabel reading, masked z-score, [min:max] brain box,
scipy.ndimage.zoom(order=1)), and the fixtures the Rust tests compare against.

Usage (see README.md):  python make_fixtures.py [--full OUT_DIR]

Committed output (fixtures/): small files only: per-channel statistics, the brain box,
sampled voxels and a few full slices of the network input, and label maps produced by the
reference postprocessing from a closed-form probability tensor. --full additionally writes
the whole f32 [1,4,128,128,128] input tensor (33 MB) to OUT_DIR for an on-demand check.
"""
import argparse
import json
import os

import nibabel as nib
import numpy as np
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
CASE_DIR = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "BraTS-GLI-00001-000"))
CASE = "BraTS-GLI-00001-000"
# Network channel order T1, T2, FLAIR, T1ce -> BraTS 2023 file suffixes.
SUFFIXES = ["t1n", "t2w", "t2f", "t1c"]
SIDE = 128
FIXTURES = os.path.join(HERE, "fixtures")


def load_case():
    volumes, affine = [], None
    for s in SUFFIXES:
        img = nib.load(os.path.join(CASE_DIR, f"{CASE}-{s}.nii.gz"))
        # Stored index order, scaling applied (dataobj), as float32.
        volumes.append(np.asarray(img.dataobj).astype(np.float32))
        affine = img.affine
    return volumes, affine


def normalize(image):
    """Masked z-score as the original: numpy masked statistics on float32."""
    mask = image > 0.0
    ret = image.copy()
    masked = np.ma.masked_array(ret, ~mask)
    ret[mask] = ret[mask] - np.mean(masked)
    ret[mask] = ret[mask] / np.var(masked) ** 0.5
    ret[ret > 5.0] = 5.0
    ret[ret < -5.0] = -5.0
    ret += 5.0
    ret /= 10
    ret[~mask] = 0.0
    return ret


def extent(mask):
    idx = np.nonzero(mask)
    return [int(i.min()) for i in idx], [int(i.max()) for i in idx]


def resample(data, shape, mode="constant"):
    factor = [float(o) / i for i, o in zip(data.shape, shape)]
    out = ndimage.zoom(data, zoom=factor, order=1, mode=mode)
    assert out.shape == tuple(shape), (out.shape, shape)
    return out


def preprocess(volumes):
    lows, highs = zip(*[extent(v > 0) for v in volumes])
    start = [min(l[a] for l in lows) for a in range(3)]
    end = [max(h[a] for h in highs) for a in range(3)]
    data = np.stack([normalize(v) for v in volumes])[None]
    crop = data[:, :, start[0]:end[0], start[1]:end[1], start[2]:end[2]]
    net_input = resample(crop, (1, 4, SIDE, SIDE, SIDE)).astype(np.float32)
    return net_input, start, end


def synthetic_probs(side):
    """Closed-form 4-class probability tensor [4, side, side, side] using only + - * /,
    so that the Rust test can rebuild it bit for bit (crates/preprocess/tests)."""
    idx = np.arange(side, dtype=np.float64)
    d, h, w = np.meshgrid(idx, idx, idx, indexing="ij")
    s = float(side)
    # (centre as fractions of side, radius fraction, amplitude) per class.
    blobs = [
        ((0.5, 0.5, 0.5), 0.6, 1.0),
        ((0.45, 0.55, 0.5), 0.12, 2.0),
        ((0.5, 0.4, 0.6), 0.2, 1.6),
        ((0.55, 0.5, 0.42), 0.07, 2.5),
    ]
    q = []
    for (cd, ch, cw), r, amp in blobs:
        dd, hh, ww = d - cd * s, h - ch * s, w - cw * s
        dist2 = dd * dd + hh * hh + ww * ww
        rr = (r * s) * (r * s)
        q.append(amp / (1.0 + dist2 / rr))
    total = ((q[0] + q[1]) + q[2]) + q[3]
    return np.stack([qi / total for qi in q]).astype(np.float32)


def postprocess(probs, dims, start, end):
    """Back-resample to the box (mode='nearest' = clamping the last coordinate, see
    MODEL.md), paste into zeros of the case size, argmax over classes."""
    size = [end[a] - start[a] for a in range(3)]
    boxed = resample(probs[None], (1, 4) + tuple(size), mode="nearest")[0]
    full = np.zeros((4,) + tuple(dims), dtype=np.float64)
    full[:, start[0]:end[0], start[1]:end[1], start[2]:end[2]] = boxed
    return np.argmax(full, axis=0).astype(np.uint8), boxed


def constant_mode_blanks(probs, size):
    """Whether scipy's mode='constant' zeroes an output slice for this box size."""
    out = resample(probs[None, :1], (1, 1) + tuple(size))
    return [bool(np.all(np.take(out, -1, axis=2 + a) == 0)) for a in range(3)]


def write_f32(name, array):
    np.ascontiguousarray(array, dtype="<f4").tofile(os.path.join(FIXTURES, name))


def stats(x):
    x = x.astype(np.float64)
    return {"sum": float(x.sum()), "mean": float(x.mean()), "std": float(x.std()),
            "min": float(x.min()), "max": float(x.max())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", metavar="OUT_DIR", help="also write the full input tensor")
    args = parser.parse_args()
    os.makedirs(FIXTURES, exist_ok=True)
    rng = np.random.default_rng(20181001)

    volumes, _ = load_case()
    net_input, start, end = preprocess(volumes)
    mask_stats = []
    for v in volumes:
        m = v[v > 0].astype(np.float64)
        mask_stats.append({"count": int(m.size), "mean": float(m.mean()), "std": float(m.std())})
    samples = rng.integers(0, SIDE, size=(4096, 4))
    samples[:, 0] %= 4
    slices = [
        {"channel": 0, "axis": "w", "index": 64},
        {"channel": 2, "axis": "h", "index": 70},
        {"channel": 3, "axis": "d", "index": 50},
    ]
    for s in slices:
        plane = {"d": net_input[0, s["channel"], s["index"], :, :],
                 "h": net_input[0, s["channel"], :, s["index"], :],
                 "w": net_input[0, s["channel"], :, :, s["index"]]}[s["axis"]]
        s["file"] = f"input_c{s['channel']}_{s['axis']}{s['index']}.f32"
        write_f32(s["file"], plane)
    pre = {
        "case": CASE,
        "channel_files": [f"{CASE}-{s}.nii.gz" for s in SUFFIXES],
        "dims": list(volumes[0].shape),
        "box_start": start,
        "box_end": end,
        "mask_stats": mask_stats,
        "channel_stats": [stats(net_input[0, c]) for c in range(4)],
        "samples": [[int(c), int(d), int(h), int(w), float(net_input[0, c, d, h, w])]
                    for c, d, h, w in samples],
        "slices": slices,
    }
    with open(os.path.join(FIXTURES, "preprocess.json"), "w") as f:
        json.dump(pre, f, indent=0)

    probs = synthetic_probs(SIDE)
    cases = [
        {"name": "real_box", "dims": list(volumes[0].shape), "start": start, "end": end},
        # A box of 175 along the first axis: scipy's coordinate for the last output index
        # rounds past 127 there (MODEL.md), so this exercises the clamp.
        {"name": "edge_box", "dims": [200, 180, 160], "start": [10, 3, 20], "end": [185, 150, 140]},
    ]
    for c in cases:
        labels, boxed = postprocess(probs, c["dims"], c["start"], c["end"])
        size = boxed.shape[1:]
        c["constant_mode_blanks_last_slice"] = constant_mode_blanks(probs, size)
        c["class_counts"] = [int((labels == k).sum()) for k in range(4)]
        picks = np.stack([rng.integers(0, n, size=2048) for n in size], axis=1)
        c["box_samples"] = [[int(k)] + [int(v) for v in p] + [float(boxed[k, p[0], p[1], p[2]])]
                            for k, p in zip(rng.integers(0, 4, size=2048), picks)]
        c["labels_file"] = f"post_{c['name']}_labels.nii.gz"
        img = nib.Nifti1Image(labels, np.eye(4))
        img.set_data_dtype(np.uint8)
        nib.save(img, os.path.join(FIXTURES, c["labels_file"]))
    with open(os.path.join(FIXTURES, "postprocess.json"), "w") as f:
        json.dump({"side": SIDE, "cases": cases}, f, indent=0)

    # Connected components: a random blob label map, filtered as the original submission
    # did (26-connectivity over all tumour classes, drop components < 5 % of the tumour here;
    # the original used 10 %, which would keep only one of these blobs).
    field = ndimage.gaussian_filter(rng.standard_normal((48, 40, 36)), 2.5)
    field /= field.std()
    blobs = np.zeros(field.shape, dtype=np.uint8)
    blobs[field > 1.6] = 2
    blobs[field > 2.0] = 1
    blobs[field > 2.4] = 3
    components, count = ndimage.label(blobs > 0, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(components.ravel())[1:]
    keep = np.concatenate([[False], sizes >= 0.05 * sizes.sum()])
    filtered = np.where(keep[components], blobs, 0).astype(np.uint8)
    for name, data in [("components_in.nii.gz", blobs), ("components_out.nii.gz", filtered)]:
        img = nib.Nifti1Image(data, np.eye(4))
        img.set_data_dtype(np.uint8)
        nib.save(img, os.path.join(FIXTURES, name))
    with open(os.path.join(FIXTURES, "components.json"), "w") as f:
        json.dump({"fraction": 0.05, "components": int(count),
                   "sizes": sorted((int(v) for v in sizes), reverse=True),
                   "kept": int(keep.sum())}, f, indent=0)
    print("components", count, "kept", int(keep.sum()))

    if args.full:
        os.makedirs(args.full, exist_ok=True)
        np.save(os.path.join(args.full, "input.npy"), net_input)
        print("wrote", os.path.join(args.full, "input.npy"))
    print("box", start, end, "size", [e - s for s, e in zip(start, end)])
    for c in cases:
        print(c["name"], "class counts", c["class_counts"],
              "constant mode blanks last slice", c["constant_mode_blanks_last_slice"])


if __name__ == "__main__":
    main()
