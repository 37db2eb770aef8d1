//! `brats-seg segment` and `brats-seg demo` end to end: the real shared case with
//! synthetic weights (geometry kept, labels in the chosen convention, stage times, the
//! exact network input), the Decathlon 4D input giving the same network input as the
//! named files, the phantom demo, and early one-line errors.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use brats_preprocess::{read_header, read_nifti, read_volume, write_nifti_i16};

const CASE: &str = "BraTS-GLI-00001-000";

fn case_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(CASE)
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brats-cli-seg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn brats_seg(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brats-seg"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_npy(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn real_case_with_synthetic_weights_keeps_geometry_and_reports_stages() {
    let dir = scratch("real");
    let out = dir.join("labels.nii.gz");
    let npy = dir.join("input.npy");
    let png = dir.join("overlay.png");
    let case = case_dir();
    let o = brats_seg(
        &dir,
        &[
            "segment",
            "--case",
            case.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--synthetic-weights",
            "--tta",
            "--min-component",
            "0.1",
            "--save-input",
            npy.to_str().unwrap(),
            "--overlay",
            png.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    for stage in ["read", "preprocess", "forward", "postprocess", "write"] {
        assert!(
            stderr.contains(&format!("stage {stage}")),
            "no {stage} time in {stderr}"
        );
    }
    assert!(stderr.contains("SYNTHETIC weights"), "{stderr}");
    assert!(
        stdout.contains("channel 2 FLAIR <-") && stdout.contains("-t2f.nii.gz"),
        "{stdout}"
    );

    // Geometry equal to the input's.
    let input = read_header(&case.join(format!("{CASE}-t1n.nii.gz"))).unwrap();
    let output = read_header(&out).unwrap();
    assert_eq!(output.dim, input.dim);
    assert_eq!(output.pixdim, input.pixdim);
    assert_eq!(
        (output.qform_code, output.sform_code),
        (input.qform_code, input.sform_code)
    );
    assert_eq!(
        [output.srow_x, output.srow_y, output.srow_z],
        [input.srow_x, input.srow_y, input.srow_z]
    );
    assert_eq!(
        [
            output.quatern_b,
            output.quatern_c,
            output.quatern_d,
            output.quatern_x,
            output.quatern_y,
            output.quatern_z
        ],
        [
            input.quatern_b,
            input.quatern_c,
            input.quatern_d,
            input.quatern_x,
            input.quatern_y,
            input.quatern_z
        ]
    );
    assert_eq!(output.datatype, 2);
    let labels = read_nifti(&out).unwrap();
    assert!(labels
        .data
        .iter()
        .all(|&v| [0.0, 1.0, 2.0, 4.0].contains(&v)));
    assert!(labels.data.iter().any(|&v| v != 0.0));

    // The saved network input is the preprocessed tensor (checked against the scipy
    // fixture's sampled voxels).
    let saved = read_npy(&npy);
    assert_eq!(saved.len(), 4 * 128 * 128 * 128);
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tools/reference/preprocess/fixtures/preprocess.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for s in fixture["samples"].as_array().unwrap() {
        let s: Vec<f64> = s
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let at =
            (((s[0] as usize * 128 + s[1] as usize) * 128) + s[2] as usize) * 128 + s[3] as usize;
        assert!((f64::from(saved[at]) - s[4]).abs() <= 1e-5);
    }
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decathlon_4d_input_gives_the_same_network_input_as_named_files() {
    let dir = scratch("msd");
    // Stack the case in the Decathlon order FLAIR, T1w, T1gd, T2w.
    let mut stacked: Vec<i16> = Vec::new();
    let mut header = None;
    for suffix in ["t2f", "t1n", "t1c", "t2w"] {
        let (volume, h, _) =
            read_volume(&case_dir().join(format!("{CASE}-{suffix}.nii.gz"))).unwrap();
        stacked.extend(volume.data().iter().map(|&v| v as i16));
        header = Some(h);
    }
    let msd = dir.join("BRATS_001.nii.gz");
    write_nifti_i16(&msd, &[240, 240, 155, 4], &stacked, &header.unwrap()).unwrap();
    let run = |args: &[&str], npy: &Path| {
        let mut all = vec![
            "segment",
            "--synthetic-weights",
            "--side",
            "32",
            "--save-input",
            npy.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let o = brats_seg(&dir, &all);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    let case = case_dir();
    run(
        &[
            "--case",
            case.to_str().unwrap(),
            "-o",
            dir.join("a.nii.gz").to_str().unwrap(),
        ],
        &a,
    );
    let stdout = run(
        &[
            "--msd",
            msd.to_str().unwrap(),
            "-o",
            dir.join("b.nii.gz").to_str().unwrap(),
        ],
        &b,
    );
    assert!(
        stdout.contains("channel 0 T1    <-") && stdout.contains("[volume 1]"),
        "{stdout}"
    );
    assert!(
        read_npy(&a) == read_npy(&b),
        "MSD input differs from the named-file input"
    );
    // A wrong --msd-order changes the input.
    let c = dir.join("c.npy");
    run(
        &[
            "--msd",
            msd.to_str().unwrap(),
            "--msd-order",
            "t1,t2,flair,t1ce",
            "-o",
            dir.join("c.nii.gz").to_str().unwrap(),
        ],
        &c,
    );
    assert!(read_npy(&a) != read_npy(&c));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_runs_the_phantom_end_to_end() {
    let dir = scratch("demo");
    let out = dir.join("demo-out");
    let o = brats_seg(
        &dir,
        &["demo", "--out", out.to_str().unwrap(), "--side", "32"],
    );
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("SYNTHETIC weights"), "{stderr}");
    assert!(
        stdout.contains("Dice against the phantom's truth: WT"),
        "{stdout}"
    );
    for f in [
        "phantom/phantom_t1.nii.gz",
        "phantom/phantom_seg.nii.gz",
        "phantom_pred.nii.gz",
        "phantom_overlay.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let truth = read_nifti(&out.join("phantom/phantom_seg.nii.gz")).unwrap();
    assert!(truth.data.contains(&4.0));
    assert_eq!(
        read_header(&out.join("phantom_pred.nii.gz")).unwrap().dim,
        read_header(&out.join("phantom/phantom_t1.nii.gz"))
            .unwrap()
            .dim
    );

    // The same run in the Decathlon convention: truth edema moves from 2 to 1, and the
    // prediction uses only 0..=3.
    let msd_out = dir.join("demo-msd");
    let o = brats_seg(
        &dir,
        &[
            "demo",
            "--out",
            msd_out.to_str().unwrap(),
            "--side",
            "32",
            "--labels",
            "msd",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let msd_truth = read_nifti(&msd_out.join("phantom/phantom_seg.nii.gz")).unwrap();
    let count = |d: &[f32], v: f32| d.iter().filter(|&&x| x == v).count();
    assert_eq!(count(&msd_truth.data, 1.0), count(&truth.data, 2.0));
    assert_eq!(count(&msd_truth.data, 2.0), count(&truth.data, 1.0));
    assert_eq!(count(&msd_truth.data, 3.0), count(&truth.data, 4.0));
    let pred = read_nifti(&msd_out.join("phantom_pred.nii.gz")).unwrap();
    assert!(pred.data.iter().all(|&v| [0.0, 1.0, 2.0, 3.0].contains(&v)));
    let o = brats_seg(
        &dir,
        &[
            "demo",
            "--out",
            msd_out.to_str().unwrap(),
            "--labels",
            "bogus",
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("unknown label convention 'bogus'"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_runs_fail_early_with_one_line() {
    let dir = scratch("bad");
    let case = case_dir();
    let case = case.to_str().unwrap();
    let check = |args: &[&str], needle: &str| {
        let o = brats_seg(&dir, args);
        let stderr = text(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(needle), "{needle} not in {stderr}");
        assert!(
            !stderr.contains("stage forward"),
            "ran the network before failing: {stderr}"
        );
    };
    let out = dir.join("x.nii.gz");
    let out = out.to_str().unwrap();
    // No weights anywhere: says how to get them.
    check(
        &["segment", "--case", case, "-o", out],
        "omz_downloader --name brain-tumor-segmentation-0001",
    );
    // Unwritable output path.
    check(
        &[
            "segment",
            "--case",
            case,
            "-o",
            "/nonexistent-folder/x.nii.gz",
            "--synthetic-weights",
        ],
        "/nonexistent-folder/x.nii.gz: cannot write: the output folder does not exist",
    );
    // Missing modality among named files.
    let t1 = case_dir().join(format!("{CASE}-t1n.nii.gz"));
    let t1 = t1.to_str().unwrap();
    check(
        &[
            "segment",
            "--t1",
            t1,
            "--t2",
            t1,
            "--flair",
            t1,
            "-o",
            out,
            "--synthetic-weights",
        ],
        "missing T1ce",
    );
    // A corrupt weight file.
    let weights = dir.join("bad.bin");
    std::fs::write(&weights, b"definitely not weights").unwrap();
    check(
        &[
            "segment",
            "--case",
            case,
            "-o",
            out,
            "--weights",
            weights.to_str().unwrap(),
        ],
        "bad.bin",
    );
    check(
        &[
            "segment",
            "--case",
            case,
            "-o",
            out,
            "--weights",
            "/no/such.bin",
        ],
        "/no/such.bin: weight file does not exist",
    );
    assert!(!dir.join("x.nii.gz").exists());
}

#[test]
fn probabilities_file_agrees_with_the_label_map() {
    let dir = scratch("probs");
    let (labels_path, probs_path) = (dir.join("l.nii.gz"), dir.join("p.nii.gz"));
    let case = case_dir();
    let o = brats_seg(
        &dir,
        &[
            "segment",
            "--case",
            case.to_str().unwrap(),
            "-o",
            labels_path.to_str().unwrap(),
            "--probabilities",
            probs_path.to_str().unwrap(),
            "--labels",
            "brats2023",
            "--synthetic-weights",
            "--side",
            "32",
            "--threads",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let labels = read_nifti(&labels_path).unwrap();
    let probs = read_nifti(&probs_path).unwrap();
    assert_eq!(probs.shape, vec![240, 240, 155, 4]);
    assert_eq!(probs.header.datatype, 16);
    let n = 240 * 240 * 155;
    let mut tumour = 0;
    for at in 0..n {
        let p = [
            probs.data[at],
            probs.data[n + at],
            probs.data[2 * n + at],
            probs.data[3 * n + at],
        ];
        let mut best = 0;
        for c in 1..4 {
            if p[c] > p[best] {
                best = c;
            }
        }
        // brats2023 writes network classes as they are.
        assert_eq!(labels.data[at], best as f32, "voxel {at}: {p:?}");
        tumour += usize::from(best != 0);
    }
    assert!(tumour > 0);
    // Outside the brain box the background probability is 1.
    assert_eq!(probs.data[0], 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}
