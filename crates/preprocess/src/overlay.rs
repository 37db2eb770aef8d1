//! A PNG montage of axial slices with the labels coloured over FLAIR, for a quick look at
//! a segmentation without a viewer.
//!
//! Slices are planes of constant third index `k` (axial for BraTS-like storage), shown
//! with the first index `i` across and the second index `j` down, as stored (for LPS files
//! that is the radiological view: patient's right on the left, anterior at the top).
//! Up to [`MAX_TILES`] slices evenly spread over the tumour's axial extent are shown, or
//! over the brain if there is no tumour. FLAIR is windowed to [0, 99.5th percentile of
//! brain voxels]; labels are blended at 50 %: necrotic core red, edema green, enhancing
//! tumour yellow.
use std::path::Path;

use flate2::Compression;

use crate::error::{Error, Result};
use crate::nifti_write::write_atomically;
use crate::pipeline::LabelMap;
use crate::volume::Volume;

/// Most slices in one montage.
pub const MAX_TILES: usize = 12;
const COLUMNS: usize = 4;
const GAP: usize = 4;

/// RGB colour per network class (index 0 unused).
pub const CLASS_COLOURS: [[u8; 3]; 4] = [[0, 0, 0], [230, 40, 40], [40, 200, 60], [250, 220, 30]];

/// The slice indices (third axis) a montage shows for these labels.
pub fn montage_slices(labels: &LabelMap, flair: &Volume) -> Vec<usize> {
    let [nx, ny, nz] = labels.dims;
    let plane = nx * ny;
    let has = |k: usize, test: &dyn Fn(usize) -> bool| (k * plane..(k + 1) * plane).any(test);
    let tumour: Vec<usize> = (0..nz)
        .filter(|&k| has(k, &|at| labels.classes[at] != 0))
        .collect();
    let range: Vec<usize> = if tumour.is_empty() {
        (0..nz)
            .filter(|&k| has(k, &|at| flair.data()[at] > 0.0))
            .collect()
    } else {
        tumour
    };
    let (first, last) = match (range.first(), range.last()) {
        (Some(&a), Some(&b)) => (a, b),
        _ => (0, nz.saturating_sub(1)),
    };
    let count = MAX_TILES.min(last - first + 1);
    if count <= 1 {
        return vec![(first + last) / 2];
    }
    (0..count)
        .map(|t| first + (t * (last - first) + (count - 1) / 2) / (count - 1))
        .collect()
}

/// Render the montage as RGB8: returns `(width, height, pixels)`.
pub fn render_montage(
    labels: &LabelMap,
    flair: &Volume,
    slices: &[usize],
) -> Result<(usize, usize, Vec<u8>)> {
    if flair.dims() != labels.dims {
        return Err(Error::msg("overlay: FLAIR and label map sizes differ"));
    }
    let [nx, ny, _] = labels.dims;
    let mut brain: Vec<f32> = flair.data().iter().copied().filter(|&v| v > 0.0).collect();
    let top = if brain.is_empty() {
        1.0
    } else {
        let at = ((brain.len() - 1) as f64 * 0.995) as usize;
        let (_, v, _) = brain.select_nth_unstable_by(at, f32::total_cmp);
        v.max(f32::MIN_POSITIVE)
    };
    let columns = COLUMNS.min(slices.len().max(1));
    let rows = slices.len().div_ceil(columns).max(1);
    let width = columns * nx + (columns + 1) * GAP;
    let height = rows * ny + (rows + 1) * GAP;
    let mut pixels = vec![0u8; width * height * 3];
    for (t, &k) in slices.iter().enumerate() {
        let (x0, y0) = (
            GAP + (t % columns) * (nx + GAP),
            GAP + (t / columns) * (ny + GAP),
        );
        for j in 0..ny {
            for i in 0..nx {
                let at = i + nx * (j + ny * k);
                let grey = (flair.data()[at] / top).clamp(0.0, 1.0) * 255.0;
                let mut rgb = [grey; 3];
                let class = labels.classes[at] as usize;
                if class != 0 && class < 4 {
                    for (c, value) in rgb.iter_mut().enumerate() {
                        *value = 0.5 * *value + 0.5 * f32::from(CLASS_COLOURS[class][c]);
                    }
                }
                let p = ((y0 + j) * width + x0 + i) * 3;
                for c in 0..3 {
                    pixels[p + c] = rgb[c].round() as u8;
                }
            }
        }
    }
    Ok((width, height, pixels))
}

/// Write the montage PNG for `labels` over `flair` (atomically); returns the slices shown.
pub fn write_overlay(path: &Path, labels: &LabelMap, flair: &Volume) -> Result<Vec<usize>> {
    let slices = montage_slices(labels, flair);
    let (width, height, pixels) = render_montage(labels, flair, &slices)?;
    write_atomically(path, Compression::none(), |w| {
        let mut encoder = png::Encoder::new(w, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&pixels)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })?;
    Ok(slices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_span_the_tumour_and_colours_blend_over_flair() {
        let dims = [4, 3, 20];
        let mut classes = vec![0u8; 240];
        for k in 5..=15 {
            classes[1 + 4 * (1 + 3 * k)] = 3;
        }
        let labels = LabelMap { dims, classes };
        let flair = Volume::new(dims, vec![100.0; 240]).unwrap();
        let slices = montage_slices(&labels, &flair);
        assert_eq!(slices.first(), Some(&5));
        assert_eq!(slices.last(), Some(&15));
        assert_eq!(slices.len(), 11);
        let (w, h, px) = render_montage(&labels, &flair, &slices[..1]).unwrap();
        assert_eq!((w, h), (4 + 2 * GAP, 3 + 2 * GAP));
        let at = |x: usize, y: usize| &px[(y * w + x) * 3..(y * w + x) * 3 + 3];
        // Plain brain voxel: FLAIR at the window top -> white.
        assert_eq!(at(GAP, GAP), &[255, 255, 255]);
        // Enhancing voxel (1, 1): half white, half yellow.
        assert_eq!(at(GAP + 1, GAP + 1), &[253, 238, 143]);
    }
}
