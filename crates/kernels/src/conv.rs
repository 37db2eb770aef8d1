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
//! - **Vectorized along W** (`conv/width.rs`, the kernel of every layer whose rows fill a
//!   vector). One register holds `LANES` consecutive output voxels of a row (16 with
//!   AVX-512, 8 with AVX2). The input row segment for tap `kx` is one unaligned load at
//!   offset `kx` (stride 1) or an even-element gather of two loads (stride 2).
//! - **A block of output channels in registers.** A tile is `OC` output channels x `NW`
//!   vectors along W, accumulated over all `cin/G * 27` taps before it is stored once. Per
//!   tap it costs `NW` input loads and `OC` broadcast weights for `OC * NW` FMAs.
//!   AVX-512 uses 8 x 3 (24 accumulators + 3 inputs of the 32 registers), AVX2 4 x 3
//!   (12 + 3 of 16), portable 4 x 2.
//! - **Vectorized across output channels for short rows** (`conv/channels.rs`). Rows of 4 and
//!   8 voxels (net32's and net64's deep levels at 128³) fill a quarter or half of an
//!   AVX-512 vector along W; there the register holds 16 output channels of one voxel, the
//!   weights are vector loads and the inputs are broadcast. [`Vectorize::Auto`] takes it
//!   for outputs narrower than a vector. Both kernels sum in the same order and give
//!   bit-identical results.
//! - **Winograd F(2,3) along W for the staged 3x3 convs** (`conv/winograd.rs`, asked for
//!   with [`Vectorize::Winograd`]): the width kernel's walk over a staged input stored as
//!   transformed tiles, two thirds of the FMAs, on rows of 16 to 64 voxels (at 128 it
//!   was slower). Not bit-identical to the direct kernels; accurate to the same order.
//! - **Prepacked weights.** [`Conv3d::new`] repacks MXNet's `(Cout, Cin/G, k, k, k)` into
//!   `[group][block of LANES output channels][ci][tap][LANES]`, zero-padding the last
//!   block, so both kernels read weights sequentially: the channel kernel a whole block
//!   per tap as vectors, the width kernel half a block as broadcast scalars.
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
//! - **Input norm.** [`Conv3d::run_normalized`] applies an instance norm and ReLU to its
//!   input as each task stages the planes it reads (`conv/staging.rs`), so a residual
//!   block never writes a normalized tensor.
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
//! The channel kernel against the width kernel (AVX-512, 2 threads, GFLOP/s, same run):
//!
//! | layer (output row) | width | channels |
//! |---|---|---|
//! | net32.rb3.conv (8) | 121 | 283 |
//! | net32.rb4.conv (4) | 44 | 199 |
//! | net32.pool3 (4, stride 2) | 38 | 167 |
//! | net64.rb3.conv (16) | 223 | 234 |
//! | net128.pool2 (32, stride 2) | 178 | 101 |
//!
//! One-thread rates are 110-140 GFLOP/s (66-85 % of the core's peak). What is left is
//! load-port pressure (per tap: `NW` unaligned input loads, two thirds of them split across
//! cache lines, plus `OC` broadcasts for `OC * NW` FMAs) and L2 traffic for the input rows
//! of a new column. `tools/check_conv_asm.sh` checks the generated code for accumulator
//! spills; the spill above cost half the speed without failing any test.
//!
//! Tried and not kept (no gain measured, criterion baselines, one and two threads):
//! software prefetch of the next output row's new input rows (rb1 1t 118-122 without,
//! 99-117 with); rows outermost for the 1x1 and stride-2 convolutions, which reuse little
//! of a column's rows (net128.pool1 92-98 either way on 1 thread; net128.c2, a 1x1 over
//! 24 channels at 128³, 55-57 GFLOP/s either way on 2 threads: memory-bound, about
//! 16 GB/s); a row-blocked task split for L2 reuse at 128³. Measured on the whole 128³
//! pass and not kept either: non-temporal stores for outputs of 32 MB and more (per-layer
//! medians 1.03-1.09x slower: this machine's 260 MB L3 keeps part of a layer's output
//! for the next layer, which streaming stores forgo), and prefetching the lines the
//! epilogue reads and writes (the output to accumulate or store, the max output) one tile
//! ahead (the pass with and without it alternating in one process, 10 pairs: median
//! ratio 1.006).

use crate::isa::Kind;
use crate::norm::{self, ChannelAffine, ChannelStats};
use crate::tensor::{SharedMut, View, ViewMut};
use crate::{Error, Isa};

/// The run-time (ISA, kernel size, stride) to compile-time dispatch both kernels share:
/// expands to a `match` calling the module's `task_avx512::<K, ST>`, `task_avx2::<K, ST>`
/// or `task_portable::<K, ST>` with `(job, task)`.
macro_rules! dispatch_task {
    ($isa:expr, $k:expr, $s:expr, $job:expr, $task:expr) => {
        match ($isa, $k, $s) {
            #[cfg(target_arch = "x86_64")]
            (Kind::Avx512, 3, 1) => task_avx512::<3, 1>($job, $task),
            #[cfg(target_arch = "x86_64")]
            (Kind::Avx512, 3, 2) => task_avx512::<3, 2>($job, $task),
            #[cfg(target_arch = "x86_64")]
            (Kind::Avx512, _, _) => task_avx512::<1, 1>($job, $task),
            #[cfg(target_arch = "x86_64")]
            (Kind::Avx2, 3, 1) => task_avx2::<3, 1>($job, $task),
            #[cfg(target_arch = "x86_64")]
            (Kind::Avx2, 3, 2) => task_avx2::<3, 2>($job, $task),
            #[cfg(target_arch = "x86_64")]
            (Kind::Avx2, _, _) => task_avx2::<1, 1>($job, $task),
            (_, 3, 1) => task_portable::<3, 1>($job, $task),
            (_, 3, 2) => task_portable::<3, 2>($job, $task),
            _ => task_portable::<1, 1>($job, $task),
        }
    };
}

mod channels;
mod staging;
mod width;
mod winograd;

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
    /// `[group][block of lanes(isa) output channels][ci][tap][lane]` (module note).
    packed: Vec<f32>,
    /// `packed` transformed for [`Vectorize::Winograd`], made by the first call that
    /// uses it (only the convs that run on wide rows pay its memory).
    winograd: std::sync::OnceLock<Vec<f32>>,
    bias: Vec<f32>,
    vectorize: Vectorize,
}

/// Which of the two kernels computes a convolution (see the module note).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vectorize {
    /// Chosen per call from the output width, the stride and the channel count.
    Auto,
    /// Vectors along the output row (`conv/width.rs`).
    Width,
    /// Vectors across output channels (`conv/channels.rs`); falls back to
    /// [`Vectorize::Width`] for outputs narrower than its tile.
    Channels,
    /// The width kernel with a Winograd F(2,3) transform along W (`conv/winograd.rs`)
    /// for calls that stage their input ([`Conv3d::run_normalized`]) of a 3x3 stride-1
    /// conv with output rows of `LANES` (16 with AVX-512, 8 otherwise) to 64 voxels;
    /// [`Vectorize::Auto`] for every other call.
    /// Not bit-identical to the other kernels (it computes other sums), but as accurate
    /// to within a small factor.
    Winograd,
}

/// f32 lanes of an ISA's vectors: the output channels of one packed weight block.
pub(crate) fn lanes(isa: Kind) -> usize {
    match isa {
        Kind::Avx512 => 16,
        Kind::Avx2 | Kind::Portable => 8,
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
        let pack = lanes(isa.kind());
        let (cin_g, cout_g) = (spec.cin / spec.groups, spec.cout / spec.groups);
        let taps = spec.kernel.pow(3);
        let n_pb = cout_g.div_ceil(pack);
        let mut packed = vec![0.0f32; spec.groups * n_pb * cin_g * taps * pack];
        let mut at = 0;
        for g in 0..spec.groups {
            for pb in 0..n_pb {
                for ci in 0..cin_g {
                    for tap in 0..taps {
                        for o in 0..pack {
                            let oc = pb * pack + o;
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
            packed,
            winograd: std::sync::OnceLock::new(),
            bias,
            vectorize: Vectorize::Auto,
        })
    }

    /// Forces one of the two kernels (the tests run both; [`Vectorize::Auto`] is the
    /// default).
    pub fn with_vectorize(mut self, vectorize: Vectorize) -> Conv3d {
        self.vectorize = vectorize;
        self
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
        self.run_inner(
            std::slice::from_ref(input),
            output,
            epilogue,
            Fused::default(),
        )
    }

    /// The convolution followed by a softmax over its output channels, in one pass: the
    /// logits stay in registers and only the probabilities are written (the network's
    /// last 1x1 conv, 4 classes). Bit-identical to [`Conv3d::run`] then
    /// [`crate::elementwise::softmax`]. Needs one group and at most as many output
    /// channels as the width kernel's register tile (8 with AVX-512, 4 otherwise).
    pub fn run_softmax(&self, input: &View, output: &mut ViewMut) -> Result<(), Error> {
        let most = width::tile_oc(self.isa.kind());
        if self.spec.groups != 1 || self.spec.cout > most {
            return Err(Error::new(format!(
                "conv {:?}: a fused softmax needs 1 group and at most {most} output channels",
                self.spec
            )));
        }
        let fused = Fused {
            softmax: true,
            ..Fused::default()
        };
        self.run_inner(std::slice::from_ref(input), output, Epilogue::Store, fused)
    }

    /// [`Conv3d::run`], also folding what it writes into `max` (same channels and size):
    /// `max = out` when `first`, `max = max(max, out)` otherwise. The encoder's group max
    /// of a residual block's output (`out[c] = max_g x[g*C/4 + c]`) then costs no extra
    /// pass over the block's output when the block runs group by group.
    pub fn run_with_max(
        &self,
        input: &View,
        output: &mut ViewMut,
        epilogue: Epilogue,
        max: &mut ViewMut,
        first: bool,
    ) -> Result<(), Error> {
        let fused = Fused {
            max: Some((max, first)),
            ..Fused::default()
        };
        self.run_inner(std::slice::from_ref(input), output, epilogue, fused)
    }

    /// The convolution of `input` normalized per channel (instance norm, then ReLU if
    /// `norm.relu`) without a normalized tensor: each task normalizes the input planes it
    /// reads into a per-thread buffer with a zero halo (module note, "Input norm"), so
    /// `input` needs no halo. Bit-identical to [`crate::norm::instance_norm`] into a
    /// zero-halo tensor, then [`Conv3d::run`] (or [`Conv3d::run_with_max`] with `max`),
    /// except where [`Vectorize::Winograd`] applies (other sums, as accurate).
    pub fn run_normalized(
        &self,
        input: &View,
        norm: InputNorm,
        output: &mut ViewMut,
        epilogue: Epilogue,
        max: Option<(&mut ViewMut, bool)>,
    ) -> Result<(), Error> {
        let fused = Fused {
            input_norm: Some(norm),
            max,
            ..Fused::default()
        };
        self.run_inner(std::slice::from_ref(input), output, epilogue, fused)
    }

    /// [`Conv3d::run_normalized`] (storing) with the output statistics of
    /// [`Conv3d::run_with_stats`].
    pub fn run_normalized_with_stats(
        &self,
        input: &View,
        norm: InputNorm,
        output: &mut ViewMut,
    ) -> Result<Vec<ChannelStats>, Error> {
        self.with_stats(output, |conv, output, stats| {
            let fused = Fused {
                input_norm: Some(norm),
                stats: Some(stats),
                ..Fused::default()
            };
            conv.run_inner(std::slice::from_ref(input), output, Epilogue::Store, fused)
        })
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
        self.with_stats(output, |conv, output, stats| {
            let fused = Fused {
                stats: Some(stats),
                ..Fused::default()
            };
            conv.run_inner(inputs, output, epilogue, fused)
        })
    }

    /// Runs `run` with a buffer for per-(channel, plane) partial sums and returns the
    /// per-channel statistics they add up to.
    fn with_stats(
        &self,
        output: &mut ViewMut,
        run: impl FnOnce(&Conv3d, &mut ViewMut, &mut [f64]) -> Result<(), Error>,
    ) -> Result<Vec<ChannelStats>, Error> {
        let ol = output.view_layout();
        let mut partial = vec![0.0f64; 2 * ol.c * ol.d];
        run(self, output, &mut partial)?;
        Ok(norm::stats_from_partials(&partial, ol.c, ol.d, ol.voxels()))
    }

    /// Runs the convolution of the channel-wise concatenation of `inputs` (in order)
    /// into `output`, without materializing the concatenation. Up to [`MAX_PARTS`] parts,
    /// all of the same spatial size; a grouped convolution takes exactly one part. (The
    /// decoder's `conv1x1(concat(up, skip, cascade))` runs fused with its deconvolution
    /// instead, `crate::deconv::Deconv3d::fused_pointwise`.)
    pub fn run_concat(
        &self,
        inputs: &[View],
        output: &mut ViewMut,
        epilogue: Epilogue,
    ) -> Result<(), Error> {
        self.run_inner(inputs, output, epilogue, Fused::default())
    }

    fn run_inner(
        &self,
        inputs: &[View],
        output: &mut ViewMut,
        epilogue: Epilogue,
        fused: Fused,
    ) -> Result<(), Error> {
        let Fused {
            input_norm,
            stats,
            max,
            softmax,
        } = fused;
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
            if l.halo < pad && input_norm.is_none() {
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
        if let Some(norm) = input_norm {
            if inputs.len() != 1 || norm.affine.len() != spec.cin {
                return fail(format!(
                    "an input norm needs one input part and {} channel affines \
                     ({} parts, {} affines given)",
                    spec.cin,
                    inputs.len(),
                    norm.affine.len()
                ));
            }
        }
        let (cin_g, cout_g) = (spec.cin / spec.groups, spec.cout / spec.groups);
        // The input's origin: the first tap of output voxel 0 in its padded coordinates,
        // or its interior origin when a task stages it (the staged copy has the padding).
        let origin_pad = if input_norm.is_some() { 0 } else { pad };
        let mut parts = [Part {
            input: std::ptr::null(),
            cs: 0,
            ps: 0,
            rs: 0,
            channels: 0,
            taps_z: [0; 3],
        }; MAX_PARTS];
        for (part, v) in parts.iter_mut().zip(inputs) {
            let b = v.buffer_layout();
            let origin =
                b.index(v.c0(), 0, 0, 0) - (b.plane_stride() + b.row_stride() + 1) * origin_pad;
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
                taps_z: [0, 1, 2].map(|kz| kz * b.plane_stride()),
            };
        }
        let ob = output.buffer_layout();
        let out_origin = ob.index(output.c0(), 0, 0, 0);
        let kind = self.isa.kind();
        let winograd = self.vectorize == Vectorize::Winograd
            && winograd::fits(
                spec.kernel,
                spec.stride,
                input_norm.is_some(),
                softmax,
                ol.w,
                lanes(kind),
            );
        let weights = if winograd {
            self.winograd
                .get_or_init(|| winograd::pack(&self.packed, lanes(kind)))
                .as_ptr()
        } else {
            self.packed.as_ptr()
        };
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
            n_pb: cout_g.div_ceil(lanes(kind)),
            weights,
            winograd,
            bias: self.bias.as_ptr(),
            accumulate: epilogue == Epilogue::Accumulate,
            max: match max {
                Some((m, first)) => {
                    let ml = m.view_layout();
                    if ml.c != ol.c || !ml.same_spatial(&ol) {
                        return fail(format!("max output is {ml}, the output {ol}"));
                    }
                    let mb = m.buffer_layout();
                    let origin = mb.index(m.c0(), 0, 0, 0);
                    MaxOut {
                        data: SharedMut(m.data_mut()[origin..].as_mut_ptr()),
                        cs: mb.channel_stride(),
                        ps: mb.plane_stride(),
                        rs: mb.row_stride(),
                        first,
                    }
                }
                None => MaxOut {
                    data: SharedMut(std::ptr::null_mut()),
                    cs: 0,
                    ps: 0,
                    rs: 0,
                    first: false,
                },
            },
            softmax,
            input_norm: input_norm.map_or(std::ptr::null(), |n| n.affine.as_ptr()),
            relu: input_norm.is_some_and(|n| n.relu),
            in_d: il.d,
            in_h: il.h,
            in_w: il.w,
            id: staging::new_job_id(),
            stats: SharedMut(match stats {
                Some(st) if st.len() == 2 * ol.c * ol.d => st.as_mut_ptr(),
                Some(_) => return fail("statistics buffer has the wrong size".into()),
                None => std::ptr::null_mut(),
            }),
        };
        // The fused softmax is an epilogue of the width kernel only.
        let use_channels = !softmax
            && !winograd
            && match self.vectorize {
                Vectorize::Width => false,
                Vectorize::Channels => channels::fits(&job),
                Vectorize::Auto | Vectorize::Winograd => {
                    channels::fits(&job) && channels::preferred(kind, &job)
                }
            };
        if use_channels {
            channels::run(kind, spec.kernel, spec.stride, spec.groups, &job);
        } else {
            width::run(kind, spec.kernel, spec.stride, spec.groups, &job);
        }
        Ok(())
    }
}

/// An instance norm (and ReLU) that [`Conv3d::run_normalized`] applies to its input.
#[derive(Clone, Copy, Debug)]
pub struct InputNorm<'a> {
    /// One per input channel ([`crate::norm::affine`]).
    pub affine: &'a [ChannelAffine],
    pub relu: bool,
}

/// What a call adds to the plain convolution (the public `run_*` methods).
#[derive(Default)]
struct Fused<'a, 'b> {
    input_norm: Option<InputNorm<'a>>,
    /// Two f64 per (output channel, output plane), receiving each plane's (sum, sum of
    /// squares).
    stats: Option<&'a mut [f64]>,
    max: Option<(&'a mut ViewMut<'b>, bool)>,
    softmax: bool,
}

/// Input parts of [`Conv3d::run_concat`] at most.
pub const MAX_PARTS: usize = 3;

/// One input part as a raw pointer and strides.
#[derive(Clone, Copy)]
pub(crate) struct Part {
    /// Channel 0 of the part at padded coordinates `(-pad, -pad, -pad)` of the interior,
    /// i.e. the first tap of output voxel 0; with an input norm, at the interior origin
    /// (the staged copy has the padding). A task's parts ([`Job::parts_at`], a staged
    /// ring) point at its group and first output plane instead.
    pub(crate) input: *const f32,
    pub(crate) cs: usize,
    pub(crate) ps: usize,
    pub(crate) rs: usize,
    /// Input channels this part contributes to one group.
    pub(crate) channels: usize,
    /// From a tap's row pointer to the plane of tap `kz`: `kz * ps` in a tensor, the ring
    /// slots in a task's staged input (`conv/staging.rs`).
    pub(crate) taps_z: [usize; 3],
}

impl Job {
    /// Splits the output planes into slabs so that there are at least `min_tasks` tasks
    /// when `tasks_per_slab` tasks share each slab (and there are that many planes):
    /// `(planes per slab, slabs)`. A fixed split, so that it does not depend on the
    /// thread count.
    pub(crate) fn slabs(&self, min_tasks: usize, tasks_per_slab: usize) -> (usize, usize) {
        let slabs = min_tasks.div_ceil(tasks_per_slab).clamp(1, self.out_d);
        let per_slab = self.out_d.div_ceil(slabs);
        (per_slab, self.out_d.div_ceil(per_slab))
    }

    /// The job's input parts moved to group `g` and output plane `z` (a tensor input).
    ///
    /// # Safety
    /// The job must be valid ([`Conv3d::run_inner`] built it), `g` and `z` within it.
    #[inline(always)]
    pub(crate) unsafe fn parts_at<const ST: usize>(&self, g: usize, z: usize) -> [Part; MAX_PARTS] {
        let mut parts = self.parts;
        for part in &mut parts[..self.n_parts] {
            part.input = part.input.add(g * self.cin_g * part.cs + z * ST * part.ps);
        }
        parts
    }
}

/// Everything a task needs, as raw pointers and strides (validated by [`Conv3d::run_concat`]).
pub(crate) struct Job {
    pub(crate) parts: [Part; MAX_PARTS],
    pub(crate) n_parts: usize,
    /// Output at the interior origin of channel 0 of the view.
    pub(crate) output: SharedMut,
    pub(crate) out_cs: usize,
    pub(crate) out_ps: usize,
    pub(crate) out_rs: usize,
    pub(crate) out_d: usize,
    pub(crate) out_h: usize,
    pub(crate) out_w: usize,
    pub(crate) cin_g: usize,
    pub(crate) cout_g: usize,
    /// Packed weight blocks (of the ISA's vector width in output channels) per group.
    pub(crate) n_pb: usize,
    /// The direct packing, or the Winograd one when `winograd`.
    pub(crate) weights: *const f32,
    /// The width kernel over a Winograd-transformed staged input (`conv/winograd.rs`).
    pub(crate) winograd: bool,
    pub(crate) bias: *const f32,
    pub(crate) accumulate: bool,
    /// Null, or (sum, sum of squares) per (output channel, output plane).
    pub(crate) stats: SharedMut<f64>,
    /// Where [`Conv3d::run_with_max`] folds the output (null data otherwise).
    pub(crate) max: MaxOut,
    /// Store the softmax over the output channels ([`Conv3d::run_softmax`]).
    pub(crate) softmax: bool,
    /// Null, or one affine per input channel: the tasks stage their input normalized
    /// (`conv/staging.rs`), and the one part's `input` is at its interior origin.
    pub(crate) input_norm: *const ChannelAffine,
    pub(crate) relu: bool,
    /// The input's interior size (for staging).
    pub(crate) in_d: usize,
    pub(crate) in_h: usize,
    pub(crate) in_w: usize,
    /// This call's number (`staging::new_job_id`): a thread's staged ring is only kept
    /// for tasks of the call that staged it.
    pub(crate) id: u64,
}

/// The second output of [`Conv3d::run_with_max`], at the interior origin of its channel 0.
pub(crate) struct MaxOut {
    pub(crate) data: SharedMut,
    pub(crate) cs: usize,
    pub(crate) ps: usize,
    pub(crate) rs: usize,
    /// Store instead of taking the maximum.
    pub(crate) first: bool,
}

impl MaxOut {
    /// The element of `(channel, z, y, x)`, or null without a max output.
    #[inline(always)]
    pub(crate) fn at(&self, c: usize, z: usize, y: usize, x: usize) -> *mut f32 {
        if self.data.get().is_null() {
            return std::ptr::null_mut();
        }
        self.data
            .get()
            .wrapping_add(c * self.cs + z * self.ps + y * self.rs + x)
    }
}

// Safety: the raw pointers are only read (input, weights, bias) or written at disjoint
// elements by the tasks (output), while `run` holds the borrows they came from.
unsafe impl Sync for Job {}
