//! `convert-weights`, `synth-weights`, `verify-weights`: the weight-file commands.
//!
//! Thin wrappers over `brats_graph::weights`: all checking lives in the library so the
//! forward pass and these commands agree on what a valid file is. Each command returns
//! a one-paragraph error string (the library's messages name file, tensor and problem)
//! and writes its output atomically, so a failure never leaves a partial file.
use std::path::{Path, PathBuf};

use brats_graph::weights::table::SCALAR_COUNT;
use brats_graph::weights::{
    read_params_checked, synth_weights, write_weight_file, NamedTensor, OpenOptions, TensorRef,
    WeightFile,
};
use clap::Args;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// MXNet parameter file, e.g. brain-tumor-segmentation-0001-0000.params
    pub input: PathBuf,
    /// Engine weight file to write
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Seed of the synthetic weights (the reference fixtures use 1)
    #[arg(long)]
    pub seed: u64,
    /// Engine weight file to write
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Engine weight file to check
    pub file: PathBuf,
    /// Only check structure and checksums, not that the tensors are the model's 225
    #[arg(long)]
    pub any_tensors: bool,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn write_and_check(output: &Path, tensors: &[NamedTensor]) -> Result<u64, String> {
    let refs: Vec<TensorRef> = tensors.iter().map(NamedTensor::as_ref).collect();
    write_weight_file(output, &refs).map_err(|e| e.to_string())?;
    // Re-open what was written with every check on: the file on disk is what counts.
    WeightFile::open(output).map_err(|e| format!("written file failed verification: {e}"))?;
    std::fs::metadata(output)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", output.display()))
}

/// `brats-seg convert-weights IN.params -o OUT.bin`
pub fn convert(args: &ConvertArgs) -> Result<(), String> {
    if same_file(&args.input, &args.output) {
        return Err(format!(
            "{}: the output would replace the input; choose another -o path",
            args.output.display()
        ));
    }
    let tensors = read_params_checked(&args.input).map_err(|e| e.to_string())?;
    let size = write_and_check(&args.output, &tensors)?;
    println!(
        "converted {} tensors ({} parameters) from {} to {} ({size} bytes)",
        tensors.len(),
        SCALAR_COUNT,
        args.input.display(),
        args.output.display()
    );
    Ok(())
}

/// `brats-seg synth-weights --seed N -o OUT.bin`
pub fn synth(args: &SynthArgs) -> Result<(), String> {
    let tensors = synth_weights(args.seed);
    let size = write_and_check(&args.output, &tensors)?;
    println!(
        "wrote synthetic weights (seed {}, {} tensors) to {} ({size} bytes)",
        args.seed,
        tensors.len(),
        args.output.display()
    );
    Ok(())
}

/// `brats-seg verify-weights FILE`
pub fn verify(args: &VerifyArgs) -> Result<(), String> {
    let opts = OpenOptions {
        verify_checksums: true,
        check_topology: !args.any_tensors,
    };
    let wf = WeightFile::open_with(&args.file, &opts).map_err(|e| e.to_string())?;
    let scalars: u64 = wf.tensors().iter().map(|t| t.nbytes / 4).sum();
    let what = if args.any_tensors {
        "structure and checksums OK"
    } else {
        "structure, checksums and the brain-tumor-segmentation-0001 parameter table OK"
    };
    println!(
        "{}: {} tensors, {scalars} parameters; {what}",
        args.file.display(),
        wf.len()
    );
    Ok(())
}
