//! brats-graph: the brain-tumor-segmentation-0001 cascade (three 3D U-Nets) written out
//! layer by layer over memory-mapped weights.
//!
//! Filled by the weights and graph issues; see `../shared/MODEL.md` for the topology.

pub mod weights;
