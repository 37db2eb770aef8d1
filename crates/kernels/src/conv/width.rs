//! The convolution vectorized along the output row: one register holds `LANES`
//! consecutive output voxels of a row, a register tile is `OC` output channels x `NW`
//! vectors (AVX-512 8 x 3, AVX2 4 x 3, portable 4 x 2), the weights are broadcast. The
//! kernel of every layer whose rows fill the vectors (the module note of [`super`] has
//! the design and the measurements).
//!
//! Columns one vector wide (rows of at most 16 voxels on AVX-512, the 16³ levels, and the
//! last 16 of a 64-voxel row) take `NW` consecutive rows per tile instead of `NW` vectors
//! of one row; with one vector per tile the kernel had 8 accumulators and a weight load
//! per 8 FMAs (net64.rb3.conv, 2 threads: 143-159 GFLOP/s before, 245-290 after, in one
//! noisy session).
//!
//! `OC` is half the packed block of `LANES` output channels, so a tile reads its weights
//! at a stride of `LANES` floats per tap, starting at the block's first or second half
//! (a quarter for the grid tile below).
//!
//! Columns two vectors wide on AVX-512 (32-voxel rows: the 32³ levels of every net, and
//! the last 32 of a 128-voxel row) use a grid tile, 4 channels x 3 rows x 2 vectors
//! (`COLS` vectors per row of the tile). Against 8 x 2 tiles, alternating in one process
//! (medians, min in brackets; 1 thread then 2): 64 channels at 32³ 108 -> 129 GFLOP/s
//! (51.6 -> 48.5 ms) and 195 -> 208 (28.0 -> 27.3 ms); 4 groups of 32 at 32³ 133 -> 131
//! (49.4 -> 47.4) and 268 -> 276 (24.4 -> 23.9); 16 channels at 128³ staged, 2 threads,
//! 194 -> 239 (120.4 -> 117.6). In the network (profile medians over 6 alternating pairs,
//! a noisy hour) the 32³ blocks' convs took 0.76-0.94 of their time, net128.rb1 1.03-1.07.

use super::staging::{first_plane, Staged};
use super::winograd;
use super::{Job, Part, MAX_PARTS, WEIGHTS_INNER_LIMIT};
use crate::isa::Kind;
#[cfg(target_arch = "x86_64")]
use crate::simd::{Avx2, Avx512};
use crate::simd::{Portable, Simd};
use rayon::prelude::*;

/// Output channels of the register tile for `isa`: half a packed block.
pub(super) fn tile_oc(isa: Kind) -> usize {
    match isa {
        Kind::Avx512 => 8,
        Kind::Avx2 | Kind::Portable => 4,
    }
}

/// What one task computes: some output planes of some channel sub-blocks of one group.
struct Task {
    group: usize,
    /// Tile channel blocks (`OC` channels each) of the group.
    ob_range: (usize, usize),
    z_range: (usize, usize),
    /// One channel block at a time over all the task's planes (weights outer), instead
    /// of every block per tile.
    blocks_outer: bool,
}

/// Tasks a job with an input norm is split into at least (when it has that many output
/// planes, [`Job::slabs`]): its tasks are slabs of planes, so that each stages an input
/// plane once per slab (`conv/staging.rs`).
const MIN_STAGED_TASKS: usize = 16;

/// Packed weights per (input channel, output channel): the `k³` taps, or 4 per (kz, ky)
/// for the Winograd kernel (`conv/winograd.rs`).
fn weights_per_pair(k: usize, winograd: bool) -> usize {
    if winograd {
        k * k * winograd::TILE_FLOATS
    } else {
        k.pow(3)
    }
}

/// Runs the whole job: a task per (group, output plane), per (group, slab of planes) with
/// an input norm, or per (group, tile channel block) when the group's weights exceed
/// [`WEIGHTS_INNER_LIMIT`].
pub(super) fn run(isa: Kind, k: usize, s: usize, groups: usize, job: &Job) {
    let n_ob = job.cout_g.div_ceil(tile_oc(isa));
    let lanes = super::lanes(isa);
    let per_group_bytes = job.cin_g * weights_per_pair(k, job.winograd) * job.n_pb * lanes * 4;
    let oc_outer = per_group_bytes > WEIGHTS_INNER_LIMIT;
    let staged = !job.input_norm.is_null();
    let (per_slab, slabs) = if staged {
        job.slabs(MIN_STAGED_TASKS, groups)
    } else {
        (1, job.out_d)
    };
    // Weights-outer tasks are one channel block over the whole volume; with an input norm
    // they are slabs instead, which stage their planes once for all blocks.
    let tasks = if oc_outer && !staged {
        groups * n_ob
    } else {
        groups * slabs
    };
    (0..tasks).into_par_iter().for_each(|t| {
        let task = if oc_outer && !staged {
            Task {
                group: t / n_ob,
                ob_range: (t % n_ob, t % n_ob + 1),
                z_range: (0, job.out_d),
                blocks_outer: true,
            }
        } else {
            let z0 = t % slabs * per_slab;
            Task {
                group: t / slabs,
                ob_range: (0, n_ob),
                z_range: (z0, (z0 + per_slab).min(job.out_d)),
                blocks_outer: oc_outer,
            }
        };
        // Safety: `Conv3d::run_inner` checked the channel counts, the input halo or, with
        // an input norm, the input's size (so every tap reads inside the input's buffer
        // or its staged copy, which has a halo, with at most two vectors of over-read that
        // the slack of either covers) and the output size (so every store lands in the
        // output view's interior). Tasks write disjoint output elements: each owns one
        // (group, planes) or one (group, channel block). The ISA was proven present
        // when the `Isa` behind `isa` was obtained.
        crate::trace::task(|| unsafe {
            if job.winograd {
                run_task_winograd(isa, job, &task)
            } else {
                run_task(isa, k, s, job, &task)
            }
        })
    });
}

/// Calls the task body compiled for `isa`, kernel size `k` and stride `s`.
///
/// # Safety
/// See [`super::Conv3d::run`]: the job's pointers must be valid for the shapes it describes
/// and the ISA must be present.
unsafe fn run_task(isa: Kind, k: usize, s: usize, job: &Job, task: &Task) {
    dispatch_task!(isa, k, s, job, task)
}

/// The task body of a Winograd job (`conv/winograd.rs`: 3x3, stride 1, staged) for
/// `isa`.
///
/// # Safety
/// As [`run_task`].
unsafe fn run_task_winograd(isa: Kind, job: &Job, task: &Task) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 => task_avx512_winograd(job, task),
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => task_avx2_winograd(job, task),
        _ => task_body::<Portable, 4, 2, 3, 1, true>(Portable, job, task),
    }
}

/// The portable build (no `#[target_feature]`: baseline instructions only).
///
/// # Safety
/// As [`run_task`].
unsafe fn task_portable<const K: usize, const ST: usize>(job: &Job, task: &Task) {
    task_body::<Portable, 4, 2, K, ST, false>(Portable, job, task)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512<const K: usize, const S: usize>(job: &Job, task: &Task) {
    task_body::<Avx512, 8, 3, K, S, false>(Avx512, job, task)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512_winograd(job: &Job, task: &Task) {
    task_body::<Avx512, 8, 3, 3, 1, true>(Avx512, job, task)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2<const K: usize, const S: usize>(job: &Job, task: &Task) {
    task_body::<Avx2, 4, 3, K, S, false>(Avx2, job, task)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2_winograd(job: &Job, task: &Task) {
    task_body::<Avx2, 4, 3, 3, 1, true>(Avx2, job, task)
}

/// One task: every output row of the task's planes and channel blocks; `W`: over a
/// Winograd-transformed staged input (`conv/winograd.rs`).
#[inline(always)]
unsafe fn task_body<
    S: Simd,
    const OC: usize,
    const NW: usize,
    const K: usize,
    const ST: usize,
    const W: bool,
>(
    s: S,
    job: &Job,
    task: &Task,
) {
    if job.input_norm.is_null() {
        let parts = |zo: usize| job.parts_at::<ST>(task.group, zo);
        return task_planes::<S, OC, NW, K, ST, W>(s, job, task, parts);
    }
    if task.blocks_outer {
        // Every plane of the slab staged first (no wrap), then read once per block.
        let staged = Staged::slab::<K, ST>(job, task.group, task.z_range);
        let parts = |zo: usize| staged.parts(job, first_plane::<K, ST>(zo));
        return task_planes::<S, OC, NW, K, ST, W>(s, job, task, parts);
    }
    // A ring of K planes: each output plane stages the input planes it newly needs.
    let first = first_plane::<K, ST>(task.z_range.0);
    let mut staged = Staged::ring(job, K, task.group, first);
    let parts = |zo: usize| {
        let p0 = first_plane::<K, ST>(zo);
        staged.stage_to(job, p0 + K as isize - 1);
        staged.parts(job, p0)
    };
    task_planes::<S, OC, NW, K, ST, W>(s, job, task, parts)
}

/// The task's output planes in order (or, for a blocks-outer task, every plane per
/// channel block), reading plane `zo`'s input from `parts_at(zo)`.
#[inline(always)]
unsafe fn task_planes<
    S: Simd,
    const OC: usize,
    const NW: usize,
    const K: usize,
    const ST: usize,
    const W: bool,
>(
    s: S,
    job: &Job,
    task: &Task,
    mut parts_at: impl FnMut(usize) -> [Part; MAX_PARTS],
) {
    let (ob0, ob1) = task.ob_range;
    let steps = if task.blocks_outer { ob1 - ob0 } else { 1 };
    for step in 0..steps {
        let blocks = if task.blocks_outer {
            (ob0 + step, ob0 + step + 1)
        } else {
            (ob0, ob1)
        };
        for zo in task.z_range.0..task.z_range.1 {
            let parts = parts_at(zo);
            plane::<S, OC, NW, K, ST, W>(s, job, &parts, task.group, blocks, zo);
        }
    }
}

/// Channel blocks `blocks` of output plane `zo` of group `g`.
#[inline(always)]
unsafe fn plane<
    S: Simd,
    const OC: usize,
    const NW: usize,
    const K: usize,
    const ST: usize,
    const W: bool,
>(
    s: S,
    job: &Job,
    parts: &[Part; MAX_PARTS],
    g: usize,
    blocks: (usize, usize),
    zo: usize,
) {
    let lanes = S::LANES;
    // Output voxels per vector: a Winograd vector holds `LANES / 4` tiles of 2 outputs.
    let ov = if W { lanes / 2 } else { lanes };
    let step = NW * ov;
    // Column by column (one W-tile wide), rows innermost: consecutive rows share 6 of
    // their 9 input row segments per input channel, which then come from L1.
    let mut x0 = 0;
    while x0 < job.out_w {
        let rem = job.out_w - x0;
        let nv = if rem >= step { NW } else { rem.div_ceil(ov) };
        let last = (rem - (nv - 1) * ov).min(ov);
        if nv == 1 {
            // A column one vector wide (all of a row of at most `LANES`, or the end of
            // a longer one): a tile is `NW` consecutive rows of it instead of one
            // vector, which alone would leave 8 accumulators and a load per broadcast
            // weight.
            let mut yo = 0;
            while yo < job.out_h {
                let rows = (job.out_h - yo).min(NW);
                let at = (zo, yo, x0, last);
                match rows {
                    1 => row_tile::<S, OC, 1, K, ST, 1, W>(s, job, parts, g, blocks, at),
                    2 => row_tile::<S, OC, 2, K, ST, 1, W>(s, job, parts, g, blocks, at),
                    _ => row_tile::<S, OC, NW, K, ST, 1, W>(s, job, parts, g, blocks, at),
                }
                yo += rows;
            }
        } else if !W && K == 3 && ST == 1 && nv == 2 && lanes == 16 && !job.softmax {
            // A column two AVX-512 vectors wide (all of a 32-voxel row, or the end of a
            // 128-voxel one): 2 x 8 accumulators would be a tile of 16, with 10 loads
            // per 16 FMAs; instead a tile is 4 channels x 3 rows x 2 vectors, 10 loads
            // per 24 FMAs. (Stride 2 would spill, with its permute index in a register;
            // a fused softmax needs every channel in one tile.)
            let mut yo = 0;
            while yo < job.out_h {
                let at = (zo, yo, x0, last);
                if job.out_h - yo >= 3 {
                    row_tile::<S, 4, 6, K, ST, 2, W>(s, job, parts, g, blocks, at);
                    yo += 3;
                } else {
                    row_tile::<S, OC, 2, K, ST, 2, W>(s, job, parts, g, blocks, at);
                    yo += 1;
                }
            }
        } else {
            for yo in 0..job.out_h {
                let at = (zo, yo, x0, last);
                if nv == 2 {
                    row_tile::<S, OC, 2, K, ST, 2, W>(s, job, parts, g, blocks, at);
                } else {
                    row_tile::<S, OC, NW, K, ST, NW, W>(s, job, parts, g, blocks, at);
                }
            }
        }
        x0 += nv * ov;
    }
}

/// Every channel block of the task on one tile: `NW` vectors from output voxel
/// `(zo, yo, x0)`, `COLS` along each row and `NW / COLS` rows down. `last` lanes of each
/// row's last vector are stored. `parts` is the task's input at output plane `zo`
/// ([`Job::parts_at`], or a staged input).
#[inline(always)]
unsafe fn row_tile<
    S: Simd,
    const OC: usize,
    const NW: usize,
    const K: usize,
    const ST: usize,
    const COLS: usize,
    const W: bool,
>(
    s: S,
    job: &Job,
    parts: &[Part; MAX_PARTS],
    g: usize,
    blocks: (usize, usize),
    (zo, yo, x0, last): (usize, usize, usize, usize),
) {
    let lanes = S::LANES;
    let taps = weights_per_pair(K, W);
    // A transformed row holds 4 floats per 2 output voxels, and 4 weights per output
    // channel and (kz, ky) (`conv/winograd.rs`).
    let (x_floats, per_oc) = if W {
        (2 * x0, winograd::TILE_FLOATS)
    } else {
        (x0 * ST, 1)
    };
    let mut in_rows = [std::ptr::null(); MAX_PARTS];
    let mut in_steps = [0; MAX_PARTS];
    for ((row, step), part) in in_rows
        .iter_mut()
        .zip(&mut in_steps)
        .zip(&parts[..job.n_parts])
    {
        *row = part.input.add(yo * ST * part.rs + x_floats);
        *step = ST * part.rs;
    }
    let out_row = job.output.0.add(zo * job.out_ps + yo * job.out_rs);
    // `blocks` counts half packed blocks; this tile's blocks are `OC` channels.
    let unit = lanes / 2;
    let (c_lo, c_hi) = (blocks.0 * unit, (blocks.1 * unit).min(job.cout_g));
    for ob in c_lo / OC..c_hi.div_ceil(OC) {
        let oc0 = g * job.cout_g + ob * OC;
        // Tile block `ob` starts `ob * OC % lanes` channels into packed block
        // `ob * OC / lanes`.
        let (pb, half) = (ob * OC / lanes, ob * OC % lanes);
        let block = (g * job.n_pb + pb) * job.cin_g * taps * lanes;
        let tile = Tile {
            inputs: in_rows,
            input_row_steps: in_steps,
            output: out_row.add(oc0 * job.out_cs + x0),
            max_out: job.max.at(oc0, zo, yo, x0),
            weights: job.weights.add(block + half * per_oc),
            bias: job.bias.add(oc0),
            valid_oc: (job.cout_g - ob * OC).min(OC),
            last_lanes: last,
            stats: if job.stats.get().is_null() {
                std::ptr::null_mut()
            } else {
                job.stats.get().add(2 * (oc0 * job.out_d + zo))
            },
        };
        if W {
            winograd::tile_kernel::<S, OC, NW, COLS>(s, job, parts, &tile)
        } else {
            tile_kernel::<S, OC, NW, K, ST, COLS>(s, job, parts, &tile)
        }
    }
}

pub(super) struct Tile {
    pub(super) inputs: [*const f32; MAX_PARTS],
    /// Per part: from one input row to the next output row's (tiles of several rows).
    pub(super) input_row_steps: [usize; MAX_PARTS],
    pub(super) output: *mut f32,
    /// Null, or the max output at the tile's first channel and voxel.
    pub(super) max_out: *mut f32,
    pub(super) weights: *const f32,
    pub(super) bias: *const f32,
    pub(super) valid_oc: usize,
    pub(super) last_lanes: usize,
    /// Null, or the statistics of output channel 0 of the tile at its plane; channel `o`
    /// is `2 * o * out_d` further.
    pub(super) stats: *mut f64,
}

/// The register tile: `OC` output channels x `NW` vectors, `COLS` per output row, summed over
/// all input channels of the group and all taps, then stored with bias (and the old
/// output value for [`Epilogue::Accumulate`]).
#[inline(always)]
unsafe fn tile_kernel<
    S: Simd,
    const OC: usize,
    const NW: usize,
    const K: usize,
    const ST: usize,
    const COLS: usize,
>(
    s: S,
    job: &Job,
    parts: &[Part; MAX_PARTS],
    t: &Tile,
) {
    let lanes = S::LANES;
    let mut acc = [[s.zero(); NW]; OC];
    let mut w = t.weights;
    for ((part, &input), &row_step) in parts[..job.n_parts]
        .iter()
        .zip(&t.inputs)
        .zip(&t.input_row_steps)
    {
        // Where vector `v` starts relative to vector 0: `COLS` vectors per row.
        let v_at = |v: usize| v / COLS * row_step + v % COLS * lanes * ST;
        for ci in 0..part.channels {
            let plane = input.add(ci * part.cs);
            for kz in 0..K {
                for ky in 0..K {
                    let row = plane.add(part.taps_z[kz] + ky * part.rs);
                    for kx in 0..K {
                        let mut x = [s.zero(); NW];
                        for (v, xv) in x.iter_mut().enumerate() {
                            *xv = if ST == 1 {
                                s.load(row.add(kx + v_at(v)))
                            } else {
                                s.load_even(row.add(kx + v_at(v)))
                            };
                        }
                        // One broadcast per weight, reused by the NW vectors: a
                        // broadcast memory operand on every FMA would cost one load
                        // per FMA, more than the load ports sustain (module note).
                        for (o, acc_o) in acc.iter_mut().enumerate() {
                            let wv = s.splat(*w.add(o));
                            for v in 0..NW {
                                acc_o[v] = s.mul_add(wv, x[v], acc_o[v]);
                            }
                        }
                        w = w.add(lanes);
                    }
                }
            }
        }
    }
    // The epilogue walks the channels with a runtime bound (`valid_oc`), which indexes the
    // accumulator array dynamically; if the compiler sees that, it keeps the whole array
    // in memory and the inner loop stores every accumulator after every FMA (seen in the
    // disassembly: about one stack store per FMA). Handing the finished array through
    // `black_box` gives the epilogue its own copy, so `acc` above stays in registers.
    let acc = std::hint::black_box(acc);
    if job.softmax {
        return softmax_epilogue::<S, OC, NW, COLS>(s, job, t, &acc);
    }
    for (o, acc_o) in acc.iter().enumerate() {
        if o >= t.valid_oc {
            break;
        }
        let b = s.splat(*t.bias.add(o));
        let mut st = s.stats_zero();
        for (v, &a) in acc_o.iter().enumerate() {
            let n = if v % COLS == COLS - 1 {
                t.last_lanes
            } else {
                lanes
            };
            let at = (v / COLS, v % COLS * lanes);
            st = store_vector(s, job, t, o, at, s.add(a, b), n, st);
        }
        finish_stats(s, job, t, o, st);
    }
}

/// Stores the first `n` lanes of output vector `r` (bias included) of tile channel `o`
/// at `(row, column)` from the tile's first voxel, adding the old output for
/// [`super::Epilogue::Accumulate`] and folding the result into the max output and into
/// the statistics `st`, which it returns.
///
/// # Safety
/// The tile's output (and max output) must be writable there.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn store_vector<S: Simd>(
    s: S,
    job: &Job,
    t: &Tile,
    o: usize,
    (row, col): (usize, usize),
    mut r: S::V,
    n: usize,
    st: S::Stats,
) -> S::Stats {
    let p = t.output.add(o * job.out_cs + row * job.out_rs + col);
    if job.accumulate {
        r = s.add(r, s.load_n(p, n));
    }
    s.store_n(p, r, n);
    if !t.max_out.is_null() {
        let q = t.max_out.add(o * job.max.cs + row * job.max.rs + col);
        let m = if job.max.first {
            r
        } else {
            s.max(s.load_n(q, n), r)
        };
        s.store_n(q, m, n);
    }
    if t.stats.is_null() {
        st
    } else {
        s.stats_add(st, r, n)
    }
}

/// Adds tile channel `o`'s statistics `st` to its plane's partial sums.
///
/// # Safety
/// The tile's statistics pointer, when not null, must be valid for channel `o`.
#[inline(always)]
pub(super) unsafe fn finish_stats<S: Simd>(s: S, job: &Job, t: &Tile, o: usize, st: S::Stats) {
    if !t.stats.is_null() {
        s.stats_add_to(st, t.stats.add(2 * o * job.out_d));
    }
}

/// The epilogue of [`super::Conv3d::run_softmax`]: the tile holds every output channel
/// (checked there), so it stores the softmax over them instead of the logits. The
/// arithmetic is [`crate::elementwise::softmax`]'s, lane by lane in the same order (max,
/// `exp_nonpositive(x - max)`, the sum in channel order, a division), so the result is
/// bit-identical to the conv followed by the softmax; the loops run over all 16 lanes of
/// fixed-size arrays so that they vectorize.
#[inline(always)]
unsafe fn softmax_epilogue<S: Simd, const OC: usize, const NW: usize, const COLS: usize>(
    s: S,
    job: &Job,
    t: &Tile,
    acc: &[[S::V; NW]; OC],
) {
    let lanes = S::LANES;
    let channels = t.valid_oc;
    // Vector by vector across the channels: `acc` is channel-major, so `v` indexes it.
    #[allow(clippy::needless_range_loop)]
    for v in 0..NW {
        let n = if v % COLS == COLS - 1 {
            t.last_lanes
        } else {
            lanes
        };
        let mut x = [[0.0f32; 16]; OC];
        for (o, xo) in x.iter_mut().enumerate().take(channels) {
            s.store(xo.as_mut_ptr(), s.add(acc[o][v], s.splat(*t.bias.add(o))));
        }
        let mut max = x[0];
        for xo in &x[1..channels] {
            for (m, &xi) in max.iter_mut().zip(xo) {
                *m = m.max(xi);
            }
        }
        let mut sum = [0.0f32; 16];
        for xo in x.iter_mut().take(channels) {
            for ((e, &m), sm) in xo.iter_mut().zip(&max).zip(&mut sum) {
                *e = crate::elementwise::exp_nonpositive(*e - m);
                *sm += *e;
            }
        }
        let at = v / COLS * job.out_rs + v % COLS * lanes;
        for (o, eo) in x.iter_mut().enumerate().take(channels) {
            for (e, &sm) in eo.iter_mut().zip(&sum) {
                *e /= sm;
            }
            std::ptr::copy_nonoverlapping(eo.as_ptr(), t.output.add(o * job.out_cs + at), n);
        }
    }
}
