//! MXNet `.params` reader and writer against files MXNet itself wrote: the committed
//! tiny fixture byte for byte, the full synthetic model by SHA-256 and size (the file
//! MXNet wrote is 152,788,159 bytes, like the official one), the converter round trip,
//! and every kind of malformed input.
mod weights_util;

use std::path::Path;

use brats_graph::weights::params::{check_params, encode_params, parse_params, ParamsArray};
use brats_graph::weights::*;
use weights_util::{fixtures, manifest, scratch, seed, sha256_hex};

fn tiny_bytes() -> Vec<u8> {
    std::fs::read(fixtures().join("tiny.params")).expect("tiny.params")
}

fn synth_named(seed: u64, names: &[&str]) -> Vec<NamedTensor> {
    let table = param_table();
    names
        .iter()
        .map(|n| {
            let spec = table.iter().find(|p| p.name == *n).expect("name in table");
            NamedTensor {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                data: synth_tensor(seed, spec),
            }
        })
        .collect()
}

#[test]
fn writer_is_byte_identical_to_mxnet_tiny_fixture() {
    let m = manifest();
    let names: Vec<&str> = m["tiny_params"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let tensors = synth_named(seed(), &names);
    let refs: Vec<TensorRef> = tensors.iter().map(NamedTensor::as_ref).collect();
    let ours = encode_params(&refs).unwrap();
    let theirs = tiny_bytes();
    assert_eq!(ours.len(), theirs.len());
    assert!(
        ours == theirs,
        "Rust .params bytes differ from MXNet's tiny.params"
    );
}

#[test]
fn reader_parses_mxnet_tiny_fixture() {
    let arrays = parse_params(&tiny_bytes(), Path::new("tiny.params")).unwrap();
    let m = manifest();
    let names = m["tiny_params"]["names"].as_array().unwrap();
    assert_eq!(arrays.len(), names.len());
    let table = param_table();
    for (a, n) in arrays.iter().zip(names) {
        let n = n.as_str().unwrap();
        assert_eq!(a.key, format!("arg:{n}"));
        let spec = table.iter().find(|p| p.name == n).unwrap();
        assert_eq!(a.shape, spec.shape);
        assert_eq!(a.data, synth_tensor(seed(), spec));
    }
}

#[test]
fn every_truncation_of_the_fixture_is_a_clean_error() {
    let bytes = tiny_bytes();
    for cut in 0..bytes.len() {
        let err = parse_params(&bytes[..cut], Path::new("cut.params")).unwrap_err();
        assert_eq!(
            err.problem(),
            Some(Problem::Truncated),
            "cut at {cut}: {err}"
        );
        assert!(
            err.to_string().starts_with("cut.params: truncated"),
            "{err}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let err = parse_params(&longer, Path::new("x.params")).unwrap_err();
    assert_eq!(err.problem(), Some(Problem::TrailingBytes), "{err}");
}

#[test]
fn wrong_magics_dtype_and_storage_are_named() {
    let bytes = tiny_bytes();
    let mut b = bytes.clone();
    b[0] = 0x13;
    let e = parse_params(&b, Path::new("x")).unwrap_err();
    assert_eq!(e.problem(), Some(Problem::BadMagic));
    assert!(e.to_string().contains("not an MXNet .params file"), "{e}");

    let mut b = bytes.clone();
    b[24] = 0xc8; // record magic of array #0 -> NDArray v1
    let e = parse_params(&b, Path::new("x")).unwrap_err();
    assert_eq!(e.problem(), Some(Problem::UnsupportedVersion), "{e}");
    assert!(e.to_string().contains("array #0"), "{e}");

    let mut b = bytes.clone();
    b[28] = 1; // storage type row_sparse
    let e = parse_params(&b, Path::new("x")).unwrap_err();
    assert_eq!(e.problem(), Some(Problem::UnsupportedStorage), "{e}");

    // dtype of array #0 (1-D): 24 header + 4 magic + 4 stype + 4 ndim + 8 dim + 8 ctx
    let mut b = bytes.clone();
    b[52] = 2;
    let e = parse_params(&b, Path::new("x")).unwrap_err();
    assert_eq!(e.problem(), Some(Problem::BadDtype), "{e}");
    assert!(e.to_string().contains("float16"), "{e}");
}

fn full_model(seed: u64) -> Vec<NamedTensor> {
    synth_weights(seed)
}

#[test]
fn full_synthetic_params_equal_the_file_mxnet_wrote() {
    let m = manifest();
    let tensors = full_model(seed());
    let refs: Vec<TensorRef> = tensors.iter().map(NamedTensor::as_ref).collect();
    let bytes = encode_params(&refs).unwrap();
    assert_eq!(
        bytes.len() as u64,
        m["params_file"]["official_size"].as_u64().unwrap()
    );
    assert_eq!(bytes.len(), 152_788_159);
    assert_eq!(
        sha256_hex(&bytes),
        m["params_file"]["sha256"].as_str().unwrap()
    );
    let arrays = parse_params(&bytes, Path::new("full.params")).unwrap();
    check_params(&arrays, Path::new("full.params")).unwrap();
}

#[test]
fn round_trip_synthetic_params_convert_engine_file() {
    let dir = scratch("roundtrip");
    let tensors = full_model(seed());
    let refs: Vec<TensorRef> = tensors.iter().map(NamedTensor::as_ref).collect();
    let p = dir.join("model.params");
    write_params(&p, &refs).unwrap();
    let back = read_params_checked(&p).unwrap();
    assert_eq!(back, tensors);
    let engine = dir.join("model.bin");
    let back_refs: Vec<TensorRef> = back.iter().map(NamedTensor::as_ref).collect();
    write_weight_file(&engine, &back_refs).unwrap();
    let wf = WeightFile::open(&engine).unwrap();
    assert_eq!(wf.len(), 225);
    for t in &tensors {
        assert_eq!(wf.shape(&t.name).unwrap(), t.shape.as_slice());
        assert!(
            wf.tensor(&t.name).unwrap() == t.data.as_slice(),
            "{}",
            t.name
        );
    }
    // no temporary files left behind
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

fn arrays_of_table() -> Vec<ParamsArray> {
    // Shapes only matter for the topology check; tiny data keep the test fast.
    param_table()
        .into_iter()
        .map(|p| ParamsArray {
            key: format!("arg:{}", p.name),
            shape: p.shape,
            data: Vec::new(),
        })
        .collect()
}

#[test]
fn topology_errors_list_every_problem_by_name() {
    let path = Path::new("bad.params");
    let mut a = arrays_of_table();
    assert!(check_params(&a, path).is_ok());
    // missing: drop two; extra: add one unknown and one aux:; misshaped; duplicate.
    a.retain(|x| x.key != "arg:convolution3_bias" && x.key != "arg:seg_onlynet64rb2norm1_beta");
    a.push(ParamsArray {
        key: "arg:fc_weight".into(),
        shape: vec![2],
        data: vec![],
    });
    a.push(ParamsArray {
        key: "aux:seg_onlynet128rb1norm1_gamma".into(),
        shape: vec![32],
        data: vec![],
    });
    let i = a
        .iter()
        .position(|x| x.key == "arg:seg_onlynet128pool1_weight")
        .unwrap();
    a[i].shape = vec![64, 8, 3, 3, 1];
    let dup = a
        .iter()
        .find(|x| x.key == "arg:convolution7_weight")
        .unwrap()
        .clone();
    a.push(dup);
    let err = check_params(&a, path).unwrap_err();
    let WeightError::Topology { mismatch, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        mismatch.missing,
        vec!["convolution3_bias", "seg_onlynet64rb2norm1_beta"]
    );
    assert_eq!(
        mismatch.extra,
        vec!["aux:seg_onlynet128rb1norm1_gamma", "fc_weight"]
    );
    assert_eq!(mismatch.duplicates, vec!["convolution7_weight"]);
    assert_eq!(
        mismatch.misshaped,
        vec![(
            "seg_onlynet128pool1_weight".to_string(),
            vec![64, 8, 3, 3, 3],
            vec![64, 8, 3, 3, 1]
        )]
    );
    let text = err.to_string();
    for needle in [
        "bad.params",
        "missing (2)",
        "convolution3_bias",
        "extra (not in the model) (2)",
        "duplicate (1)",
        "convolution7_weight",
        "wrong shape (1)",
        "seg_onlynet128pool1_weight: expected [64, 8, 3, 3, 3], found [64, 8, 3, 3, 1]",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn converter_input_with_a_missing_tensor_is_rejected_from_disk() {
    let dir = scratch("missing");
    let m = manifest();
    let names: Vec<&str> = m["tiny_params"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let p = dir.join("tiny.params");
    std::fs::write(&p, tiny_bytes()).unwrap();
    let err = read_params_checked(&p).unwrap_err();
    let WeightError::Topology { mismatch, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(mismatch.missing.len(), 225 - names.len());
    assert!(mismatch.extra.is_empty() && mismatch.misshaped.is_empty());
}
