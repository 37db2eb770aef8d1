//! Removal of small tumour islands: 26-connected components of the tumour (any non-zero
//! class, all classes together) smaller than a fraction of all tumour voxels are set to
//! background, as the original challenge submission did with fraction 0.1.
//!
//! A plain flood fill with an explicit stack (no recursion, so no stack overflow on large
//! components) over the label volume in stored order.
use crate::labels::BACKGROUND;

/// Outcome of [`remove_small_components`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReport {
    /// Sizes of all tumour components found, largest first.
    pub sizes: Vec<usize>,
    /// How many components were removed.
    pub removed_components: usize,
    /// How many voxels were set to background.
    pub removed_voxels: usize,
}

/// Label 26-connected components of `classes != 0`; returns a component id per voxel
/// (0 for background, ids from 1) and the size of each component (index id - 1).
pub fn label_components(classes: &[u8], dims: [usize; 3]) -> (Vec<u32>, Vec<usize>) {
    let [nx, ny, nz] = dims;
    let mut ids = vec![0u32; classes.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for seed in 0..classes.len() {
        if classes[seed] == BACKGROUND || ids[seed] != 0 {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        ids[seed] = id;
        stack.push(seed);
        let mut size = 0usize;
        while let Some(at) = stack.pop() {
            size += 1;
            let (i, rest) = (at % nx, at / nx);
            let (j, k) = (rest % ny, rest / ny);
            for dk in -1i64..=1 {
                let kk = k as i64 + dk;
                if kk < 0 || kk >= nz as i64 {
                    continue;
                }
                for dj in -1i64..=1 {
                    let jj = j as i64 + dj;
                    if jj < 0 || jj >= ny as i64 {
                        continue;
                    }
                    for di in -1i64..=1 {
                        let ii = i as i64 + di;
                        if ii < 0 || ii >= nx as i64 {
                            continue;
                        }
                        let n = ii as usize + nx * (jj as usize + ny * kk as usize);
                        if classes[n] != BACKGROUND && ids[n] == 0 {
                            ids[n] = id;
                            stack.push(n);
                        }
                    }
                }
            }
        }
        sizes.push(size);
    }
    (ids, sizes)
}

/// Set to background every tumour component with fewer than `fraction` x (all tumour
/// voxels) voxels. `fraction <= 0` keeps everything.
pub fn remove_small_components(
    classes: &mut [u8],
    dims: [usize; 3],
    fraction: f64,
) -> ComponentReport {
    let (ids, sizes) = label_components(classes, dims);
    let total: usize = sizes.iter().sum();
    let threshold = fraction * total as f64;
    let drop: Vec<bool> = sizes.iter().map(|&s| (s as f64) < threshold).collect();
    let mut removed_voxels = 0;
    for (class, &id) in classes.iter_mut().zip(&ids) {
        if id != 0 && drop[id as usize - 1] {
            *class = BACKGROUND;
            removed_voxels += 1;
        }
    }
    let mut sorted = sizes.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    ComponentReport {
        sizes: sorted,
        removed_components: drop.iter().filter(|&&d| d).count(),
        removed_voxels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &mut [u8], dims: [usize; 3], i: usize, j: usize, k: usize, c: u8) {
        v[i + dims[0] * (j + dims[1] * k)] = c;
    }

    #[test]
    fn diagonal_corner_neighbours_are_connected() {
        let dims = [4, 4, 4];
        let mut v = vec![0u8; 64];
        set(&mut v, dims, 0, 0, 0, 1);
        set(&mut v, dims, 1, 1, 1, 2); // touches (0,0,0) only through a corner
        set(&mut v, dims, 3, 3, 3, 3); // separate: (2,2,2) is empty
        let (_, sizes) = label_components(&v, dims);
        assert_eq!(sizes, vec![2, 1]);
    }

    #[test]
    fn components_below_the_fraction_are_removed() {
        // A 3x3x3 block (27 voxels) and a single voxel: total 28, 10 % = 2.8.
        let dims = [8, 8, 8];
        let mut v = vec![0u8; 512];
        for k in 0..3 {
            for j in 0..3 {
                for i in 0..3 {
                    set(&mut v, dims, i, j, k, 2);
                }
            }
        }
        set(&mut v, dims, 6, 6, 6, 3);
        let report = remove_small_components(&mut v, dims, 0.1);
        assert_eq!(report.sizes, vec![27, 1]);
        assert_eq!(report.removed_components, 1);
        assert_eq!(report.removed_voxels, 1);
        assert_eq!(v.iter().filter(|&&c| c != 0).count(), 27);
        assert_eq!(v[6 + 8 * (6 + 8 * 6)], 0);
    }

    #[test]
    fn zero_fraction_keeps_everything() {
        let dims = [3, 1, 1];
        let mut v = vec![1u8, 0, 1];
        let report = remove_small_components(&mut v, dims, 0.0);
        assert_eq!(report.removed_components, 0);
        assert_eq!(v, vec![1, 0, 1]);
    }
}
