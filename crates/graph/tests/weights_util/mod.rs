//! Helpers shared by the `weights_*` integration tests: fixture paths, the reference
//! manifest, SHA-256 in hex, and scratch directories under Cargo's test tmpdir.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// `tools/reference/fixtures/` of the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/reference/fixtures")
}

/// The parsed `manifest.json`.
pub fn manifest() -> serde_json::Value {
    let p = fixtures().join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("manifest.json parses")
}

/// Seed the fixtures were made with.
pub fn seed() -> u64 {
    manifest()["seed"].as_u64().expect("manifest seed")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A fresh, empty scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("weights-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}
