//! Subcommands of `brats-seg`, one module per group; `main.rs` only dispatches.
pub mod bench;
pub mod demo;
pub mod eval;
pub mod infer;
pub mod profile;
pub mod run;
pub mod segment;
pub mod weights;
