//! Helpers shared by the integration tests: scratch folders and hand-made NIfTI files
//! (valid and deliberately broken) built byte by byte.
#![allow(dead_code)]
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use brats_preprocess::nifti_write::header_bytes;
use nifti::NiftiHeader;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh empty folder under the system temp dir.
pub fn scratch(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("brats-pre-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A header for `shape` with NIfTI datatype code `datatype` and `bits` per voxel, 1 mm
/// voxels, LPS sform/qform like the BraTS files.
pub fn header(shape: &[usize], datatype: i16, bits: i16) -> NiftiHeader {
    let mut h = NiftiHeader {
        datatype,
        bitpix: bits,
        vox_offset: 352.0,
        magic: *b"n+1\0",
        scl_slope: 1.0,
        qform_code: 1,
        sform_code: 1,
        quatern_d: 1.0,
        quatern_y: 239.0,
        srow_x: [-1.0, 0.0, 0.0, 0.0],
        srow_y: [0.0, -1.0, 0.0, 239.0],
        srow_z: [0.0, 0.0, 1.0, 0.0],
        pixdim: [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        ..NiftiHeader::default()
    };
    h.dim = [1; 8];
    h.dim[0] = shape.len() as u16;
    for (slot, &d) in h.dim[1..].iter_mut().zip(shape) {
        *slot = d as u16;
    }
    h
}

/// Write header + empty extension flag + `data` to `path`, gzip-compressed for `.gz`.
pub fn write_raw(path: &Path, h: &NiftiHeader, data: &[u8]) {
    let mut bytes = header_bytes(h);
    bytes.extend([0, 0, 0, 0]);
    bytes.extend_from_slice(data);
    if path.extension().map(|e| e == "gz").unwrap_or(false) {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        bytes = enc.finish().unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// An int16 volume file with the given voxels (stored order).
pub fn write_i16(path: &Path, shape: [usize; 3], voxels: &[i16]) {
    let data: Vec<u8> = voxels.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(path, &header(&shape, 4, 16), &data);
}

/// A small brain-like int16 volume: a ball of values rising towards the centre.
pub fn ball(shape: [usize; 3], scale: i16) -> Vec<i16> {
    let c = [
        shape[0] as f64 / 2.0,
        shape[1] as f64 / 2.0,
        shape[2] as f64 / 2.0,
    ];
    let r = c.iter().copied().fold(f64::INFINITY, f64::min) * 0.8;
    let mut out = Vec::with_capacity(shape.iter().product());
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                let d = ((i as f64 - c[0]).powi(2)
                    + (j as f64 - c[1]).powi(2)
                    + (k as f64 - c[2]).powi(2))
                .sqrt();
                out.push(if d < r {
                    (scale as f64 * (1.5 - d / r) + (i % 3) as f64) as i16
                } else {
                    0
                });
            }
        }
    }
    out
}

/// Four valid modality files `NAME_t1.nii.gz` ... in `dir`; returns their paths in
/// network order (T1, T2, FLAIR, T1ce).
pub fn write_case(dir: &Path, name: &str, shape: [usize; 3]) -> Vec<PathBuf> {
    ["t1", "t2", "flair", "t1ce"]
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let p = dir.join(format!("{name}_{s}.nii.gz"));
            write_i16(&p, shape, &ball(shape, 100 * (n as i16 + 1)));
            p
        })
        .collect()
}

/// The error text must be one line naming `path`.
pub fn assert_one_line_naming(message: &str, path: &Path, needle: &str) {
    assert!(!message.contains('\n'), "multi-line error: {message}");
    assert!(
        message.contains(&path.display().to_string()),
        "error does not name {}: {message}",
        path.display()
    );
    assert!(
        message.contains(needle),
        "error lacks '{needle}': {message}"
    );
}
