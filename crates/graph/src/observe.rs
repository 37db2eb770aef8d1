//! Hooks into a forward pass: per-layer timing for `brats-seg profile`, and intermediate
//! tensors for the exactness tests (so a failure says which layer drifted).
//!
//! The forward pass takes an `Option<&mut dyn Observer>`; with `None` each layer costs one
//! branch and no clock read.

use brats_kernels::View;
use std::time::Duration;

/// What kind of layer an event is, for roll-ups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerKind {
    /// 3x3x3 stride-1 convolution.
    Conv3x3,
    /// 3x3x3 stride-2 convolution (the encoder's "pool" layers).
    StridedConv,
    /// 1x1x1 convolution.
    Conv1x1,
    /// Transposed convolution k2 s2, with the decoder's 1x1 conv after it fused in.
    Deconv,
    /// Softmax over channels.
    Softmax,
    /// Average pooling, group max, copies.
    Other,
}

impl LayerKind {
    /// Short label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            LayerKind::Conv3x3 => "conv3x3",
            LayerKind::StridedConv => "conv3x3s2",
            LayerKind::Conv1x1 => "conv1x1",
            LayerKind::Deconv => "deconv+1x1",
            LayerKind::Softmax => "softmax",
            LayerKind::Other => "other",
        }
    }
}

/// One executed layer (or one group's share of a grouped layer run group by group).
#[derive(Clone, Debug)]
pub struct LayerEvent {
    /// Layer name in MODEL.md terms, e.g. `net128.rb1.conv1`.
    pub name: String,
    pub kind: LayerKind,
    /// Output tensor `[C, D, H, W]` of this call.
    pub shape: [usize; 4],
    /// Floating-point operations (2 per multiply-add; 0 for memory-bound layers).
    pub flops: u64,
    /// Bytes read and written by the call (activations and weights, f32).
    pub bytes: u64,
    /// Start, relative to the start of the forward pass.
    pub start: Duration,
    pub duration: Duration,
}

/// Receives events and intermediate tensors from a forward pass.
pub trait Observer {
    /// Called after each layer with its timing. Default: ignore.
    fn layer(&mut self, _event: &LayerEvent) {}
    /// Called with named intermediate tensors: channels `c0 ..` of the tensor `name`
    /// (layers computed group by group report each group's channel range). Default:
    /// ignore.
    fn tensor(&mut self, _name: &str, _c0: usize, _view: &View) {}
    /// Whether [`Observer::tensor`] wants anything (so the pass can skip the calls).
    fn wants_tensors(&self) -> bool {
        false
    }
}
