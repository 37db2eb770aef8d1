//! The two ends of a segmentation run: a [`Case`] to the network input tensor, and the
//! network's probability tensor back to a label map in the case's voxel grid.
//!
//! Shaped so that wiring a forward pass in between is a few lines:
//! `let prepared = preprocess(&case)?; let probs = model.forward(&prepared.input, ...)?;
//! let labels = postprocess(&probs, &prepared.meta)?;`. Tensors are C-ordered
//! `[channel, D, H, W]` with `D, H, W` = the file's `i, j, k` axes (no reorientation).
use rayon::prelude::*;

use crate::case::{Case, Modality};
use crate::error::{Error, Result};
use crate::normalize::{normalize, BrainBox};
use crate::volume::Volume;
use crate::zoom::{zoom_linear, Block};

/// Side of the cube the network sees.
pub const NETWORK_SIDE: usize = 128;
/// Input channels (modalities) and output channels (classes).
pub const CHANNELS: usize = 4;

/// What postprocessing needs to know about the preprocessing of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepMeta {
    /// Dimensions of the case volumes.
    pub dims: [usize; 3],
    /// The crop that was resampled to the network cube.
    pub brain_box: BrainBox,
    /// Side of the network cube.
    pub side: usize,
}

/// The network input for one case.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// f32 `[1, 4, side, side, side]`, channels T1, T2, FLAIR, T1ce.
    pub input: Vec<f32>,
    /// What postprocessing needs.
    pub meta: PrepMeta,
}

/// Preprocess to the network's 128^3 cube.
pub fn preprocess(case: &Case) -> Result<Prepared> {
    preprocess_to(case, NETWORK_SIDE)
}

/// Preprocess to a cube of any side (tests and small synthetic runs).
pub fn preprocess_to(case: &Case, side: usize) -> Result<Prepared> {
    if side == 0 {
        return Err(Error::msg("the network cube side must be positive"));
    }
    let volumes: Vec<&Volume> = case.volumes.iter().collect();
    let brain_box = BrainBox::from_masks(&volumes)?;
    let normalized: Vec<Result<Volume>> = Modality::NETWORK_ORDER
        .par_iter()
        .map(|&m| {
            normalize(case.volume(m)).map_err(|e| {
                let s = &case.sources[m.channel()];
                Error::at(&s.path, format!("{m}: {e}"))
            })
        })
        .collect();
    let cube = side * side * side;
    let mut input = Vec::with_capacity(CHANNELS * cube);
    for volume in normalized {
        let volume = volume?;
        let [nx, ny, _] = volume.dims();
        let s = brain_box.start;
        let block = Block {
            data: volume.data(),
            offset: s[0] + nx * (s[1] + ny * s[2]),
            strides: [1, nx, nx * ny],
            dims: brain_box.size(),
        };
        input.extend(zoom_linear(block, [side, side, side]));
    }
    Ok(Prepared {
        input,
        meta: PrepMeta {
            dims: case.dims(),
            brain_box,
            side,
        },
    })
}

/// Reverse the H axis (the second spatial axis) of a `[channels, side, side, side]`
/// tensor, as the original test-time augmentation did with `[:, :, :, ::-1, :]`.
pub fn flip_h(tensor: &[f32], side: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; tensor.len()];
    if side == 0 {
        return out;
    }
    let plane = side * side;
    for (src, dst) in tensor.chunks_exact(plane).zip(out.chunks_exact_mut(plane)) {
        for h in 0..side {
            dst[(side - 1 - h) * side..(side - h) * side]
                .copy_from_slice(&src[h * side..(h + 1) * side]);
        }
    }
    out
}

/// `(a + b) / 2` element-wise, in f32 as the original did.
pub fn average(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| (x + y) / 2.0).collect()
}

/// A label volume in the case's grid, stored order, values = network classes 0..=3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    /// Dimensions (same as the case).
    pub dims: [usize; 3],
    /// Network class per voxel, first index fastest.
    pub classes: Vec<u8>,
}

impl PrepMeta {
    /// Check that the metadata describes a real crop: a positive cube side and a
    /// non-empty brain box inside the volume.
    pub fn validate(&self) -> Result<()> {
        let b = &self.brain_box;
        let inside = (0..3).all(|a| b.start[a] < b.end[a] && b.end[a] <= self.dims[a]);
        if self.side == 0 || !inside {
            return Err(Error::msg(format!(
                "invalid preprocessing metadata: box {:?}..{:?} in a {:?} volume, cube side {}",
                b.start, b.end, self.dims, self.side
            )));
        }
        Ok(())
    }
}

fn check_probabilities(probs: &[f32], meta: &PrepMeta) -> Result<()> {
    meta.validate()?;
    let expected = CHANNELS * meta.side.pow(3);
    if probs.len() != expected {
        return Err(Error::msg(format!(
            "probability tensor has {} values, expected 4 x {}^3 = {expected}",
            probs.len(),
            meta.side
        )));
    }
    if let Some(bad) = probs.iter().position(|v| !v.is_finite()) {
        return Err(Error::msg(format!(
            "probability tensor has a non-finite value at index {bad}"
        )));
    }
    Ok(())
}

/// The four probability channels resampled from the cube back to the brain box:
/// `[4, bx, by, bz]`, C-ordered.
pub fn probabilities_in_box(probs: &[f32], meta: &PrepMeta) -> Result<Vec<Vec<f32>>> {
    check_probabilities(probs, meta)?;
    let side = meta.side;
    let cube = side.pow(3);
    let size = meta.brain_box.size();
    Ok((0..CHANNELS)
        .map(|c| {
            let block = Block {
                data: &probs[c * cube..(c + 1) * cube],
                offset: 0,
                strides: [side * side, side, 1],
                dims: [side; 3],
            };
            zoom_linear(block, size)
        })
        .collect())
}

/// Back-resample, paste into the case grid and take the arg-max over classes (the first
/// maximum wins, as numpy's `argmax`); voxels outside the brain box are background.
pub fn postprocess(probs: &[f32], meta: &PrepMeta) -> Result<LabelMap> {
    let boxed = probabilities_in_box(probs, meta)?;
    let [nx, ny, nz] = meta.dims;
    let mut classes = vec![0u8; nx * ny * nz];
    let size = meta.brain_box.size();
    let start = meta.brain_box.start;
    for a in 0..size[0] {
        for b in 0..size[1] {
            for c in 0..size[2] {
                let at = (a * size[1] + b) * size[2] + c;
                let mut best = 0u8;
                let mut best_value = boxed[0][at];
                for (class, channel) in boxed.iter().enumerate().skip(1) {
                    if channel[at] > best_value {
                        best_value = channel[at];
                        best = class as u8;
                    }
                }
                let (i, j, k) = (start[0] + a, start[1] + b, start[2] + c);
                classes[i + nx * (j + ny * k)] = best;
            }
        }
    }
    Ok(LabelMap {
        dims: meta.dims,
        classes,
    })
}

/// The probabilities in the case grid: four volumes in stored order, one per class.
/// Outside the brain box the background probability is 1 and the others 0.
pub fn probabilities_in_grid(probs: &[f32], meta: &PrepMeta) -> Result<Vec<Volume>> {
    let boxed = probabilities_in_box(probs, meta)?;
    let [nx, ny, _] = meta.dims;
    let size = meta.brain_box.size();
    let start = meta.brain_box.start;
    let mut out = Vec::with_capacity(CHANNELS);
    for (class, channel) in boxed.iter().enumerate() {
        let mut volume = Volume::zeros(meta.dims);
        if class == 0 {
            volume.data_mut().fill(1.0);
        }
        let data = volume.data_mut();
        for a in 0..size[0] {
            for b in 0..size[1] {
                for c in 0..size[2] {
                    let (i, j, k) = (start[0] + a, start[1] + b, start[2] + c);
                    data[i + nx * (j + ny * k)] = channel[(a * size[1] + b) * size[2] + c];
                }
            }
        }
        out.push(volume);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_h_reverses_only_the_second_spatial_axis_and_is_an_involution() {
        let side = 3;
        let t: Vec<f32> = (0..2 * 27).map(|v| v as f32).collect();
        let f = flip_h(&t, side);
        // element (c=1, d=2, h=0, w=1) comes from (1, 2, 2, 1)
        assert_eq!(f[27 + 2 * 9 + 1], t[27 + 2 * 9 + 2 * 3 + 1]);
        assert_eq!(flip_h(&f, side), t);
    }

    #[test]
    fn postprocess_pastes_into_the_box_and_leaves_the_rest_background() {
        // Side-2 cube whose class 3 dominates everywhere; box 2x2x2 at (1,1,1) in 4^3.
        let side = 2;
        let mut probs = vec![0.1f32; 4 * 8];
        probs[3 * 8..].fill(0.7);
        let meta = PrepMeta {
            dims: [4, 4, 4],
            brain_box: BrainBox {
                start: [1, 1, 1],
                end: [3, 3, 3],
            },
            side,
        };
        let labels = postprocess(&probs, &meta).unwrap();
        let tumour: usize = labels.classes.iter().filter(|&&c| c == 3).count();
        assert_eq!(tumour, 8);
        assert_eq!(labels.classes[1 + 4 * (1 + 4)], 3);
        assert_eq!(labels.classes[0], 0);
        assert_eq!(labels.classes[3 + 4 * (3 + 4 * 3)], 0);
    }

    #[test]
    fn ties_go_to_the_first_class_and_bad_tensors_are_refused() {
        let meta = PrepMeta {
            dims: [1, 1, 1],
            brain_box: BrainBox {
                start: [0, 0, 0],
                end: [1, 1, 1],
            },
            side: 1,
        };
        let labels = postprocess(&[0.25, 0.25, 0.25, 0.25], &meta).unwrap();
        assert_eq!(labels.classes, vec![0]);
        assert!(postprocess(&[0.25; 3], &meta).is_err());
        assert!(postprocess(&[0.25, f32::NAN, 0.25, 0.25], &meta).is_err());
        let outside = PrepMeta {
            brain_box: BrainBox {
                start: [0, 0, 0],
                end: [2, 1, 1],
            },
            ..meta
        };
        assert!(postprocess(&[0.25; 4], &outside).is_err());
        let no_side = PrepMeta { side: 0, ..meta };
        assert!(postprocess(&[], &no_side).is_err());
    }
}
