//! Per-modality intensity normalisation and the brain box, as the original training code
//! did them (MODEL.md, preprocessing steps 2 and 3).
//!
//! mask = v > 0; z-score over the mask with the population standard deviation; clip to
//! [-5, 5]; `(z + 5) / 10`; 0 outside the mask. Statistics are accumulated in f64 (the
//! original used numpy's f32 pairwise sums; the difference is far below 1e-6 after
//! rescaling). The brain box is the union of the per-modality mask extents, kept as the
//! half-open range `[min, max)` because the original sliced `[min:max]`, leaving the last
//! non-zero index of each axis out.
use crate::error::{Error, Result};
use crate::volume::Volume;

/// Mean and population standard deviation of the voxels `> 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskStats {
    /// Number of voxels `> 0`.
    pub count: usize,
    /// Their mean.
    pub mean: f64,
    /// Their population standard deviation.
    pub std: f64,
}

/// Statistics over the brain mask, `None` when no voxel is `> 0`.
pub fn mask_stats(volume: &Volume) -> Option<MaskStats> {
    let (mut count, mut sum) = (0usize, 0.0f64);
    for &v in volume.data() {
        if v > 0.0 {
            count += 1;
            sum += f64::from(v);
        }
    }
    if count == 0 {
        return None;
    }
    let mean = sum / count as f64;
    let squares: f64 = volume
        .data()
        .iter()
        .filter(|&&v| v > 0.0)
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum();
    Some(MaskStats {
        count,
        mean,
        std: (squares / count as f64).sqrt(),
    })
}

/// The normalised volume: `(clip((v - mean) / std, -5, 5) + 5) / 10` inside the mask,
/// 0 outside. Fails when the mask is empty or constant (nothing to scale by).
pub fn normalize(volume: &Volume) -> Result<Volume> {
    let stats = mask_stats(volume).ok_or_else(|| Error::msg("no voxel > 0 (empty brain mask)"))?;
    if stats.std <= 0.0 || !stats.std.is_finite() {
        return Err(Error::msg(format!(
            "all {} brain voxels have the same value {}; cannot z-score",
            stats.count, stats.mean
        )));
    }
    let data = volume
        .data()
        .iter()
        .map(|&v| {
            if v > 0.0 {
                let z = ((f64::from(v) - stats.mean) / stats.std).clamp(-5.0, 5.0);
                ((z + 5.0) / 10.0) as f32
            } else {
                0.0
            }
        })
        .collect();
    Volume::new(volume.dims(), data)
}

/// Inclusive `(min, max)` index of the voxels `> 0` along each axis, `None` if there are none.
pub fn mask_extent(volume: &Volume) -> Option<([usize; 3], [usize; 3])> {
    let [nx, ny, nz] = volume.dims();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let data = volume.data();
    for k in 0..nz {
        for j in 0..ny {
            let row = &data[nx * (j + ny * k)..nx * (j + ny * k + 1)];
            let first = match row.iter().position(|&v| v > 0.0) {
                Some(i) => i,
                None => continue,
            };
            let last = row.iter().rposition(|&v| v > 0.0).unwrap_or(first);
            lo[0] = lo[0].min(first);
            hi[0] = hi[0].max(last);
            lo[1] = lo[1].min(j);
            hi[1] = hi[1].max(j);
            lo[2] = lo[2].min(k);
            hi[2] = hi[2].max(k);
        }
    }
    (lo[0] != usize::MAX).then_some((lo, hi))
}

/// The crop the network sees: `start..end` per axis, half-open, in stored index order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrainBox {
    /// First index per axis.
    pub start: [usize; 3],
    /// One past the last index per axis (= the last mask index, as in the original).
    pub end: [usize; 3],
}

impl BrainBox {
    /// Size per axis.
    pub fn size(&self) -> [usize; 3] {
        [
            self.end[0] - self.start[0],
            self.end[1] - self.start[1],
            self.end[2] - self.start[2],
        ]
    }

    /// Union of the mask extents of all volumes, with the original `[min:max]` slicing.
    /// Fails if a volume has no voxel > 0 or the box is empty along an axis.
    pub fn from_masks(volumes: &[&Volume]) -> Result<BrainBox> {
        let mut start = [usize::MAX; 3];
        let mut end = [0usize; 3];
        for volume in volumes {
            let (lo, hi) =
                mask_extent(volume).ok_or_else(|| Error::msg("no voxel > 0 (empty brain mask)"))?;
            for a in 0..3 {
                start[a] = start[a].min(lo[a]);
                end[a] = end[a].max(hi[a]);
            }
        }
        if (0..3).any(|a| end[a] <= start[a]) {
            return Err(Error::msg(format!(
                "the brain box {start:?}..{end:?} is empty along an axis: the brain is one voxel thick"
            )));
        }
        Ok(BrainBox { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_matches_hand_computed_values() {
        // Mask voxels 1, 2, 3, 6: mean 3, population variance (4+1+0+9)/4 = 3.5.
        let v = Volume::new([3, 2, 1], vec![0.0, 1.0, 2.0, 3.0, 6.0, -1.0]).unwrap();
        let out = normalize(&v).unwrap();
        let s = 3.5f64.sqrt();
        let expect = |x: f64| (((x - 3.0) / s + 5.0) / 10.0) as f32;
        assert_eq!(
            out.data(),
            &[0.0, expect(1.0), expect(2.0), expect(3.0), expect(6.0), 0.0]
        );
    }

    #[test]
    fn z_scores_are_clipped_at_five() {
        let mut data = vec![1.0f32; 100];
        data[0] = 1000.0;
        let out = normalize(&Volume::new([100, 1, 1], data).unwrap()).unwrap();
        assert_eq!(out.data()[0], 1.0);
    }

    #[test]
    fn constant_and_empty_masks_are_refused() {
        let empty = Volume::zeros([2, 2, 2]);
        assert!(normalize(&empty)
            .unwrap_err()
            .message()
            .contains("empty brain mask"));
        let flat = Volume::new([2, 1, 1], vec![5.0, 5.0]).unwrap();
        assert!(normalize(&flat)
            .unwrap_err()
            .message()
            .contains("same value"));
    }

    #[test]
    fn brain_box_is_the_union_with_the_original_off_by_one() {
        let mut a = Volume::zeros([6, 6, 6]);
        let i = a.index(1, 2, 3);
        a.data_mut()[i] = 1.0;
        let i = a.index(4, 2, 3);
        a.data_mut()[i] = 1.0;
        let mut b = Volume::zeros([6, 6, 6]);
        let i = b.index(2, 5, 0);
        b.data_mut()[i] = 2.0;
        let bb = BrainBox::from_masks(&[&a, &b]).unwrap();
        assert_eq!(bb.start, [1, 2, 0]);
        assert_eq!(bb.end, [4, 5, 3]);
        assert_eq!(bb.size(), [3, 3, 3]);
    }
}
