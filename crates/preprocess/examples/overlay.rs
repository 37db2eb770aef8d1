//! Render the overlay montage of an existing label map over a case's FLAIR:
//! `cargo run --release -p brats-preprocess --example overlay -- CASE_DIR LABELS.nii.gz brats2018 OUT.png`
use std::path::Path;

use brats_preprocess::dice::read_label_file;
use brats_preprocess::overlay::write_overlay;
use brats_preprocess::{Case, LabelConvention, LabelMap, Modality};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: overlay CASE_DIR LABELS CONVENTION OUT.png");
        std::process::exit(2);
    }
    let run = || -> brats_preprocess::Result<Vec<usize>> {
        let case = Case::from_dir(Path::new(&args[1]))?;
        let labels = read_label_file(Path::new(&args[2]), LabelConvention::parse(&args[3])?)?;
        let map = LabelMap {
            dims: labels.dims,
            classes: labels.classes,
        };
        write_overlay(Path::new(&args[4]), &map, case.volume(Modality::Flair))
    };
    match run() {
        Ok(slices) => println!("wrote {} (axial slices {slices:?})", args[4]),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
