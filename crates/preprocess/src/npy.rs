//! Writing `.npy` files (format 1.0, little-endian f32, C order), so that the exact network
//! input can be saved (`--save-input`) and compared with numpy or the MXNet reference.
use std::path::Path;

use flate2::Compression;

use crate::error::{Error, Result};
use crate::nifti_write::write_atomically;

/// The header bytes (magic, version, length, dict) for an f32 C-order array of `shape`.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad with spaces so that magic + version + length + dict + '\n' is a multiple of 64.
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

/// Write `data` as an f32 `.npy` of `shape` (atomically).
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(Error::at(
            path,
            format!("{} values do not fill shape {shape:?}", data.len()),
        ));
    }
    let header = npy_header(shape);
    write_atomically(path, Compression::none(), |w| {
        w.write_all(&header)?;
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
    fn header_is_aligned_and_describes_the_array() {
        let h = npy_header(&[1, 4, 128, 128, 128]);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.starts_with(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 128, 128, 128), }"
        ));
        assert!(text.ends_with('\n'));
        assert!(std::str::from_utf8(&npy_header(&[7])[10..])
            .unwrap()
            .contains("(7,)"));
    }
}
