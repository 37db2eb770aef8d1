//! The convolution vectorized across output channels: one register holds `LANES`
//! output channels of one voxel, for the layers whose rows are too short to fill a vector
//! along W (net32's and net64's deep levels: 4 and 8 voxels per row, a quarter and a half
//! of an AVX-512 vector in the [`width`] kernel).
//!
//! A register tile is `NOC` vectors of output channels x `R` output rows x `C`
//! consecutive columns. Per input channel and tap it loads `NOC` weight vectors (the
//! packed block is already `LANES` channels wide, so they are plain loads) and broadcasts
//! `R * C` input scalars, each feeding `NOC` FMAs. The input scalars are addressed from
//! `R` row pointers with the column as a constant displacement, which keeps the address
//! registers at `R` + 2 and makes the stride-2 convolutions no different from stride 1.
//!
//! - AVX-512 (32 registers): 2 x 2 x 4 (16 accumulators + 2 weights; 10 loads per 16
//!   FMAs) and, for the last block of a group with an odd block count, 1 x 4 x 4. Tiles
//!   of 24 accumulators (2 x 3 x 4, 1 x 6 x 4) made the compiler spill accumulators to
//!   the stack (12-68 zmm stores per 72 FMAs, `tools/check_conv_asm.sh`) and measured
//!   slower on 1 thread: net32.pool3 105-110 against 132-137 GFLOP/s, net32.rb4
//!   122-135 against 140-142.
//! - AVX2 and portable (16 registers): 2 x 1 x 4 and 1 x 3 x 4.
//!
//! The summation order per output is the width kernel's (input channels, then taps, then
//! the bias, then the old value for the accumulate epilogue), so both kernels give
//! bit-identical outputs. A task is (group, `NOC` channel blocks, slab of output planes)
//! and owns those channels' statistics for its planes, so the statistics are
//! bit-identical for any thread count too. The last row tile of a task repeats its last
//! valid row and the last column tile of a row overlaps its predecessor: the repeated
//! voxels are computed and not stored.

use super::staging::{first_plane, Staged};
use super::{Job, Part, MAX_PARTS};
use crate::isa::Kind;
#[cfg(target_arch = "x86_64")]
use crate::simd::Avx512;
use crate::simd::{Portable, Simd};
use rayon::prelude::*;

/// Columns of every tile shape: outputs narrower than this use the width kernel.
const COLUMNS: usize = 4;

/// Tasks a job is split into at least (when it has that many output planes), so that the
/// threads stay balanced ([`Job::slabs`]).
const MIN_TASKS: usize = 16;

/// Whether the channel kernel can compute this job.
pub(super) fn fits(job: &Job) -> bool {
    job.out_w >= COLUMNS
}

/// Whether the channel kernel is the faster of the two for this job (measured with
/// `cargo bench -p brats-kernels`; see the module note of [`super`]).
pub(super) fn preferred(isa: Kind, job: &Job) -> bool {
    job.out_w < super::lanes(isa)
}

/// Runs the whole job (see the module note for the task split).
pub(super) fn run(isa: Kind, k: usize, s: usize, groups: usize, job: &Job) {
    let chunks = job.n_pb.div_ceil(CHUNK_BLOCKS);
    let (per_slab, slabs) = job.slabs(MIN_TASKS, groups * chunks);
    (0..groups * chunks * slabs).into_par_iter().for_each(|t| {
        let first = CHUNK_BLOCKS * (t / slabs % chunks);
        let task = Task {
            group: t / (chunks * slabs),
            blocks: (first, (first + CHUNK_BLOCKS).min(job.n_pb)),
            z_range: (
                t % slabs * per_slab,
                ((t % slabs + 1) * per_slab).min(job.out_d),
            ),
        };
        // Safety: `Conv3d::run_inner` checked the channel counts, the input halo or, with
        // an input norm, the input's size (every broadcast reads an input voxel of a valid
        // output's receptive field, inside the halo of the input or of its staged copy,
        // which has one) and the output size (every store lands in the output view's interior);
        // `fits` checked that a row holds a whole tile. Tasks write disjoint output
        // elements and statistics: each owns its (group, channel blocks, planes). The ISA
        // was proven present when the `Isa` behind `isa` was obtained.
        crate::trace::task(|| unsafe { run_task(isa, k, s, job, &task) })
    });
}

/// What one task computes.
struct Task {
    group: usize,
    /// The packed weight blocks (`LANES` output channels each) of the task.
    blocks: (usize, usize),
    z_range: (usize, usize),
}

/// Calls the task body compiled for `isa`, kernel size `k` and stride `s`.
///
/// # Safety
/// See [`run`]: the job's pointers must be valid for the shapes it describes and the ISA
/// must be present.
unsafe fn run_task(isa: Kind, k: usize, s: usize, job: &Job, task: &Task) {
    dispatch_task!(isa, k, s, job, task)
}

/// The portable build (no `#[target_feature]`: baseline instructions only).
///
/// # Safety
/// As [`run_task`].
unsafe fn task_portable<const K: usize, const ST: usize>(job: &Job, task: &Task) {
    task_small_registers::<Portable, K, ST>(Portable, job, task)
}

/// With an input norm, every input plane of the task staged (`conv/staging.rs`); the
/// task's parts are then [`task_parts`] of it.
///
/// # Safety
/// As [`run_task`].
#[inline(always)]
unsafe fn task_staging<const K: usize, const ST: usize>(job: &Job, task: &Task) -> Option<Staged> {
    (!job.input_norm.is_null()).then(|| Staged::slab::<K, ST>(job, task.group, task.z_range))
}

/// The task's input parts at its first output plane: the job's, or `staged`'s (which must
/// outlive their use).
///
/// # Safety
/// As [`run_task`].
#[inline(always)]
unsafe fn task_parts<const K: usize, const ST: usize>(
    job: &Job,
    task: &Task,
    staged: &Option<Staged>,
) -> [Part; MAX_PARTS] {
    match staged {
        Some(st) => st.parts(job, first_plane::<K, ST>(task.z_range.0)),
        None => job.parts_at::<ST>(task.group, task.z_range.0),
    }
}

/// Packed blocks per task: the widest tile's channel vectors. (Four vectors of channels
/// x 3 rows x 2 columns loads less per FMA than 2 x 3 x 4, but measured slower: 150
/// against 194 GFLOP/s on net32.rb4.conv, whose 16 tasks then each hold 1.8 MB of
/// weights.)
const CHUNK_BLOCKS: usize = 2;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512<const K: usize, const ST: usize>(job: &Job, task: &Task) {
    let s = Avx512;
    let staged = task_staging::<K, ST>(job, task);
    let parts = task_parts::<K, ST>(job, task, &staged);
    let mut b = task.blocks.0;
    while b < task.blocks.1 {
        let left = task.blocks.1 - b;
        if left >= 2 {
            task_body::<_, 2, 2, 4, K, ST>(s, job, &parts, task, b);
            b += 2;
        } else {
            task_body::<_, 1, 4, 4, K, ST>(s, job, &parts, task, b);
            b += 1;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2<const K: usize, const ST: usize>(job: &Job, task: &Task) {
    task_small_registers::<crate::simd::Avx2, K, ST>(crate::simd::Avx2, job, task)
}

/// The tile shapes for 16 vector registers.
#[inline(always)]
unsafe fn task_small_registers<S: Simd, const K: usize, const ST: usize>(
    s: S,
    job: &Job,
    task: &Task,
) {
    let staged = task_staging::<K, ST>(job, task);
    let parts = task_parts::<K, ST>(job, task, &staged);
    let mut b = task.blocks.0;
    while b < task.blocks.1 {
        if task.blocks.1 - b >= 2 {
            task_body::<S, 2, 1, 4, K, ST>(s, job, &parts, task, b);
            b += 2;
        } else {
            task_body::<S, 1, 3, 4, K, ST>(s, job, &parts, task, b);
            b += 1;
        }
    }
}

/// One task: all row tiles of its planes, each row in tiles of [`COLUMNS`] columns, from
/// the task's input `parts` at its first plane ([`task_parts`]).
#[inline(always)]
unsafe fn task_body<
    S: Simd,
    const NOC: usize,
    const R: usize,
    const C: usize,
    const K: usize,
    const ST: usize,
>(
    s: S,
    job: &Job,
    parts: &[Part; MAX_PARTS],
    task: &Task,
    first_block: usize,
) {
    let lanes = S::LANES;
    let taps = K * K * K;
    let g = task.group;
    let oc0 = first_block * lanes;
    let valid_oc = (job.cout_g - oc0).min(NOC * lanes);
    let goc0 = g * job.cout_g + oc0;
    let (z0, z1) = task.z_range;
    let n_rows = (z1 - z0) * job.out_h;
    let weights = job
        .weights
        .add((g * job.n_pb + first_block) * job.cin_g * taps * lanes);
    let mut r0 = 0;
    while r0 < n_rows {
        let valid_rows = (n_rows - r0).min(R);
        // (z, y) of each tile row; the rows past the end repeat the last valid one.
        let zy: [(usize, usize); R] = std::array::from_fn(|j| {
            let r = r0 + j.min(valid_rows - 1);
            (z0 + r / job.out_h, r % job.out_h)
        });
        let mut xt = 0;
        while xt < job.out_w {
            let x0 = xt.min(job.out_w - C);
            let mut inputs = [[std::ptr::null(); R]; MAX_PARTS];
            for (rows, part) in inputs.iter_mut().zip(&parts[..job.n_parts]) {
                for (row, &(z, y)) in rows.iter_mut().zip(&zy) {
                    *row = part
                        .input
                        .add((z - z0) * ST * part.ps + y * ST * part.rs + x0 * ST);
                }
            }
            let tile = Tile {
                inputs,
                outputs: zy.map(|(z, y)| {
                    job.output
                        .0
                        .add(goc0 * job.out_cs + z * job.out_ps + y * job.out_rs + x0)
                }),
                planes: zy.map(|(z, _)| z),
                max_out: zy.map(|(z, y)| job.max.at(goc0, z, y, x0)),
                weights,
                bias: job.bias.add(goc0),
                valid_oc,
                valid_rows,
                store_from: xt - x0,
                stats: if job.stats.get().is_null() {
                    std::ptr::null_mut()
                } else {
                    job.stats.get().add(2 * goc0 * job.out_d)
                },
            };
            tile_kernel::<S, NOC, R, C, K, ST>(s, job, parts, &tile);
            xt += C;
        }
        r0 += R;
    }
}

struct Tile<const R: usize> {
    /// Per input part and tile row: the input at the first tap of the tile's first column.
    inputs: [[*const f32; R]; MAX_PARTS],
    /// Per tile row: the output of the tile's first channel at its first column.
    outputs: [*mut f32; R],
    /// Output plane of each tile row (for the statistics).
    planes: [usize; R],
    /// Per tile row: null, or the max output at the tile's first channel and column.
    max_out: [*mut f32; R],
    /// Packed weights of the tile's first channel block.
    weights: *const f32,
    /// Bias of the tile's first channel.
    bias: *const f32,
    valid_oc: usize,
    valid_rows: usize,
    /// Columns before this one were stored by the previous tile of the row.
    store_from: usize,
    /// Null, or the statistics of the tile's first channel at plane 0; channel `o`,
    /// plane `z` is at `2 * (o * out_d + z)`.
    stats: *mut f64,
}

/// The register tile: `NOC * LANES` output channels x `R` rows x [`COLUMNS`] columns,
/// summed over all input channels of the group and all taps, then stored with bias (and
/// the old output value for the accumulate epilogue), channel by channel.
#[inline(always)]
unsafe fn tile_kernel<
    S: Simd,
    const NOC: usize,
    const R: usize,
    const C: usize,
    const K: usize,
    const ST: usize,
>(
    s: S,
    job: &Job,
    parts: &[Part; MAX_PARTS],
    t: &Tile<R>,
) {
    let lanes = S::LANES;
    let block_stride = job.cin_g * K * K * K * lanes;
    let mut acc = [[[s.zero(); C]; R]; NOC];
    let mut w = t.weights;
    for (part, rows) in parts[..job.n_parts].iter().zip(&t.inputs) {
        for ci in 0..part.channels {
            for kz in 0..K {
                for ky in 0..K {
                    // `kz * ps`, not `taps_z`: a staged slab does not wrap, and the
                    // array's three offsets made the compiler spill accumulators.
                    let offset = ci * part.cs + kz * part.ps + ky * part.rs;
                    for kx in 0..K {
                        let wv: [S::V; NOC] =
                            std::array::from_fn(|n| s.load(w.add(n * block_stride)));
                        for (acc_r, row) in (0..R).zip(rows) {
                            let x_at = row.add(offset + kx);
                            for c in 0..C {
                                let x = s.splat(*x_at.add(c * ST));
                                for (acc_n, &wn) in acc.iter_mut().zip(&wv) {
                                    acc_n[acc_r][c] = s.mul_add(wn, x, acc_n[acc_r][c]);
                                }
                            }
                        }
                        w = w.add(lanes);
                    }
                }
            }
        }
    }
    // As in the width kernel: the epilogue's runtime bounds must not make the compiler
    // keep the accumulators in memory during the loop above.
    let acc = std::hint::black_box(acc);
    let mut lane_values = [0.0f32; 16];
    for (n, acc_n) in acc.iter().enumerate() {
        let first = n * lanes;
        if first >= t.valid_oc {
            break;
        }
        let n_oc = (t.valid_oc - first).min(lanes);
        let b = s.load_n(t.bias.add(first), n_oc);
        for (r, acc_r) in acc_n.iter().enumerate().take(t.valid_rows) {
            let mut sums = [(0.0f64, 0.0f64); 16];
            for (c, &a) in acc_r.iter().enumerate().skip(t.store_from) {
                s.store(lane_values.as_mut_ptr(), s.add(a, b));
                for (o, (&v, sum)) in lane_values.iter().zip(&mut sums).take(n_oc).enumerate() {
                    let p = t.outputs[r].add((first + o) * job.out_cs + c);
                    let v = if job.accumulate { v + *p } else { v };
                    *p = v;
                    if !t.max_out[r].is_null() {
                        let q = t.max_out[r].add((first + o) * job.max.cs + c);
                        *q = if job.max.first { v } else { (*q).max(v) };
                    }
                    let v = v as f64;
                    sum.0 += v;
                    sum.1 += v * v;
                }
            }
            if !t.stats.is_null() {
                for (o, &(sum, sq)) in sums.iter().take(n_oc).enumerate() {
                    let at = t.stats.add(2 * ((first + o) * job.out_d + t.planes[r]));
                    *at += sum;
                    *at.add(1) += sq;
                }
            }
        }
    }
}
