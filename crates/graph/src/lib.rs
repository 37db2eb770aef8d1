//! brats-graph: the brain-tumor-segmentation-0001 cascade (three 3D U-Nets) written out
//! layer by layer over memory-mapped weights.
//!
//! Filled by the weights and graph issues; see `../shared/MODEL.md` for the topology.

pub mod model;
pub mod observe;
pub mod weights;
mod workspace;

pub use model::{GraphError, Model, EPS, SIDE_MULTIPLE};
pub use observe::{LayerEvent, LayerKind, Observer};
