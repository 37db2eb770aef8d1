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

/// Writes a little-endian float32 C-order `.npy` (version 1.0) atomically: a temporary
/// file in the target's folder, renamed when complete.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let numel: usize = shape.iter().product();
    if numel != data.len() {
        return Err(WeightError::InvalidInput {
            detail: format!(
                "npy {}: shape {shape:?} does not match {} values",
                path.display(),
                data.len()
            ),
        });
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("{},", dims[0])
    } else {
        dims.join(", ")
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({tuple}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    super::atomic::write_atomically(path, |w| {
        use std::io::Write;
        w.write_all(b"\x93NUMPY\x01\x00")?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for chunk in data.chunks(1 << 16) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_all(&bytes)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips() {
        let dir = std::env::temp_dir().join(format!("npy-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_npy_f32(&p, &[1, 2, 3, 4], &data).unwrap();
        let a = read_npy_f32(&p).unwrap();
        assert_eq!(a.shape, [1, 2, 3, 4]);
        assert_eq!(a.data, data);
        assert!(write_npy_f32(&p, &[5], &data).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
