"""Synthetic weights for brain-tumor-segmentation-0001: a pure function of
(seed, parameter name, flat element index), identical bit for bit to the Rust
implementation in crates/graph/src/weights/synth.rs.

Why a counter-based hash: the Rust tests must regenerate, from the seed alone,
exactly the tensors this tool fed to MXNet, without committing 152 MB of weights.
All arithmetic is wrapping u64 (numpy uint64 arrays wrap silently), the value is
formed in float64 and rounded once to float32.

Spec (see tools/reference/README.md):
  fnv1a64(bytes), mix = SplitMix64 finalizer,
  key(seed, name) = mix(fnv1a64(name) ^ mix(seed))
  u(seed, name, i) = (mix(key + (i + 1) * 0x9e3779b97f4a7c15) >> 40) / 2**23 - 1
  conv weight:   u * sqrt(3 / (Cin/G * k^3))
  deconv weight: u * sqrt(3 / Cin)
  bias, beta: 0.1 * u;  gamma: 1 + 0.1 * u
"""
import math

import numpy as np

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def mix_int(z: int) -> int:
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mix_arr(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer on a uint64 array (wrapping arithmetic)."""
    z = z.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def strip_prefix(name: str) -> str:
    for p in ("arg:", "aux:"):
        if name.startswith(p):
            return name[len(p):]
    return name


def key(seed: int, name: str) -> int:
    return mix_int(fnv1a64(strip_prefix(name).encode("utf-8")) ^ mix_int(seed))


def uniform(seed: int, name: str, n: int) -> np.ndarray:
    """u(seed, name, i) for i in 0..n as float64 in [-1, 1), 24-bit resolution."""
    k = np.uint64(key(seed, name))
    idx = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = k + idx * np.uint64(GOLDEN)
    bits = mix_arr(z) >> np.uint64(40)
    return bits.astype(np.float64) / float(1 << 23) - 1.0


def synth_tensor(seed: int, spec) -> np.ndarray:
    """Float32 tensor for one ParamSpec (name, shape, kind, fan_in)."""
    n = int(np.prod(spec.shape))
    u = uniform(seed, spec.name, n)
    if spec.kind in ("conv_weight", "deconv_weight"):
        v = u * math.sqrt(3.0 / spec.fan_in)
    elif spec.kind in ("conv_bias", "norm_beta"):
        v = 0.1 * u
    elif spec.kind == "norm_gamma":
        v = 1.0 + 0.1 * u
    else:
        raise ValueError(f"unknown kind {spec.kind!r} for {spec.name}")
    return v.astype(np.float32).reshape(spec.shape)


def synth_input(seed: int, shape) -> np.ndarray:
    """Deterministic stand-in for a preprocessed volume: (u + 1) / 2 in [0, 1)."""
    n = int(np.prod(shape))
    u = uniform(seed, "input", n)
    return ((u + 1.0) * 0.5).astype(np.float32).reshape(shape)
