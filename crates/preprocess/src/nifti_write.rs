//! Writing NIfTI-1 outputs (label maps, probability maps) that keep the input's header:
//! qform, sform, pixdim, units and description are copied from a template header; only
//! the fields describing the data (dims, datatype, scaling, offset) are replaced.
//!
//! The header is serialised here (little-endian, 348 bytes, no extensions) rather than
//! through the `nifti` crate's writer, which needs `ndarray` and chooses output names
//! itself. Every write goes to a temporary file in the target folder which is renamed over
//! the target only once complete, so a failed run never leaves a partial output.
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use nifti::NiftiHeader;

use crate::error::{Error, Result};
use crate::labels::LabelConvention;
use crate::pipeline::LabelMap;
use crate::volume::Volume;

const DT_UINT8: i16 = 2;
const DT_INT16: i16 = 4;
const DT_FLOAT32: i16 = 16;

/// The 348 header bytes, little-endian.
pub fn header_bytes(h: &NiftiHeader) -> Vec<u8> {
    let mut b = Vec::with_capacity(348);
    b.extend(h.sizeof_hdr.to_le_bytes());
    b.extend(h.data_type);
    b.extend(h.db_name);
    b.extend(h.extents.to_le_bytes());
    b.extend(h.session_error.to_le_bytes());
    b.push(h.regular);
    b.push(h.dim_info);
    h.dim.iter().for_each(|v| b.extend(v.to_le_bytes()));
    for v in [h.intent_p1, h.intent_p2, h.intent_p3] {
        b.extend(v.to_le_bytes());
    }
    for v in [h.intent_code, h.datatype, h.bitpix, h.slice_start] {
        b.extend(v.to_le_bytes());
    }
    h.pixdim.iter().for_each(|v| b.extend(v.to_le_bytes()));
    for v in [h.vox_offset, h.scl_slope, h.scl_inter] {
        b.extend(v.to_le_bytes());
    }
    b.extend(h.slice_end.to_le_bytes());
    b.push(h.slice_code);
    b.push(h.xyzt_units);
    for v in [h.cal_max, h.cal_min, h.slice_duration, h.toffset] {
        b.extend(v.to_le_bytes());
    }
    b.extend(h.glmax.to_le_bytes());
    b.extend(h.glmin.to_le_bytes());
    let mut descrip = [0u8; 80];
    let n = h.descrip.len().min(80);
    descrip[..n].copy_from_slice(&h.descrip[..n]);
    b.extend(descrip);
    b.extend(h.aux_file);
    b.extend(h.qform_code.to_le_bytes());
    b.extend(h.sform_code.to_le_bytes());
    for v in [
        h.quatern_b,
        h.quatern_c,
        h.quatern_d,
        h.quatern_x,
        h.quatern_y,
        h.quatern_z,
    ] {
        b.extend(v.to_le_bytes());
    }
    for row in [h.srow_x, h.srow_y, h.srow_z] {
        row.iter().for_each(|v| b.extend(v.to_le_bytes()));
    }
    b.extend(h.intent_name);
    b.extend(h.magic);
    debug_assert_eq!(b.len(), 348);
    b
}

/// A header for new data of `shape` and `datatype`, geometry copied from `template`.
pub fn derived_header(
    template: &NiftiHeader,
    shape: &[usize],
    datatype: i16,
) -> Result<NiftiHeader> {
    if shape.is_empty() || shape.len() > 7 {
        return Err(Error::msg(format!(
            "cannot write a {}D NIfTI volume",
            shape.len()
        )));
    }
    let mut h = template.clone();
    h.sizeof_hdr = 348;
    h.dim = [1; 8];
    h.dim[0] = shape.len() as u16;
    for (slot, &d) in h.dim[1..].iter_mut().zip(shape) {
        *slot = u16::try_from(d)
            .ok()
            .filter(|&v| v <= i16::MAX as u16)
            .ok_or_else(|| Error::msg(format!("axis length {d} does not fit a NIfTI-1 header")))?;
    }
    h.datatype = datatype;
    h.bitpix = match datatype {
        DT_UINT8 => 8,
        DT_INT16 => 16,
        _ => 32,
    };
    h.vox_offset = 352.0;
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    h.cal_min = 0.0;
    h.cal_max = 0.0;
    h.glmax = 0;
    h.glmin = 0;
    h.intent_code = 0;
    h.magic = *b"n+1\0";
    h.endianness = nifti::Endianness::Little;
    Ok(h)
}

/// Write `path` atomically: `fill` writes the whole content to a temporary file beside it,
/// which is renamed to `path` only after it succeeded. `.gz` names are gzip-compressed.
pub fn write_atomically(
    path: &Path,
    level: Compression,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::at(path, "output path has no file name"))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(Error::at(
            path,
            "cannot write: the output folder does not exist",
        ));
    }
    if path.is_dir() {
        return Err(Error::at(path, "cannot write: it is a directory"));
    }
    let temp = folder.join(format!(
        ".{}.partial-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> io::Result<()> {
        let file = File::create(&temp)?;
        let gz = path
            .extension()
            .map(|e| e.eq_ignore_ascii_case("gz"))
            .unwrap_or(false);
        if gz {
            let mut encoder = GzEncoder::new(BufWriter::with_capacity(1 << 20, file), level);
            fill(&mut encoder)?;
            encoder
                .finish()?
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
        } else {
            let mut writer = BufWriter::with_capacity(1 << 20, file);
            fill(&mut writer)?;
            writer
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
        }
        fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        Error::at(path, format!("cannot write: {e}"))
    })
}

fn write_image(path: &Path, header: &NiftiHeader, level: Compression, data: &[u8]) -> Result<()> {
    let head = header_bytes(header);
    write_atomically(path, level, |w| {
        w.write_all(&head)?;
        w.write_all(&[0, 0, 0, 0])?; // no extensions
        w.write_all(data)
    })
}

/// Write a uint8 image of `shape` (stored order) with the template's geometry.
pub fn write_nifti_u8(
    path: &Path,
    shape: &[usize],
    data: &[u8],
    template: &NiftiHeader,
) -> Result<()> {
    check_len(path, shape, data.len())?;
    let header = derived_header(template, shape, DT_UINT8).map_err(|e| Error::at(path, e))?;
    write_image(path, &header, Compression::default(), data)
}

/// Write a float32 image of `shape` (stored order) with the template's geometry.
pub fn write_nifti_f32(
    path: &Path,
    shape: &[usize],
    data: &[f32],
    template: &NiftiHeader,
) -> Result<()> {
    check_len(path, shape, data.len())?;
    let header = derived_header(template, shape, DT_FLOAT32).map_err(|e| Error::at(path, e))?;
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_image(path, &header, Compression::fast(), &bytes)
}

/// Write an int16 image of `shape` (stored order) with the template's geometry.
pub fn write_nifti_i16(
    path: &Path,
    shape: &[usize],
    data: &[i16],
    template: &NiftiHeader,
) -> Result<()> {
    check_len(path, shape, data.len())?;
    let header = derived_header(template, shape, DT_INT16).map_err(|e| Error::at(path, e))?;
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_image(path, &header, Compression::default(), &bytes)
}

fn check_len(path: &Path, shape: &[usize], len: usize) -> Result<()> {
    if shape.iter().product::<usize>() != len {
        return Err(Error::at(
            path,
            format!("internal: {len} values do not fill shape {shape:?}"),
        ));
    }
    Ok(())
}

/// Write a label map as uint8 in the given convention, with the case's header geometry.
pub fn write_label_map(
    path: &Path,
    labels: &LabelMap,
    template: &NiftiHeader,
    convention: LabelConvention,
) -> Result<()> {
    let values: Vec<u8> = labels
        .classes
        .iter()
        .map(|&c| convention.encode(c))
        .collect();
    write_nifti_u8(path, &labels.dims, &values, template)
}

/// Write per-class probability volumes as one 4D float32 image `[nx, ny, nz, classes]`.
pub fn write_probabilities(path: &Path, classes: &[Volume], template: &NiftiHeader) -> Result<()> {
    let first = classes
        .first()
        .ok_or_else(|| Error::at(path, "no probability volumes to write"))?;
    let d = first.dims();
    let mut data = Vec::with_capacity(d.iter().product::<usize>() * classes.len());
    for v in classes {
        data.extend_from_slice(v.data());
    }
    write_nifti_f32(path, &[d[0], d[1], d[2], classes.len()], &data, template)
}
