//! Transposed convolution, kernel 2, stride 2, no bias (MXNet `Deconvolution`, weight
//! layout `(cin, cout, 2, 2, 2)`): every input voxel spreads into its own 2x2x2 output
//! block, `out[co][2z+a][2y+b][2x+c] = sum_ci in[ci][z][y][x] * w[ci][co][a][b][c]`;
//! optionally fused with the 1x1 convolution that follows it in the decoder.
//!
//! # Design
//!
//! The output blocks do not overlap, so this is eight independent 1x1 convolutions (one
//! per `(a, b, c)`) whose results interleave. The kernel vectorizes along the input row:
//! for a fixed `(a, b)` it keeps `OC` output channels x 2 (`c = 0, 1`) accumulators, sums
//! over the input channels, then writes both into output row `(2z+a, 2y+b)` interleaved.
//! A task is one input plane (two output planes).
//!
//! # Fused with the decoder's 1x1 conv
//!
//! The decoder computes `conv1x1(concat(up(x), skip, cascade))` with no nonlinearity
//! between the deconvolution and the 1x1 conv, so the two compose: the 1x1 weights of the
//! upsampled channels, multiplied into the deconvolution's, give one deconvolution
//! straight to the conv's output channels ([`Deconv3d::fused_pointwise`], composed in
//! f64). The fused kernel interleaves its accumulators in registers, adds the 1x1 conv of
//! the other parts (read at full resolution), the bias, and sums the output statistics
//! that the next instance norm needs, like the convs' epilogues. Deconvolutions and 1x1
//! convs do under 3 % of the network's FLOPs and are bound by memory traffic: unfused,
//! the upsampled tensor is written at full resolution and read back (at 128³, 16 channels:
//! 268 MB of the 502 MB the two layers moved).
//!
//! Measured in the network (`brats-seg profile`, 128³, 2 threads): the six decoder steps
//! of a pass 91.8 -> 66.1 ms (8 alternating pairs), net128.up2+c2 20-25 ms against 52 for
//! up2 and c2. The walk matters: with the `(a, b)` blocks innermost (the plain
//! deconvolution's order then), the fused kernel read four rows of every extra channel
//! and wrote four rows of every output channel at once, and was slower than the two
//! layers (net128.up2+c2 40 ms, up3+c1 26 ms against 17 for the pair); output row by
//! output row it is the figures above.

use crate::isa::Kind;
use crate::norm::{self, ChannelStats};
#[cfg(target_arch = "x86_64")]
use crate::simd::{Avx2, Avx512};
use crate::simd::{Portable, Simd};
use crate::tensor::{SharedMut, View, ViewMut};
use crate::{Error, Isa};
use rayon::prelude::*;

/// Most full-resolution parts a fused 1x1 conv reads besides the upsampled one (the
/// decoder's skip and cascade input).
pub const MAX_EXTRA_PARTS: usize = 2;

/// A kernel-2 stride-2 transposed convolution with weights packed for one ISA, possibly
/// fused with a 1x1 convolution over `concat(deconv output, extra parts)`.
#[derive(Clone, Debug)]
pub struct Deconv3d {
    cin: usize,
    cout: usize,
    isa: Isa,
    /// `[ob][a*2+b][ci][c][o]`, zero-padded past `cout`.
    packed: Vec<f32>,
    pointwise: Option<Pointwise>,
}

/// The fused 1x1 conv's part beyond the composed deconvolution.
#[derive(Clone, Debug)]
struct Pointwise {
    /// Channels of each extra part, in concatenation order.
    extra: Vec<usize>,
    /// `[ob][k][o]` over the extra parts' channels `k`, zero-padded past `cout`.
    packed: Vec<f32>,
    /// Padded to whole output-channel blocks.
    bias: Vec<f32>,
    /// FLOPs per output voxel of the layers as the network defines them (deconvolution
    /// to the upsampled channels, then the 1x1 conv), for reporting.
    flops_per_out_voxel: u64,
}

/// Output channels per register block.
fn oc_block(isa: Isa) -> usize {
    match isa.kind() {
        Kind::Avx512 => 8,
        _ => 4,
    }
}

/// Packs `weight(ci, co, abc)` as `[ob][a*2+b][ci][c][o]`, zero-padded past `cout`.
fn pack(
    isa: Isa,
    cin: usize,
    cout: usize,
    weight: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let ocb = oc_block(isa);
    let n_ob = cout.div_ceil(ocb);
    let mut packed = vec![0.0f32; n_ob * 4 * cin * 2 * ocb];
    let mut at = 0;
    for ob in 0..n_ob {
        for ab in 0..4 {
            for ci in 0..cin {
                for c in 0..2 {
                    for o in 0..ocb {
                        let co = ob * ocb + o;
                        if co < cout {
                            packed[at] = weight(ci, co, ab * 2 + c);
                        }
                        at += 1;
                    }
                }
            }
        }
    }
    packed
}

/// Why `weights` are not a `cin -> cout` deconvolution's `(cin, cout, 2, 2, 2)`, if not.
fn check_weights(cin: usize, cout: usize, weights: &[f32]) -> Result<(), String> {
    if cin == 0 || cout == 0 {
        return Err("channels must be positive".into());
    }
    if weights.len() != cin * cout * 8 {
        return Err(format!(
            "{} weights given, ({cin}, {cout}, 2, 2, 2) needs {}",
            weights.len(),
            cin * cout * 8
        ));
    }
    Ok(())
}

impl Deconv3d {
    /// Packs `weights` (MXNet layout `(cin, cout, 2, 2, 2)`) for `isa`.
    pub fn new(isa: Isa, cin: usize, cout: usize, weights: &[f32]) -> Result<Deconv3d, Error> {
        check_weights(cin, cout, weights)
            .map_err(|m| Error::new(format!("deconv {cin} -> {cout}: {m}")))?;
        Ok(Deconv3d {
            cin,
            cout,
            isa,
            packed: pack(isa, cin, cout, |ci, co, abc| {
                weights[(ci * cout + co) * 8 + abc]
            }),
            pointwise: None,
        })
    }

    /// The deconvolution `up = (cin, cup, weights as for [`Deconv3d::new`])` fused with
    /// the 1x1 conv over `concat(up, extra parts)` that follows it: `weights` in MXNet
    /// layout `(cout, cup + sum(extra))`, `bias` of `cout`. The up part of the 1x1 weights
    /// is multiplied into the deconvolution's in f64 and rounded once (see the module
    /// note); run it with [`Deconv3d::run_fused_with_stats`].
    pub fn fused_pointwise(
        isa: Isa,
        (cin, cup, up_weights): (usize, usize, &[f32]),
        extra: &[usize],
        weights: &[f32],
        bias: &[f32],
    ) -> Result<Deconv3d, Error> {
        let k_extra: usize = extra.iter().sum();
        let k = cup + k_extra;
        let cout = bias.len();
        let fail = |m: String| {
            Err(Error::new(format!(
                "deconv {cin} -> {cup} fused with a 1x1 conv {k} -> {cout}: {m}"
            )))
        };
        if let Err(m) = check_weights(cin, cup, up_weights) {
            return fail(format!("deconvolution: {m}"));
        }
        if extra.len() > MAX_EXTRA_PARTS || extra.contains(&0) {
            return fail(format!(
                "extra parts {extra:?}: at most {MAX_EXTRA_PARTS}, none empty"
            ));
        }
        if cout == 0 || weights.len() != cout * k {
            return fail(format!(
                "{} weights given, needs {}",
                weights.len(),
                cout * k
            ));
        }
        let composed = |ci: usize, co: usize, abc: usize| {
            (0..cup)
                .map(|j| weights[co * k + j] as f64 * up_weights[(ci * cup + j) * 8 + abc] as f64)
                .sum::<f64>() as f32
        };
        let ocb = oc_block(isa);
        let n_ob = cout.div_ceil(ocb);
        let mut packed = vec![0.0f32; n_ob * k_extra * ocb];
        for co in 0..cout {
            for j in 0..k_extra {
                packed[((co / ocb) * k_extra + j) * ocb + co % ocb] = weights[co * k + cup + j];
            }
        }
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(n_ob * ocb, 0.0);
        Ok(Deconv3d {
            cin,
            cout,
            isa,
            packed: pack(isa, cin, cout, composed),
            pointwise: Some(Pointwise {
                extra: extra.to_vec(),
                packed,
                bias: padded_bias,
                flops_per_out_voxel: 2 * (cin * cup + k * cout) as u64,
            }),
        })
    }

    /// `(cin, cout)`: for a fused one, the low-resolution input's channels and the 1x1
    /// conv's outputs.
    pub fn channels(&self) -> (usize, usize) {
        (self.cin, self.cout)
    }

    /// Floating-point operations (2 per multiply-add) for an input of `in_voxels`, counted
    /// as the network defines the layers (for a fused one, the deconvolution and the 1x1
    /// conv, not the composed kernel's smaller count).
    pub fn flops(&self, in_voxels: usize) -> u64 {
        match &self.pointwise {
            None => 2 * 8 * (in_voxels as u64) * (self.cin as u64) * (self.cout as u64),
            Some(p) => 8 * in_voxels as u64 * p.flops_per_out_voxel,
        }
    }

    /// Writes the transposed convolution of `input` into `output` (twice the input's
    /// size on each side; any halo). Only for a plain deconvolution.
    pub fn run(&self, input: &View, output: &mut ViewMut) -> Result<(), Error> {
        if self.pointwise.is_some() {
            return Err(self.error("a fused deconvolution runs with run_fused_with_stats"));
        }
        self.run_inner(input, &[], output, None)
    }

    /// Writes the fused deconvolution and 1x1 conv of `input` (low resolution) and
    /// `extra` (the other parts of the concatenation, at `output`'s size, channel counts as
    /// given to [`Deconv3d::fused_pointwise`]) into `output`, and returns the output's
    /// per-channel statistics (as `Conv3d::run_with_stats`).
    pub fn run_fused_with_stats(
        &self,
        input: &View,
        extra: &[View],
        output: &mut ViewMut,
    ) -> Result<Vec<ChannelStats>, Error> {
        let Some(p) = &self.pointwise else {
            return Err(self.error("run_fused_with_stats needs a fused deconvolution"));
        };
        let ol = output.view_layout();
        let given: Vec<usize> = extra.iter().map(|v| v.view_layout().c).collect();
        if given != p.extra {
            return Err(self.error(&format!(
                "extra parts of {given:?} channels given, {:?} expected",
                p.extra
            )));
        }
        if let Some(v) = extra.iter().find(|v| !v.view_layout().same_spatial(&ol)) {
            return Err(self.error(&format!(
                "extra part {} is not the output's size {ol}",
                v.view_layout()
            )));
        }
        let mut partial = vec![0.0f64; 2 * ol.c * ol.d];
        self.run_inner(input, extra, output, Some(&mut partial))?;
        Ok(norm::stats_from_partials(&partial, ol.c, ol.d, ol.voxels()))
    }

    fn error(&self, m: &str) -> Error {
        Error::new(format!("deconv {} -> {}: {m}", self.cin, self.cout))
    }

    fn run_inner(
        &self,
        input: &View,
        extra: &[View],
        output: &mut ViewMut,
        stats: Option<&mut [f64]>,
    ) -> Result<(), Error> {
        let (il, ol) = (input.view_layout(), output.view_layout());
        if il.c != self.cin || ol.c != self.cout {
            return Err(self.error(&format!("given {} -> {} channels", il.c, ol.c)));
        }
        if (ol.d, ol.h, ol.w) != (2 * il.d, 2 * il.h, 2 * il.w) {
            return Err(self.error(&format!("output {ol} is not twice the input {il}")));
        }
        if il.voxels() == 0 {
            return Ok(());
        }
        let (ib, ob) = (input.buffer_layout(), output.buffer_layout());
        let out_origin = ob.index(output.c0(), 0, 0, 0);
        let mut parts = [Extra {
            data: std::ptr::null(),
            cs: 0,
            ps: 0,
            rs: 0,
            channels: 0,
        }; MAX_EXTRA_PARTS];
        for (part, v) in parts.iter_mut().zip(extra) {
            let b = v.buffer_layout();
            *part = Extra {
                data: v.data()[b.index(v.c0(), 0, 0, 0)..].as_ptr(),
                cs: b.channel_stride(),
                ps: b.plane_stride(),
                rs: b.row_stride(),
                channels: v.view_layout().c,
            };
        }
        let pw = self.pointwise.as_ref();
        let job = Job {
            input: input.data()[ib.index(input.c0(), 0, 0, 0)..].as_ptr(),
            in_cs: ib.channel_stride(),
            in_ps: ib.plane_stride(),
            in_rs: ib.row_stride(),
            output: SharedMut(output.data_mut()[out_origin..].as_mut_ptr()),
            out_cs: ob.channel_stride(),
            out_ps: ob.plane_stride(),
            out_rs: ob.row_stride(),
            in_h: il.h,
            in_w: il.w,
            out_d: ol.d,
            cin: self.cin,
            cout: self.cout,
            weights: self.packed.as_ptr(),
            fused: pw.is_some(),
            extra: parts,
            n_extra: extra.len(),
            k_extra: extra.iter().map(|v| v.view_layout().c).sum(),
            extra_weights: pw.map_or(std::ptr::null(), |p| p.packed.as_ptr()),
            bias: pw.map_or(std::ptr::null(), |p| p.bias.as_ptr()),
            stats: SharedMut(stats.map_or(std::ptr::null_mut(), |s| s.as_mut_ptr())),
        };
        let isa = self.isa.kind();
        (0..il.d).into_par_iter().for_each(|z| {
            // Safety: `run_inner`'s callers checked channel counts (extra parts included)
            // and that the output and the extra parts are exactly twice the input, so every
            // load is inside the input's or a part's interior rows (plus at most one vector
            // of over-read of an input row, covered by the buffer slack) and every store
            // inside the output's interior. Task `z` writes only output planes 2z and 2z+1
            // and their statistics entries. A fused deconvolution has its 1x1 weights and
            // bias, and `stats` has 2 entries per (output channel, output plane). The ISA
            // was proven present when `self.isa` was obtained.
            crate::trace::task(|| unsafe { run_plane(isa, &job, z) })
        });
        Ok(())
    }
}

/// One extra part of a fused 1x1 conv: channel 0 at the interior origin, and strides.
#[derive(Clone, Copy)]
struct Extra {
    data: *const f32,
    cs: usize,
    ps: usize,
    rs: usize,
    channels: usize,
}

struct Job {
    input: *const f32,
    in_cs: usize,
    in_ps: usize,
    in_rs: usize,
    output: SharedMut,
    out_cs: usize,
    out_ps: usize,
    out_rs: usize,
    in_h: usize,
    in_w: usize,
    out_d: usize,
    cin: usize,
    cout: usize,
    weights: *const f32,
    /// A fused deconvolution: the fields below are valid.
    fused: bool,
    extra: [Extra; MAX_EXTRA_PARTS],
    n_extra: usize,
    k_extra: usize,
    extra_weights: *const f32,
    bias: *const f32,
    /// `[co][output plane][sum, sum of squares]`, or null.
    stats: SharedMut<f64>,
}

// Safety: read-only pointers plus an output (and statistics) written at disjoint planes
// per task.
unsafe impl Sync for Job {}

unsafe fn run_plane(isa: Kind, job: &Job, z: usize) {
    match (isa, job.fused) {
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx512, false) => plane_avx512::<false>(job, z),
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx512, true) => plane_avx512::<true>(job, z),
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx2, false) => plane_avx2::<false>(job, z),
        #[cfg(target_arch = "x86_64")]
        (Kind::Avx2, true) => plane_avx2::<true>(job, z),
        (_, false) => plane_body::<Portable, 4, false>(Portable, job, z),
        (_, true) => plane_body::<Portable, 4, true>(Portable, job, z),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512<const FUSED: bool>(job: &Job, z: usize) {
    plane_body::<Avx512, 8, FUSED>(Avx512, job, z)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2<const FUSED: bool>(job: &Job, z: usize) {
    plane_body::<Avx2, 4, FUSED>(Avx2, job, z)
}

/// Input plane `z` into output planes `2z` and `2z + 1`; `FUSED` adds the extra parts'
/// 1x1 conv, the bias and the statistics (see the module note). Output row by output row
/// (`y`, then `(a, b)`), all channels of a row before the next: the fused kernel reads
/// the extra parts' rows and writes the output's, one stream per channel, and more
/// streams at once than that (the four rows of a `(a, b)` block) defeat the prefetchers.
#[inline(always)]
unsafe fn plane_body<S: Simd, const OC: usize, const FUSED: bool>(s: S, job: &Job, z: usize) {
    let lanes = S::LANES;
    let n_ob = job.cout.div_ceil(OC);
    // Per (output channel, a): the statistics of output plane 2z + a.
    let mut stats = vec![s.stats_zero(); if FUSED { 2 * job.cout } else { 0 }];
    for y in 0..job.in_h {
        let in_row = job.input.add(z * job.in_ps + y * job.in_rs);
        for ab in 0..4 {
            let (a, b) = (ab / 2, ab % 2);
            let (oz, oy) = (2 * z + a, 2 * y + b);
            let mut x0 = 0;
            while x0 < job.in_w {
                let n = (job.in_w - x0).min(lanes);
                let out_row = job.output.0.add(oz * job.out_ps + oy * job.out_rs + 2 * x0);
                for ob in 0..n_ob {
                    let mut acc = [[s.zero(); 2]; OC];
                    let mut w = job.weights.add((ob * 4 + ab) * job.cin * 2 * OC);
                    for ci in 0..job.cin {
                        let x = s.load(in_row.add(ci * job.in_cs + x0));
                        for c in 0..2 {
                            for (o, acc_o) in acc.iter_mut().enumerate() {
                                acc_o[c] = s.mul_add_bcast(w.add(c * OC + o), x, acc_o[c]);
                            }
                        }
                        w = w.add(2 * OC);
                    }
                    if FUSED {
                        let out = fused_outputs::<S, OC>(s, job, acc, ob, (oz, oy, 2 * x0), n);
                        let (n0, n1) = ((2 * n).min(lanes), (2 * n).saturating_sub(lanes));
                        for (o, out_o) in out.iter().enumerate() {
                            let co = ob * OC + o;
                            if co < job.cout {
                                let p = out_row.add(co * job.out_cs);
                                let st = &mut stats[2 * co + a];
                                s.store_n(p, out_o[0], n0);
                                *st = s.stats_add(*st, out_o[0], n0);
                                if n1 > 0 {
                                    s.store_n(p.add(lanes), out_o[1], n1);
                                    *st = s.stats_add(*st, out_o[1], n1);
                                }
                            }
                        }
                    } else {
                        for (o, acc_o) in acc.iter().enumerate() {
                            let co = ob * OC + o;
                            if co < job.cout {
                                // Interleave c = 0 and c = 1 into the output row.
                                let p = out_row.add(co * job.out_cs);
                                s.store_interleaved(p, acc_o[0], acc_o[1], n);
                            }
                        }
                    }
                }
                x0 += lanes;
            }
        }
    }
    if FUSED && !job.stats.0.is_null() {
        for co in 0..job.cout {
            for a in 0..2 {
                let at = job.stats.0.add(2 * (co * job.out_d + 2 * z + a));
                s.stats_add_to(stats[2 * co + a], at);
            }
        }
    }
}

/// Block `ob`'s accumulators for output row `(oz, oy)`, columns `ox ..` made into the
/// fused layer's output, in output order: interleaved, plus the 1x1 conv of the extra
/// parts at those voxels, plus the bias. `n` input columns are valid (`2 n` outputs).
#[inline(always)]
unsafe fn fused_outputs<S: Simd, const OC: usize>(
    s: S,
    job: &Job,
    acc: [[S::V; 2]; OC],
    ob: usize,
    (oz, oy, ox): (usize, usize, usize),
    n: usize,
) -> [[S::V; 2]; OC] {
    let lanes = S::LANES;
    let (n0, n1) = ((2 * n).min(lanes), (2 * n).saturating_sub(lanes));
    let mut out = acc;
    for (o, out_o) in out.iter_mut().enumerate() {
        let (first, second) = s.interleave(out_o[0], out_o[1]);
        let bias = s.splat(*job.bias.add(ob * OC + o));
        *out_o = [s.add(first, bias), s.add(second, bias)];
    }
    let mut w = job.extra_weights.add(ob * job.k_extra * OC);
    for part in &job.extra[..job.n_extra] {
        let row = part.data.add(oz * part.ps + oy * part.rs + ox);
        for k in 0..part.channels {
            let p = row.add(k * part.cs);
            let v0 = s.load_n(p, n0);
            let v1 = if n1 > 0 {
                s.load_n(p.add(lanes), n1)
            } else {
                s.zero()
            };
            for (o, out_o) in out.iter_mut().enumerate() {
                out_o[0] = s.mul_add_bcast(w.add(o), v0, out_o[0]);
                out_o[1] = s.mul_add_bcast(w.add(o), v1, out_o[1]);
            }
            w = w.add(OC);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Layout, Tensor};

    /// The per-(channel, plane) partial sums land on their own plane: each equals the sum
    /// of what was written to that output plane (the statistics' total cannot tell).
    #[test]
    fn statistics_partials_are_per_output_plane() {
        let (cin, cup, cout, (d, h, w)) = (3, 4, 5, (3, 2, 9));
        let seeded = |n: usize, k: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + k * 104729) % 1000) as f32 * 1e-3 - 0.5)
                .collect()
        };
        let (up_w, pw, bias) = (
            seeded(cin * cup * 8, 1),
            seeded(cout * (cup + 2), 2),
            seeded(cout, 3),
        );
        let x: Vec<f32> = seeded(cin * d * h * w, 4)
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i / (h * w)) as f32)
            .collect();
        let skip = seeded(2 * 8 * d * h * w, 5);
        for isa in Isa::available() {
            let fused =
                Deconv3d::fused_pointwise(isa, (cin, cup, &up_w), &[2], &pw, &bias).unwrap();
            let input = Tensor::from_dense(Layout::new(cin, d, h, w, 0), &x).unwrap();
            let ol = Layout::new(cout, 2 * d, 2 * h, 2 * w, 0);
            let part = Tensor::from_dense(ol.with(2, 0), &skip).unwrap();
            let mut out = Tensor::zeros(ol);
            let mut partial = vec![0.0f64; 2 * cout * ol.d];
            fused
                .run_inner(
                    &input.view(),
                    &[part.view()],
                    &mut out.view_mut(),
                    Some(&mut partial),
                )
                .unwrap();
            let dense = out.to_dense();
            let plane = ol.h * ol.w;
            for c in 0..cout {
                for z in 0..ol.d {
                    let vals = &dense[(c * ol.d + z) * plane..][..plane];
                    let sum: f64 = vals.iter().map(|&v| v as f64).sum();
                    let sq: f64 = vals.iter().map(|&v| v as f64 * v as f64).sum();
                    let (got_s, got_q) =
                        (partial[2 * (c * ol.d + z)], partial[2 * (c * ol.d + z) + 1]);
                    assert!(
                        (got_s - sum).abs() <= 1e-9 * sq.sqrt() * plane as f64
                            && (got_q - sq).abs() <= 1e-9 * sq,
                        "{}: channel {c} plane {z}: ({got_s}, {got_q}) vs ({sum}, {sq})",
                        isa.name()
                    );
                }
            }
        }
    }
}
