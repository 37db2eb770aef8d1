//! brats-kernels: the layers of the brain-tumor-segmentation-0001 cascade as hand-written,
//! blocked, vectorized f32 kernels with run-time instruction-set dispatch.
//!
//! - [`conv`]: direct 3x3x3 (stride 1 and 2) and 1x1x1 grouped convolution, the 99 % of
//!   the network's FLOPs; [`deconv`]: transposed convolution kernel 2 stride 2.
//! - [`norm`]: instance normalization (statistics in f64) with fused ReLU;
//!   [`elementwise`]: softmax over channels, average pooling, the group max, addition.
//! - [`tensor`]: the NCDHW activation layout with a zero halo, and channel-range views.
//! - [`isa`]: which instruction set runs (`BRATS_ISA=avx512|avx2|portable` restricts it).
//! - [`reference`]: plain scalar float64 versions of every kernel, the oracle of the tests.
//!
//! Every kernel validates shapes and buffer lengths and returns an [`Error`] before any
//! unsafe code runs. Results are bit-identical for any number of threads.

pub mod conv;
pub mod deconv;
pub mod elementwise;
pub mod isa;
pub mod norm;
pub mod peak;
pub mod reference;
mod simd;
pub mod tensor;
pub mod trace;

pub use conv::{Conv3d, ConvSpec, Epilogue};
pub use deconv::Deconv3d;
pub use isa::Isa;
pub use tensor::{Layout, Tensor, View, ViewMut};

/// A kernel refused its arguments (shapes that do not match, wrong buffer lengths, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error(msg.into())
    }
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
