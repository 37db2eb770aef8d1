//! Weights of brain-tumor-segmentation-0001: the parameter table of the topology, the
//! engine's own memory-mapped weight-file format, MXNet's `.params` container (reader
//! and byte-exact writer), and the seeded synthetic weights used by the golden tests.
//!
//! Shape of the module, one concern per file:
//! - [`table`]: names, shapes and kinds of the 225 tensors, and naming helpers the
//!   forward pass uses to look tensors up.
//! - [`format`]: the engine format (`weights/FORMAT.md`): [`WeightFile`] maps a file,
//!   validates its header and table before touching any tensor, verifies checksums, and
//!   hands out `&[f32]` views without copying; [`write_weight_file`] writes one.
//! - [`params`]: MXNet's NDArray-list `.params` files, checked against the table.
//! - [`synth`]: the synthetic weights (same spec as `tools/reference/synth.py`).
//! - [`source`]: the [`WeightSource`] trait the forward pass reads through, for the
//!   mapped file and for the in-memory [`WeightSet`] (synthetic weights in tests).
//! - [`npy`]: a small `.npy` float32 reader for the reference fixtures.
//! - `atomic`: writers go to a temporary file beside the target, then rename, so a
//!   failed run never leaves a partial output.
//!
//! Every error is a [`WeightError`] naming the file, the tensor and the problem.
mod atomic;
pub mod error;
pub mod format;
pub mod npy;
pub mod params;
pub mod source;
pub mod synth;
pub mod table;

pub use error::{Problem, Result, WeightError};
pub use format::{write_weight_file, OpenOptions, TensorInfo, WeightFile};
pub use params::{read_params, read_params_checked, write_params};
pub use source::{WeightSet, WeightSource};
pub use synth::{synth_input, synth_tensor, synth_weights};
pub use table::{
    conv1, param_table, pointwise, pool, rb_conv1, rb_conv2, rb_norm1, rb_norm2, up, Block, Layer,
    Net, ParamKind, ParamSpec, Pointwise, Pool, TopologyMismatch, Up,
};

/// An owned tensor with its name (without `arg:`), shape and row-major f32 data.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// Borrowed view for the writers.
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef {
            name: &self.name,
            shape: &self.shape,
            data: &self.data,
        }
    }
}

/// A borrowed tensor handed to the writers.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl TensorRef<'_> {
    /// Checks that the data length equals the product of the shape.
    pub(crate) fn check(&self) -> Result<()> {
        let numel = self
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        match numel {
            Some(n) if n == self.data.len() => Ok(()),
            _ => Err(WeightError::InvalidInput {
                detail: format!(
                    "tensor '{}': shape {:?} does not match {} data elements",
                    self.name,
                    self.shape,
                    self.data.len()
                ),
            }),
        }
    }
}
