//! End-to-end tests of `brats-seg synth-weights`, `convert-weights` and
//! `verify-weights`: real processes, real files, exit codes and messages.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use brats_graph::weights::{synth_weights, write_params, NamedTensor, TensorRef};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brats-seg"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run brats-seg")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-weights-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn synth_convert_verify_agree() {
    let dir = scratch("ok");
    let synth = dir.join("synth.bin");
    let o = run(&["synth-weights", "--seed", "3", "-o", s(&synth)]);
    assert!(o.status.success(), "{}", text(&o));

    let o = run(&["verify-weights", s(&synth)]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("225 tensors, 38192316 parameters"), "{out}");

    // The same weights as an MXNet .params file, converted: identical engine file.
    let tensors: Vec<NamedTensor> = synth_weights(3);
    let refs: Vec<TensorRef> = tensors.iter().map(NamedTensor::as_ref).collect();
    let params = dir.join("model.params");
    write_params(&params, &refs).unwrap();
    let conv = dir.join("converted.bin");
    let o = run(&["convert-weights", s(&params), "-o", s(&conv)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read(&conv).unwrap() == std::fs::read(&synth).unwrap());
    assert_eq!(
        files_in(&dir),
        ["converted.bin", "model.params", "synth.bin"]
    );

    // refuses to overwrite its own input
    let o = run(&["convert-weights", s(&params), "-o", s(&params)]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("replace the input"),
        "{}",
        text(&o)
    );

    // A flipped data byte is found by verify-weights.
    let mut bytes = std::fs::read(&synth).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, &bytes).unwrap();
    let o = run(&["verify-weights", s(&bad)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("checksum mismatch in tensor 'convolution11_bias'"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn convert_reports_problems_and_writes_nothing() {
    let dir = scratch("bad");
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/reference/fixtures/tiny.params");
    let out = dir.join("out.bin");

    // tiny.params is a valid container holding only 6 of the 225 tensors
    let o = run(&["convert-weights", s(&tiny), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("missing (219)"), "{err}");
    assert!(err.contains("seg_onlynet128conv1sep_conv_weight"), "{err}");

    // truncated container
    let bytes = std::fs::read(&tiny).unwrap();
    let cut = dir.join("cut.params");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let o = run(&["convert-weights", s(&cut), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("truncated"),
        "{}",
        text(&o)
    );

    // missing input file
    let o = run(&[
        "convert-weights",
        s(&dir.join("nope.params")),
        "-o",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nope.params"),
        "{}",
        text(&o)
    );

    // verify-weights on a .params file explains what to do
    let o = run(&["verify-weights", s(&tiny)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("convert-weights"),
        "{}",
        text(&o)
    );

    assert_eq!(
        files_in(&dir),
        ["cut.params"],
        "no output, no temporary files"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
