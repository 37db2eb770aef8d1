//! Reading NIfTI-1 files (`.nii`, `.nii.gz`) into f32 voxels in stored index order.
//!
//! Shaped around refusing bad input early and in one line: the 348-byte header is parsed
//! (with the `nifti` crate) and checked (format, datatype, dimensionality, and the memory
//! the data would need) *before* any voxel buffer is allocated; then exactly the bytes the
//! header promises are read, and for gzip files the stream is drained to its end so that a
//! truncated or corrupt archive is reported instead of silently yielding garbage.
//! Compression is detected from the gzip magic bytes, not from the file name.
//! Scaling (`scl_slope`, `scl_inter`) is applied as nibabel does: only when the slope is
//! finite and non-zero.
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use nifti::NiftiHeader;

use crate::affine::{header_affine, Affine};
use crate::error::{Error, Result};
use crate::volume::Volume;

/// Refuse volumes with more voxels than this (2^28 = 268 M voxels, 1 GiB as f32). A brain
/// MRI is a few million voxels; a header asking for more is broken or hostile.
pub const MAX_VOXELS: usize = 1 << 28;

const HEADER_BYTES: usize = 348;

/// One NIfTI file as read: its header, its spatial dimensions and voxels.
#[derive(Debug, Clone)]
pub struct NiftiImage {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// The header exactly as stored (used as the template when writing outputs).
    pub header: NiftiHeader,
    /// The voxel-to-world affine chosen from the header.
    pub affine: Affine,
    /// Dimensions `dim[1..=dim[0]]` with trailing singleton axes beyond the third removed.
    pub shape: Vec<usize>,
    /// Voxels as f32 in stored order (first index fastest), scaling applied.
    pub data: Vec<f32>,
}

impl NiftiImage {
    /// The image as one 3D volume; fails (naming the file) if it has a fourth axis.
    pub fn into_volume(self) -> Result<(Volume, NiftiHeader, Affine)> {
        match self.shape.len() {
            3 => Ok((
                Volume::new([self.shape[0], self.shape[1], self.shape[2]], self.data)?,
                self.header,
                self.affine,
            )),
            _ => Err(Error::at(
                &self.path,
                format!(
                    "{}D data ({}) where a 3D volume is expected",
                    self.shape.len(),
                    shape_text(&self.shape)
                ),
            )),
        }
    }
}

/// `240x240x155`.
pub fn shape_text(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    parts.join("x")
}

/// How the voxels of one datatype are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl Storage {
    fn from_code(code: i16) -> std::result::Result<Storage, String> {
        Ok(match code {
            2 => Storage::U8,
            256 => Storage::I8,
            4 => Storage::I16,
            512 => Storage::U16,
            8 => Storage::I32,
            768 => Storage::U32,
            1024 => Storage::I64,
            1280 => Storage::U64,
            16 => Storage::F32,
            64 => Storage::F64,
            other => {
                let name = match other {
                    0 => "unknown",
                    1 => "binary",
                    32 => "complex64",
                    128 => "RGB24",
                    1536 => "float128",
                    1792 => "complex128",
                    2048 => "complex256",
                    2304 => "RGBA32",
                    _ => "not a NIfTI datatype",
                };
                return Err(format!(
                    "unsupported datatype {other} ({name}); expected an integer or float32/float64 volume"
                ));
            }
        })
    }

    fn bytes(self) -> usize {
        match self {
            Storage::U8 | Storage::I8 => 1,
            Storage::I16 | Storage::U16 => 2,
            Storage::I32 | Storage::U32 | Storage::F32 => 4,
            Storage::I64 | Storage::U64 | Storage::F64 => 8,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Storage::F32 | Storage::F64)
    }
}

/// Read only the header of a NIfTI-1 file, with the same checks as [`read_nifti`].
pub fn read_header(path: &Path) -> Result<NiftiHeader> {
    let mut stream = open_stream(path)?;
    let (header, _) = read_checked_header(path, &mut stream)?;
    Ok(header)
}

/// Read a whole NIfTI-1 file.
pub fn read_nifti(path: &Path) -> Result<NiftiImage> {
    let mut stream = open_stream(path)?;
    let (header, layout) = read_checked_header(path, &mut stream)?;

    // Skip extensions up to vox_offset.
    let skip = (layout.data_offset - HEADER_BYTES) as u64;
    let skipped = io::copy(&mut (&mut stream).take(skip), &mut io::sink())
        .map_err(|e| stream_error(path, &e))?;
    if skipped < skip {
        return Err(Error::at(
            path,
            "truncated: file ends before the voxel data",
        ));
    }

    // Grow the buffer as data arrive (instead of allocating what the header claims), so a
    // short file with a large header never costs more memory than its actual content.
    let n_bytes = layout.voxels * layout.storage.bytes();
    let mut raw = Vec::with_capacity(n_bytes.min(1 << 26));
    (&mut stream)
        .take(n_bytes as u64)
        .read_to_end(&mut raw)
        .map_err(|e| stream_error(path, &e))?;
    if raw.len() < n_bytes {
        return Err(Error::at(
            path,
            format!(
                "truncated: the header promises {n_bytes} bytes of voxels, the file has {}",
                raw.len()
            ),
        ));
    }
    // Drain the rest so that gzip checks its CRC and length trailer.
    io::copy(&mut stream, &mut io::sink()).map_err(|e| stream_error(path, &e))?;

    let big_endian = header.endianness == nifti::Endianness::Big;
    let mut data = decode(&raw, layout.storage, big_endian);
    drop(raw);

    let slope = header.scl_slope;
    let inter = if header.scl_inter.is_finite() {
        header.scl_inter
    } else {
        0.0
    };
    if slope.is_finite() && slope != 0.0 && (slope != 1.0 || inter != 0.0) {
        let (s, i) = (f64::from(slope), f64::from(inter));
        for v in &mut data {
            *v = (f64::from(*v) * s + i) as f32;
        }
    }
    if layout.storage.is_float() || slope != 1.0 {
        let bad = data.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(Error::at(
                path,
                format!("{bad} voxels are NaN or Inf; the volume must be finite"),
            ));
        }
    }
    let affine = header_affine(&header);
    Ok(NiftiImage {
        path: path.to_path_buf(),
        header,
        affine,
        shape: layout.shape,
        data,
    })
}

/// Read a file that must hold one 3D volume.
pub fn read_volume(path: &Path) -> Result<(Volume, NiftiHeader, Affine)> {
    read_nifti(path)?.into_volume()
}

struct Layout {
    storage: Storage,
    shape: Vec<usize>,
    voxels: usize,
    data_offset: usize,
}

type Stream = Box<dyn Read>;

fn open_stream(path: &Path) -> Result<Stream> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::at(path, "file does not exist"),
        _ => Error::at(path, format!("cannot open: {e}")),
    })?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(Error::at(path, "is a directory, not a NIfTI file"));
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader
        .fill_buf()
        .map_err(|e| Error::at(path, format!("cannot read: {e}")))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

fn stream_error(path: &Path, e: &io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::at(path, format!("truncated: {e}")),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
            Error::at(path, format!("corrupt gzip data: {e}"))
        }
        _ => Error::at(path, format!("read error: {e}")),
    }
}

fn read_checked_header(path: &Path, stream: &mut Stream) -> Result<(NiftiHeader, Layout)> {
    let mut bytes = [0u8; HEADER_BYTES];
    let mut filled = 0;
    while filled < HEADER_BYTES {
        match stream.read(&mut bytes[filled..]) {
            Ok(0) => {
                return Err(Error::at(
                    path,
                    format!("not a NIfTI-1 file: only {filled} bytes, a header needs 348"),
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(stream_error(path, &e)),
        }
    }
    let size_le = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let size_be = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if size_le == 540 || size_be == 540 {
        return Err(Error::at(
            path,
            "NIfTI-2 files are not supported; save it as NIfTI-1",
        ));
    }
    if size_le != 348 && size_be != 348 {
        return Err(Error::at(
            path,
            "not a NIfTI-1 file (header size field is not 348)",
        ));
    }
    let header = NiftiHeader::from_reader(&bytes[..])
        .map_err(|e| Error::at(path, format!("not a valid NIfTI-1 header: {e}")))?;
    if &header.magic == b"ni1\0" {
        return Err(Error::at(
            path,
            "is the header of a .hdr/.img pair; only single-file .nii/.nii.gz is supported",
        ));
    }
    let storage = Storage::from_code(header.datatype).map_err(|p| Error::at(path, p))?;

    let rank = usize::from(header.dim[0]);
    if !(1..=7).contains(&rank) {
        return Err(Error::at(path, format!("invalid dim[0] = {rank}")));
    }
    let mut shape: Vec<usize> = header.dim[1..=rank]
        .iter()
        .map(|&d| usize::from(d))
        .collect();
    if shape.contains(&0) {
        return Err(Error::at(
            path,
            format!("header has a zero-length axis ({})", shape_text(&shape)),
        ));
    }
    while shape.len() > 3 && shape.last() == Some(&1) {
        shape.pop();
    }
    if shape.len() < 3 {
        return Err(Error::at(
            path,
            format!(
                "{}D data ({}); a 3D volume is expected",
                shape.len(),
                shape_text(&shape)
            ),
        ));
    }
    let voxels = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_VOXELS)
        .ok_or_else(|| {
            let bytes: f64 = shape.iter().map(|&d| d as f64).product::<f64>() * 4.0;
            Error::at(
                path,
                format!(
                    "header dimensions {} would need {:.1} GiB as f32 (limit {} GiB); refusing",
                    shape_text(&shape),
                    bytes / (1u64 << 30) as f64,
                    (MAX_VOXELS * 4) >> 30
                ),
            )
        })?;
    let offset = header.vox_offset;
    if !offset.is_finite() || offset < 0.0 || offset.fract() != 0.0 || offset > 1.0e9 {
        return Err(Error::at(
            path,
            format!("invalid vox_offset {offset} in header"),
        ));
    }
    // vox_offset 0 in a single file is a common writer bug: the data then follow the
    // 4-byte extension flag.
    let data_offset = (offset as usize).max(HEADER_BYTES + 4);
    Ok((
        header,
        Layout {
            storage,
            shape,
            voxels,
            data_offset,
        },
    ))
}

fn decode(raw: &[u8], storage: Storage, big_endian: bool) -> Vec<f32> {
    macro_rules! convert {
        ($t:ty, $n:expr) => {
            raw.chunks_exact($n)
                .map(|c| {
                    let mut b = [0u8; $n];
                    b.copy_from_slice(c);
                    let v = if big_endian {
                        <$t>::from_be_bytes(b)
                    } else {
                        <$t>::from_le_bytes(b)
                    };
                    v as f32
                })
                .collect()
        };
    }
    match storage {
        Storage::U8 => raw.iter().map(|&v| f32::from(v)).collect(),
        Storage::I8 => raw.iter().map(|&v| f32::from(v as i8)).collect(),
        Storage::I16 => convert!(i16, 2),
        Storage::U16 => convert!(u16, 2),
        Storage::I32 => convert!(i32, 4),
        Storage::U32 => convert!(u32, 4),
        Storage::I64 => convert!(i64, 8),
        Storage::U64 => convert!(u64, 8),
        Storage::F32 => convert!(f32, 4),
        Storage::F64 => convert!(f64, 8),
    }
}
