//! The engine's weight-file format (specified in `weights/FORMAT.md`): a 64-byte header,
//! a table of fixed 136-byte entries, then each tensor as little-endian f32 at a
//! 64-byte-aligned offset. Built for memmap2 + bytemuck: [`WeightFile::tensor`] returns
//! `&[f32]` straight from the map, with no copy and no parsing at run time.
//!
//! Opening validates everything before any tensor is read: file length against the
//! header (so no slice can reach past the end of the mapping, and no access can fault
//! on a page beyond EOF), magic, version, sizes, then every entry (name, dtype, shape,
//! byte count, alignment, bounds), overlaps between entries, the table checksum, and,
//! unless switched off, each tensor's checksum (XXH3-64). One hazard remains outside
//! any reader's control: a file that another process truncates *while* it is mapped
//! makes the kernel raise SIGBUS on access. Weight files are written by rename, never
//! in place, so replacing one does not affect a process that has the old one open.
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::Problem;
use super::table::check_against_table;
use super::{atomic, Result, TensorRef, WeightError};

#[cfg(not(target_endian = "little"))]
compile_error!(
    "the weight file is mapped as little-endian f32; big-endian hosts are not supported"
);

/// File magic.
pub const MAGIC: [u8; 8] = *b"BRATSWGT";
/// Format version this code reads and writes.
pub const VERSION: u32 = 1;
/// Header size in bytes.
pub const HEADER_SIZE: usize = 64;
/// Size of one table entry in bytes.
pub const ENTRY_SIZE: usize = 136;
/// Alignment of every tensor's data.
pub const ALIGN: u64 = 64;
/// Bytes reserved for a name (at least one NUL terminator, so 63 usable).
pub const NAME_FIELD: usize = 64;
/// Largest rank a table entry can hold.
pub const MAX_NDIM: usize = 5;
/// dtype code of little-endian f32 (the only one).
pub const DTYPE_F32: u32 = 1;

/// The checksum used for tensors and the table: XXH3-64 with seed 0.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn align_up(x: u64) -> Option<u64> {
    x.checked_add(ALIGN - 1).map(|v| v / ALIGN * ALIGN)
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checksum stored in the header: over header bytes 0..56 followed by the table.
fn table_checksum(header56: &[u8], table: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(header56);
    h.update(table);
    h.digest()
}

/// What the table says about one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    /// Absolute byte offset of the data (multiple of 64).
    pub offset: u64,
    /// Byte length of the data (4 x elements).
    pub nbytes: u64,
    /// XXH3-64 of the data.
    pub checksum: u64,
}

/// How much [`WeightFile::open_with`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Hash every tensor and compare with the table (about 153 MB of reading for the
    /// full model; a few tens of milliseconds). Structure is always validated.
    pub verify_checksums: bool,
    /// Require exactly the 225 tensors of the model's parameter table, with its shapes.
    pub check_topology: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            verify_checksums: true,
            check_topology: true,
        }
    }
}

/// A validated, memory-mapped engine weight file.
#[derive(Debug)]
pub struct WeightFile {
    path: PathBuf,
    map: Mmap,
    infos: Vec<TensorInfo>,
    index: HashMap<String, usize>,
}

impl WeightFile {
    /// Opens with the default checks: structure, checksums and topology.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// Opens with the chosen checks (structure is always validated).
    pub fn open_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| WeightError::io(path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| WeightError::io(path, "stat", e))?
            .len();
        if len < HEADER_SIZE as u64 {
            return Err(WeightError::malformed(
                path,
                Problem::Truncated,
                format!("{len} bytes, shorter than the {HEADER_SIZE}-byte header"),
            ));
        }
        // Safety: the map is read-only and private to this process. Every access goes
        // through bounds validated against `map.len()` below. The remaining risk is a
        // file truncated by someone else while mapped (SIGBUS), documented in
        // weights/FORMAT.md; our writers replace files by rename, never in place.
        let map =
            unsafe { Mmap::map(&file) }.map_err(|e| WeightError::io(path, "memory-map", e))?;
        let infos = parse_table(&map, path)?;
        let index = infos
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let wf = WeightFile {
            path: path.to_path_buf(),
            map,
            infos,
            index,
        };
        if opts.check_topology {
            wf.check_topology()?;
        }
        if opts.verify_checksums {
            wf.verify_checksums()?;
        }
        Ok(wf)
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All table entries, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.infos
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    /// True if the file holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// Table entry of `name`.
    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.index
            .get(name)
            .map(|&i| &self.infos[i])
            .ok_or_else(|| WeightError::NoSuchTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    /// Shape of `name`.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        self.info(name).map(|t| t.shape.as_slice())
    }

    fn bytes_of(&self, t: &TensorInfo) -> &[u8] {
        // Bounds were validated against the map length in parse_table.
        &self.map[t.offset as usize..(t.offset + t.nbytes) as usize]
    }

    /// The data of `name` as f32, borrowed from the map (no copy).
    pub fn tensor(&self, name: &str) -> Result<&[f32]> {
        let t = self.info(name)?;
        bytemuck::try_cast_slice(self.bytes_of(t)).map_err(|e| {
            WeightError::malformed(
                &self.path,
                Problem::Misaligned,
                format!("tensor '{name}' cannot be viewed as f32: {e}"),
            )
        })
    }

    /// The data of `name`, after checking that its shape is `shape`.
    pub fn tensor_with_shape(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        let found = self.shape(name)?;
        if found != shape {
            return Err(WeightError::WrongShape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                found: found.to_vec(),
            });
        }
        self.tensor(name)
    }

    /// Hashes every tensor and compares with the table; the first mismatch is an error.
    pub fn verify_checksums(&self) -> Result<()> {
        use rayon::prelude::*;
        self.infos.par_iter().try_for_each(|t| {
            let actual = checksum(self.bytes_of(t));
            if actual == t.checksum {
                Ok(())
            } else {
                Err(WeightError::Checksum {
                    path: self.path.clone(),
                    tensor: t.name.clone(),
                    expected: t.checksum,
                    actual,
                })
            }
        })
    }

    /// Checks that the file holds exactly the model's 225 tensors with their shapes.
    pub fn check_topology(&self) -> Result<()> {
        check_against_table(
            self.infos
                .iter()
                .map(|t| (t.name.as_str(), t.shape.as_slice())),
        )
        .into_result(self.path.clone())
    }
}

/// Validates header and table of a whole file image and returns the entries.
pub fn parse_table(b: &[u8], path: &Path) -> Result<Vec<TensorInfo>> {
    let bad = |p: Problem, d: String| WeightError::malformed(path, p, d);
    let len = b.len() as u64;
    if b.len() < HEADER_SIZE {
        return Err(bad(
            Problem::Truncated,
            format!("{len} bytes, shorter than the {HEADER_SIZE}-byte header"),
        ));
    }
    if b[0..8] != MAGIC {
        return Err(bad(
            Problem::BadMagic,
            format!(
                "file starts with {:02x?}, expected \"BRATSWGT\": not a brats-seg weight file \
                 (an MXNet .params file must be converted with `brats-seg convert-weights`)",
                &b[0..8]
            ),
        ));
    }
    let version = rd_u32(b, 8);
    if version != VERSION {
        return Err(bad(
            Problem::UnsupportedVersion,
            format!("format version {version}, this build reads version {VERSION}"),
        ));
    }
    let header_size = rd_u32(b, 12) as usize;
    let entry_size = rd_u32(b, 16) as usize;
    let count = rd_u32(b, 20) as u64;
    let table_offset = rd_u64(b, 24);
    let data_offset = rd_u64(b, 32);
    let file_size = rd_u64(b, 40);
    let reserved = rd_u64(b, 48);
    let stored_table_sum = rd_u64(b, 56);
    if header_size != HEADER_SIZE || entry_size != ENTRY_SIZE || table_offset != HEADER_SIZE as u64
    {
        return Err(bad(
            Problem::BadHeader,
            format!(
                "header size {header_size}, entry size {entry_size}, table offset {table_offset} \
                 (expected {HEADER_SIZE}, {ENTRY_SIZE}, {HEADER_SIZE})"
            ),
        ));
    }
    if reserved != 0 {
        return Err(bad(
            Problem::BadHeader,
            format!("reserved field is {reserved:#x}, expected 0"),
        ));
    }
    let table_end = count * ENTRY_SIZE as u64 + HEADER_SIZE as u64; // count < 2^32: no overflow
    if len < file_size {
        return Err(bad(
            Problem::Truncated,
            format!("header says {file_size} bytes, the file has {len}"),
        ));
    }
    if len > file_size {
        return Err(bad(
            Problem::TrailingBytes,
            format!("header says {file_size} bytes, the file has {len}"),
        ));
    }
    if table_end > len {
        return Err(bad(
            Problem::Truncated,
            format!("table of {count} entries ends at byte {table_end}, the file has {len}"),
        ));
    }
    if !data_offset.is_multiple_of(ALIGN) || data_offset < table_end || data_offset > file_size {
        return Err(bad(
            Problem::BadHeader,
            format!(
                "data offset {data_offset} must be a multiple of {ALIGN} between the table end \
                 ({table_end}) and the file size ({file_size})"
            ),
        ));
    }
    let table = &b[HEADER_SIZE..table_end as usize];
    let mut infos = Vec::with_capacity(count as usize);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..count as usize {
        let e = &table[i * ENTRY_SIZE..(i + 1) * ENTRY_SIZE];
        let name = parse_name(&e[..NAME_FIELD])
            .map_err(|d| bad(Problem::BadName, format!("entry #{i}: {d}")))?;
        if let Some(first) = seen.insert(name.clone(), i) {
            return Err(bad(
                Problem::DuplicateName,
                format!("'{name}' appears as entry #{first} and entry #{i}"),
            ));
        }
        let dtype = rd_u32(e, 64);
        if dtype != DTYPE_F32 {
            return Err(bad(
                Problem::BadDtype,
                format!(
                    "tensor '{name}': dtype code {dtype} (only {DTYPE_F32} = f32 is supported)"
                ),
            ));
        }
        let ndim = rd_u32(e, 68) as usize;
        if ndim == 0 || ndim > MAX_NDIM {
            return Err(bad(
                Problem::BadShape,
                format!("tensor '{name}': rank {ndim} (expected 1..={MAX_NDIM})"),
            ));
        }
        let dims: Vec<u64> = (0..MAX_NDIM).map(|d| rd_u64(e, 72 + 8 * d)).collect();
        if dims[..ndim].contains(&0) || dims[ndim..].iter().any(|&d| d != 0) {
            return Err(bad(
                Problem::BadShape,
                format!("tensor '{name}': dims {dims:?} with rank {ndim} (used dims must be > 0, unused 0)"),
            ));
        }
        let numel = dims[..ndim].iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let expected_bytes = numel.and_then(|n| n.checked_mul(4));
        let offset = rd_u64(e, 112);
        let nbytes = rd_u64(e, 120);
        let sum = rd_u64(e, 128);
        if expected_bytes != Some(nbytes) {
            return Err(bad(
                Problem::BadShape,
                format!(
                    "tensor '{name}': shape {:?} needs {} bytes, the table says {nbytes}",
                    &dims[..ndim],
                    expected_bytes.map_or("more than 2^64".to_string(), |v| v.to_string())
                ),
            ));
        }
        if !offset.is_multiple_of(ALIGN) {
            return Err(bad(
                Problem::Misaligned,
                format!("tensor '{name}': data offset {offset} is not a multiple of {ALIGN}"),
            ));
        }
        let end = offset.checked_add(nbytes);
        if offset < data_offset || end.is_none_or(|e| e > file_size) {
            return Err(bad(
                Problem::OutOfBounds,
                format!(
                    "tensor '{name}': bytes {offset}..{} lie outside the data region {data_offset}..{file_size}",
                    end.map_or("overflow".to_string(), |v| v.to_string())
                ),
            ));
        }
        let shape: Option<Vec<usize>> = dims[..ndim]
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect();
        let shape = shape.ok_or_else(|| {
            bad(
                Problem::BadShape,
                format!("tensor '{name}': dims too large"),
            )
        })?;
        infos.push(TensorInfo {
            name,
            shape,
            offset,
            nbytes,
            checksum: sum,
        });
    }
    let mut order: Vec<usize> = (0..infos.len()).collect();
    order.sort_by_key(|&i| (infos[i].offset, infos[i].nbytes));
    for w in order.windows(2) {
        let (a, c) = (&infos[w[0]], &infos[w[1]]);
        if a.offset + a.nbytes > c.offset {
            return Err(bad(
                Problem::Overlap,
                format!(
                    "tensor '{}' (bytes {}..{}) overlaps tensor '{}' (bytes {}..{})",
                    a.name,
                    a.offset,
                    a.offset + a.nbytes,
                    c.name,
                    c.offset,
                    c.offset + c.nbytes
                ),
            ));
        }
    }
    let actual = table_checksum(&b[..56], table);
    if actual != stored_table_sum {
        return Err(bad(
            Problem::TableChecksum,
            format!(
                "header says {stored_table_sum:016x}, header and table hash to {actual:016x} \
                 (the file was overwritten or corrupted)"
            ),
        ));
    }
    Ok(infos)
}

fn parse_name(field: &[u8]) -> std::result::Result<String, String> {
    let end = field
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| format!("name is not NUL-terminated within {NAME_FIELD} bytes"))?;
    if end == 0 {
        return Err("empty name".into());
    }
    if field[end..].iter().any(|&c| c != 0) {
        return Err("bytes after the name's NUL terminator are not zero".into());
    }
    std::str::from_utf8(&field[..end])
        .map(str::to_string)
        .map_err(|_| "name is not UTF-8".into())
}

fn check_writable(tensors: &[TensorRef<'_>]) -> Result<()> {
    let invalid = |d: String| Err(WeightError::InvalidInput { detail: d });
    if tensors.len() > u32::MAX as usize {
        return invalid(format!(
            "{} tensors, at most {} fit",
            tensors.len(),
            u32::MAX
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tensors {
        t.check()?;
        if t.name.is_empty() || t.name.len() >= NAME_FIELD || t.name.contains('\0') {
            return invalid(format!(
                "tensor name '{}' must be 1..={} bytes without NUL",
                t.name,
                NAME_FIELD - 1
            ));
        }
        if t.shape.is_empty() || t.shape.len() > MAX_NDIM || t.shape.contains(&0) {
            return invalid(format!(
                "tensor '{}': shape {:?} must have rank 1..={MAX_NDIM} and no zero dims",
                t.name, t.shape
            ));
        }
        if !seen.insert(t.name) {
            return invalid(format!("tensor name '{}' given twice", t.name));
        }
    }
    Ok(())
}

/// Header and table bytes for `tensors`, laid out contiguously in the given order.
fn layout(tensors: &[TensorRef<'_>]) -> (Vec<u8>, Vec<u64>, u64) {
    use rayon::prelude::*;
    let sums: Vec<u64> = tensors
        .par_iter()
        .map(|t| checksum(bytemuck::cast_slice(t.data)))
        .collect();
    let table_end = (HEADER_SIZE + tensors.len() * ENTRY_SIZE) as u64;
    let data_offset = align_up(table_end).unwrap_or(table_end);
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut pos = data_offset;
    for t in tensors {
        pos = align_up(pos).unwrap_or(pos);
        offsets.push(pos);
        pos += 4 * t.data.len() as u64;
    }
    let file_size = pos;
    let mut head = vec![0u8; table_end as usize];
    head[0..8].copy_from_slice(&MAGIC);
    head[8..12].copy_from_slice(&VERSION.to_le_bytes());
    head[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    head[16..20].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    head[20..24].copy_from_slice(&(tensors.len() as u32).to_le_bytes());
    head[24..32].copy_from_slice(&(HEADER_SIZE as u64).to_le_bytes());
    head[32..40].copy_from_slice(&data_offset.to_le_bytes());
    head[40..48].copy_from_slice(&file_size.to_le_bytes());
    for (i, t) in tensors.iter().enumerate() {
        let e = &mut head[HEADER_SIZE + i * ENTRY_SIZE..HEADER_SIZE + (i + 1) * ENTRY_SIZE];
        e[..t.name.len()].copy_from_slice(t.name.as_bytes());
        e[64..68].copy_from_slice(&DTYPE_F32.to_le_bytes());
        e[68..72].copy_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for (d, &v) in t.shape.iter().enumerate() {
            e[72 + 8 * d..80 + 8 * d].copy_from_slice(&(v as u64).to_le_bytes());
        }
        e[112..120].copy_from_slice(&offsets[i].to_le_bytes());
        e[120..128].copy_from_slice(&(4 * t.data.len() as u64).to_le_bytes());
        e[128..136].copy_from_slice(&sums[i].to_le_bytes());
    }
    let sum = table_checksum(&head[..56], &head[HEADER_SIZE..]);
    head[56..64].copy_from_slice(&sum.to_le_bytes());
    (head, offsets, file_size)
}

fn write_body<W: Write>(
    w: &mut W,
    head: &[u8],
    offsets: &[u64],
    tensors: &[TensorRef<'_>],
) -> std::io::Result<()> {
    w.write_all(head)?;
    let mut pos = head.len() as u64;
    let zeros = [0u8; ALIGN as usize];
    for (t, &off) in tensors.iter().zip(offsets) {
        w.write_all(&zeros[..(off - pos) as usize])?;
        w.write_all(bytemuck::cast_slice(t.data))?;
        pos = off + 4 * t.data.len() as u64;
    }
    // Header-only file: pad the table to the data offset.
    if tensors.is_empty() {
        let data_offset = align_up(pos).unwrap_or(pos);
        w.write_all(&zeros[..(data_offset - pos) as usize])?;
    }
    Ok(())
}

/// The file image of `tensors` in memory (tests and small files).
pub fn encode_weight_file(tensors: &[TensorRef<'_>]) -> Result<Vec<u8>> {
    check_writable(tensors)?;
    let (head, offsets, size) = layout(tensors);
    let mut out = Vec::with_capacity(size as usize);
    write_body(&mut out, &head, &offsets, tensors).map_err(|e| WeightError::InvalidInput {
        detail: format!("encoding: {e}"),
    })?;
    Ok(out)
}

/// Writes `tensors` (in the given order) as an engine weight file, atomically: to a
/// temporary file beside `path`, then renamed.
pub fn write_weight_file(path: &Path, tensors: &[TensorRef<'_>]) -> Result<()> {
    check_writable(tensors)?;
    let (head, offsets, _) = layout(tensors);
    atomic::write_atomically(path, |w| write_body(w, &head, &offsets, tensors))
}
