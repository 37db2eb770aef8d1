//! Dice overlap between a predicted and a reference label map, per tumour region, as
//! the BraTS challenge and the OMZ accuracy checker report them.
//!
//! Regions over network classes (1 necrotic/non-enhancing core, 2 edema, 3 enhancing):
//! whole tumour = {1, 2, 3}, tumour core = {1, 3}, enhancing tumour = {3}, and the single
//! classes necrotic core = {1} and edema = {2}. Both empty counts as Dice 1 (nothing to
//! find, nothing found). Label files are decoded with an explicit convention so that
//! enhancing tumour is never confused between BraTS 2018 (4) and BraTS 2023 (3).
use std::path::Path;

use crate::affine::Affine;
use crate::error::{Error, Result};
use crate::labels::LabelConvention;
use crate::nifti_read::read_nifti;

/// The regions reported, in column order.
pub const REGIONS: [Region; 5] = [
    Region::WholeTumour,
    Region::TumourCore,
    Region::Enhancing,
    Region::NecroticCore,
    Region::Edema,
];

/// A tumour region: a set of network classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Classes 1, 2, 3.
    WholeTumour,
    /// Classes 1, 3.
    TumourCore,
    /// Class 3.
    Enhancing,
    /// Class 1.
    NecroticCore,
    /// Class 2.
    Edema,
}

impl Region {
    /// Whether a network class belongs to the region.
    pub fn contains(self, class: u8) -> bool {
        match self {
            Region::WholeTumour => (1..=3).contains(&class),
            Region::TumourCore => class == 1 || class == 3,
            Region::Enhancing => class == 3,
            Region::NecroticCore => class == 1,
            Region::Edema => class == 2,
        }
    }

    /// Short column name.
    pub fn short_name(self) -> &'static str {
        match self {
            Region::WholeTumour => "WT",
            Region::TumourCore => "TC",
            Region::Enhancing => "ET",
            Region::NecroticCore => "NCR",
            Region::Edema => "ED",
        }
    }
}

/// Dice per region for one case, indexed like [`REGIONS`].
pub type CaseDice = [f64; 5];

/// Dice of one region.
pub fn region_dice(pred: &[u8], truth: &[u8], region: Region) -> f64 {
    let (mut both, mut p, mut t) = (0u64, 0u64, 0u64);
    for (&a, &b) in pred.iter().zip(truth) {
        let (x, y) = (region.contains(a), region.contains(b));
        both += u64::from(x && y);
        p += u64::from(x);
        t += u64::from(y);
    }
    if p + t == 0 {
        1.0
    } else {
        2.0 * both as f64 / (p + t) as f64
    }
}

/// Dice of all regions.
pub fn case_dice(pred: &[u8], truth: &[u8]) -> CaseDice {
    REGIONS.map(|r| region_dice(pred, truth, r))
}

/// Mean and median per region over cases.
pub fn mean_and_median(cases: &[CaseDice]) -> (CaseDice, CaseDice) {
    let mut mean = [0.0; 5];
    let mut median = [0.0; 5];
    if cases.is_empty() {
        return (mean, median);
    }
    for r in 0..5 {
        let mut values: Vec<f64> = cases.iter().map(|c| c[r]).collect();
        mean[r] = values.iter().sum::<f64>() / values.len() as f64;
        values.sort_by(f64::total_cmp);
        let n = values.len();
        median[r] = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
    }
    (mean, median)
}

/// A label map read from a file: dims, network classes (stored order) and affine.
#[derive(Debug, Clone)]
pub struct LabelFile {
    /// Spatial dimensions.
    pub dims: [usize; 3],
    /// Network classes 0..=3 per voxel.
    pub classes: Vec<u8>,
    /// Voxel-to-world affine.
    pub affine: Affine,
}

/// Read a label map and decode it with `convention`; values outside the convention are
/// an error naming the file.
pub fn read_label_file(path: &Path, convention: LabelConvention) -> Result<LabelFile> {
    let image = read_nifti(path)?;
    let affine = image.affine;
    let (volume, _, _) = image.into_volume()?;
    let mut classes = Vec::with_capacity(volume.data().len());
    for &v in volume.data() {
        let class = (v.fract() == 0.0 && (0.0..=255.0).contains(&v))
            .then(|| convention.decode(v as u8))
            .flatten()
            .ok_or_else(|| {
                let allowed: Vec<String> = convention.values().iter().map(|x| x.to_string()).collect();
                Error::at(
                    path,
                    format!(
                        "value {v} is not a {convention} label (expected {}); pass the right --labels",
                        allowed.join(", ")
                    ),
                )
            })?;
        classes.push(class);
    }
    Ok(LabelFile {
        dims: volume.dims(),
        classes,
        affine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checkable_dice() {
        // pred: 1 1 2 3 0 ; truth: 1 2 2 0 3
        let pred = [1, 1, 2, 3, 0];
        let truth = [1, 2, 2, 0, 3];
        let d = case_dice(&pred, &truth);
        // WT: pred {0,1,2,3}, truth {0,1,2,4}: overlap 3 -> 6/8.
        assert_eq!(d[0], 0.75);
        // TC: pred {0,1,3}, truth {0,4}: overlap 1 -> 2/5.
        assert_eq!(d[1], 0.4);
        // ET: pred {3}, truth {4}: 0.
        assert_eq!(d[2], 0.0);
        // NCR: pred {0,1}, truth {0}: 2/3.
        assert_eq!(d[3], 2.0 / 3.0);
        // ED: pred {2}, truth {1,2}: 2/3.
        assert_eq!(d[4], 2.0 / 3.0);
    }

    #[test]
    fn empty_versus_empty_is_one_and_empty_versus_some_is_zero() {
        assert_eq!(region_dice(&[0, 2], &[0, 2], Region::Enhancing), 1.0);
        assert_eq!(region_dice(&[0, 3], &[0, 2], Region::Enhancing), 0.0);
    }

    #[test]
    fn median_of_even_count_is_the_midpoint() {
        let cases = [[0.2; 5], [0.4; 5], [0.9; 5], [1.0; 5]];
        let (mean, median) = mean_and_median(&cases);
        assert!((mean[0] - 0.625).abs() < 1e-12);
        assert!((median[0] - 0.65).abs() < 1e-12);
    }
}
