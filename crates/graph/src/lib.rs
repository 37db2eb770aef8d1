//! brats-graph: the brain-tumor-segmentation-0001 cascade (three 3D U-Nets) written out
//! layer by layer ([`model`]) over the weights ([`weights`]: the parameter table, the
//! engine's memory-mapped weight format, MXNet `.params`, synthetic weights).
//!
//! [`Model::open`] maps and validates a weight file (structure, checksums, the 225
//! tensors of the topology) and repacks every convolution for the active instruction set
//! (the kernels read weights in `[group][oc block][ci][tap][oc]` order); the map is only
//! read while packing and is released afterwards, so the packed copy is the only one
//! resident. [`Model::forward`] takes `[1, 4, D, H, W]` (sides multiples of 32) and returns
//! the softmax. [`Observer`] reports per-layer timings and intermediate tensors.
//! See `../shared/MODEL.md` for the topology.

pub mod model;
pub mod observe;
pub mod weights;
mod workspace;

pub use model::{GraphError, Model, EPS, SIDE_MULTIPLE};
pub use observe::{LayerEvent, LayerKind, Observer};
