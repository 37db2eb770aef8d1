//! Minimal reader of NumPy `.npy` files holding little-endian float32 in C order, the
//! format of the reference fixtures in `tools/reference/fixtures/`. Only what the
//! fixtures use is accepted (versions 1-3, `'<f4'`, `fortran_order: False`); anything
//! else is an error naming the file, so a test never compares garbage.
use std::path::Path;

use super::error::Problem;
use super::{Result, WeightError};

/// A loaded `.npy` array: shape and flat data.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads a float32 `.npy` file.
pub fn read_npy_f32(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| WeightError::io(path, "read", e))?;
    parse_npy_f32(&bytes, path)
}

/// Parses a float32 `.npy` image; `path` is used in messages only.
pub fn parse_npy_f32(b: &[u8], path: &Path) -> Result<NpyArray> {
    let bad = |p: Problem, d: &str| WeightError::malformed(path, p, d.to_string());
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(bad(Problem::BadMagic, "not a .npy file"));
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        _ => return Err(bad(Problem::UnsupportedVersion, "unknown .npy version")),
    };
    let header = b
        .get(start..start + hlen)
        .ok_or_else(|| bad(Problem::Truncated, "header runs past the end"))?;
    let header =
        std::str::from_utf8(header).map_err(|_| bad(Problem::BadHeader, "header is not text"))?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("'descr':'<f4'") {
        return Err(bad(
            Problem::BadDtype,
            "dtype is not '<f4' (little-endian float32)",
        ));
    }
    if !compact.contains("'fortran_order':False") {
        return Err(bad(Problem::BadHeader, "array is not in C order"));
    }
    let sh = compact
        .split("'shape':(")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad(Problem::BadHeader, "no shape in header"))?;
    let shape: Vec<usize> = sh
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad(Problem::BadShape, "shape is not a tuple of integers"))?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(Problem::BadShape, "shape overflows"))?;
    let data = &b[start + hlen..];
    if Some(data.len()) != numel.checked_mul(4) {
        return Err(bad(
            if data.len() < numel.saturating_mul(4) {
                Problem::Truncated
            } else {
                Problem::TrailingBytes
            },
            &format!(
                "shape {shape:?} needs {} data bytes, found {}",
                numel.saturating_mul(4),
                data.len()
            ),
        ));
    }
    let data = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(NpyArray { shape, data })
}
