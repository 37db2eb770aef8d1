//! `brats-seg infer` and `brats-seg bench` end to end on the committed 32³ fixtures.
use brats_graph::weights::npy::{read_npy_f32, write_npy_f32};
use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/reference/fixtures")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brats-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn infer_matches_the_float64_reference_and_refuses_bad_shapes() {
    let dir = scratch("infer");
    let out = dir.join("y.npy");
    let run = Command::new(env!("CARGO_BIN_EXE_brats-seg"))
        .args(["infer", "--synthetic", "--threads", "2", "--input"])
        .arg(fixtures().join("input.npy"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = read_npy_f32(&out).unwrap();
    let want = read_npy_f32(&fixtures().join("softmax.npy")).unwrap();
    assert_eq!(got.shape, [1, 4, 32, 32, 32]);
    let diff = got
        .data
        .iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-5, "max |diff| {diff}");

    // A tensor that is not [1, 4, D, H, W], and sides that are not multiples of 32:
    // one-line errors, non-zero exit, no output file.
    for (name, shape) in [
        ("bad_rank", vec![4usize, 32, 32, 32]),
        ("bad_side", vec![1, 4, 16, 16, 16]),
    ] {
        let input = dir.join(format!("{name}.npy"));
        write_npy_f32(&input, &shape, &vec![0.5; shape.iter().product()]).unwrap();
        let target = dir.join(format!("{name}-out.npy"));
        let run = Command::new(env!("CARGO_BIN_EXE_brats-seg"))
            .args(["infer", "--synthetic", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&target)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{name}: {err}");
        assert!(err.contains(&*input.display().to_string()), "{name}: {err}");
        assert!(!target.exists(), "{name}: wrote an output");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_json_reports_times_rate_and_memory() {
    let run = Command::new(env!("CARGO_BIN_EXE_brats-seg"))
        .args([
            "bench",
            "--synthetic",
            "--size",
            "32",
            "--runs",
            "2",
            "--threads",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let last = stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    let (median, min) = (
        v["median_s"].as_f64().unwrap(),
        v["min_s"].as_f64().unwrap(),
    );
    assert!(min > 0.0 && min <= median);
    assert!(v["gflops"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert!((v["gflop"].as_f64().unwrap() - 406.268674048 / 64.0).abs() < 1e-9);
    assert_eq!(v["times_s"].as_array().unwrap().len(), 2);
}
