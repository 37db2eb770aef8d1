//! The 3x3x3 stride-1 convolution with a Winograd F(2,3) transform along W: the width
//! kernel's walk (`conv/width.rs`) over a staged input (`conv/staging.rs`) whose rows are
//! stored transformed, with a register tile that needs two thirds of the direct kernel's
//! FMAs. [`super::Vectorize::Winograd`] asks for it, and the graph's residual blocks do:
//! it runs their convolutions on rows of 16 to 64 voxels ([`fits`]).
//!
//! # The transform
//!
//! Along W, two outputs `y0 = g0 d0 + g1 d1 + g2 d2` and `y1 = g0 d1 + g1 d2 + g2 d3` of a
//! row (taps `g`, padded input `d0..d3` from the output pair's first input) are
//! `y0 = (m0 + m1) + m2` and `y1 = (m1 - m2) - m3` with `m = (G g) * (Bᵀ d)`:
//! `Bᵀ d = [d0 - d2, d1 + d2, d2 - d1, d1 - d3]` and
//! `G g = [g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2]` (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016). The `m`s are sums over input
//! channels and the (kz, ky) taps like any output, so:
//!
//! - the staging writes each normalized input row as its transformed tiles, four floats
//!   per output pair, `[Bᵀ d]` of pair `t` at `4 t` (twice the floats of the row);
//! - the weights are packed as `G g` per (input channel, kz, ky) and output channel,
//!   `[group][block of LANES output channels][ci][kz][ky][lane][4]`, computed in f64
//!   from the direct packing when the first call needs them;
//! - a register holds `LANES / 4` tiles, that is `LANES / 2` output voxels, and a weight
//!   register one output channel's four transformed taps repeated (`load4_splat`, one
//!   `vbroadcastf32x4`); a tile of the kernel is `OC` channels x `NW` vectors, summed
//!   over `9 * cin/G` (channel, kz, ky) steps of one input load per vector and one
//!   weight load per channel: 8 x 3 with AVX-512, 24 FMAs per 11 loads as in the direct
//!   kernel, but 4 multiplies per output pair, input channel and (kz, ky) instead of 6;
//! - the epilogue turns the `m`s into outputs (`winograd_outputs`), two registers into
//!   one of `LANES` outputs, then stores as the direct kernel does (bias, accumulate,
//!   max, statistics).
//!
//! The input loads are aligned (the direct kernel's taps at `x + 1` and `x + 2` split
//! two thirds of its loads across cache lines).
//!
//! # Measurements (2 threads, AVX-512, this machine)
//!
//! Kernel alone, staged input, the two kernels alternating in one process, medians:
//! 16 channels at 32³ 2.60 -> 2.16 ms, 32 at 64³ 79.4 -> 69.9 ms; but 8 channels at 128³
//! 47.5 -> 60.9 ms, 16 at 128³ 177 -> 202 ms. Rows twice as long as 64 make twice the
//! columns of a plane's walk, each streaming its rows of the ring (twice the direct
//! ring's bytes, from L3 at 128³) for half the outputs of a direct column; the FMAs saved
//! do not pay for the stalls (a perf profile puts a third of the kernel's samples on its
//! first input load). Hence [`MAX_WIDTH`].
//!
//! In the network (the whole 128³ pass, with and without the transform alternating in
//! one process, 8 pairs): per-pair ratio median 0.926 with it on rows up to 64 voxels;
//! with 128-voxel rows too, 1.20 (8 x 3 tiles) or 0.99 (4 channels x 3 rows x 2 vectors
//! tiles); leaving out the 64-channel convs at 32³, whose per-layer ratios were mixed:
//! 1.053 (worse). The epilogue's half-vector loads went through a stack copy until
//! `load_n` got masked loads for AVX-512 and AVX2 (the accumulating convs were 1.2-1.4x
//! slower with the transform before that). AVX2 (`BRATS_ISA=avx2`, whole pass, 4 pairs):
//! 0.72-0.97 of the direct kernel's time.
//!
//! Tried and not kept (the same in-process pairs, against this module as it is): rows of
//! 128 split into bands of 64 or 32 columns, each a task with a ring of its columns only
//! (so that a ring of 8 channels fits L2): 1.032 and 1.002; 8 x 2 tiles wherever a row's
//! rest is a whole number of pairs (no half-empty output transforms at the end of 32-
//! and 64-voxel rows): 1.091; software prefetch (T0) of the input rows the next output
//! row of a column reads first, one output row ahead: 0.964 and 1.047 in two runs of
//! 8-10 pairs (no consistent effect), and with 128-voxel rows included against them left
//! out, both with the prefetch: 1.030. At 128 voxels, tiles of all 16 output channels x
//! 1 vector (twice the FMAs per fetched input vector, but 17 loads per 16 FMAs and an
//! output transform per 8 outputs): 16 channels at 128³ staged, 168-172 -> 244-255 ms.
//!
//! # Accuracy
//!
//! The sums are no longer the direct ones: each output is a sum of `4 * 9 * cin/G`
//! products of transformed values, each within a few units of rounding of the exact
//! transformed value. `tests/winograd.rs` bounds the error by `gamma(n)` times the sum of
//! the transformed terms' magnitudes. On the network (`forward_exact`) the 128³ softmax
//! is 3.6e-6 from float64 (4.1e-6 with the direct kernel) and 1.9e-3 from MXNet.

use super::{Job, Part, MAX_PARTS};
use crate::simd::Simd;

/// Output voxels per transformed tile, floats per tile.
pub(super) const TILE_OUT: usize = 2;
pub(super) const TILE_FLOATS: usize = 4;

/// Output rows wider than this stay with the direct kernel: at 128 voxels the
/// transform was slower (module note).
pub(super) const MAX_WIDTH: usize = 64;

/// Whether a call can use the transform: a 3x3 stride-1 conv reading a staged input, no
/// fused softmax, rows of `lanes` (two of the kernel's vectors) to [`MAX_WIDTH`] outputs;
/// narrower rows are the channel kernel's.
pub(super) fn fits(
    kernel: usize,
    stride: usize,
    staged: bool,
    softmax: bool,
    out_w: usize,
    lanes: usize,
) -> bool {
    kernel == 3 && stride == 1 && staged && !softmax && (lanes..=MAX_WIDTH).contains(&out_w)
}

/// Floats per staged row of a transformed input `in_w` wide (stride 1, pad 1: as many
/// outputs), a whole number of 64-byte lines so that every row starts aligned.
pub(super) fn row_floats(in_w: usize) -> usize {
    (in_w.div_ceil(TILE_OUT) * TILE_FLOATS).next_multiple_of(16)
}

/// Transforms the direct packing (`[group][block][ci][tap][lane]`, `lanes` channels per
/// block, 27 taps) into the module's `[group][block][ci][kz][ky][lane][4]`.
pub(super) fn pack(direct: &[f32], lanes: usize) -> Vec<f32> {
    let per_ci = 27 * lanes;
    let mut out = vec![0.0f32; direct.len() / 27 * 36];
    for (ci_in, ci_out) in direct
        .chunks_exact(per_ci)
        .zip(out.chunks_exact_mut(36 * lanes))
    {
        for kzy in 0..9 {
            for o in 0..lanes {
                let g = |kx: usize| ci_in[(kzy * 3 + kx) * lanes + o] as f64;
                let t = [
                    g(0),
                    (g(0) + g(1) + g(2)) / 2.0,
                    (g(0) - g(1) + g(2)) / 2.0,
                    g(2),
                ];
                for (c, v) in t.iter().enumerate() {
                    ci_out[(kzy * lanes + o) * 4 + c] = *v as f32;
                }
            }
        }
    }
    out
}

/// Writes the transformed tiles of a padded input row into `out`: `padded` is the row
/// with its zero halo, `padded[0]` the halo voxel before the first, and at least
/// `2 * tiles + 2` long (zeros past the row's end); `out` receives `4 * tiles` floats
/// and zeros after them.
pub(super) fn input_row(padded: &[f32], out: &mut [f32]) {
    let tiles = (padded.len() - 2) / TILE_OUT;
    let (used, rest) = out.split_at_mut(tiles * TILE_FLOATS);
    for (u, d) in used.chunks_exact_mut(4).zip(padded.windows(4).step_by(2)) {
        u[0] = d[0] - d[2];
        u[1] = d[1] + d[2];
        u[2] = d[2] - d[1];
        u[3] = d[1] - d[3];
    }
    rest.fill(0.0);
}

/// The register tile over a transformed input: `OC` output channels x `NW` vectors of
/// `LANES / 4` tiles, `COLS` vectors per output row and `NW / COLS` rows. Then the output
/// transform and the direct kernel's stores.
///
/// # Safety
/// As `width::tile_kernel`: the job and tile describe valid memory, the staged input has
/// `NW / COLS` rows of `COLS` vectors from each tap's row pointer.
#[inline(always)]
pub(super) unsafe fn tile_kernel<S: Simd, const OC: usize, const NW: usize, const COLS: usize>(
    s: S,
    job: &Job,
    parts: &[Part; MAX_PARTS],
    t: &super::width::Tile,
) {
    let lanes = S::LANES;
    let part = &parts[0];
    let (input, row_step) = (t.inputs[0], t.input_row_steps[0]);
    let v_at = |v: usize| v / COLS * row_step + v % COLS * lanes;
    let mut acc = [[s.zero(); NW]; OC];
    let mut w = t.weights;
    for ci in 0..part.channels {
        let plane = input.add(ci * part.cs);
        for kz in 0..3 {
            for ky in 0..3 {
                let row = plane.add(part.taps_z[kz] + ky * part.rs);
                let mut x = [s.zero(); NW];
                for (v, xv) in x.iter_mut().enumerate() {
                    *xv = s.load(row.add(v_at(v)));
                }
                for (o, acc_o) in acc.iter_mut().enumerate() {
                    let wv = s.load4_splat(w.add(TILE_FLOATS * o));
                    for v in 0..NW {
                        acc_o[v] = s.mul_add(wv, x[v], acc_o[v]);
                    }
                }
                w = w.add(TILE_FLOATS * lanes);
            }
        }
    }
    // As in the direct kernel: the epilogue's runtime channel bound must not pull `acc`
    // into memory.
    let acc = std::hint::black_box(acc);
    // Valid outputs of each row of the tile: `COLS - 1` full vectors and the last one's.
    let row_valid = (COLS - 1) * lanes / 2 + t.last_lanes;
    for (o, acc_o) in acc.iter().enumerate() {
        if o >= t.valid_oc {
            break;
        }
        let b = s.splat(*t.bias.add(o));
        let mut st = s.stats_zero();
        for row in 0..NW / COLS {
            for pair in 0..COLS.div_ceil(2) {
                let v = row * COLS + 2 * pair;
                let second = if 2 * pair + 1 < COLS {
                    acc_o[v + 1]
                } else {
                    s.zero()
                };
                let r = s.add(s.winograd_outputs(acc_o[v], second), b);
                let n = (row_valid - pair * lanes).min(lanes);
                st = super::width::store_vector(s, job, t, o, (row, pair * lanes), r, n, st);
            }
        }
        super::width::finish_stats(s, job, t, o, st);
    }
}
