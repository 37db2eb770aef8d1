//! `brats-seg demo`: the whole pipeline with no files at hand. Builds the synthetic
//! phantom case (four NIfTI volumes and its true labels), writes it to `--out`, reads it
//! back like any user case, segments it with the best weights available (the converted
//! official file if present, else synthetic weights with a warning), writes the label map
//! and the overlay, and reports stage times and Dice against the phantom's truth.
use std::path::PathBuf;

use brats_preprocess::dice::{case_dice, REGIONS};
use brats_preprocess::phantom::phantom;
use brats_preprocess::{Case, LabelConvention};

use super::segment::{
    check_outputs, choose_weights, load_model, run_pipeline, warn_synthetic, Stages, WeightChoice,
};

/// Arguments of `brats-seg demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Folder for the phantom case and the results (created if missing).
    #[arg(long, default_value = "brats-seg-demo")]
    pub out: PathBuf,
    /// Seed of the phantom's texture.
    #[arg(long, default_value_t = 2018)]
    pub seed: u64,
    #[command(flatten)]
    pub pipeline: super::segment::PipelineArgs,
}

/// Run `brats-seg demo`.
pub fn run(args: &DemoArgs) -> Result<(), String> {
    super::run::init_threads(args.pipeline.threads)?;
    let convention = LabelConvention::parse(&args.pipeline.labels).map_err(|e| e.to_string())?;
    let case_dir = args.out.join("phantom");
    std::fs::create_dir_all(&case_dir)
        .map_err(|e| format!("{}: cannot create folder: {e}", case_dir.display()))?;
    let labels_out = args.out.join("phantom_pred.nii.gz");
    let mut pipeline = args.pipeline.clone();
    if pipeline.overlay.is_none() {
        pipeline.overlay = Some(args.out.join("phantom_overlay.png"));
    }
    check_outputs(&labels_out, &pipeline)?;
    let choice = choose_weights(&pipeline, true)?;

    let mut stages = Stages::default();
    let generated = stages.run("phantom", || {
        let p = phantom(args.seed);
        let (paths, truth) = p.write(&case_dir, convention).map_err(|e| e.to_string())?;
        Ok((p, paths, truth))
    })?;
    let (p, _, truth_path) = generated;
    println!(
        "phantom case: {} (true labels: {})",
        case_dir.display(),
        truth_path.display()
    );
    let case = stages.run("read", || {
        Case::from_dir(&case_dir).map_err(|e| e.to_string())
    })?;
    println!("{}", case.describe());
    let model = stages.run("weights", || load_model(&choice))?;
    let result = run_pipeline(&case, &model, &pipeline, &labels_out, stages)?;
    let dice = case_dice(&result.labels.classes, &p.truth.classes);
    let parts: Vec<String> = REGIONS
        .iter()
        .zip(dice)
        .map(|(r, d)| format!("{} {d:.3}", r.short_name()))
        .collect();
    println!("Dice against the phantom's truth: {}", parts.join(", "));
    if matches!(choice, WeightChoice::Synthetic) {
        warn_synthetic();
    }
    eprintln!("{}", result.stages.summary());
    Ok(())
}
