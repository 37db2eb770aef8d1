//! `brats-seg`: the command-line program. Each subcommand lives in its own module under
//! `src/cmd/`; this file only parses arguments and dispatches.
use clap::{Parser, Subcommand};

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
}

fn main() {
    let cli = Cli::parse();
    let result: Result<(), String> = match cli.command {
        Command::Isa => {
            println!("{}", brats_kernels::Isa::active().name());
            Ok(())
        }
    };
    if let Err(msg) = result {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
