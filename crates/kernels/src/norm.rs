//! Instance normalization (MXNet `InstanceNorm`: per channel over all voxels, population
//! variance, affine) with the pre-activation ReLU fused into the write.
//!
//! # Design
//!
//! Statistics are accumulated in f64: MXNet's own f32 reduction drifts by up to 3.6e-3 at
//! 128³, which would swamp the 1e-5 agreement we promise. Each channel's values are
//! shifted by the channel's first voxel before summing `x` and `x²` (so the one-pass
//! variance does not cancel when the mean is large), each plane is summed in eight
//! independent f64 lanes (which the compiler vectorizes), and the per-plane partial sums
//! are added in plane order, so the result does not depend on the thread count.
//!
//! In the network the statistics usually come from the producing convolution instead
//! (`Conv3d::run_with_stats` sums each output tile in f64 while it is still in registers),
//! which saves a full read of the tensor; [`channel_stats`] is the stand-alone version.
//!
//! The normalization is `y = max(0, x * scale + shift)` with
//! `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale` computed in f64 and
//! rounded once ([`affine`]). In the network the convolution that reads a normalized
//! input applies it while staging its input (`Conv3d::run_normalized`, with this module's
//! row arithmetic, so bit-identical); [`instance_norm`] is the stand-alone pass, which
//! writes into another tensor (a zero-halo conv input, say).
//!
//! It runs at about the machine's streaming rate (a 32-channel 128³ norm in 31-37 ms on
//! two threads, ~15 GB/s read + write). Measured and not kept: non-temporal stores for
//! outputs over 32 MB (whole pass unchanged: ratio 1.006 over 6 alternating pairs), and
//! normalizing the residual block's second norm in place (norm2 total 57-68 ms either way).

use crate::isa::vectorized;
use crate::tensor::{SharedMut, View, ViewMut};
use crate::{Error, Isa};
use rayon::prelude::*;

/// Mean and population variance of one channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelStats {
    pub mean: f64,
    pub var: f64,
}

/// The statistics of `channels` channels of `voxels` voxels from per-(channel, plane)
/// partial sums `[c][plane][sum, sum of squares]` over `planes` planes, as the conv and
/// deconv epilogues accumulate them: the planes are added in order, so the result does not
/// depend on how the planes were split into tasks.
pub(crate) fn stats_from_partials(
    partial: &[f64],
    channels: usize,
    planes: usize,
    voxels: usize,
) -> Vec<ChannelStats> {
    let n = voxels as f64;
    partial[..2 * channels * planes]
        .chunks_exact(2 * planes.max(1))
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
        .collect()
}

/// Per-channel mean and population variance of `input`'s interior.
pub fn channel_stats(isa: Isa, input: &View) -> Vec<ChannelStats> {
    let l = input.view_layout();
    let b = input.buffer_layout();
    let data = input.data();
    let c0 = input.c0();
    if l.voxels() == 0 {
        return vec![
            ChannelStats {
                mean: 0.0,
                var: 0.0
            };
            l.c
        ];
    }
    // One task per (channel, plane): (sum, sum of squares) of x - shift.
    let partial: Vec<(f64, f64)> = (0..l.c * l.d)
        .into_par_iter()
        .map(|t| {
            let (c, z) = (t / l.d, t % l.d);
            let shift = data[b.index(c0 + c, 0, 0, 0)] as f64;
            vectorized(
                isa,
                #[inline(always)]
                || {
                    let (mut s, mut q) = ([0.0f64; 8], [0.0f64; 8]);
                    for y in 0..l.h {
                        let at = b.index(c0 + c, z, y, 0);
                        let row = &data[at..at + l.w];
                        let mut chunks = row.chunks_exact(8);
                        for ch in &mut chunks {
                            for i in 0..8 {
                                let v = ch[i] as f64 - shift;
                                s[i] += v;
                                q[i] += v * v;
                            }
                        }
                        for (i, &x) in chunks.remainder().iter().enumerate() {
                            let v = x as f64 - shift;
                            s[i] += v;
                            q[i] += v * v;
                        }
                    }
                    (s.iter().sum::<f64>(), q.iter().sum::<f64>())
                },
            )
        })
        .collect();
    let n = l.voxels() as f64;
    (0..l.c)
        .map(|c| {
            let shift = data[b.index(c0 + c, 0, 0, 0)] as f64;
            let (s, q) = partial[c * l.d..(c + 1) * l.d]
                .iter()
                .fold((0.0, 0.0), |(s, q), &(ps, pq)| (s + ps, q + pq));
            let mean_shifted = s / n;
            ChannelStats {
                mean: shift + mean_shifted,
                var: (q / n - mean_shifted * mean_shifted).max(0.0),
            }
        })
        .collect()
}

/// One channel's instance norm as a single multiply-add: `y = x * scale + shift`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelAffine {
    pub scale: f32,
    pub shift: f32,
}

/// Each channel's [`ChannelAffine`] from its statistics and the norm's `gamma`, `beta`
/// and `eps`: `scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale`, in f64,
/// rounded once.
pub fn affine(
    stats: &[ChannelStats],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> Result<Vec<ChannelAffine>, Error> {
    check_params(stats.len(), gamma, beta, eps)?;
    Ok(stats
        .iter()
        .zip(gamma.iter().zip(beta))
        .map(|(st, (&g, &b))| {
            let scale = g as f64 / (st.var + eps).sqrt();
            ChannelAffine {
                scale: scale as f32,
                shift: (b as f64 - st.mean * scale) as f32,
            }
        })
        .collect())
}

/// One `gamma` and `beta` per channel, a positive `eps`.
fn check_params(channels: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Result<(), Error> {
    if gamma.len() != channels || beta.len() != channels {
        return Err(Error::new(format!(
            "instance norm: {channels} channels but {} gamma and {} beta values",
            gamma.len(),
            beta.len()
        )));
    }
    if eps.is_nan() || eps <= 0.0 {
        return Err(Error::new(format!(
            "instance norm: eps must be positive, got {eps}"
        )));
    }
    Ok(())
}

/// `dst = max(0, src * scale + shift)` (without the max unless `relu`): the one place the
/// normalization's arithmetic is written, shared by [`instance_norm`] and the convolution
/// that normalizes its input as it stages it (`conv`'s input norm), so the two are
/// bit-identical. Inlined into its caller's instruction set, where it vectorizes.
#[inline(always)]
pub(crate) fn normalize_row(src: &[f32], dst: &mut [f32], a: ChannelAffine, relu: bool) {
    if relu {
        for (o, &x) in dst.iter_mut().zip(src) {
            *o = (x * a.scale + a.shift).max(0.0);
        }
    } else {
        for (o, &x) in dst.iter_mut().zip(src) {
            *o = x * a.scale + a.shift;
        }
    }
}

/// Instance normalization with affine `gamma`, `beta`, `eps`, then ReLU if `relu`:
/// reads `input`, writes `output` (same shape, any halo; the halo is not touched).
/// `stats` are `input`'s [`channel_stats`], or computed here when `None`.
#[allow(clippy::too_many_arguments)]
pub fn instance_norm(
    isa: Isa,
    input: &View,
    stats: Option<&[ChannelStats]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu: bool,
    output: &mut ViewMut,
) -> Result<(), Error> {
    let (il, ol) = (input.view_layout(), output.view_layout());
    if il.c != ol.c || !il.same_spatial(&ol) {
        return Err(Error::new(format!(
            "instance norm: input {il} and output {ol} differ"
        )));
    }
    if stats.is_some_and(|s| s.len() != il.c) {
        return Err(Error::new(format!(
            "instance norm: stats for a different channel count than {}",
            il.c
        )));
    }
    check_params(il.c, gamma, beta, eps)?;
    let computed;
    let stats = match stats {
        Some(s) => s,
        None => {
            computed = channel_stats(isa, input);
            &computed
        }
    };
    let affine = affine(stats, gamma, beta, eps)?;
    let (ib, ob) = (input.buffer_layout(), output.buffer_layout());
    let (ic0, oc0) = (input.c0(), output.c0());
    let src = input.data();
    let dst = SharedMut(output.data_mut().as_mut_ptr());
    (0..il.c * il.d).into_par_iter().for_each(|t| {
        let (c, z) = (t / il.d, t % il.d);
        let a = affine[c];
        crate::trace::task(|| {
            vectorized(
                isa,
                #[inline(always)]
                || {
                    for y in 0..il.h {
                        let si = ib.index(ic0 + c, z, y, 0);
                        let di = ob.index(oc0 + c, z, y, 0);
                        let row = &src[si..si + il.w];
                        // Safety: the output view was checked to have the input's shape, so row
                        // (c, z, y) of its interior lies inside its buffer; each task writes only
                        // its own (channel, plane).
                        let out =
                            unsafe { std::slice::from_raw_parts_mut(dst.get().add(di), il.w) };
                        normalize_row(row, out, a, relu);
                    }
                },
            )
        })
    });
    Ok(())
}
