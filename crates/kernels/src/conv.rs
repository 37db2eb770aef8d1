//! Direct 3D convolution: kernel 3x3x3 (pad 1, stride 1 or 2) and 1x1x1, grouped, with
//! bias and an accumulate-in-place epilogue.
//!
//! # Design
//!
//! The network's convolutions have few channels per group (1 to 256, mostly 8 to 64) and
//! large volumes (up to 128³). im2col would copy the input 27 times per group and buy a
//! GEMM whose K dimension (`cin/G * 27`) is still small; instead the convolution is
//! computed directly:
//!
//! - **Vectorized along W.** One register holds `LANES` consecutive output voxels of a row
//!   (16 with AVX-512, 8 with AVX2). The input row segment for tap `kx` is one unaligned
//!   load at offset `kx` (stride 1) or an even-element gather of two loads (stride 2).
//! - **A block of output channels in registers.** A tile is `OC` output channels x `NW`
//!   vectors along W, accumulated over all `cin/G * 27` taps before it is stored once. Per
//!   tap it costs `NW` input loads and `OC` broadcast weights for `OC * NW` FMAs; the
//!   broadcast is folded into the FMA as an embedded-broadcast memory operand on AVX-512.
//!   AVX-512 uses 8 x 3 (24 accumulators + 3 inputs of the 32 registers), AVX2 4 x 3
//!   (12 + 3 of 16), portable 4 x 2.
//! - **Prepacked weights.** [`Conv3d::new`] repacks MXNet's `(Cout, Cin/G, k, k, k)` into
//!   `[group][oc block][ci][tap][OC]`, zero-padding the last block, so the inner loop reads
//!   weights strictly sequentially.
//! - **Zero halo instead of bounds checks.** Inputs carry a one-voxel zero border
//!   ([`crate::tensor`]); the kernel never tests for edges. Only the last vector of a row
//!   is stored with a mask.
//! - **Loop order.** A task is one output plane `z` of one group. Inside it, W-tiles, then
//!   rows `y`, then the output-channel blocks innermost: the `9 * cin/G` input row segments
//!   of a tile stay in L1 while every block of output channels uses them, and the next row
//!   of the same column needs only 3 new segments per input channel (rows outermost
//!   streamed whole rows through L1 and re-read 6 of 9 from L2: 15-30 % slower). Layers
//!   whose per-group weights exceed [`WEIGHTS_INNER_LIMIT`] (the deep, small-volume
//!   layers of net32) swap the order: a task is one output-channel block, the voxels loop
//!   inside it, so that block's weights stay in L2 instead of being streamed per row.
//! - **Statistics in the epilogue.** Every conv whose output feeds an instance norm can
//!   return the output's per-channel sum and sum of squares, accumulated in f64 from the
//!   tile registers ([`Conv3d::run_with_stats`]): the separate statistics pass read the
//!   whole tensor again (about as long as the normalization itself).
//! - **Threads.** Tasks go to rayon. Every output element is produced by one task with one
//!   fixed summation order (input channels, then taps), so results are bit-identical for
//!   any thread count.
//!
//! # Measurements that shaped it (this machine: 2 cores, AVX-512 with two FMA ports per
//! core, measured FMA peak 164 GFLOP/s per core, 327 on both; criterion medians of
//! `cargo bench -p brats-kernels`, machine load 1-2)
//!
//! | change | rb1 conv 2t | rb7 conv 2t |
//! |---|---|---|
//! | first version (broadcast memory operand on every FMA) | 115 | 116 |
//! | + statistics epilogue: accumulators spilled, one stack store per FMA | ~60 (profile) | ~60 |
//! | accumulators back in registers, one broadcast per weight and tap | 198 | 194 |
//! | columns outer, rows inner (L1 reuse of 6 of 9 input rows) | 213 | 256 |
//!
//! One-thread rates are 110-140 GFLOP/s (66-85 % of the core's peak). What is left is
//! load-port pressure (per tap: `NW` unaligned input loads, two thirds of them split across
//! cache lines, plus `OC` broadcasts for `OC * NW` FMAs) and L2 traffic for the input rows
//! of a new column. `tools/check_conv_asm.sh` checks the generated code for accumulator
//! spills; the spill above cost half the speed without failing any test.

use crate::isa::Kind;
use crate::norm::ChannelStats;
#[cfg(target_arch = "x86_64")]
use crate::simd::{Avx2, Avx512};
use crate::simd::{Portable, Simd};
use crate::tensor::{SharedMut, View, ViewMut};
use crate::{Error, Isa};
use rayon::prelude::*;

/// Per-group packed weights above this many bytes switch to channel-block-outer order.
pub const WEIGHTS_INNER_LIMIT: usize = 256 * 1024;

/// What a convolution computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub groups: usize,
    /// 1 (pad 0) or 3 (pad 1).
    pub kernel: usize,
    /// 1 or 2.
    pub stride: usize,
}

impl ConvSpec {
    /// Output spatial size for an input side of `n` voxels.
    pub fn output_size(&self, n: usize) -> usize {
        let pad = self.kernel / 2;
        if n + 2 * pad < self.kernel {
            0
        } else {
            (n + 2 * pad - self.kernel) / self.stride + 1
        }
    }
    /// Floating-point operations (2 per multiply-add) for `out_voxels` output voxels.
    pub fn flops(&self, out_voxels: usize) -> u64 {
        2 * (out_voxels as u64)
            * (self.cout as u64)
            * (self.cin / self.groups.max(1)) as u64
            * (self.kernel as u64).pow(3)
    }
    /// Number of weights MXNet stores: `cout * cin/groups * kernel³`.
    pub fn weight_len(&self) -> usize {
        self.cout * (self.cin / self.groups.max(1)) * self.kernel.pow(3)
    }
    fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::new(format!("conv {self:?}: {m}")));
        if self.groups == 0 || self.cin == 0 || self.cout == 0 {
            return bad("channels and groups must be positive".into());
        }
        if !self.cin.is_multiple_of(self.groups) || !self.cout.is_multiple_of(self.groups) {
            return bad(format!(
                "channels ({} in, {} out) are not divisible by {} groups",
                self.cin, self.cout, self.groups
            ));
        }
        if !matches!((self.kernel, self.stride), (3, 1) | (3, 2) | (1, 1)) {
            return bad("supported: kernel 3 with stride 1 or 2, kernel 1 with stride 1".into());
        }
        Ok(())
    }
}

/// What the convolution does with its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// `out = conv(x) + bias`.
    Store,
    /// `out += conv(x) + bias` (the residual block's `x + conv2(..)`, in place).
    Accumulate,
}

/// A convolution with its weights packed for one instruction set.
#[derive(Clone, Debug)]
pub struct Conv3d {
    spec: ConvSpec,
    isa: Isa,
    oc_block: usize,
    packed: Vec<f32>,
    bias: Vec<f32>,
}

/// Output channels per register tile for an ISA (see the module note).
fn oc_block_for(isa: Isa) -> usize {
    match isa.kind() {
        Kind::Avx512 => 8,
        Kind::Avx2 | Kind::Portable => 4,
    }
}

impl Conv3d {
    /// Packs `weights` (MXNet layout `(cout, cin/groups, k, k, k)`) and `bias` (`cout`
    /// values, or none for zero) for `isa`.
    pub fn new(
        isa: Isa,
        spec: ConvSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Conv3d, Error> {
        spec.validate()?;
        if weights.len() != spec.weight_len() {
            return Err(Error::new(format!(
                "conv {spec:?}: {} weights given, ({}, {}, {k}, {k}, {k}) needs {}",
                weights.len(),
                spec.cout,
                spec.cin / spec.groups,
                spec.weight_len(),
                k = spec.kernel
            )));
        }
        let bias = match bias {
            Some(b) if b.len() != spec.cout => {
                return Err(Error::new(format!(
                    "conv {spec:?}: {} bias values given, {} needed",
                    b.len(),
                    spec.cout
                )))
            }
            Some(b) => b.to_vec(),
            None => vec![0.0; spec.cout],
        };
        let oc_block = oc_block_for(isa);
        let (cin_g, cout_g) = (spec.cin / spec.groups, spec.cout / spec.groups);
        let taps = spec.kernel.pow(3);
        let n_ob = cout_g.div_ceil(oc_block);
        let mut packed = vec![0.0f32; spec.groups * n_ob * cin_g * taps * oc_block];
        let mut at = 0;
        for g in 0..spec.groups {
            for ob in 0..n_ob {
                for ci in 0..cin_g {
                    for tap in 0..taps {
                        for o in 0..oc_block {
                            let oc = ob * oc_block + o;
                            if oc < cout_g {
                                let co = g * cout_g + oc;
                                packed[at] = weights[(co * cin_g + ci) * taps + tap];
                            }
                            at += 1;
                        }
                    }
                }
            }
        }
        Ok(Conv3d {
            spec,
            isa,
            oc_block,
            packed,
            bias,
        })
    }

    pub fn spec(&self) -> ConvSpec {
        self.spec
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs the convolution of `input` into `output`. The input needs a halo of at least
    /// 1 for kernel 3; the output may have any halo (its halo is not written).
    pub fn run(&self, input: &View, output: &mut ViewMut, epilogue: Epilogue) -> Result<(), Error> {
        self.run_inner(std::slice::from_ref(input), output, epilogue, None)
    }

    /// [`Conv3d::run`], also returning the per-channel mean and population variance of
    /// what it wrote (the statistics the next instance norm needs), accumulated in f64 in
    /// the epilogue while the tile is still in registers: no second pass over the output.
    pub fn run_with_stats(
        &self,
        input: &View,
        output: &mut ViewMut,
        epilogue: Epilogue,
    ) -> Result<Vec<ChannelStats>, Error> {
        self.run_concat_with_stats(std::slice::from_ref(input), output, epilogue)
    }

    /// [`Conv3d::run_concat`] with the output statistics of [`Conv3d::run_with_stats`].
    pub fn run_concat_with_stats(
        &self,
        inputs: &[View],
        output: &mut ViewMut,
        epilogue: Epilogue,
    ) -> Result<Vec<ChannelStats>, Error> {
        let ol = output.view_layout();
        let mut partial = vec![0.0f64; 2 * ol.c * ol.d];
        self.run_inner(inputs, output, epilogue, Some(&mut partial))?;
        // Partial sums are per (channel, plane); add the planes in order.
        let n = ol.voxels() as f64;
        Ok(partial
            .chunks_exact(2 * ol.d.max(1))
            .map(|ch| {
                let (s, q) = ch
                    .chunks_exact(2)
                    .fold((0.0, 0.0), |(s, q), p| (s + p[0], q + p[1]));
                let mean = s / n;
                ChannelStats {
                    mean,
                    var: (q / n - mean * mean).max(0.0),
                }
            })
            .collect())
    }

    /// Runs the convolution of the channel-wise concatenation of `inputs` (in order)
    /// into `output`, without materializing the concatenation: the decoder's
    /// `conv1x1(concat(up, skip, cascade))`. Up to [`MAX_PARTS`] parts, all of the same
    /// spatial size; a grouped convolution takes exactly one part.
    pub fn run_concat(
        &self,
        inputs: &[View],
        output: &mut ViewMut,
        epilogue: Epilogue,
    ) -> Result<(), Error> {
        self.run_inner(inputs, output, epilogue, None)
    }

    /// `stats`, when given, has two f64 per (output channel, output plane) and receives
    /// the (sum, sum of squares) of each plane.
    fn run_inner(
        &self,
        inputs: &[View],
        output: &mut ViewMut,
        epilogue: Epilogue,
        stats: Option<&mut [f64]>,
    ) -> Result<(), Error> {
        let spec = self.spec;
        let ol = output.view_layout();
        let fail = |m: String| Err(Error::new(format!("conv {spec:?}: {m}")));
        let Some(first) = inputs.first() else {
            return fail("no input".into());
        };
        if inputs.len() > MAX_PARTS || (spec.groups > 1 && inputs.len() > 1) {
            return fail(format!(
                "{} input parts given; at most {MAX_PARTS}, and one for a grouped conv",
                inputs.len()
            ));
        }
        let il = first.view_layout();
        let cin: usize = inputs.iter().map(|v| v.view_layout().c).sum();
        if cin != spec.cin {
            return fail(format!("input has {cin} channels, expected {}", spec.cin));
        }
        if ol.c != spec.cout {
            return fail(format!(
                "output has {} channels, expected {}",
                ol.c, spec.cout
            ));
        }
        let pad = spec.kernel / 2;
        for v in inputs {
            let l = v.view_layout();
            if !l.same_spatial(&il) {
                return fail(format!("input parts differ in size: {il} and {l}"));
            }
            if l.halo < pad {
                return fail(format!(
                    "input halo {} is smaller than the padding {pad}",
                    l.halo
                ));
            }
        }
        let want = (
            spec.output_size(il.d),
            spec.output_size(il.h),
            spec.output_size(il.w),
        );
        if (ol.d, ol.h, ol.w) != want {
            return fail(format!(
                "output is {}x{}x{}, input {}x{}x{} gives {}x{}x{}",
                ol.d, ol.h, ol.w, il.d, il.h, il.w, want.0, want.1, want.2
            ));
        }
        if ol.voxels() == 0 {
            return Ok(());
        }
        let (cin_g, cout_g) = (spec.cin / spec.groups, spec.cout / spec.groups);
        let mut parts = [Part {
            input: std::ptr::null(),
            cs: 0,
            ps: 0,
            rs: 0,
            channels: 0,
        }; MAX_PARTS];
        for (part, v) in parts.iter_mut().zip(inputs) {
            let b = v.buffer_layout();
            let origin = b.index(v.c0(), 0, 0, 0) - (b.plane_stride() + b.row_stride() + 1) * pad;
            *part = Part {
                input: v.data()[origin..].as_ptr(),
                cs: b.channel_stride(),
                ps: b.plane_stride(),
                rs: b.row_stride(),
                // Channels per group for a grouped conv (one part), the part's own otherwise.
                channels: if spec.groups > 1 {
                    cin_g
                } else {
                    v.view_layout().c
                },
            };
        }
        let ob = output.buffer_layout();
        let out_origin = ob.index(output.c0(), 0, 0, 0);
        let job = Job {
            parts,
            n_parts: inputs.len(),
            output: SharedMut(output.data_mut()[out_origin..].as_mut_ptr()),
            out_cs: ob.channel_stride(),
            out_ps: ob.plane_stride(),
            out_rs: ob.row_stride(),
            out_d: ol.d,
            out_h: ol.h,
            out_w: ol.w,
            cin_g,
            cout_g,
            n_ob: cout_g.div_ceil(self.oc_block),
            weights: self.packed.as_ptr(),
            bias: self.bias.as_ptr(),
            accumulate: epilogue == Epilogue::Accumulate,
            stats: SharedMut(match stats {
                Some(st) if st.len() == 2 * ol.c * ol.d => st.as_mut_ptr(),
                Some(_) => return fail("statistics buffer has the wrong size".into()),
                None => std::ptr::null_mut(),
            }),
        };
        let per_group_bytes = cin_g * spec.kernel.pow(3) * job.n_ob * self.oc_block * 4;
        let oc_outer = per_group_bytes > WEIGHTS_INNER_LIMIT;
        let tasks = if oc_outer {
            spec.groups * job.n_ob
        } else {
            spec.groups * ol.d
        };
        let (isa, k, s) = (self.isa.kind(), spec.kernel, spec.stride);
        (0..tasks).into_par_iter().for_each(|t| {
            let task = if oc_outer {
                Task {
                    group: t / job.n_ob,
                    ob_range: (t % job.n_ob, t % job.n_ob + 1),
                    z_range: (0, job.out_d),
                }
            } else {
                Task {
                    group: t / job.out_d,
                    ob_range: (0, job.n_ob),
                    z_range: (t % job.out_d, t % job.out_d + 1),
                }
            };
            // Safety: `run` checked the channel counts, the input halo (so every tap
            // reads inside the buffer, with at most two vectors of over-read that the
            // buffer slack covers) and the output size (so every store lands in the
            // output view's interior). Tasks write disjoint output elements: each owns
            // one (group, output plane) or one (group, channel block). The ISA was
            // proven present when `self.isa` was obtained.
            crate::trace::task(|| unsafe { run_task(isa, k, s, &job, &task) })
        });
        Ok(())
    }
}

/// Input parts of [`Conv3d::run_concat`] at most.
pub const MAX_PARTS: usize = 3;

/// One input part as a raw pointer and strides.
#[derive(Clone, Copy)]
struct Part {
    /// Channel 0 of the part at padded coordinates `(-pad, -pad, -pad)` of the interior,
    /// i.e. the first tap of output voxel 0.
    input: *const f32,
    cs: usize,
    ps: usize,
    rs: usize,
    /// Input channels this part contributes to one group.
    channels: usize,
}

/// Everything a task needs, as raw pointers and strides (validated by [`Conv3d::run_concat`]).
struct Job {
    parts: [Part; MAX_PARTS],
    n_parts: usize,
    /// Output at the interior origin of channel 0 of the view.
    output: SharedMut,
    out_cs: usize,
    out_ps: usize,
    out_rs: usize,
    out_d: usize,
    out_h: usize,
    out_w: usize,
    cin_g: usize,
    cout_g: usize,
    n_ob: usize,
    weights: *const f32,
    bias: *const f32,
    accumulate: bool,
    /// Null, or (sum, sum of squares) per (output channel, output plane).
    stats: SharedMut<f64>,
}

// Safety: the raw pointers are only read (input, weights, bias) or written at disjoint
// elements by the tasks (output), while `run` holds the borrows they came from.
unsafe impl Sync for Job {}

struct Task {
    group: usize,
    ob_range: (usize, usize),
    z_range: (usize, usize),
}

/// Calls the task body compiled for `isa`, kernel size `k` and stride `s`.
///
/// # Safety
/// See [`Conv3d::run`]: the job's pointers must be valid for the shapes it describes
/// and the ISA must be present.
unsafe fn run_task(isa: Kind, k: usize, s: usize, job: &Job, task: &Task) {
    match (isa, k, s) {
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx512, 3, 1) => task_avx512::<3, 1>(job, task),
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx512, 3, 2) => task_avx512::<3, 2>(job, task),
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx512, _, _) => task_avx512::<1, 1>(job, task),
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx2, 3, 1) => task_avx2::<3, 1>(job, task),
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx2, 3, 2) => task_avx2::<3, 2>(job, task),
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx2, _, _) => task_avx2::<1, 1>(job, task),
        (_, 3, 1) => task_body::<Portable, 4, 2, 3, 1>(Portable, job, task),
        (_, 3, 2) => task_body::<Portable, 4, 2, 3, 2>(Portable, job, task),
        _ => task_body::<Portable, 4, 2, 1, 1>(Portable, job, task),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task_avx512<const K: usize, const S: usize>(job: &Job, task: &Task) {
    task_body::<Avx512, 8, 3, K, S>(Avx512, job, task)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2<const K: usize, const S: usize>(job: &Job, task: &Task) {
    task_body::<Avx2, 4, 3, K, S>(Avx2, job, task)
}

/// One task: every output row of the task's planes and channel blocks.
#[inline(always)]
unsafe fn task_body<S: Simd, const OC: usize, const NW: usize, const K: usize, const ST: usize>(
    s: S,
    job: &Job,
    task: &Task,
) {
    let lanes = S::LANES;
    let step = NW * lanes;
    let taps = K * K * K;
    let g = task.group;
    for zo in task.z_range.0..task.z_range.1 {
        // Column by column (one W-tile wide), rows innermost: consecutive rows share 6 of
        // their 9 input row segments per input channel, which then come from L1.
        let mut x0 = 0;
        while x0 < job.out_w {
            let rem = job.out_w - x0;
            let nv = if rem >= step { NW } else { rem.div_ceil(lanes) };
            let last = (rem - (nv - 1) * lanes).min(lanes);
            for yo in 0..job.out_h {
                let mut in_rows = [std::ptr::null(); MAX_PARTS];
                for (row, part) in in_rows.iter_mut().zip(&job.parts[..job.n_parts]) {
                    *row = part
                        .input
                        .add(g * job.cin_g * part.cs + zo * ST * part.ps + yo * ST * part.rs);
                }
                let out_row = job.output.0.add(zo * job.out_ps + yo * job.out_rs);
                for ob in task.ob_range.0..task.ob_range.1 {
                    let oc0 = g * job.cout_g + ob * OC;
                    let tile = Tile {
                        inputs: in_rows.map(|r| r.wrapping_add(x0 * ST)),
                        output: out_row.add(oc0 * job.out_cs + x0),
                        weights: job.weights.add((g * job.n_ob + ob) * job.cin_g * taps * OC),
                        bias: job.bias.add(oc0),
                        valid_oc: (job.cout_g - ob * OC).min(OC),
                        last_lanes: last,
                        stats: if job.stats.get().is_null() {
                            std::ptr::null_mut()
                        } else {
                            job.stats.get().add(2 * (oc0 * job.out_d + zo))
                        },
                    };
                    match nv {
                        1 => tile_kernel::<S, OC, 1, K, ST>(s, job, &tile),
                        2 => tile_kernel::<S, OC, 2, K, ST>(s, job, &tile),
                        _ => tile_kernel::<S, OC, NW, K, ST>(s, job, &tile),
                    }
                }
            }
            x0 += nv * lanes;
        }
    }
}

struct Tile {
    inputs: [*const f32; MAX_PARTS],
    output: *mut f32,
    weights: *const f32,
    bias: *const f32,
    valid_oc: usize,
    last_lanes: usize,
    /// Null, or the statistics of output channel 0 of the tile at its plane; channel `o`
    /// is `2 * o * out_d` further.
    stats: *mut f64,
}

/// The register tile: `OC` output channels x `NW` vectors of one output row, summed over
/// all input channels of the group and all taps, then stored with bias (and the old
/// output value for [`Epilogue::Accumulate`]).
#[inline(always)]
unsafe fn tile_kernel<
    S: Simd,
    const OC: usize,
    const NW: usize,
    const K: usize,
    const ST: usize,
>(
    s: S,
    job: &Job,
    t: &Tile,
) {
    let lanes = S::LANES;
    let mut acc = [[s.zero(); NW]; OC];
    let mut w = t.weights;
    for (part, &input) in job.parts[..job.n_parts].iter().zip(&t.inputs) {
        for ci in 0..part.channels {
            let plane = input.add(ci * part.cs);
            for kz in 0..K {
                for ky in 0..K {
                    let row = plane.add(kz * part.ps + ky * part.rs);
                    for kx in 0..K {
                        let mut x = [s.zero(); NW];
                        for (v, xv) in x.iter_mut().enumerate() {
                            *xv = if ST == 1 {
                                s.load(row.add(kx + v * lanes))
                            } else {
                                s.load_even(row.add(kx + 2 * v * lanes))
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
                        w = w.add(OC);
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
    for (o, acc_o) in acc.iter().enumerate() {
        if o >= t.valid_oc {
            break;
        }
        let b = s.splat(*t.bias.add(o));
        let out = t.output.add(o * job.out_cs);
        let mut st = s.stats_zero();
        for (v, &a) in acc_o.iter().enumerate() {
            let n = if v == NW - 1 { t.last_lanes } else { lanes };
            let p = out.add(v * lanes);
            let mut r = s.add(a, b);
            if job.accumulate {
                r = s.add(r, s.load_n(p, n));
            }
            s.store_n(p, r, n);
            if !t.stats.is_null() {
                st = s.stats_add(st, r, n);
            }
        }
        if !t.stats.is_null() {
            let (sum, sq) = s.stats_reduce(st);
            let at = t.stats.add(2 * o * job.out_d);
            *at += sum;
            *at.add(1) += sq;
        }
    }
}
