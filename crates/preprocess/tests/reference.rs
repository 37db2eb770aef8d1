//! Pre- and postprocessing against the nibabel + scipy reference
//! (`tools/reference/preprocess/make_fixtures.py`) on the real case in `../shared/data`.
use std::path::{Path, PathBuf};

use brats_preprocess::pipeline::probabilities_in_box;
use brats_preprocess::{postprocess, preprocess, read_nifti, BrainBox, Case, PrepMeta};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    root().join("tools/reference/preprocess/fixtures")
}

fn case_dir() -> PathBuf {
    root().join("../shared/data/BraTS-GLI-00001-000")
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The `.npy` written by `make_fixtures.py --full` (little-endian f32, C order).
fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"));
    bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn network_input_matches_the_scipy_reference() {
    let reference = json("preprocess.json");
    let case = Case::from_dir(&case_dir()).expect("case loads");
    // The fixture's channel files are in network order T1, T2, FLAIR, T1ce.
    for (source, file) in case
        .sources
        .iter()
        .zip(reference["channel_files"].as_array().unwrap())
    {
        assert_eq!(
            source.path.file_name().unwrap().to_str().unwrap(),
            file.as_str().unwrap()
        );
    }
    assert_eq!(case.dims().to_vec(), usizes(&reference["dims"]));
    let prepared = preprocess(&case).expect("preprocess");
    assert_eq!(
        prepared.meta.brain_box.start.to_vec(),
        usizes(&reference["box_start"])
    );
    assert_eq!(
        prepared.meta.brain_box.end.to_vec(),
        usizes(&reference["box_end"])
    );
    let side = 128usize;
    let cube = side * side * side;
    assert_eq!(prepared.input.len(), 4 * cube);
    let at = |c: usize, d: usize, h: usize, w: usize| {
        prepared.input[c * cube + (d * side + h) * side + w]
    };

    let mut max_diff = 0.0f32;
    for s in reference["samples"].as_array().unwrap() {
        let s = s.as_array().unwrap();
        let i: Vec<usize> = s[..4]
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let expected = s[4].as_f64().unwrap() as f32;
        max_diff = max_diff.max((at(i[0], i[1], i[2], i[3]) - expected).abs());
    }
    for s in reference["slices"].as_array().unwrap() {
        let c = s["channel"].as_u64().unwrap() as usize;
        let index = s["index"].as_u64().unwrap() as usize;
        let plane = read_f32(&fixtures().join(s["file"].as_str().unwrap()));
        for a in 0..side {
            for b in 0..side {
                let ours = match s["axis"].as_str().unwrap() {
                    "d" => at(c, index, a, b),
                    "h" => at(c, a, index, b),
                    _ => at(c, a, b, index),
                };
                max_diff = max_diff.max((ours - plane[a * side + b]).abs());
            }
        }
    }
    for (c, stats) in reference["channel_stats"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let channel = &prepared.input[c * cube..(c + 1) * cube];
        let mean = channel.iter().map(|&v| f64::from(v)).sum::<f64>() / cube as f64;
        let min = channel.iter().copied().fold(f32::INFINITY, f32::min);
        let max = channel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(
            (mean - stats["mean"].as_f64().unwrap()).abs() <= 1e-6,
            "channel {c} mean"
        );
        assert!((f64::from(min) - stats["min"].as_f64().unwrap()).abs() <= 1e-5);
        assert!((f64::from(max) - stats["max"].as_f64().unwrap()).abs() <= 1e-5);
    }
    println!("max |diff| vs scipy on samples and slices: {max_diff:e}");
    assert!(max_diff <= 1e-5, "max |diff| {max_diff} > 1e-5");

    // The whole tensor, when `make_fixtures.py --full out` has been run (not committed).
    let full = root().join("tools/reference/preprocess/out/input.npy");
    if full.exists() {
        let reference = read_npy_f32(&full);
        assert_eq!(reference.len(), prepared.input.len());
        let worst = reference
            .iter()
            .zip(&prepared.input)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let exact = reference
            .iter()
            .zip(&prepared.input)
            .filter(|(a, b)| a == b)
            .count();
        println!(
            "full tensor: max |diff| {worst:e}, bit-identical {exact} of {}",
            reference.len()
        );
        assert!(worst <= 1e-5);
    } else {
        println!("full tensor check skipped: run make_fixtures.py --full out to enable it");
    }
}

/// The closed-form tensor of `make_fixtures.py::synthetic_probs`, same operations in the
/// same order (only + - * / in f64, then rounded to f32).
fn synthetic_probs(side: usize) -> Vec<f32> {
    let s = side as f64;
    let blobs: [([f64; 3], f64, f64); 4] = [
        ([0.5, 0.5, 0.5], 0.6, 1.0),
        ([0.45, 0.55, 0.5], 0.12, 2.0),
        ([0.5, 0.4, 0.6], 0.2, 1.6),
        ([0.55, 0.5, 0.42], 0.07, 2.5),
    ];
    let cube = side * side * side;
    let mut out = vec![0.0f32; 4 * cube];
    for d in 0..side {
        for h in 0..side {
            for w in 0..side {
                let q: Vec<f64> = blobs
                    .iter()
                    .map(|(c, r, amp)| {
                        let dd = d as f64 - c[0] * s;
                        let hh = h as f64 - c[1] * s;
                        let ww = w as f64 - c[2] * s;
                        let dist2 = dd * dd + hh * hh + ww * ww;
                        let rr = (r * s) * (r * s);
                        amp / (1.0 + dist2 / rr)
                    })
                    .collect();
                let total = ((q[0] + q[1]) + q[2]) + q[3];
                for c in 0..4 {
                    out[c * cube + (d * side + h) * side + w] = (q[c] / total) as f32;
                }
            }
        }
    }
    out
}

#[test]
fn label_maps_match_the_scipy_reference() {
    let reference = json("postprocess.json");
    let side = reference["side"].as_u64().unwrap() as usize;
    let probs = synthetic_probs(side);
    for case in reference["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let dims = usizes(&case["dims"]);
        let start = usizes(&case["start"]);
        let end = usizes(&case["end"]);
        let meta = PrepMeta {
            dims: [dims[0], dims[1], dims[2]],
            brain_box: BrainBox {
                start: [start[0], start[1], start[2]],
                end: [end[0], end[1], end[2]],
            },
            side,
        };
        let boxed = probabilities_in_box(&probs, &meta).unwrap();
        let size = meta.brain_box.size();
        let mut max_diff = 0.0f32;
        for s in case["box_samples"].as_array().unwrap() {
            let s = s.as_array().unwrap();
            let i: Vec<usize> = s[..4]
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let ours = boxed[i[0]][(i[1] * size[1] + i[2]) * size[2] + i[3]];
            max_diff = max_diff.max((ours - s[4].as_f64().unwrap() as f32).abs());
        }
        println!("{name}: back-resampled probabilities max |diff| {max_diff:e}");
        assert!(max_diff <= 1e-6);

        let labels = postprocess(&probs, &meta).unwrap();
        let expected = read_nifti(&fixtures().join(case["labels_file"].as_str().unwrap())).unwrap();
        assert_eq!(expected.shape, dims);
        let mismatches = labels
            .classes
            .iter()
            .zip(&expected.data)
            .filter(|(&ours, &theirs)| f32::from(ours) != theirs)
            .count();
        let counts: Vec<u64> = (0..4u8)
            .map(|k| labels.classes.iter().filter(|&&c| c == k).count() as u64)
            .collect();
        println!("{name}: class counts {counts:?}, {mismatches} label mismatches");
        assert_eq!(mismatches, 0, "{name}: labels differ from the reference");
        let expected_counts: Vec<u64> = case["class_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(counts, expected_counts);
    }
}

#[test]
fn component_filter_matches_scipy_label_with_full_connectivity() {
    let reference = json("components.json");
    let input = read_nifti(&fixtures().join("components_in.nii.gz")).unwrap();
    let expected = read_nifti(&fixtures().join("components_out.nii.gz")).unwrap();
    let dims = [input.shape[0], input.shape[1], input.shape[2]];
    let mut classes: Vec<u8> = input.data.iter().map(|&v| v as u8).collect();
    let fraction = reference["fraction"].as_f64().unwrap();
    let report = brats_preprocess::remove_small_components(&mut classes, dims, fraction);
    let sizes: Vec<usize> = usizes(&reference["sizes"]);
    assert_eq!(report.sizes, sizes);
    let kept = reference["kept"].as_u64().unwrap() as usize;
    assert_eq!(report.sizes.len() - report.removed_components, kept);
    let ours: Vec<f32> = classes.iter().map(|&c| f32::from(c)).collect();
    assert!(ours == expected.data, "filtered labels differ from scipy's");
}
