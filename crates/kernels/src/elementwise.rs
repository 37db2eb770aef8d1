//! The memory-bound layers: softmax over channels, average pooling (kernel = stride),
//! the group max of the encoder skips, and element-wise addition.
//!
//! Each is a plain loop over rows, run inside [`vectorized`] so the compiler vectorizes it
//! for the active instruction set, and split over rayon by (channel,) plane. They read and
//! write through views, so a producer can write straight into a channel range of a
//! concatenation buffer or into the interior of a zero-halo conv input.

use crate::isa::vectorized;
use crate::tensor::{Layout, SharedMut, View, ViewMut};
use crate::{Error, Isa};
use rayon::prelude::*;

fn same_shape(what: &str, a: Layout, b: Layout) -> Result<(), Error> {
    if a.c != b.c || !a.same_spatial(&b) {
        return Err(Error::new(format!(
            "{what}: input {a} and output {b} differ in shape"
        )));
    }
    Ok(())
}

/// Mutable row `(c, z, y)` of the interior of a buffer laid out as `layout`.
///
/// # Safety
/// `base` must point at a buffer laid out as `layout` that holds channel `c`, and no
/// other thread may access that row at the same time.
#[inline(always)]
unsafe fn row_mut<'a>(
    base: SharedMut,
    layout: &Layout,
    c: usize,
    z: usize,
    y: usize,
) -> &'a mut [f32] {
    std::slice::from_raw_parts_mut(base.0.add(layout.index(c, z, y, 0)), layout.w)
}

#[inline(always)]
fn row<'a>(data: &'a [f32], layout: &Layout, c: usize, z: usize, y: usize) -> &'a [f32] {
    let at = layout.index(c, z, y, 0);
    &data[at..at + layout.w]
}

/// `exp(x)` for `x <= 0` (the softmax's `x - max`), within 2 ulp, written without
/// branches or calls so the softmax loop vectorizes (libm's `expf` would be one call per
/// voxel and channel). Cephes' single-precision scheme: `x = n ln2 + r`, a degree-6
/// polynomial for `exp(r)`, and `2^n` built in the exponent bits. Below -87 the result
/// is flushed to about 1e-38, which no softmax sum can tell from 0.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer.
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    // `n` as an integer without a float-to-int conversion (Rust's saturating `as` costs
    // a clamp and a NaN test per lane): adding 1.5 * 2^23 left it in the low mantissa
    // bits of `shifted`, in two's complement relative to ROUND's bits.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    y * f32::from_bits(n_int.wrapping_add(127) << 23)
}

/// Softmax over the channel axis, voxel by voxel: `out[c] = exp(x[c] - max) / sum`.
pub fn softmax(isa: Isa, input: &View, output: &mut ViewMut) -> Result<(), Error> {
    let (il, ol) = (input.view_layout(), output.view_layout());
    same_shape("softmax", il, ol)?;
    let (ib, ob, ic0, oc0) = (
        input.buffer_layout(),
        output.buffer_layout(),
        input.c0(),
        output.c0(),
    );
    let src = input.data();
    let dst = SharedMut(output.data_mut().as_mut_ptr());
    let channels = il.c;
    (0..il.d).into_par_iter().for_each(|z| {
        vectorized(
            isa,
            #[inline(always)]
            || {
                let mut exps = vec![0.0f32; channels * il.w];
                for y in 0..il.h {
                    let mut max = row(src, &ib, ic0, z, y).to_vec();
                    for c in 1..channels {
                        for (m, &x) in max.iter_mut().zip(row(src, &ib, ic0 + c, z, y)) {
                            *m = m.max(x);
                        }
                    }
                    let mut sum = vec![0.0f32; il.w];
                    for c in 0..channels {
                        let e = &mut exps[c * il.w..(c + 1) * il.w];
                        for ((e, &x), (&m, s)) in e
                            .iter_mut()
                            .zip(row(src, &ib, ic0 + c, z, y))
                            .zip(max.iter().zip(sum.iter_mut()))
                        {
                            *e = exp_nonpositive(x - m);
                            *s += *e;
                        }
                    }
                    for c in 0..channels {
                        // Safety: the output has the input's shape (checked above); task `z`
                        // writes only plane z.
                        let out = unsafe { row_mut(dst, &ob, oc0 + c, z, y) };
                        for ((o, &e), &s) in out
                            .iter_mut()
                            .zip(&exps[c * il.w..(c + 1) * il.w])
                            .zip(&sum)
                        {
                            *o = e / s;
                        }
                    }
                }
            },
        )
    });
    Ok(())
}

/// Average pooling with kernel = stride = `k` and no padding; input sides must be
/// multiples of `k`.
pub fn avg_pool(isa: Isa, k: usize, input: &View, output: &mut ViewMut) -> Result<(), Error> {
    let (il, ol) = (input.view_layout(), output.view_layout());
    if k == 0 || il.d % k != 0 || il.h % k != 0 || il.w % k != 0 {
        return Err(Error::new(format!(
            "avg pool k{k}: input {il} is not a multiple of {k}"
        )));
    }
    same_shape(
        &format!("avg pool k{k}"),
        Layout::new(il.c, il.d / k, il.h / k, il.w / k, 0),
        ol,
    )?;
    let (ib, ob, ic0, oc0) = (
        input.buffer_layout(),
        output.buffer_layout(),
        input.c0(),
        output.c0(),
    );
    let src = input.data();
    let dst = SharedMut(output.data_mut().as_mut_ptr());
    let inv = 1.0 / (k * k * k) as f32;
    (0..ol.c * ol.d).into_par_iter().for_each(|t| {
        let (c, z) = (t / ol.d, t % ol.d);
        vectorized(
            isa,
            #[inline(always)]
            || {
                let mut acc = vec![0.0f32; il.w];
                for y in 0..ol.h {
                    acc.iter_mut().for_each(|a| *a = 0.0);
                    for dz in 0..k {
                        for dy in 0..k {
                            for (a, &x) in
                                acc.iter_mut()
                                    .zip(row(src, &ib, ic0 + c, z * k + dz, y * k + dy))
                            {
                                *a += x;
                            }
                        }
                    }
                    // Safety: the output is the input shrunk by k (checked above); task
                    // (c, z) writes only that plane.
                    let out = unsafe { row_mut(dst, &ob, oc0 + c, z, y) };
                    for (x, o) in out.iter_mut().enumerate() {
                        *o = acc[x * k..(x + 1) * k].iter().sum::<f32>() * inv;
                    }
                }
            },
        )
    });
    Ok(())
}

/// The group max ("transform_encoders_feature_map"): with `C` input channels in
/// `groups` contiguous groups, `out[c] = max_g in[g * C / groups + c]`.
pub fn group_max(isa: Isa, groups: usize, input: &View, output: &mut ViewMut) -> Result<(), Error> {
    let (il, ol) = (input.view_layout(), output.view_layout());
    if groups == 0 || il.c % groups != 0 {
        return Err(Error::new(format!(
            "group max: {} channels are not divisible by {groups} groups",
            il.c
        )));
    }
    let cg = il.c / groups;
    same_shape("group max", il.with(cg, 0), ol.with(ol.c, 0))?;
    let (ib, ob, ic0, oc0) = (
        input.buffer_layout(),
        output.buffer_layout(),
        input.c0(),
        output.c0(),
    );
    let src = input.data();
    let dst = SharedMut(output.data_mut().as_mut_ptr());
    (0..cg * il.d).into_par_iter().for_each(|t| {
        let (c, z) = (t / il.d, t % il.d);
        vectorized(
            isa,
            #[inline(always)]
            || {
                for y in 0..il.h {
                    // Safety: the output has the input's spatial shape and `cg` channels
                    // (checked above); task (c, z) writes only that plane.
                    let out = unsafe { row_mut(dst, &ob, oc0 + c, z, y) };
                    out.copy_from_slice(row(src, &ib, ic0 + c, z, y));
                    for g in 1..groups {
                        for (o, &x) in out.iter_mut().zip(row(src, &ib, ic0 + g * cg + c, z, y)) {
                            *o = o.max(x);
                        }
                    }
                }
            },
        )
    });
    Ok(())
}

/// `output += input`, element-wise.
pub fn add_assign(isa: Isa, input: &View, output: &mut ViewMut) -> Result<(), Error> {
    binary_assign(isa, "add", input, output, |o, x| o + x)
}

#[inline(always)]
fn binary_assign(
    isa: Isa,
    what: &str,
    input: &View,
    output: &mut ViewMut,
    op: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<(), Error> {
    let (il, ol) = (input.view_layout(), output.view_layout());
    same_shape(what, il, ol)?;
    let (ib, ob, ic0, oc0) = (
        input.buffer_layout(),
        output.buffer_layout(),
        input.c0(),
        output.c0(),
    );
    let src = input.data();
    let dst = SharedMut(output.data_mut().as_mut_ptr());
    (0..il.c * il.d).into_par_iter().for_each(|t| {
        let (c, z) = (t / il.d, t % il.d);
        vectorized(
            isa,
            #[inline(always)]
            || {
                for y in 0..il.h {
                    // Safety: same shapes (checked above); task (c, z) writes only its plane.
                    let out = unsafe { row_mut(dst, &ob, oc0 + c, z, y) };
                    for (o, &x) in out.iter_mut().zip(row(src, &ib, ic0 + c, z, y)) {
                        *o = op(*o, x);
                    }
                }
            },
        )
    });
    Ok(())
}
