//! MXNet `.params` files (MXNet 1.x `NDArray::Save` of a named list): reader, checker
//! against the parameter table, and a writer whose output is byte-identical to MXNet's.
//!
//! Layout (all little-endian; see `../shared/MODEL.md`):
//! ```text
//! u64 0x112   u64 0   u64 N
//! N x { u32 0xF993FAC9  i32 stype (0 dense)  u32 ndim  i64[ndim]
//!       i32 dev_type  i32 dev_id  i32 dtype (0 f32)  data }
//! u64 N   N x { u64 len, bytes }     ("arg:NAME" / "aux:NAME")
//! ```
//! The reader copies tensors out (the data are unaligned in the container) and checks
//! every length against the remaining bytes before reading, so a truncated or garbled
//! file gives an error naming the array and field, never a panic. Only what this model
//! needs is accepted (dense float32, NDArray format v2); anything else is reported,
//! not guessed at.
use std::io::Write;
use std::path::Path;

use super::error::Problem;
use super::table::{check_against_table, param_table};
use super::{atomic, NamedTensor, Result, TensorRef, WeightError};

/// Magic of an NDArray list file.
pub const LIST_MAGIC: u64 = 0x112;
/// Magic of an NDArray record, format version 2.
pub const NDARRAY_V2_MAGIC: u32 = 0xF993_FAC9;
const NDARRAY_V1_MAGIC: u32 = 0xF993_FAC8;
const NDARRAY_V3_MAGIC: u32 = 0xF993_FACA;
const MAX_NDIM: u32 = 32;

/// One array as stored: its full key (with `arg:`/`aux:`), shape and data.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamsArray {
    pub key: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(WeightError::malformed(
                self.path,
                Problem::Truncated,
                format!(
                    "{} needs {n} bytes at offset {}, but the file has only {left} left \
                     (file length {})",
                    what(),
                    self.pos,
                    self.bytes.len()
                ),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self, what: &dyn Fn() -> String) -> Result<i32> {
        Ok(self.u32(what)? as i32)
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn dtype_name(code: i32) -> &'static str {
    match code {
        0 => "float32",
        1 => "float64",
        2 => "float16",
        3 => "uint8",
        4 => "int32",
        5 => "int8",
        6 => "int64",
        7 => "bool",
        12 => "bfloat16",
        _ => "unknown",
    }
}

/// Parses a whole `.params` image. `path` is only used in messages.
pub fn parse_params(bytes: &[u8], path: &Path) -> Result<Vec<ParamsArray>> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let magic = c.u64(&|| "the list header".into())?;
    if magic != LIST_MAGIC {
        return Err(WeightError::malformed(
            path,
            Problem::BadMagic,
            format!(
                "list magic is {magic:#x}, expected {LIST_MAGIC:#x}: not an MXNet .params file"
            ),
        ));
    }
    let _reserved = c.u64(&|| "the list header".into())?;
    let n = c.u64(&|| "the array count".into())?;
    // Each array takes at least 28 bytes: a count larger than the file allows is garbage.
    if n > (bytes.len() as u64) / 28 {
        return Err(WeightError::malformed(
            path,
            Problem::Truncated,
            format!(
                "header declares {n} arrays, more than a {}-byte file can hold",
                bytes.len()
            ),
        ));
    }
    let mut shapes_data = Vec::with_capacity(n as usize);
    for i in 0..n {
        let at = || format!("array #{i}");
        let m = c.u32(&|| format!("{} magic", at()))?;
        match m {
            NDARRAY_V2_MAGIC => {}
            NDARRAY_V1_MAGIC | NDARRAY_V3_MAGIC => {
                return Err(WeightError::malformed(
                    path,
                    Problem::UnsupportedVersion,
                    format!("{}: NDArray format magic {m:#x} (only v2, {NDARRAY_V2_MAGIC:#x}, as written by MXNet 1.x, is supported)", at()),
                ))
            }
            _ => {
                return Err(WeightError::malformed(
                    path,
                    Problem::BadMagic,
                    format!("{}: record magic {m:#x}, expected {NDARRAY_V2_MAGIC:#x}", at()),
                ))
            }
        }
        let stype = c.i32(&|| format!("{} storage type", at()))?;
        if stype != 0 {
            return Err(WeightError::malformed(
                path,
                Problem::UnsupportedStorage,
                format!(
                    "{}: storage type {stype} (only dense, 0, is supported)",
                    at()
                ),
            ));
        }
        let ndim = c.u32(&|| format!("{} ndim", at()))?;
        if ndim == 0 || ndim > MAX_NDIM {
            return Err(WeightError::malformed(
                path,
                Problem::BadShape,
                format!("{}: rank {ndim} (expected 1..={MAX_NDIM})", at()),
            ));
        }
        let mut shape = Vec::with_capacity(ndim as usize);
        let mut numel: usize = 1;
        for d in 0..ndim {
            let v = c.u64(&|| format!("{} shape[{d}]", at()))? as i64;
            let dim = usize::try_from(v).ok().filter(|&x| x > 0);
            let Some(dim) = dim else {
                return Err(WeightError::malformed(
                    path,
                    Problem::BadShape,
                    format!("{}: dimension {d} is {v}", at()),
                ));
            };
            numel = numel.checked_mul(dim).ok_or_else(|| {
                WeightError::malformed(
                    path,
                    Problem::BadShape,
                    format!("{}: shape overflows", at()),
                )
            })?;
            shape.push(dim);
        }
        let _dev_type = c.i32(&|| format!("{} context", at()))?;
        let _dev_id = c.i32(&|| format!("{} context", at()))?;
        let dtype = c.i32(&|| format!("{} dtype", at()))?;
        if dtype != 0 {
            return Err(WeightError::malformed(
                path,
                Problem::BadDtype,
                format!(
                    "{}: dtype {dtype} ({}), only float32 is supported",
                    at(),
                    dtype_name(dtype)
                ),
            ));
        }
        let nbytes = numel.checked_mul(4).ok_or_else(|| {
            WeightError::malformed(
                path,
                Problem::BadShape,
                format!("{}: shape overflows", at()),
            )
        })?;
        let raw = c.take(nbytes, &|| format!("{} data ({shape:?} float32)", at()))?;
        let data: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        shapes_data.push((shape, data));
    }
    let n_names = c.u64(&|| "the name count".into())?;
    if n_names != n {
        return Err(WeightError::malformed(
            path,
            Problem::BadHeader,
            format!("{n} arrays but {n_names} names"),
        ));
    }
    let mut out = Vec::with_capacity(n as usize);
    for (i, (shape, data)) in shapes_data.into_iter().enumerate() {
        let len = c.u64(&|| format!("name #{i} length"))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let raw = c.take(len, &|| format!("name #{i}"))?;
        let key = std::str::from_utf8(raw)
            .map_err(|_| {
                WeightError::malformed(path, Problem::BadName, format!("name #{i} is not UTF-8"))
            })?
            .to_string();
        out.push(ParamsArray { key, shape, data });
    }
    if c.pos != bytes.len() {
        return Err(WeightError::malformed(
            path,
            Problem::TrailingBytes,
            format!("{} bytes after the last name", bytes.len() - c.pos),
        ));
    }
    Ok(out)
}

/// Reads and parses a `.params` file (no topology check).
pub fn read_params(path: &Path) -> Result<Vec<ParamsArray>> {
    let bytes = std::fs::read(path).map_err(|e| WeightError::io(path, "read", e))?;
    parse_params(&bytes, path)
}

/// Checks arrays against the parameter table: every table name must occur exactly
/// once as `arg:NAME` with the table's shape; anything else is listed.
pub fn check_params(arrays: &[ParamsArray], path: &Path) -> Result<()> {
    let mismatch = check_against_table(arrays.iter().map(|a| {
        let name = a.key.strip_prefix("arg:").unwrap_or(&a.key);
        (name, a.shape.as_slice())
    }));
    if mismatch.is_empty() {
        Ok(())
    } else {
        Err(WeightError::Topology {
            path: path.to_path_buf(),
            mismatch,
        })
    }
}

/// Reads a `.params` file, checks it against the table, and returns the tensors in
/// table order with the `arg:` prefix removed.
pub fn read_params_checked(path: &Path) -> Result<Vec<NamedTensor>> {
    let arrays = read_params(path)?;
    check_params(&arrays, path)?;
    let mut by_name: std::collections::HashMap<String, ParamsArray> = arrays
        .into_iter()
        .map(|a| (a.key.strip_prefix("arg:").unwrap_or(&a.key).to_string(), a))
        .collect();
    param_table()
        .into_iter()
        .map(|spec| {
            // check_params guarantees presence; stay panic-free regardless.
            let a = by_name
                .remove(&spec.name)
                .ok_or_else(|| WeightError::NoSuchTensor {
                    path: path.to_path_buf(),
                    name: spec.name.clone(),
                })?;
            Ok(NamedTensor {
                name: spec.name,
                shape: a.shape,
                data: a.data,
            })
        })
        .collect()
}

/// Streams tensors in MXNet's `.params` layout, each keyed `arg:NAME`, in the order
/// given; dev_type 1 (cpu), dev_id 0, exactly as `mx.nd.save` writes CPU arrays.
pub fn write_params_to<W: Write>(w: &mut W, tensors: &[TensorRef<'_>]) -> std::io::Result<()> {
    w.write_all(&LIST_MAGIC.to_le_bytes())?;
    w.write_all(&0u64.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    for t in tensors {
        w.write_all(&NDARRAY_V2_MAGIC.to_le_bytes())?;
        w.write_all(&0i32.to_le_bytes())?; // dense
        w.write_all(&(t.shape.len() as u32).to_le_bytes())?;
        for &d in t.shape {
            w.write_all(&(d as i64).to_le_bytes())?;
        }
        w.write_all(&1i32.to_le_bytes())?; // cpu
        w.write_all(&0i32.to_le_bytes())?; // dev_id
        w.write_all(&0i32.to_le_bytes())?; // float32
        write_f32_le(w, t.data)?;
    }
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    for t in tensors {
        let key = format!("arg:{}", t.name);
        w.write_all(&(key.len() as u64).to_le_bytes())?;
        w.write_all(key.as_bytes())?;
    }
    Ok(())
}

pub(crate) fn write_f32_le<W: Write>(w: &mut W, data: &[f32]) -> std::io::Result<()> {
    if cfg!(target_endian = "little") {
        w.write_all(bytemuck::cast_slice(data))
    } else {
        for chunk in data.chunks(4096) {
            let buf: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_all(&buf)?;
        }
        Ok(())
    }
}

/// The `.params` image of `tensors` in memory.
pub fn encode_params(tensors: &[TensorRef<'_>]) -> Result<Vec<u8>> {
    for t in tensors {
        t.check()?;
    }
    let mut out = Vec::new();
    write_params_to(&mut out, tensors).map_err(|e| WeightError::InvalidInput {
        detail: format!("encoding .params: {e}"),
    })?;
    Ok(out)
}

/// Writes a `.params` file atomically (temporary file, then rename).
pub fn write_params(path: &Path, tensors: &[TensorRef<'_>]) -> Result<()> {
    for t in tensors {
        t.check()?;
    }
    atomic::write_atomically(path, |w| write_params_to(w, tensors))
}
