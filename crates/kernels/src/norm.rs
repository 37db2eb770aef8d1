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
//! The normalization itself is one pass: `y = max(0, x * scale + shift)` with
//! `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale` computed in f64
//! and rounded once; it reads a halo-free conv output and writes straight into the
//! zero-halo input buffer of the next convolution.

use crate::isa::{vectorized, Kind};
#[cfg(target_arch = "x86_64")]
use crate::simd::{Avx2, Avx512};
use crate::simd::{Portable, Simd};
use crate::tensor::{SharedMut, View, ViewMut};
use crate::{Error, Isa};
use rayon::prelude::*;

/// Mean and population variance of one channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelStats {
    pub mean: f64,
    pub var: f64,
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
    if gamma.len() != il.c || beta.len() != il.c {
        return Err(Error::new(format!(
            "instance norm: {} channels but {} gamma and {} beta values",
            il.c,
            gamma.len(),
            beta.len()
        )));
    }
    if stats.is_some_and(|s| s.len() != il.c) {
        return Err(Error::new(format!(
            "instance norm: stats for a different channel count than {}",
            il.c
        )));
    }
    if eps.is_nan() || eps <= 0.0 {
        return Err(Error::new(format!(
            "instance norm: eps must be positive, got {eps}"
        )));
    }
    let computed;
    let stats = match stats {
        Some(s) => s,
        None => {
            computed = channel_stats(isa, input);
            &computed
        }
    };
    let affine: Vec<(f32, f32)> = stats
        .iter()
        .zip(gamma.iter().zip(beta))
        .map(|(st, (&g, &b))| {
            let scale = g as f64 / (st.var + eps).sqrt();
            (scale as f32, (b as f64 - st.mean * scale) as f32)
        })
        .collect();
    let (ib, ob) = (input.buffer_layout(), output.buffer_layout());
    let (ic0, oc0) = (input.c0(), output.c0());
    let src = input.data();
    let dst = SharedMut(output.data_mut().as_mut_ptr());
    let stream = streams(ol.len() * 4);
    let kind = isa.kind();
    (0..il.c * il.d).into_par_iter().for_each(|t| {
        let (c, z) = (t / il.d, t % il.d);
        let (scale, shift) = affine[c];
        let plane = Plane {
            src: src[ib.index(ic0 + c, z, 0, 0)..].as_ptr(),
            src_rs: ib.row_stride(),
            // Safety (of the pointer arithmetic): the output view was checked to have the
            // input's shape, so plane (c, z) of its interior lies inside its buffer.
            dst: unsafe { dst.get().add(ob.index(oc0 + c, z, 0, 0)) },
            dst_rs: ob.row_stride(),
            h: il.h,
            w: il.w,
            scale,
            shift,
            relu,
            stream,
        };
        // Safety: the plane's rows lie inside both buffers (shapes checked above); each
        // task writes only its own (channel, plane) of the output. The ISA was proven
        // present when `isa` was obtained.
        crate::trace::task(|| unsafe { normalize_plane(kind, &plane) })
    });
    Ok(())
}

/// Outputs larger than this are written with non-temporal stores: they exceed the caches
/// anyway, and streaming them saves the read-for-ownership of every output line (the
/// normalization moves 3 instead of 2 bytes per byte of output otherwise).
const STREAM_MIN_BYTES: usize = 32 << 20;

fn streams(bytes: usize) -> bool {
    match std::env::var("BRATS_NT") {
        Ok(v) => v == "1",
        Err(_) => bytes >= STREAM_MIN_BYTES,
    }
}

/// One (channel, plane) of [`instance_norm`], as raw pointers.
struct Plane {
    src: *const f32,
    src_rs: usize,
    dst: *mut f32,
    dst_rs: usize,
    h: usize,
    w: usize,
    scale: f32,
    shift: f32,
    relu: bool,
    stream: bool,
}

/// # Safety
/// The plane's `h` rows of `w` values must be readable at `src` and writable at `dst`
/// (row strides as given), and `isa` present.
unsafe fn normalize_plane(isa: Kind, p: &Plane) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 => plane_avx512(p),
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => plane_avx2(p),
        _ => plane_body(Portable, p),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512(p: &Plane) {
    plane_body(Avx512, p)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(p: &Plane) {
    plane_body(Avx2, p)
}

/// `y = x * scale + shift` (a separate multiply and add, as the scalar form rounds),
/// then `max(y, 0)` for ReLU; vectors in the middle of each row, scalars at its ends
/// (up to the first aligned output vector when streaming).
#[inline(always)]
unsafe fn plane_body<S: Simd>(s: S, p: &Plane) {
    let lanes = S::LANES;
    let (scale, shift, zero) = (s.splat(p.scale), s.splat(p.shift), s.zero());
    let one = |x: f32| {
        let y = x * p.scale + p.shift;
        if p.relu {
            y.max(0.0)
        } else {
            y
        }
    };
    for y in 0..p.h {
        let src = p.src.add(y * p.src_rs);
        let dst = p.dst.add(y * p.dst_rs);
        let head = if p.stream {
            let misaligned = (dst as usize / 4) % lanes;
            ((lanes - misaligned) % lanes).min(p.w)
        } else {
            0
        };
        for i in 0..head {
            *dst.add(i) = one(*src.add(i));
        }
        let mut i = head;
        while i + lanes <= p.w {
            let mut v = s.add(s.mul(s.load(src.add(i)), scale), shift);
            if p.relu {
                v = s.max(v, zero);
            }
            if p.stream {
                s.stream(dst.add(i), v);
            } else {
                s.store(dst.add(i), v);
            }
            i += lanes;
        }
        for i in i..p.w {
            *dst.add(i) = one(*src.add(i));
        }
    }
    if p.stream {
        s.stream_fence();
    }
}
