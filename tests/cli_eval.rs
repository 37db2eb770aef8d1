//! `brats-seg eval` end to end: the two published predictions of the shared case (Dice
//! cross-checked with numpy, see the constants), folder matching by case name, a
//! synthetic case with hand-checkable Dice, and one-line errors.
use std::path::{Path, PathBuf};
use std::process::Command;

use brats_preprocess::write_nifti_u8;

const CASE: &str = "BraTS-GLI-00001-000";

fn shared(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(CASE)
        .join(format!("{CASE}-{file}"))
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brats-cli-eval-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn eval(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_brats-seg"))
        .arg("eval")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The five numbers of the row starting with `name`.
fn row(stdout: &str, name: &str) -> Vec<f64> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{stdout}"));
    line.split_whitespace()
        .rev()
        .take(5)
        .map(|v| v.parse().unwrap())
        .collect::<Vec<f64>>()
        .into_iter()
        .rev()
        .collect()
}

/// Dice of BraTS23_1 vs isen20 computed with numpy in
/// `tools/reference/preprocess/.venv` (2 |A∩B| / (|A| + |B|) over np.isin masks after
/// mapping isen20's 4 to 3): WT, TC, ET, NCR, ED.
const NUMPY_DICE: [f64; 5] = [
    0.9601192724700814,
    0.9823597242326848,
    0.9410632246773135,
    0.954982126899017,
    0.9363390786737109,
];

fn assert_close(got: &[f64], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 5e-5, "got {got:?}, want {want:?}");
    }
}

#[test]
fn shared_case_predictions_agree_as_computed_by_numpy() {
    let pred = shared("pred-BraTS23_1.nii.gz");
    let truth = shared("pred-isen20.nii.gz");
    let (ok, stdout, stderr) = eval(&[
        "--pred",
        pred.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--pred-labels",
        "brats2023",
        "--truth-labels",
        "brats2018",
    ]);
    assert!(ok, "{stderr}");
    assert_close(&row(&stdout, CASE), &NUMPY_DICE);
    assert_close(&row(&stdout, "mean"), &NUMPY_DICE);
    // Same file against itself: 1 everywhere.
    let (ok, stdout, _) = eval(&[
        "--pred",
        truth.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    assert!(ok);
    assert_close(&row(&stdout, "median"), &[1.0; 5]);
}

#[test]
fn wrong_label_convention_is_a_one_line_error() {
    let pred = shared("pred-BraTS23_1.nii.gz");
    let truth = shared("pred-isen20.nii.gz");
    let (ok, _, stderr) = eval(&[
        "--pred",
        pred.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("pred-BraTS23_1.nii.gz")
            && stderr.contains("value 3 is not a brats2018 label"),
        "{stderr}"
    );
}

#[test]
fn folders_are_matched_by_case_name_with_mean_and_median() {
    let root = scratch("folders");
    let (preds, truths) = (root.join("preds"), root.join("truths"));
    std::fs::create_dir_all(&preds).unwrap();
    std::fs::create_dir_all(&truths).unwrap();
    std::fs::copy(
        shared("pred-BraTS23_1.nii.gz"),
        preds.join(format!("{CASE}.nii.gz")),
    )
    .unwrap();
    std::fs::copy(
        shared("pred-isen20.nii.gz"),
        truths.join(format!("{CASE}_seg.nii.gz")),
    )
    .unwrap();

    // A synthetic case "toy" in a 4x1x1 grid, written in the brats2023 convention for the
    // prediction and brats2018 for the reference (4 = enhancing):
    //   pred  = [1, 2, 3, 0]     truth = [1, 2, 2, 4]
    // WT: {0,1,2} vs {0,1,2,3} -> 2*3/7; TC: {0,2} vs {0,3} -> 2*1/4;
    // ET: {2} vs {3} -> 0; NCR: {0} vs {0} -> 1; ED: {1} vs {1,2} -> 2/3.
    let template = brats_preprocess::read_header(&shared("pred-isen20.nii.gz")).unwrap();
    write_nifti_u8(
        &preds.join("toy-pred-mine.nii.gz"),
        &[4, 1, 1],
        &[1, 2, 3, 0],
        &template,
    )
    .unwrap();
    write_nifti_u8(
        &truths.join("toy_seg.nii"),
        &[4, 1, 1],
        &[1, 2, 2, 4],
        &template,
    )
    .unwrap();
    let toy = [6.0 / 7.0, 0.5, 0.0, 1.0, 2.0 / 3.0];

    let (ok, stdout, stderr) = eval(&[
        "--pred",
        preds.to_str().unwrap(),
        "--truth",
        truths.to_str().unwrap(),
        "--pred-labels",
        "brats2023",
        "--truth-labels",
        "brats2018",
    ]);
    assert!(ok, "{stderr}");
    assert_close(&row(&stdout, "toy"), &toy);
    assert_close(&row(&stdout, CASE), &NUMPY_DICE);
    let mean: Vec<f64> = toy
        .iter()
        .zip(NUMPY_DICE)
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    assert_close(&row(&stdout, "mean (2 cases)"), &mean);
    assert_close(&row(&stdout, "median"), &mean);

    // A reference without a prediction is an error naming the case.
    std::fs::remove_file(preds.join("toy-pred-mine.nii.gz")).unwrap();
    let (ok, _, stderr) = eval(&[
        "--pred",
        preds.to_str().unwrap(),
        "--truth",
        truths.to_str().unwrap(),
        "--labels",
        "brats2023",
    ]);
    assert!(!ok);
    assert!(stderr.contains("no prediction for case toy"), "{stderr}");
}

#[test]
fn missing_files_and_mixed_arguments_are_refused() {
    let dir = scratch("missing");
    let nope = dir.join("nope.nii.gz");
    let (ok, _, stderr) = eval(&[
        "--pred",
        nope.to_str().unwrap(),
        "--truth",
        nope.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("nope.nii.gz: file does not exist"),
        "{stderr}"
    );
    let (ok, _, stderr) = eval(&[
        "--pred",
        dir.to_str().unwrap(),
        "--truth",
        shared("pred-isen20.nii.gz").to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("must both be files or both be folders"),
        "{stderr}"
    );
}
