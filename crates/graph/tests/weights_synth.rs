//! Rust synthetic weights equal the Python ones: SHA-256 of the float32 bytes, as
//! recorded by tools/reference/make_fixtures.py, for a few named tensors, for all 225
//! tensors concatenated in table order, and for the synthetic input.
mod weights_util;

use brats_graph::weights::synth::{fnv1a64, mix, uniform};
use brats_graph::weights::*;
use sha2::{Digest, Sha256};
use weights_util::{f32_bytes, manifest, seed, sha256_hex};

#[test]
fn hash_primitives_match_published_vectors() {
    // FNV-1a 64 test vectors (from the FNV reference): "" and "a".
    assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
    assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    // SplitMix64 with state 0: the first output is mix(0x9e3779b97f4a7c15).
    assert_eq!(mix(0x9e3779b97f4a7c15), 0xe220a8397b1dcdaf);
}

#[test]
fn uniform_is_in_range_with_24_bit_resolution() {
    for i in 0..10_000u64 {
        let u = uniform(12345, i);
        assert!((-1.0..1.0).contains(&u));
        let scaled = (u + 1.0) * (1u64 << 23) as f64;
        assert_eq!(scaled, scaled.trunc());
    }
}

#[test]
fn named_tensors_match_python() {
    let m = manifest();
    let seed = seed();
    let sums = m["synthetic_checksums"]["tensors"].as_object().unwrap();
    assert!(sums.len() >= 4);
    let table = param_table();
    for (name, want) in sums {
        let spec = table
            .iter()
            .find(|p| &p.name == name)
            .expect("name in table");
        let got = sha256_hex(&f32_bytes(&synth_tensor(seed, spec)));
        assert_eq!(&got, want.as_str().unwrap(), "{name}");
    }
}

#[test]
fn all_weights_and_input_match_python() {
    let m = manifest();
    let seed = seed();
    let mut h = Sha256::new();
    for t in synth_weights(seed) {
        h.update(f32_bytes(&t.data));
    }
    let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        got,
        m["synthetic_checksums"]["all_parameters_in_table_order"]
            .as_str()
            .unwrap()
    );

    let shape: Vec<usize> = m["tensors"]["input"]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let x = synth_input(seed, &shape);
    assert_eq!(
        sha256_hex(&f32_bytes(&x)),
        m["synthetic_checksums"]["input"].as_str().unwrap()
    );
    // and the committed input.npy holds the same values
    let npy = npy::read_npy_f32(&weights_util::fixtures().join("input.npy")).unwrap();
    assert_eq!(npy.shape, shape);
    assert_eq!(npy.data, x);
}
