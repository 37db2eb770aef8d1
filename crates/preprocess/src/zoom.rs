//! Linear resampling equal to `scipy.ndimage.zoom(input, zoom, order=1)` on one 3D block.
//!
//! scipy maps output index `o` on an axis to the input coordinate `o * z` with
//! `z = (n_in - 1) / (n_out - 1)` computed first in f64, takes `i0 = floor(c)`, weights
//! `w0 = 1 - t`, `w1 = 1 - w0` (`t = c - i0`), accumulates the eight corner terms
//! `((v * w_d) * w_h) * w_w` in f64 with the last axis varying fastest, and stores the
//! sum as f32. This module does the same arithmetic in the same order, so results agree
//! bit for bit with scipy whenever scipy stays inside the input.
//!
//! The one deliberate difference (see MODEL.md): when `o * z` rounds to just above
//! `n_in - 1` scipy's `mode='constant'` returns 0 for that whole output slice; here the
//! coordinate is clamped to `n_in - 1` (what scipy's `mode='nearest'` does).
use rayon::prelude::*;

/// For one axis: the two source indices and their weights for every output index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tap {
    /// Lower source index.
    pub i0: usize,
    /// Upper source index (clamped to the last index; its weight is then 0).
    pub i1: usize,
    /// Weight of `i0`.
    pub w0: f64,
    /// Weight of `i1`.
    pub w1: f64,
}

/// The taps scipy's order-1 zoom uses along an axis of `n_in` samples resized to `n_out`.
/// An empty input axis has no taps (the resampled block is then all zeros).
pub fn axis_taps(n_in: usize, n_out: usize) -> Vec<Tap> {
    if n_in == 0 {
        return Vec::new();
    }
    // scipy: zoom = (in - 1) / (out - 1), or 1 where out == 1.
    let step = if n_out > 1 {
        (n_in - 1) as f64 / (n_out - 1) as f64
    } else {
        1.0
    };
    let last = (n_in - 1) as f64;
    (0..n_out)
        .map(|o| {
            let coord = (o as f64 * step).min(last);
            let floor = coord.floor();
            let i0 = floor as usize;
            let w0 = 1.0 - (coord - floor);
            let w1 = 1.0 - w0;
            Tap {
                i0,
                i1: (i0 + 1).min(n_in - 1),
                w0,
                w1,
            }
        })
        .collect()
}

/// A 3D block inside a larger buffer: element `(a, b, c)` of the block is
/// `data[offset + a * strides[0] + b * strides[1] + c * strides[2]]`.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    /// The underlying buffer.
    pub data: &'a [f32],
    /// Index of element `(0, 0, 0)`.
    pub offset: usize,
    /// Element strides of the three block axes.
    pub strides: [usize; 3],
    /// Block size along the three axes.
    pub dims: [usize; 3],
}

/// Resample `src` to `out_dims`; the result is C-ordered (last axis fastest). The block
/// must lie inside `src.data` (callers build it from a checked box). A block with an
/// empty axis resamples to zeros.
pub fn zoom_linear(src: Block<'_>, out_dims: [usize; 3]) -> Vec<f32> {
    let taps: [Vec<Tap>; 3] = [
        axis_taps(src.dims[0], out_dims[0]),
        axis_taps(src.dims[1], out_dims[1]),
        axis_taps(src.dims[2], out_dims[2]),
    ];
    let plane = out_dims[1] * out_dims[2];
    let mut out = vec![0.0f32; out_dims[0] * plane];
    if plane == 0 || src.dims.contains(&0) {
        return out;
    }
    out.par_chunks_mut(plane)
        .zip(taps[0].par_iter())
        .for_each(|(slab, ta)| {
            let rows = [
                src.offset + ta.i0 * src.strides[0],
                src.offset + ta.i1 * src.strides[0],
            ];
            let wa = [ta.w0, ta.w1];
            for (b, tb) in taps[1].iter().enumerate() {
                let cols = [tb.i0 * src.strides[1], tb.i1 * src.strides[1]];
                let wb = [tb.w0, tb.w1];
                let line = &mut slab[b * out_dims[2]..(b + 1) * out_dims[2]];
                for (value, tc) in line.iter_mut().zip(&taps[2]) {
                    let deps = [tc.i0 * src.strides[2], tc.i1 * src.strides[2]];
                    let wc = [tc.w0, tc.w1];
                    let mut sum = 0.0f64;
                    for x in 0..2 {
                        for y in 0..2 {
                            let base = rows[x] + cols[y];
                            for z in 0..2 {
                                let v = f64::from(src.data[base + deps[z]]);
                                sum += v * wa[x] * wb[y] * wc[z];
                            }
                        }
                    }
                    *value = sum as f32;
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_copies_the_input() {
        let data: Vec<f32> = (0..24).map(|v| v as f32 * 0.5 - 3.0).collect();
        let block = Block {
            data: &data,
            offset: 0,
            strides: [12, 4, 1],
            dims: [2, 3, 4],
        };
        assert_eq!(zoom_linear(block, [2, 3, 4]), data);
    }

    #[test]
    fn upsampling_a_ramp_interpolates_linearly() {
        // Input 0, 1, 2 along the last axis resized to 5 samples: coordinates 0, .5, 1,
        // 1.5, 2 -> values equal to the coordinates (hand computed).
        let data = [0.0f32, 1.0, 2.0];
        let block = Block {
            data: &data,
            offset: 0,
            strides: [3, 3, 1],
            dims: [1, 1, 3],
        };
        assert_eq!(zoom_linear(block, [1, 1, 5]), vec![0.0, 0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn coordinates_that_round_past_the_end_are_clamped() {
        // 128 -> 175: 174 * (127 / 174) rounds above 127 in f64 (MODEL.md's example).
        let step = 127.0f64 / 174.0;
        assert!(174.0 * step > 127.0);
        let taps = axis_taps(128, 175);
        let last = taps[174];
        assert_eq!((last.i0, last.i1, last.w0, last.w1), (127, 127, 1.0, 0.0));
    }

    #[test]
    fn strided_block_reads_only_inside_the_block() {
        // A 4x4x4 buffer whose inner 2x2x2 block (offset 1,1,1) is resampled to itself.
        let data: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let block = Block {
            data: &data,
            offset: 16 + 4 + 1,
            strides: [16, 4, 1],
            dims: [2, 2, 2],
        };
        assert_eq!(
            zoom_linear(block, [2, 2, 2]),
            vec![21.0, 22.0, 25.0, 26.0, 37.0, 38.0, 41.0, 42.0]
        );
    }
}
