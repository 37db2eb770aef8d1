//! A synthetic brain-tumour phantom: four co-registered MRI-like volumes (T1, T2, FLAIR,
//! T1ce) with a brain-shaped ellipsoid, grey and white matter, ventricles, a CSF rim and a
//! lesion made of a necrotic core, an enhancing rim and an irregular edema halo, plus its
//! ground-truth label map. It lets `brats-seg demo` run the whole pipeline with no data.
//!
//! Tissue contrasts follow the usual appearance (CSF dark on T1 and FLAIR, bright on T2;
//! edema bright on FLAIR; the enhancing rim bright on T1ce). Texture noise comes from a
//! seeded hash, so a phantom is reproducible bit for bit. The geometry is LPS with 1.5 mm
//! voxels, like BraTS files but smaller, so that reading and writing stay fast.
use std::path::{Path, PathBuf};

use nifti::NiftiHeader;

use crate::case::{Case, Modality};
use crate::error::Result;
use crate::labels::{LabelConvention, EDEMA, ENHANCING, NECROTIC_CORE};
use crate::nifti_write::{write_label_map, write_nifti_i16};
use crate::pipeline::LabelMap;
use crate::volume::Volume;

/// Phantom grid size.
pub const PHANTOM_DIMS: [usize; 3] = [120, 144, 104];
const VOXEL_MM: f32 = 1.5;

/// Tissue classes of the phantom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tissue {
    Outside,
    Csf,
    Grey,
    White,
    Edema,
    Enhancing,
    Necrotic,
}

impl Tissue {
    /// Mean intensity per modality in network order (T1, T2, FLAIR, T1ce).
    fn intensity(self) -> [f64; 4] {
        match self {
            Tissue::Outside => [0.0; 4],
            Tissue::Csf => [300.0, 1800.0, 150.0, 320.0],
            Tissue::Grey => [700.0, 1000.0, 700.0, 720.0],
            Tissue::White => [900.0, 700.0, 550.0, 920.0],
            Tissue::Edema => [600.0, 1500.0, 1300.0, 620.0],
            Tissue::Enhancing => [650.0, 1200.0, 1000.0, 1800.0],
            Tissue::Necrotic => [400.0, 1700.0, 600.0, 420.0],
        }
    }

    fn class(self) -> u8 {
        match self {
            Tissue::Edema => EDEMA,
            Tissue::Enhancing => ENHANCING,
            Tissue::Necrotic => NECROTIC_CORE,
            _ => 0,
        }
    }
}

/// A generated phantom case.
#[derive(Debug, Clone)]
pub struct Phantom {
    /// The four volumes as int16 voxels, network order, stored order.
    pub volumes: [Vec<i16>; 4],
    /// Ground-truth labels (network classes).
    pub truth: LabelMap,
    /// Header carrying the LPS geometry.
    pub header: NiftiHeader,
}

/// Uniform in [-1, 1) from a seed and an index (splitmix64).
fn noise(seed: u64, index: u64) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// The phantom's header: LPS, 1.5 mm, qform and sform both set.
pub fn phantom_header() -> NiftiHeader {
    let [nx, ny, _] = PHANTOM_DIMS;
    let x0 = (nx as f32 - 1.0) * VOXEL_MM / 2.0;
    let y0 = (ny as f32 - 1.0) * VOXEL_MM / 2.0;
    let z0 = -60.0;
    let mut h = NiftiHeader {
        pixdim: [1.0, VOXEL_MM, VOXEL_MM, VOXEL_MM, 0.0, 0.0, 0.0, 0.0],
        qform_code: 1,
        sform_code: 1,
        quatern_b: 0.0,
        quatern_c: 0.0,
        quatern_d: 1.0,
        quatern_x: x0,
        quatern_y: y0,
        quatern_z: z0,
        srow_x: [-VOXEL_MM, 0.0, 0.0, x0],
        srow_y: [0.0, -VOXEL_MM, 0.0, y0],
        srow_z: [0.0, 0.0, VOXEL_MM, z0],
        xyzt_units: 2,
        datatype: 4,
        bitpix: 16,
        magic: *b"n+1\0",
        ..NiftiHeader::default()
    };
    h.dim = [3, 1, 1, 1, 1, 1, 1, 1];
    for (slot, &d) in h.dim[1..4].iter_mut().zip(&PHANTOM_DIMS) {
        *slot = d as u16;
    }
    let text = b"brats-seg synthetic phantom";
    h.descrip = vec![0; 80];
    h.descrip[..text.len()].copy_from_slice(text);
    h
}

fn tissue_at(i: usize, j: usize, k: usize, seed: u64) -> Tissue {
    let [nx, ny, nz] = PHANTOM_DIMS;
    let (cx, cy, cz) = (nx as f64 / 2.0, ny as f64 / 2.0, nz as f64 / 2.0);
    let u = (i as f64 - cx) / (0.40 * nx as f64);
    let v = (j as f64 - cy) / (0.44 * ny as f64);
    let w = (k as f64 - cz) / (0.42 * nz as f64);
    let r = (u * u + v * v + w * w).sqrt();
    // A slightly bumpy outline, like gyri, from a smooth angular pattern.
    let bump = 0.03 * ((7.0 * u).sin() * (5.0 * v).cos() + (6.0 * w).sin());
    if r > 1.0 + bump {
        return Tissue::Outside;
    }
    // Lesion in voxel units, off-centre; its edema edge is made irregular by noise.
    let (lx, ly, lz) = (cx + 0.30 * cx, cy - 0.25 * cy, cz + 0.15 * cz);
    let d = ((i as f64 - lx).powi(2) + (j as f64 - ly).powi(2) + ((k as f64 - lz) * 1.2).powi(2))
        .sqrt();
    let radius = 15.0 * (1.0 + 0.12 * (3.0 * (j as f64 / 9.0).sin() * (k as f64 / 7.0).cos()))
        + 1.5
            * noise(
                seed ^ 0x5eed,
                (i / 3 + 97 * (j / 3) + 9973 * (k / 3)) as u64,
            );
    if d < 0.30 * 15.0 {
        return Tissue::Necrotic;
    }
    if d < 0.50 * 15.0 {
        return Tissue::Enhancing;
    }
    if d < radius {
        return Tissue::Edema;
    }
    let ventricle = |su: f64| {
        let (a, b, c) = ((u - su) / 0.10, (v + 0.05) / 0.22, (w - 0.05) / 0.14);
        a * a + b * b + c * c < 1.0
    };
    if r > 0.92 + bump || ventricle(0.12) || ventricle(-0.12) {
        Tissue::Csf
    } else if r > 0.62 + bump {
        Tissue::Grey
    } else {
        Tissue::White
    }
}

/// Generate the phantom for a seed.
pub fn phantom(seed: u64) -> Phantom {
    let [nx, ny, nz] = PHANTOM_DIMS;
    let n = nx * ny * nz;
    let mut volumes: [Vec<i16>; 4] = Default::default();
    for v in &mut volumes {
        v.reserve(n);
    }
    let mut classes = Vec::with_capacity(n);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let index = (i + nx * (j + ny * k)) as u64;
                let tissue = tissue_at(i, j, k, seed);
                classes.push(tissue.class());
                for (m, volume) in volumes.iter_mut().enumerate() {
                    let mean = tissue.intensity()[m];
                    let value = if mean > 0.0 {
                        let textured = mean * (1.0 + 0.04 * noise(seed + m as u64 + 1, index));
                        textured.round().max(1.0)
                    } else {
                        0.0
                    };
                    volume.push(value as i16);
                }
            }
        }
    }
    Phantom {
        volumes,
        truth: LabelMap {
            dims: PHANTOM_DIMS,
            classes,
        },
        header: phantom_header(),
    }
}

impl Phantom {
    /// The phantom as a [`Case`] (same checks as files), sources labelled `label`.
    pub fn to_case(&self, label: &Path) -> Result<Case> {
        let mut volumes = Vec::with_capacity(4);
        for v in &self.volumes {
            volumes.push(Volume::new(
                PHANTOM_DIMS,
                v.iter().map(|&x| f32::from(x)).collect(),
            )?);
        }
        let volumes: [Volume; 4] = volumes
            .try_into()
            .map_err(|_| crate::error::Error::msg("a phantom has four volumes"))?;
        Case::from_volumes("phantom", volumes, self.header.clone(), label)
    }

    /// Write `phantom_t1.nii.gz`, `_t2`, `_flair`, `_t1ce` (int16) and the truth
    /// `phantom_seg.nii.gz` (uint8, `convention`) into `dir`; returns the modality paths in
    /// network order and the truth path.
    pub fn write(
        &self,
        dir: &Path,
        convention: LabelConvention,
    ) -> Result<(Vec<PathBuf>, PathBuf)> {
        let mut paths = Vec::with_capacity(4);
        for (m, volume) in Modality::NETWORK_ORDER.iter().zip(&self.volumes) {
            let suffix = match m {
                Modality::T1 => "t1",
                Modality::T2 => "t2",
                Modality::Flair => "flair",
                Modality::T1ce => "t1ce",
            };
            let path = dir.join(format!("phantom_{suffix}.nii.gz"));
            write_nifti_i16(&path, &PHANTOM_DIMS, volume, &self.header)?;
            paths.push(path);
        }
        let truth = dir.join("phantom_seg.nii.gz");
        write_label_map(&truth, &self.truth, &self.header, convention)?;
        Ok((paths, truth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantom_has_a_brain_and_a_three_part_lesion_and_is_reproducible() {
        let p = phantom(7);
        let count = |c: u8| p.truth.classes.iter().filter(|&&x| x == c).count();
        let (ncr, ed, et) = (count(NECROTIC_CORE), count(EDEMA), count(ENHANCING));
        assert!(
            ncr > 100 && et > ncr && ed > et,
            "ncr {ncr} et {et} ed {ed}"
        );
        let brain = p.volumes[0].iter().filter(|&&v| v > 0).count();
        let total = p.volumes[0].len();
        assert!(
            brain > total / 4 && brain < total * 3 / 4,
            "{brain} of {total}"
        );
        // FLAIR is brighter in edema than in white matter; T1ce brightest in the rim.
        let mean_where = |m: usize, class: u8| {
            let v: Vec<f64> = p.volumes[m]
                .iter()
                .zip(&p.truth.classes)
                .filter(|(_, &c)| c == class)
                .map(|(&x, _)| f64::from(x))
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(mean_where(2, EDEMA) > 1.5 * mean_where(2, 0));
        assert!(mean_where(3, ENHANCING) > 1.5 * mean_where(3, EDEMA));
        assert_eq!(phantom(7).volumes, p.volumes);
        assert_ne!(phantom(8).volumes[0], p.volumes[0]);
    }

    #[test]
    fn phantom_case_preprocesses_and_its_box_covers_the_brain() {
        let p = phantom(3);
        let case = p.to_case(Path::new("phantom")).unwrap();
        assert_eq!(case.sources[0].orientation, "LPS");
        let prepared = crate::pipeline::preprocess_to(&case, 32).unwrap();
        let b = prepared.meta.brain_box;
        for ((&start, &end), &n) in b.start.iter().zip(&b.end).zip(&PHANTOM_DIMS) {
            assert!(start > 0 && end < n);
            assert!(end - start > n * 3 / 4);
        }
        assert!(prepared.input.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
