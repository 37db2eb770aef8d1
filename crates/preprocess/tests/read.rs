//! Reader details beyond the happy path: scaling, byte order, datatypes, and the real
//! case's header (vox_offset past an extension).
mod common;

use std::path::Path;

use brats_preprocess::nifti_write::header_bytes;
use brats_preprocess::read_nifti;
use common::*;

/// Byte-swap every multi-byte field of a little-endian NIfTI-1 header (offsets from the
/// NIfTI-1 specification).
fn to_big_endian(le: &[u8]) -> Vec<u8> {
    let mut b = le.to_vec();
    let mut swap = |at: usize, n: usize| b[at..at + n].reverse();
    swap(0, 4);
    swap(32, 4);
    swap(36, 2);
    (40..56).step_by(2).for_each(|o| swap(o, 2));
    (56..68).step_by(4).for_each(|o| swap(o, 4));
    (68..76).step_by(2).for_each(|o| swap(o, 2));
    (76..120).step_by(4).for_each(|o| swap(o, 4));
    swap(120, 2);
    (124..148).step_by(4).for_each(|o| swap(o, 4));
    swap(252, 2);
    swap(254, 2);
    (256..328).step_by(4).for_each(|o| swap(o, 4));
    b
}

#[test]
fn big_endian_files_read_like_little_endian_ones() {
    let dir = scratch("be");
    let values: Vec<i16> = (0..24).map(|v| v * 300 - 2000).collect();
    let h = header(&[4, 3, 2], 4, 16);
    let mut bytes = to_big_endian(&header_bytes(&h));
    bytes.extend([0, 0, 0, 0]);
    bytes.extend(values.iter().flat_map(|v| v.to_be_bytes()));
    let path = dir.join("be.nii");
    std::fs::write(&path, bytes).unwrap();
    let image = read_nifti(&path).unwrap();
    assert_eq!(image.shape, vec![4, 3, 2]);
    let expected: Vec<f32> = values.iter().map(|&v| f32::from(v)).collect();
    assert_eq!(image.data, expected);
    assert_eq!(image.affine[1][3], 239.0);
}

#[test]
fn scaling_is_applied_only_with_a_finite_non_zero_slope() {
    let dir = scratch("scale");
    let path = dir.join("s.nii.gz");
    let raw: Vec<u8> = [1i16, 2, 3, 4, 5, 6, 7, 8]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut h = header(&[2, 2, 2], 4, 16);
    h.scl_slope = 0.5;
    h.scl_inter = 10.0;
    write_raw(&path, &h, &raw);
    let data = read_nifti(&path).unwrap().data;
    assert_eq!(data, vec![10.5, 11.0, 11.5, 12.0, 12.5, 13.0, 13.5, 14.0]);
    for slope in [0.0, f32::NAN] {
        h.scl_slope = slope;
        write_raw(&path, &h, &raw);
        assert_eq!(
            read_nifti(&path).unwrap().data,
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
    }
}

#[test]
fn every_supported_datatype_decodes() {
    let dir = scratch("types");
    let path = dir.join("t.nii");
    let h = |code: i16, bits: i16| header(&[2, 1, 1], code, bits);
    let cases: Vec<(i16, i16, Vec<u8>, [f32; 2])> = vec![
        (2, 8, vec![7, 255], [7.0, 255.0]),
        (256, 8, vec![0xff, 5], [-1.0, 5.0]),
        (
            512,
            16,
            [60000u16, 3].iter().flat_map(|v| v.to_le_bytes()).collect(),
            [60000.0, 3.0],
        ),
        (
            8,
            32,
            [-70000i32, 3]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            [-70000.0, 3.0],
        ),
        (
            768,
            32,
            [4000000000u32, 3]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            [4.0e9, 3.0],
        ),
        (
            1024,
            64,
            [-5i64, 3].iter().flat_map(|v| v.to_le_bytes()).collect(),
            [-5.0, 3.0],
        ),
        (
            1280,
            64,
            [5u64, 3].iter().flat_map(|v| v.to_le_bytes()).collect(),
            [5.0, 3.0],
        ),
        (
            16,
            32,
            [1.25f32, -3.5]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            [1.25, -3.5],
        ),
        (
            64,
            64,
            [1.25f64, -3.5]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            [1.25, -3.5],
        ),
    ];
    for (code, bits, bytes, expected) in cases {
        write_raw(&path, &h(code, bits), &bytes);
        assert_eq!(
            read_nifti(&path).unwrap().data,
            expected.to_vec(),
            "datatype {code}"
        );
    }
}

#[test]
fn real_case_header_with_extension_reads_in_stored_order() {
    // The shared files have vox_offset 2880 (an extension before the voxels).
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz");
    let image = read_nifti(&path).unwrap();
    assert_eq!(image.header.vox_offset, 2880.0);
    assert_eq!(image.shape, vec![240, 240, 155]);
    assert_eq!(
        brats_preprocess::affine::orientation_codes(&image.affine),
        "LPS"
    );
    // nibabel reports max 2921 for this file (tools/reference/preprocess, dataobj.max()).
    assert_eq!(image.data.iter().copied().fold(0.0f32, f32::max), 2921.0);
}
