//! Every kind of bad input gets a one-line error naming the file and the problem, never a
//! panic. The broken files are made here, byte by byte, in scratch folders.
mod common;

use std::path::PathBuf;
use std::time::Instant;

use brats_preprocess::{read_nifti, read_volume, write_label_map, Case, LabelMap, Modality};
use common::*;

const SHAPE: [usize; 3] = [12, 10, 8];

#[test]
fn a_complete_case_loads_in_network_order_with_orientation() {
    let dir = scratch("ok");
    let paths = write_case(&dir, "Brats18_X_1", SHAPE);
    let case = Case::from_dir(&dir).unwrap();
    assert_eq!(case.name, "Brats18_X_1");
    for (m, p) in Modality::NETWORK_ORDER.iter().zip(&paths) {
        assert_eq!(&case.sources[m.channel()].path, p);
        assert_eq!(case.sources[m.channel()].orientation, "LPS");
    }
    let text = case.describe();
    assert!(
        text.contains("channel 3 T1ce") && text.contains("Brats18_X_1_t1ce.nii.gz"),
        "{text}"
    );
}

#[test]
fn brats2023_names_and_plain_nii_are_recognised() {
    let dir = scratch("b23");
    let shape = SHAPE;
    for (n, s) in ["t1n", "t2w", "t2f", "t1c"].iter().enumerate() {
        let ext = if n % 2 == 0 { "nii" } else { "nii.gz" };
        write_i16(
            &dir.join(format!("BraTS-GLI-1-000-{s}.{ext}")),
            shape,
            &ball(shape, 50 * (n as i16 + 1)),
        );
    }
    std::fs::write(dir.join("BraTS-GLI-1-000-seg.nii.gz"), b"not read").unwrap();
    let case = Case::from_dir(&dir).unwrap();
    assert_eq!(case.name, "BraTS-GLI-1-000");
    assert!(case.sources[Modality::Flair.channel()]
        .path
        .ends_with("BraTS-GLI-1-000-t2f.nii"));
    assert!(case.sources[Modality::T1ce.channel()]
        .path
        .ends_with("BraTS-GLI-1-000-t1c.nii.gz"));
}

#[test]
fn missing_modality() {
    let dir = scratch("missing");
    let paths = write_case(&dir, "c", SHAPE);
    std::fs::remove_file(&paths[3]).unwrap();
    let e = Case::from_dir(&dir).unwrap_err();
    assert_one_line_naming(e.message(), &dir, "missing T1ce");
}

#[test]
fn duplicate_modality() {
    let dir = scratch("dup");
    let paths = write_case(&dir, "c", SHAPE);
    let extra = dir.join("c_t2.nii");
    write_i16(&extra, SHAPE, &ball(SHAPE, 10));
    let e = Case::from_dir(&dir).unwrap_err();
    assert_one_line_naming(e.message(), &extra, "duplicate T2");

    let named = vec![
        (Modality::T1, paths[0].clone()),
        (Modality::T1, paths[1].clone()),
        (Modality::Flair, paths[2].clone()),
        (Modality::T1ce, paths[3].clone()),
    ];
    let e = Case::from_named_files(&named).unwrap_err();
    assert_one_line_naming(e.message(), &paths[1], "duplicate T1");
}

#[test]
fn nonexistent_file() {
    let dir = scratch("nofile");
    let mut paths = write_case(&dir, "c", SHAPE);
    paths[1] = dir.join("nope_t2.nii.gz");
    let e = Case::from_files(&paths[0], &paths[1], &paths[2], &paths[3]).unwrap_err();
    assert_one_line_naming(e.message(), &paths[1], "does not exist");
}

#[test]
fn shapes_differ() {
    let dir = scratch("shape");
    let paths = write_case(&dir, "c", SHAPE);
    let other = [12, 10, 9];
    write_i16(&paths[2], other, &ball(other, 100));
    let e = Case::from_dir(&dir).unwrap_err();
    assert_one_line_naming(e.message(), &paths[2], "shape 12x10x9 differs");
}

#[test]
fn affines_differ() {
    let dir = scratch("affine");
    let paths = write_case(&dir, "c", SHAPE);
    let mut h = header(&SHAPE, 4, 16);
    h.srow_y[3] = 240.0; // shifted by one voxel
    let data: Vec<u8> = ball(SHAPE, 100)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    write_raw(&paths[1], &h, &data);
    let e = Case::from_dir(&dir).unwrap_err();
    assert_one_line_naming(e.message(), &paths[1], "not co-registered");

    // Round-off far below the tolerance is accepted.
    h.srow_y[3] = 239.0001;
    write_raw(&paths[1], &h, &data);
    assert!(Case::from_dir(&dir).is_ok());
}

#[test]
fn four_d_where_three_d_expected() {
    let dir = scratch("4d");
    let path = dir.join("c_t1.nii.gz");
    let shape4 = [12, 10, 8, 2];
    let data = vec![1u8; 12 * 10 * 8 * 2 * 2];
    write_raw(&path, &header(&shape4, 4, 16), &data);
    let e = read_volume(&path).unwrap_err();
    assert_one_line_naming(
        e.message(),
        &path,
        "4D data (12x10x8x2) where a 3D volume is expected",
    );
    // A trailing singleton axis is fine.
    write_raw(
        &path,
        &header(&[12, 10, 8, 1], 4, 16),
        &data[..12 * 10 * 8 * 2],
    );
    assert_eq!(read_volume(&path).unwrap().0.dims(), [12, 10, 8]);
}

#[test]
fn all_zero_volume() {
    let dir = scratch("zero");
    let paths = write_case(&dir, "c", SHAPE);
    write_i16(&paths[0], SHAPE, &vec![0; 960]);
    let e = Case::from_dir(&dir).unwrap_err();
    assert_one_line_naming(e.message(), &paths[0], "empty brain mask");
}

#[test]
fn nan_and_inf_voxels() {
    let dir = scratch("nan");
    let path = dir.join("c_t1.nii");
    for bad in [f32::NAN, f32::INFINITY] {
        let mut v = vec![1.0f32; 960];
        v[17] = bad;
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        write_raw(&path, &header(&SHAPE, 16, 32), &data);
        let e = read_nifti(&path).unwrap_err();
        assert_one_line_naming(e.message(), &path, "1 voxels are NaN or Inf");
    }
}

#[test]
fn unsupported_datatype() {
    let dir = scratch("dtype");
    let path = dir.join("c_t1.nii.gz");
    write_raw(&path, &header(&SHAPE, 32, 64), &vec![0u8; 960 * 8]);
    let e = read_nifti(&path).unwrap_err();
    assert_one_line_naming(e.message(), &path, "unsupported datatype 32 (complex64)");
    write_raw(&path, &header(&SHAPE, 128, 24), &vec![0u8; 960 * 3]);
    let e = read_nifti(&path).unwrap_err();
    assert_one_line_naming(e.message(), &path, "unsupported datatype 128 (RGB24)");
}

#[test]
fn truncated_and_corrupt_gzip() {
    let dir = scratch("gz");
    let path = dir.join("c_t1.nii.gz");
    write_i16(&path, SHAPE, &ball(SHAPE, 100));
    let bytes = std::fs::read(&path).unwrap();

    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_nifti(&path).unwrap_err();
    assert_one_line_naming(e.message(), &path, "truncated");

    // Cut only the 8-byte gzip trailer: all voxels are there but the archive is incomplete.
    std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    let e = read_nifti(&path).unwrap_err();
    assert_one_line_naming(e.message(), &path, "truncated");

    // Flip bits in the compressed payload: the inflater or the CRC check must notice.
    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &corrupt).unwrap();
    let e = read_nifti(&path).unwrap_err();
    assert!(!e.message().contains('\n'));
    assert!(
        e.message().contains("corrupt") || e.message().contains("truncated"),
        "{e}"
    );

    // Not gzip and not NIfTI at all.
    let junk = dir.join("junk_t1.nii");
    std::fs::write(&junk, b"hello").unwrap();
    assert_one_line_naming(
        read_nifti(&junk).unwrap_err().message(),
        &junk,
        "not a NIfTI-1 file",
    );

    // Uncompressed .nii cut inside the voxel data.
    let raw = dir.join("c_t2.nii");
    write_i16(&raw, SHAPE, &ball(SHAPE, 100));
    let b = std::fs::read(&raw).unwrap();
    std::fs::write(&raw, &b[..b.len() - 10]).unwrap();
    assert_one_line_naming(read_nifti(&raw).unwrap_err().message(), &raw, "truncated");
}

#[test]
fn absurd_dimensions_are_refused_before_allocating() {
    let dir = scratch("huge");
    let path = dir.join("c_t1.nii.gz");
    // 30000^3 int16 would be 54 TB as stored, 98 TiB as f32; the file holds no data.
    write_raw(&path, &header(&[30000, 30000, 30000], 4, 16), &[]);
    let started = Instant::now();
    let e = read_nifti(&path).unwrap_err();
    assert_one_line_naming(
        e.message(),
        &path,
        "header dimensions 30000x30000x30000 would need",
    );
    assert!(started.elapsed().as_secs_f64() < 1.0);
}

#[test]
fn unwritable_output_path() {
    let dir = scratch("out");
    let labels = LabelMap {
        dims: [2, 2, 2],
        classes: vec![0; 8],
    };
    let h = header(&[2, 2, 2], 4, 16);
    let missing: PathBuf = dir.join("no/such/folder/out.nii.gz");
    let e = write_label_map(&missing, &labels, &h, Default::default()).unwrap_err();
    assert_one_line_naming(e.message(), &missing, "output folder does not exist");

    let file = dir.join("a_file");
    std::fs::write(&file, b"x").unwrap();
    let under_file = file.join("out.nii.gz");
    let e = write_label_map(&under_file, &labels, &h, Default::default()).unwrap_err();
    assert_one_line_naming(e.message(), &under_file, "cannot write");

    let e = write_label_map(&dir, &labels, &h, Default::default()).unwrap_err();
    assert_one_line_naming(e.message(), &dir, "cannot write");
    // Nothing partial is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn msd_four_d_file_uses_the_decathlon_order_unless_told_otherwise() {
    let dir = scratch("msd");
    let path = dir.join("BRATS_001.nii.gz");
    // Volume v holds the constant-ish ball scaled by (v + 1) so each channel is identifiable.
    let n = 960;
    let mut voxels: Vec<i16> = Vec::with_capacity(4 * n);
    for v in 0..4 {
        voxels.extend(ball(SHAPE, 100 * (v as i16 + 1)));
    }
    let data: Vec<u8> = voxels.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(&path, &header(&[12, 10, 8, 4], 4, 16), &data);
    let case = Case::from_msd(&path, None).unwrap();
    // Decathlon order FLAIR, T1w, T1gd, T2w: FLAIR is volume 0, T2 volume 3.
    let flair = &case.sources[Modality::Flair.channel()];
    assert_eq!(flair.volume_index, Some(0));
    assert_eq!(case.sources[Modality::T2.channel()].volume_index, Some(3));
    let peak = |m: Modality| case.volume(m).data().iter().copied().fold(0.0f32, f32::max);
    assert!(
        peak(Modality::Flair) < peak(Modality::T1) && peak(Modality::T1ce) < peak(Modality::T2)
    );
    assert!(case.describe().contains("[volume 3]"));

    let order = Modality::parse_order("t1,t2,flair,t1ce").unwrap();
    let case = Case::from_msd(&path, Some(order)).unwrap();
    assert_eq!(case.sources[Modality::T1.channel()].volume_index, Some(0));
    assert!(Modality::parse_order("t1,t1,flair,t1ce").is_err());

    let three = dir.join("three.nii.gz");
    write_i16(&three, SHAPE, &ball(SHAPE, 1));
    let e = Case::from_msd(&three, None).unwrap_err();
    assert_one_line_naming(
        e.message(),
        &three,
        "expected a 4D volume with 4 modalities",
    );
}

/// Seeded xorshift, for reproducible corruption.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn corrupted_headers_and_truncations_never_panic() {
    let dir = scratch("fuzz");
    let good = dir.join("good.nii");
    write_i16(&good, [6, 5, 4], &ball([6, 5, 4], 100));
    let bytes = std::fs::read(&good).unwrap();
    let path = dir.join("bad.nii");
    // Every truncation length.
    for len in 0..bytes.len() {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let e = read_nifti(&path).unwrap_err();
        assert!(!e.message().contains('\n'));
    }
    // Random byte changes in the header: an error or a volume, never a panic.
    let mut state = 0x2018_u64;
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next(&mut state) % 4 {
            let at = (next(&mut state) % 352) as usize;
            b[at] = next(&mut state) as u8;
        }
        std::fs::write(&path, &b).unwrap();
        if let Err(e) = read_nifti(&path) {
            assert!(!e.message().contains('\n'), "{e}");
        }
    }
}
