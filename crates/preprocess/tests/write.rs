//! Outputs keep the input's geometry: written label and probability maps are read back
//! with the `nifti` crate's own reader (independent of ours) and compared field by field.
mod common;

use std::path::Path;

use brats_preprocess::{
    read_header, write_label_map, write_probabilities, LabelConvention, LabelMap, Volume,
};
use nifti::{NiftiObject, ReaderOptions};

fn real_t1() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1n.nii.gz")
}

#[test]
fn label_map_keeps_qform_sform_and_pixdim_of_the_input() {
    let template = read_header(&real_t1()).unwrap();
    let dims = [
        template.dim[1] as usize,
        template.dim[2] as usize,
        template.dim[3] as usize,
    ];
    let n = dims.iter().product::<usize>();
    let classes: Vec<u8> = (0..n).map(|i| ((i / 7) % 4) as u8).collect();
    let labels = LabelMap { dims, classes };
    let dir = common::scratch("write");
    let out = dir.join("labels.nii.gz");
    write_label_map(&out, &labels, &template, LabelConvention::Brats2018).unwrap();

    let object = ReaderOptions::new().read_file(&out).unwrap();
    let h = object.header();
    assert_eq!(h.datatype, 2);
    assert_eq!(h.bitpix, 8);
    assert_eq!(&h.dim[..4], &[3, 240, 240, 155]);
    assert_eq!(h.pixdim, template.pixdim);
    assert_eq!(
        (h.qform_code, h.sform_code),
        (template.qform_code, template.sform_code)
    );
    assert_eq!(
        [
            h.quatern_b,
            h.quatern_c,
            h.quatern_d,
            h.quatern_x,
            h.quatern_y,
            h.quatern_z
        ],
        [
            template.quatern_b,
            template.quatern_c,
            template.quatern_d,
            template.quatern_x,
            template.quatern_y,
            template.quatern_z
        ]
    );
    assert_eq!(
        [h.srow_x, h.srow_y, h.srow_z],
        [template.srow_x, template.srow_y, template.srow_z]
    );
    assert_eq!(h.xyzt_units, template.xyzt_units);
    let raw = object.into_volume().into_raw_data();
    let expected: Vec<u8> = labels
        .classes
        .iter()
        .map(|&c| [0u8, 1, 2, 4][c as usize])
        .collect();
    assert!(raw == expected, "label values differ after the round trip");
    // Only the target exists: the temporary file was renamed.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn probabilities_are_a_4d_float32_image() {
    let template = common::header(&[3, 2, 2], 4, 16);
    let volumes: Vec<Volume> = (0..4)
        .map(|c| {
            Volume::new(
                [3, 2, 2],
                (0..12).map(|i| (c * 12 + i) as f32 / 48.0).collect(),
            )
            .unwrap()
        })
        .collect();
    let dir = common::scratch("probs");
    let out = dir.join("p.nii");
    write_probabilities(&out, &volumes, &template).unwrap();
    let object = ReaderOptions::new().read_file(&out).unwrap();
    assert_eq!(&object.header().dim[..5], &[4, 3, 2, 2, 4]);
    assert_eq!(object.header().datatype, 16);
    let raw = object.into_volume().into_raw_data();
    let values: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let expected: Vec<f32> = (0..48).map(|i| i as f32 / 48.0).collect();
    assert_eq!(values, expected);
}
