//! Subcommands of `brats-seg`, one module per group; `main.rs` only dispatches.
pub mod eval;
pub mod weights;
