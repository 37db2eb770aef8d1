//! `brats-seg`: the command-line program. Each subcommand lives in its own module under
//! `src/cmd/`; this file only parses arguments and dispatches.
use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(
    name = "brats-seg",
    version,
    about = "Pure-Rust CPU inference for the BraTS 2018 brain-tumour segmentation cascade \
             (OpenVINO OMZ brain-tumor-segmentation-0001)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the instruction set the kernels dispatch to on this machine (honours BRATS_ISA).
    Isa,
    /// Convert MXNet's brain-tumor-segmentation-0001-0000.params to the engine weight format.
    ConvertWeights(cmd::weights::ConvertArgs),
    /// Write seeded synthetic weights (for tests and benchmarks) in the engine format.
    SynthWeights(cmd::weights::SynthArgs),
    /// Check a weight file: structure, checksums and the model's 225 tensors.
    VerifyWeights(cmd::weights::VerifyArgs),
    /// Run the network on a [1, 4, D, H, W] f32 .npy tensor and write the softmax as .npy.
    Infer(cmd::infer::InferArgs),
    /// Time forward passes (one warm-up, then N runs): median/min seconds, GFLOP/s, peak RSS.
    Bench(cmd::bench::BenchArgs),
    /// Per-layer timing of one forward pass against this machine's measured FMA peak.
    Profile(cmd::profile::ProfileArgs),
    /// Dice of predicted label maps against references (files, or folders matched by case).
    Eval(cmd::eval::EvalArgs),
    /// Segment one case: four named modalities in, a BraTS label map out.
    Segment(cmd::segment::SegmentArgs),
    /// Run the whole pipeline on a synthetic phantom case (no files needed).
    Demo(cmd::demo::DemoArgs),
}

fn main() {
    let cli = Cli::parse();
    let result: Result<(), String> = match cli.command {
        Command::Isa => {
            println!("{}", brats_kernels::Isa::active().name());
            Ok(())
        }
        Command::ConvertWeights(a) => cmd::weights::convert(&a),
        Command::SynthWeights(a) => cmd::weights::synth(&a),
        Command::VerifyWeights(a) => cmd::weights::verify(&a),
        Command::Eval(a) => cmd::eval::run(&a),
        Command::Segment(a) => cmd::segment::run(&a),
        Command::Demo(a) => cmd::demo::run(&a),
        Command::Infer(a) => cmd::infer::run(&a),
        Command::Bench(a) => cmd::bench::run(&a),
        Command::Profile(a) => cmd::profile::run(&a),
    };
    if let Err(msg) = result {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
