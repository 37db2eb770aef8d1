//! `brats-seg segment`: four named MRI modalities in, a BraTS label map out, with the
//! original pre- and postprocessing around the cascade's forward pass.
//!
//! The pieces live in `brats_preprocess` (reading, checks, preprocessing, postprocessing,
//! writing) and `brats_graph` (the network); this module parses the options, checks that
//! every output can be written *before* the long forward pass, runs the stages in order
//! and reports each stage's time on stderr. `brats-seg demo` reuses [`run_pipeline`].
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use brats_graph::weights::npy::write_npy_f32;
use brats_graph::{LayerEvent, Model, Observer};
use brats_preprocess::overlay::write_overlay;
use brats_preprocess::{
    average, flip_h, postprocess, preprocess_to, probabilities_in_grid, remove_small_components,
    write_label_map, write_probabilities, Case, LabelConvention, LabelMap, Modality, NETWORK_SIDE,
};

/// Where the converted official weights are looked for when `--weights` is not given.
pub const DEFAULT_WEIGHTS: &str = "weights/brain-tumor-segmentation-0001.bin";
/// Seed of the synthetic weights used by `--synthetic-weights`.
pub const SYNTHETIC_SEED: u64 = 1;

/// The inputs: modalities are always named.
#[derive(clap::Args, Debug, Default)]
pub struct InputArgs {
    /// Native T1-weighted volume (.nii/.nii.gz).
    #[arg(long)]
    pub t1: Option<PathBuf>,
    /// T2-weighted volume.
    #[arg(long)]
    pub t2: Option<PathBuf>,
    /// T2-FLAIR volume.
    #[arg(long)]
    pub flair: Option<PathBuf>,
    /// Contrast-enhanced T1 (T1ce, T1gd) volume.
    #[arg(long)]
    pub t1ce: Option<PathBuf>,
    /// A folder with BraTS 2018-2021 (*_t1, *_t2, *_flair, *_t1ce) or BraTS 2023
    /// (*-t1n, *-t2w, *-t2f, *-t1c) file names.
    #[arg(long, conflicts_with_all = ["t1", "t2", "flair", "t1ce", "msd"])]
    pub case: Option<PathBuf>,
    /// A Decathlon 4D volume (modalities along the 4th axis).
    #[arg(long, conflicts_with_all = ["t1", "t2", "flair", "t1ce"])]
    pub msd: Option<PathBuf>,
    /// Order of the modalities in the --msd file (default flair,t1,t1ce,t2).
    #[arg(long, requires = "msd")]
    pub msd_order: Option<String>,
}

impl InputArgs {
    /// Load the case the options describe.
    pub fn load(&self) -> Result<Case, String> {
        if let Some(dir) = &self.case {
            return Case::from_dir(dir).map_err(|e| e.to_string());
        }
        if let Some(file) = &self.msd {
            let order = self
                .msd_order
                .as_deref()
                .map(Modality::parse_order)
                .transpose()
                .map_err(|e| e.to_string())?;
            return Case::from_msd(file, order).map_err(|e| e.to_string());
        }
        let named: Vec<(Modality, PathBuf)> = [
            (Modality::T1, &self.t1),
            (Modality::T2, &self.t2),
            (Modality::Flair, &self.flair),
            (Modality::T1ce, &self.t1ce),
        ]
        .into_iter()
        .filter_map(|(m, p)| p.clone().map(|p| (m, p)))
        .collect();
        if named.is_empty() {
            return Err(
                "no input: give --t1 --t2 --flair --t1ce, or --case DIR, or --msd FILE".into(),
            );
        }
        Case::from_named_files(&named).map_err(|e| e.to_string())
    }
}

/// Options shared by `segment` and `demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct PipelineArgs {
    /// Label values to write: brats2018 (0,1,2,4), brats2023 (0,1,2,3) or msd (1 edema,
    /// 2 non-enhancing, 3 enhancing).
    #[arg(long, default_value = "brats2018")]
    pub labels: String,
    /// Also write the class probabilities as a 4D float32 NIfTI.
    #[arg(long, value_name = "FILE")]
    pub probabilities: Option<PathBuf>,
    /// Average with the prediction on the input flipped along H (as the original
    /// challenge submission did); doubles the forward time.
    #[arg(long)]
    pub tta: bool,
    /// Drop 26-connected tumour components smaller than this fraction of all tumour
    /// voxels (the original used 0.1); 0 keeps everything.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub min_component: f64,
    /// Write a PNG montage of axial slices with the labels over FLAIR.
    #[arg(long, value_name = "FILE.png")]
    pub overlay: Option<PathBuf>,
    /// Write the exact f32 network input [1, 4, 128, 128, 128] as .npy.
    #[arg(long, value_name = "FILE.npy")]
    pub save_input: Option<PathBuf>,
    /// Engine weight file (default: weights/brain-tumor-segmentation-0001.bin if present).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Run with seeded synthetic weights: exercises the pipeline, labels are meaningless.
    #[arg(long, conflicts_with = "weights")]
    pub synthetic_weights: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Side of the network cube (multiple of 32). The model was trained at 128; other
    /// sides are for quick tests only.
    #[arg(long, default_value_t = NETWORK_SIDE, hide = true)]
    pub side: usize,
}

/// Arguments of `brats-seg segment`.
#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Label map to write (.nii or .nii.gz).
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// Per-stage wall-clock times, printed to stderr as they complete.
#[derive(Debug, Default)]
pub struct Stages {
    done: Vec<(&'static str, f64)>,
}

impl Stages {
    /// Time `f` as stage `name`.
    pub fn run<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let start = Instant::now();
        let out = f()?;
        let seconds = start.elapsed().as_secs_f64();
        eprintln!("stage {name:<12} {seconds:>8.2} s");
        self.done.push((name, seconds));
        Ok(out)
    }

    /// One-line summary of all stages.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(n, s)| format!("{n} {s:.2} s"))
            .collect();
        let total: f64 = self.done.iter().map(|(_, s)| s).sum();
        format!("times: {}; total {total:.2} s", parts.join(", "))
    }
}

/// Which weights to use.
pub enum WeightChoice {
    /// A converted weight file.
    File(PathBuf),
    /// Seeded synthetic weights.
    Synthetic,
}

/// `--weights`, else the default file, else `--synthetic-weights` (or, for the demo,
/// synthetic weights as a fallback), else an error that says how to get the weights.
pub fn choose_weights(
    args: &PipelineArgs,
    synthetic_fallback: bool,
) -> Result<WeightChoice, String> {
    if let Some(path) = &args.weights {
        if !path.exists() {
            return Err(format!("{}: weight file does not exist", path.display()));
        }
        return Ok(WeightChoice::File(path.clone()));
    }
    if args.synthetic_weights {
        return Ok(WeightChoice::Synthetic);
    }
    let default = PathBuf::from(DEFAULT_WEIGHTS);
    if default.is_file() {
        return Ok(WeightChoice::File(default));
    }
    if synthetic_fallback {
        return Ok(WeightChoice::Synthetic);
    }
    Err(format!(
        "no weights: {DEFAULT_WEIGHTS} does not exist. Get brain-tumor-segmentation-0001-0000.params with \
         `omz_downloader --name brain-tumor-segmentation-0001`, convert it with \
         `brats-seg convert-weights PARAMS -o {DEFAULT_WEIGHTS}` (see weights/README.md), or pass \
         --weights FILE; --synthetic-weights runs the pipeline with meaningless labels"
    ))
}

/// Load the model for a weight choice, warning loudly for synthetic weights.
pub fn load_model(choice: &WeightChoice) -> Result<Model, String> {
    match choice {
        WeightChoice::File(path) => {
            Model::open(path).map_err(|e| format!("{}: {e}", path.display()))
        }
        WeightChoice::Synthetic => {
            warn_synthetic();
            Model::synthetic(SYNTHETIC_SEED).map_err(|e| e.to_string())
        }
    }
}

/// The warning printed on every run with synthetic weights.
pub fn warn_synthetic() {
    eprintln!(
        "warning: running with SYNTHETIC weights (seed {SYNTHETIC_SEED}): the labels are meaningless; \
         convert the official weights for real segmentations (weights/README.md)"
    );
}

/// Fail early if `path` cannot be written: its folder must exist and it must not be a folder.
pub fn check_writable(path: &Path) -> Result<(), String> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(format!(
            "{}: cannot write: the output folder does not exist",
            path.display()
        ));
    }
    if path.is_dir() {
        return Err(format!(
            "{}: cannot write: it is a directory",
            path.display()
        ));
    }
    let probe = folder.join(format!(".brats-seg-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        format!(
            "{}: cannot write into {}: {e}",
            path.display(),
            folder.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// A text progress bar fed by the forward pass's per-layer FLOPs.
struct Progress {
    total: u64,
    done: u64,
    label: String,
    shown: usize,
}

impl Observer for Progress {
    fn layer(&mut self, event: &LayerEvent) {
        self.done += event.flops;
        let width = 40;
        let filled = ((self.done as f64 / self.total.max(1) as f64) * width as f64)
            .min(width as f64) as usize;
        if filled != self.shown {
            self.shown = filled;
            eprint!(
                "\r{} [{}{}] {:>3}%",
                self.label,
                "#".repeat(filled),
                " ".repeat(width - filled),
                filled * 100 / width
            );
        }
    }
}

fn forward(model: &Model, input: &[f32], side: usize, label: &str) -> Result<Vec<f32>, String> {
    let dims = [side; 3];
    let probs = if std::io::stderr().is_terminal() {
        let mut progress = Progress {
            total: model.flops(dims),
            done: 0,
            label: label.to_string(),
            shown: usize::MAX,
        };
        let out = model.forward_observed(input, dims, Some(&mut progress));
        eprintln!();
        out
    } else {
        model.forward(input, dims)
    };
    probs.map_err(|e| format!("forward pass: {e}"))
}

/// What a pipeline run produced.
pub struct PipelineResult {
    /// The final label map (network classes).
    pub labels: LabelMap,
    /// Stage timings.
    pub stages: Stages,
}

/// Preprocess, run the network, postprocess and write every requested output.
pub fn run_pipeline(
    case: &Case,
    model: &Model,
    args: &PipelineArgs,
    out: &Path,
    mut stages: Stages,
) -> Result<PipelineResult, String> {
    let convention = LabelConvention::parse(&args.labels).map_err(|e| e.to_string())?;
    if !(0.0..1.0).contains(&args.min_component) {
        return Err(format!(
            "--min-component {} must be in [0, 1)",
            args.min_component
        ));
    }
    let side = args.side;
    let prepared = stages.run("preprocess", || {
        preprocess_to(case, side).map_err(|e| e.to_string())
    })?;
    let b = prepared.meta.brain_box;
    eprintln!(
        "brain box [{}:{}, {}:{}, {}:{}] -> {side}^3",
        b.start[0], b.end[0], b.start[1], b.end[1], b.start[2], b.end[2]
    );
    if let Some(path) = &args.save_input {
        write_npy_f32(path, &[1, 4, side, side, side], &prepared.input)
            .map_err(|e| e.to_string())?;
        println!("network input: {}", path.display());
    }
    let probs = stages.run("forward", || {
        if args.tta {
            let plain = forward(model, &prepared.input, side, "forward 1/2")?;
            let flipped = forward(model, &flip_h(&prepared.input, side), side, "forward 2/2")?;
            Ok(average(&plain, &flip_h(&flipped, side)))
        } else {
            forward(model, &prepared.input, side, "forward")
        }
    })?;
    let labels = stages.run("postprocess", || {
        let mut labels = postprocess(&probs, &prepared.meta).map_err(|e| e.to_string())?;
        if args.min_component > 0.0 {
            let report =
                remove_small_components(&mut labels.classes, labels.dims, args.min_component);
            eprintln!(
                "components: {} found, {} removed ({} voxels) below {} of the tumour",
                report.sizes.len(),
                report.removed_components,
                report.removed_voxels,
                args.min_component
            );
        }
        Ok(labels)
    })?;
    stages.run("write", || {
        write_label_map(out, &labels, &case.header, convention).map_err(|e| e.to_string())?;
        if let Some(path) = &args.probabilities {
            let volumes =
                probabilities_in_grid(&probs, &prepared.meta).map_err(|e| e.to_string())?;
            write_probabilities(path, &volumes, &case.header).map_err(|e| e.to_string())?;
        }
        if let Some(path) = &args.overlay {
            let slices = write_overlay(path, &labels, case.volume(Modality::Flair))
                .map_err(|e| e.to_string())?;
            println!("overlay: {} (axial slices {slices:?})", path.display());
        }
        Ok(())
    })?;
    let voxel_ml: f64 = case.header.pixdim[1..4]
        .iter()
        .map(|&v| f64::from(v.abs()))
        .product::<f64>()
        / 1000.0;
    let count = |c: u8| labels.classes.iter().filter(|&&x| x == c).count();
    println!(
        "labels: {} ({convention}); necrotic/non-enhancing core {:.1} ml, edema {:.1} ml, enhancing {:.1} ml",
        out.display(),
        count(1) as f64 * voxel_ml,
        count(2) as f64 * voxel_ml,
        count(3) as f64 * voxel_ml
    );
    if let Some(path) = &args.probabilities {
        println!("probabilities: {}", path.display());
    }
    Ok(PipelineResult { labels, stages })
}

/// Check every output path of a run before any work is done.
pub fn check_outputs(out: &Path, args: &PipelineArgs) -> Result<(), String> {
    for path in [
        Some(out),
        args.probabilities.as_deref(),
        args.overlay.as_deref(),
        args.save_input.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        check_writable(path)?;
    }
    Ok(())
}

/// Run `brats-seg segment`.
pub fn run(args: &SegmentArgs) -> Result<(), String> {
    super::run::init_threads(args.pipeline.threads)?;
    LabelConvention::parse(&args.pipeline.labels).map_err(|e| e.to_string())?;
    check_outputs(&args.out, &args.pipeline)?;
    let choice = choose_weights(&args.pipeline, false)?;
    let mut stages = Stages::default();
    let case = stages.run("read", || args.input.load())?;
    println!("case {}:\n{}", case.name, case.describe());
    let model = stages.run("weights", || load_model(&choice))?;
    let result = run_pipeline(&case, &model, &args.pipeline, &args.out, stages)?;
    if matches!(choice, WeightChoice::Synthetic) {
        warn_synthetic();
    }
    eprintln!("{}", result.stages.summary());
    Ok(())
}
