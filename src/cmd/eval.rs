//! `brats-seg eval`: Dice of predicted label maps against reference label maps, for one
//! pair of files or for two folders matched by case name, per region (whole tumour,
//! tumour core, enhancing tumour, necrotic/non-enhancing core, edema) with mean and
//! median over cases. The arithmetic lives in `brats_preprocess::dice`; this module
//! only finds the files, matches cases and prints the table.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brats_preprocess::affine::{max_affine_difference, AFFINE_TOLERANCE};
use brats_preprocess::dice::{case_dice, mean_and_median, read_label_file, CaseDice, REGIONS};
use brats_preprocess::nifti_read::shape_text;
use brats_preprocess::LabelConvention;

/// Arguments of `brats-seg eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Predicted label map (.nii/.nii.gz), or a folder of them.
    #[arg(long)]
    pub pred: PathBuf,
    /// Reference label map, or a folder of them (matched to predictions by case name).
    #[arg(long)]
    pub truth: PathBuf,
    /// Label convention of both: brats2018 (0,1,2,4), brats2023 (0,1,2,3) or msd.
    #[arg(long, default_value = "brats2018")]
    pub labels: String,
    /// Label convention of the predictions, if it differs from --labels.
    #[arg(long)]
    pub pred_labels: Option<String>,
    /// Label convention of the references, if it differs from --labels.
    #[arg(long)]
    pub truth_labels: Option<String>,
}

/// The case name of a label file: its name without `.nii[.gz]` and without a trailing
/// `_seg`, `-seg`, `_label(s)` or a `-pred…`/`_pred…` part.
pub fn case_key(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))?;
    let lower = stem.to_ascii_lowercase();
    let mut end = stem.len();
    for marker in ["-pred", "_pred"] {
        if let Some(at) = lower.find(marker) {
            end = end.min(at);
        }
    }
    let mut key = &stem[..end];
    for suffix in ["_seg", "-seg", "_labels", "_label", "-labels", "-label"] {
        if key.to_ascii_lowercase().ends_with(suffix) {
            key = &key[..key.len() - suffix.len()];
            break;
        }
    }
    Some(key.to_string())
}

fn label_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: cannot list folder: {e}", dir.display()))?;
    let mut found = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        if let Some(key) = case_key(&path) {
            if let Some(previous) = found.insert(key.clone(), path.clone()) {
                return Err(format!(
                    "{}: two label files for case {key}: {} and {}",
                    dir.display(),
                    previous.display(),
                    path.display()
                ));
            }
        }
    }
    Ok(found)
}

fn evaluate_pair(
    pred: &Path,
    truth: &Path,
    pred_labels: LabelConvention,
    truth_labels: LabelConvention,
) -> Result<CaseDice, String> {
    let p = read_label_file(pred, pred_labels).map_err(|e| e.to_string())?;
    let t = read_label_file(truth, truth_labels).map_err(|e| e.to_string())?;
    if p.dims != t.dims {
        return Err(format!(
            "{}: shape {} differs from the reference {} ({})",
            pred.display(),
            shape_text(&p.dims),
            truth.display(),
            shape_text(&t.dims)
        ));
    }
    let diff = max_affine_difference(&p.affine, &t.affine);
    if diff > AFFINE_TOLERANCE {
        eprintln!(
            "warning: {}: affine differs from {} by {diff:.4}; comparing voxel by voxel anyway",
            pred.display(),
            truth.display()
        );
    }
    Ok(case_dice(&p.classes, &t.classes))
}

fn row(name: &str, values: &CaseDice) -> String {
    let cells: Vec<String> = values.iter().map(|v| format!("{v:>7.4}")).collect();
    format!("{name:<32} {}", cells.join(" "))
}

/// Run `brats-seg eval`.
pub fn run(args: &EvalArgs) -> Result<(), String> {
    let base = LabelConvention::parse(&args.labels).map_err(|e| e.to_string())?;
    let parse = |o: &Option<String>| -> Result<LabelConvention, String> {
        o.as_deref()
            .map(|s| LabelConvention::parse(s).map_err(|e| e.to_string()))
            .unwrap_or(Ok(base))
    };
    let (pred_labels, truth_labels) = (parse(&args.pred_labels)?, parse(&args.truth_labels)?);

    let pairs: Vec<(String, PathBuf, PathBuf)> = match (args.pred.is_dir(), args.truth.is_dir()) {
        (true, true) => {
            let preds = label_files(&args.pred)?;
            let truths = label_files(&args.truth)?;
            if truths.is_empty() {
                return Err(format!(
                    "{}: no .nii/.nii.gz label files",
                    args.truth.display()
                ));
            }
            let mut pairs = Vec::new();
            for (key, truth) in &truths {
                let pred = preds.get(key).ok_or_else(|| {
                    format!(
                        "{}: no prediction for case {key} (reference {})",
                        args.pred.display(),
                        truth.display()
                    )
                })?;
                pairs.push((key.clone(), pred.clone(), truth.clone()));
            }
            let extra = preds.keys().filter(|k| !truths.contains_key(*k)).count();
            if extra > 0 {
                eprintln!("note: {extra} predictions have no reference and are ignored");
            }
            pairs
        }
        (false, false) => {
            for p in [&args.pred, &args.truth] {
                if !p.exists() {
                    return Err(format!("{}: file does not exist", p.display()));
                }
            }
            let name = case_key(&args.truth).unwrap_or_else(|| "case".to_string());
            vec![(name, args.pred.clone(), args.truth.clone())]
        }
        _ => {
            return Err(format!(
                "--pred {} and --truth {} must both be files or both be folders",
                args.pred.display(),
                args.truth.display()
            ))
        }
    };

    println!("labels: predictions {pred_labels}, references {truth_labels}");
    let header: Vec<String> = REGIONS
        .iter()
        .map(|r| format!("{:>7}", r.short_name()))
        .collect();
    println!("{:<32} {}", "case", header.join(" "));
    let mut scores = Vec::with_capacity(pairs.len());
    for (name, pred, truth) in &pairs {
        let dice = evaluate_pair(pred, truth, pred_labels, truth_labels)?;
        println!("{}", row(name, &dice));
        scores.push(dice);
    }
    let (mean, median) = mean_and_median(&scores);
    let plural = if scores.len() == 1 { "" } else { "s" };
    println!(
        "{}",
        row(&format!("mean ({} case{plural})", scores.len()), &mean)
    );
    println!("{}", row("median", &median));
    println!(
        "WT whole tumour (1,2,3), TC tumour core (1,3), ET enhancing (3), NCR necrotic/non-enhancing \
         core (1), ED edema (2), in network classes; empty vs empty = 1. The OMZ accuracy checker's \
         overall/necrotic/edema/enhancing are WT/NCR/ED/ET (it scores empty vs empty as 0)."
    );
    Ok(())
}
