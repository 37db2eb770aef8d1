//! A 3D scalar volume in NIfTI stored order: the first index `i` varies fastest, so
//! voxel `(i, j, k)` lives at `i + nx * (j + ny * k)`.
//!
//! Kept in file order because that is how NIfTI stores voxels and how label maps are
//! written back; the network's C-order `[D, H, W]` tensor (with `D = i`, `H = j`,
//! `W = k`) is produced only when preprocessing crops and resamples.
use crate::error::{Error, Result};

/// A 3D f32 volume, first index fastest.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    dims: [usize; 3],
    data: Vec<f32>,
}

impl Volume {
    /// Wrap voxels in stored order; the length must match the dimensions.
    pub fn new(dims: [usize; 3], data: Vec<f32>) -> Result<Self> {
        let expected = dims.iter().product::<usize>();
        if data.len() != expected {
            return Err(Error::msg(format!(
                "volume of {}x{}x{} needs {expected} voxels, got {}",
                dims[0],
                dims[1],
                dims[2],
                data.len()
            )));
        }
        Ok(Volume { dims, data })
    }

    /// An all-zero volume.
    pub fn zeros(dims: [usize; 3]) -> Self {
        Volume {
            dims,
            data: vec![0.0; dims.iter().product()],
        }
    }

    /// `[nx, ny, nz]`.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Voxels in stored order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable voxels in stored order.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consume into the voxel vector.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Flat index of voxel `(i, j, k)`.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// Value at `(i, j, k)`.
    #[inline]
    pub fn get(&self, i: usize, j: usize, k: usize) -> f32 {
        self.data[self.index(i, j, k)]
    }
}
