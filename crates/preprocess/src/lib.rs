//! brats-preprocess: everything around the network for `brats-seg` — NIfTI in and out,
//! the four named modalities of a case, brain-box cropping, z-score normalisation,
//! `scipy.ndimage.zoom(order=1)`-equivalent resampling, label postprocessing, Dice
//! evaluation, PNG overlays and a synthetic phantom case.
//!
//! The rules reproduced here are in `../shared/MODEL.md`; the Python reference that the
//! tests compare against is `tools/reference/preprocess/`. Every failure on user input is
//! an [`Error`] whose text is one line naming the file and the problem.
//!
//! Typical use:
//! ```no_run
//! # fn main() -> Result<(), brats_preprocess::Error> {
//! use brats_preprocess::{Case, preprocess, postprocess, LabelConvention};
//! let case = Case::from_dir(std::path::Path::new("case_dir"))?;
//! let prepared = preprocess(&case)?;              // f32 [1, 4, 128, 128, 128]
//! # let probs = vec![0.25f32; prepared.input.len()];
//! // let probs = model.forward(&prepared.input, [128, 128, 128])?;
//! let labels = postprocess(&probs, &prepared.meta)?;
//! brats_preprocess::write_label_map(
//!     std::path::Path::new("out.nii.gz"), &labels, &case.header, LabelConvention::Brats2018)?;
//! # Ok(()) }
//! ```
pub mod affine;
pub mod case;
pub mod components;
pub mod dice;
pub mod error;
pub mod labels;
pub mod nifti_read;
pub mod nifti_write;
pub mod normalize;
pub mod overlay;
pub mod phantom;
pub mod pipeline;
pub mod volume;
pub mod zoom;

pub use case::{Case, Modality, Source};
pub use components::{remove_small_components, ComponentReport};
pub use error::{Error, Result};
pub use labels::LabelConvention;
pub use nifti_read::{read_header, read_nifti, read_volume, NiftiImage, MAX_VOXELS};
pub use nifti_write::{
    write_label_map, write_nifti_f32, write_nifti_i16, write_nifti_u8, write_probabilities,
};
pub use normalize::BrainBox;
pub use pipeline::{
    average, flip_h, postprocess, preprocess, preprocess_to, probabilities_in_grid, LabelMap,
    PrepMeta, Prepared, NETWORK_SIDE,
};
pub use volume::Volume;
