//! The engine weight-file format: round trip, zero-copy alignment, and every kind of
//! malformed file (truncated at every length, wrong magic/version, misaligned,
//! overlapping or out-of-bounds entries, duplicate names, bad dtype/shape, corrupted
//! table or data) giving a clear error that names the problem, never a panic.
mod weights_util;

use std::path::{Path, PathBuf};

use brats_graph::weights::format::{encode_weight_file, parse_table, ENTRY_SIZE, HEADER_SIZE};
use brats_graph::weights::*;
use weights_util::scratch;

const STRUCTURE_ONLY: OpenOptions = OpenOptions {
    verify_checksums: false,
    check_topology: false,
};
const WITH_SUMS: OpenOptions = OpenOptions {
    verify_checksums: true,
    check_topology: false,
};

fn sample() -> Vec<NamedTensor> {
    vec![
        NamedTensor {
            name: "a_weight".into(),
            shape: vec![2, 3, 1, 1, 1],
            data: (0..6).map(|i| i as f32 * 0.5 - 1.0).collect(),
        },
        NamedTensor {
            name: "b_bias".into(),
            shape: vec![5],
            data: vec![1.0, -2.0, 3.5, f32::MIN_POSITIVE, 1e30],
        },
        NamedTensor {
            name: "c_gamma".into(),
            shape: vec![17],
            data: (0..17).map(|i| i as f32).collect(),
        },
    ]
}

fn sample_bytes() -> Vec<u8> {
    let t = sample();
    let refs: Vec<TensorRef> = t.iter().map(NamedTensor::as_ref).collect();
    encode_weight_file(&refs).unwrap()
}

fn entry(i: usize) -> usize {
    HEADER_SIZE + i * ENTRY_SIZE
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn open_bytes(dir: &Path, name: &str, bytes: &[u8], opts: &OpenOptions) -> Result<WeightFile> {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    WeightFile::open_with(&p, opts)
}

fn expect_problem(dir: &Path, name: &str, bytes: &[u8], want: Problem, needles: &[&str]) {
    let err = open_bytes(dir, name, bytes, &WITH_SUMS).unwrap_err();
    assert_eq!(err.problem(), Some(want), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(name),
        "message does not name the file: {text}"
    );
    for n in needles {
        assert!(text.contains(n), "message lacks {n:?}: {text}");
    }
}

#[test]
fn round_trip_is_exact_and_zero_copy_aligned() {
    let dir = scratch("fmt-roundtrip");
    let p = dir.join("w.bin");
    let t = sample();
    let refs: Vec<TensorRef> = t.iter().map(NamedTensor::as_ref).collect();
    write_weight_file(&p, &refs).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), sample_bytes());
    let wf = WeightFile::open_with(&p, &WITH_SUMS).unwrap();
    assert_eq!(wf.len(), 3);
    for (x, info) in t.iter().zip(wf.tensors()) {
        assert_eq!(info.name, x.name);
        assert_eq!(info.shape, x.shape);
        assert_eq!(info.offset % 64, 0);
        let data = wf.tensor(&x.name).unwrap();
        assert_eq!(data, x.data.as_slice());
        assert_eq!(
            data.as_ptr() as usize % 64,
            0,
            "mapped data are 64-byte aligned"
        );
        assert_eq!(
            wf.tensor_with_shape(&x.name, &x.shape).unwrap(),
            x.data.as_slice()
        );
    }
}

#[test]
fn every_truncation_is_a_clean_error() {
    let dir = scratch("fmt-trunc");
    let bytes = sample_bytes();
    for cut in 0..bytes.len() {
        let err = parse_table(&bytes[..cut], Path::new("t.bin")).unwrap_err();
        assert_eq!(err.problem(), Some(Problem::Truncated), "cut {cut}: {err}");
    }
    // and through the file system + mmap path, for a spread of lengths
    for cut in [0, 1, 63, 64, 100, entry(3), entry(3) + 1, bytes.len() - 1] {
        expect_problem(
            &dir,
            &format!("cut{cut}.bin"),
            &bytes[..cut],
            Problem::Truncated,
            &["truncated"],
        );
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 8]);
    expect_problem(
        &dir,
        "long.bin",
        &longer,
        Problem::TrailingBytes,
        &["trailing"],
    );
}

#[test]
fn wrong_magic_and_version() {
    let dir = scratch("fmt-magic");
    let mut b = sample_bytes();
    b[0] = b'X';
    expect_problem(
        &dir,
        "magic.bin",
        &b,
        Problem::BadMagic,
        &["wrong magic", "convert-weights"],
    );
    // an MXNet .params file handed to the engine loader
    let params = std::fs::read(weights_util::fixtures().join("tiny.params")).unwrap();
    expect_problem(
        &dir,
        "tiny.params",
        &params,
        Problem::BadMagic,
        &["not a brats-seg weight file"],
    );
    let mut b = sample_bytes();
    b[8] = 2;
    expect_problem(
        &dir,
        "v2.bin",
        &b,
        Problem::UnsupportedVersion,
        &["version 2"],
    );
    let mut b = sample_bytes();
    b[16] = 200; // entry size
    expect_problem(&dir, "hdr.bin", &b, Problem::BadHeader, &["entry size 200"]);
}

#[test]
fn misaligned_overlapping_and_out_of_bounds_entries() {
    let dir = scratch("fmt-entries");
    let good = sample_bytes();

    let mut b = good.clone();
    let off = get_u64(&b, entry(1) + 112);
    put_u64(&mut b, entry(1) + 112, off + 4);
    expect_problem(
        &dir,
        "misaligned.bin",
        &b,
        Problem::Misaligned,
        &["b_bias", &format!("{}", off + 4)],
    );

    let mut b = good.clone();
    let off0 = get_u64(&b, entry(0) + 112);
    put_u64(&mut b, entry(2) + 112, off0);
    expect_problem(
        &dir,
        "overlap.bin",
        &b,
        Problem::Overlap,
        &["a_weight", "c_gamma", "overlaps"],
    );

    let mut b = good.clone();
    let past_end = (b.len() as u64).div_ceil(64) * 64 + 64;
    put_u64(&mut b, entry(2) + 112, past_end);
    expect_problem(
        &dir,
        "oob.bin",
        &b,
        Problem::OutOfBounds,
        &["c_gamma", "outside the data region"],
    );

    let mut b = good.clone();
    put_u64(&mut b, entry(0) + 112, 0); // into the header
    expect_problem(&dir, "oob0.bin", &b, Problem::OutOfBounds, &["a_weight"]);
}

#[test]
fn duplicate_names_bad_names_dtype_and_shape() {
    let dir = scratch("fmt-names");
    let good = sample_bytes();

    let mut b = good.clone();
    let name0: Vec<u8> = b[entry(0)..entry(0) + 64].to_vec();
    b[entry(2)..entry(2) + 64].copy_from_slice(&name0);
    expect_problem(
        &dir,
        "dup.bin",
        &b,
        Problem::DuplicateName,
        &["'a_weight'", "entry #0", "entry #2"],
    );

    let mut b = good.clone();
    b[entry(1)..entry(1) + 64].fill(b'x');
    expect_problem(
        &dir,
        "noterm.bin",
        &b,
        Problem::BadName,
        &["entry #1", "NUL"],
    );

    let mut b = good.clone();
    b[entry(1)] = 0;
    expect_problem(&dir, "empty.bin", &b, Problem::BadName, &["entry #1"]);

    let mut b = good.clone();
    b[entry(1) + 64] = 2;
    expect_problem(
        &dir,
        "dtype.bin",
        &b,
        Problem::BadDtype,
        &["b_bias", "dtype code 2"],
    );

    let mut b = good.clone();
    put_u64(&mut b, entry(1) + 72, 6); // shape [6] but 20 bytes of data
    expect_problem(
        &dir,
        "shape.bin",
        &b,
        Problem::BadShape,
        &["b_bias", "[6]", "24 bytes", "says 20"],
    );

    let mut b = good.clone();
    b[entry(1) + 68] = 0; // rank 0
    expect_problem(
        &dir,
        "rank.bin",
        &b,
        Problem::BadShape,
        &["b_bias", "rank 0"],
    );
}

#[test]
fn corrupted_table_and_data_are_detected_by_checksums() {
    let dir = scratch("fmt-sums");
    let good = sample_bytes();

    let mut b = good.clone();
    b[entry(1)] = b'B'; // still a valid, unique name
    expect_problem(
        &dir,
        "table.bin",
        &b,
        Problem::TableChecksum,
        &["table checksum mismatch"],
    );

    let mut b = good.clone();
    let off = get_u64(&b, entry(2) + 112) as usize;
    b[off + 5] ^= 0x40;
    let err = open_bytes(&dir, "data.bin", &b, &WITH_SUMS).unwrap_err();
    let WeightError::Checksum { tensor, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(tensor, "c_gamma");
    assert!(err.to_string().contains("data.bin"));
    // switched off: opens, and explicit verification still finds it
    let wf = open_bytes(&dir, "data2.bin", &b, &STRUCTURE_ONLY).unwrap();
    assert!(matches!(
        wf.verify_checksums(),
        Err(WeightError::Checksum { .. })
    ));
}

#[test]
fn lookups_and_topology_errors_name_the_tensor() {
    let dir = scratch("fmt-lookup");
    let wf = open_bytes(&dir, "w.bin", &sample_bytes(), &WITH_SUMS).unwrap();
    let e = wf.tensor("nope").unwrap_err();
    assert!(matches!(e, WeightError::NoSuchTensor { .. }));
    assert!(e.to_string().contains("'nope'"));
    let e = wf.tensor_with_shape("b_bias", &[4]).unwrap_err();
    assert!(
        e.to_string()
            .contains("'b_bias' has shape [5], expected [4]"),
        "{e}"
    );
    // default open requires the model's topology
    let e = WeightFile::open(dir.join("w.bin")).unwrap_err();
    let WeightError::Topology { mismatch, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(mismatch.missing.len(), 225);
    assert_eq!(mismatch.extra, vec!["a_weight", "b_bias", "c_gamma"]);
}

#[test]
fn writer_rejects_bad_input_and_leaves_no_file() {
    let dir = scratch("fmt-writer");
    let p = dir.join("out.bin");
    let data = [1.0f32; 4];
    let cases: Vec<Vec<TensorRef>> = vec![
        vec![TensorRef {
            name: "x",
            shape: &[5],
            data: &data,
        }],
        vec![
            TensorRef {
                name: "x",
                shape: &[4],
                data: &data,
            },
            TensorRef {
                name: "x",
                shape: &[4],
                data: &data,
            },
        ],
        vec![TensorRef {
            name: "",
            shape: &[4],
            data: &data,
        }],
        vec![TensorRef {
            name: "x",
            shape: &[1, 1, 1, 1, 1, 4],
            data: &data,
        }],
    ];
    for c in cases {
        let e = write_weight_file(&p, &c).unwrap_err();
        assert!(matches!(e, WeightError::InvalidInput { .. }), "{e}");
        assert!(!p.exists());
    }
    // an unwritable destination: error, and nothing left behind in the directory
    let e = write_weight_file(
        &dir.join("no/such/dir/out.bin"),
        &[TensorRef {
            name: "x",
            shape: &[4],
            data: &data,
        }],
    );
    assert!(matches!(e, Err(WeightError::Io { .. })));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
