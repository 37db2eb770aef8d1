//! The one error type of the weights module.
//!
//! Every failure names the file and, where there is one, the tensor, and says what is
//! wrong in words a user can act on: a weight file comes from outside the program, so
//! a bad one is an expected input, never a panic. `Malformed` carries a [`Problem`]
//! code so tests (and callers) can tell the cases apart without matching on text.
use std::fmt;
use std::path::{Path, PathBuf};

use super::table::TopologyMismatch;

/// What is structurally wrong with a weight file (engine format or `.params`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The file ends before a structure it declares.
    Truncated,
    /// The file is longer than the structures it declares.
    TrailingBytes,
    /// Wrong magic number: not a file of the expected kind.
    BadMagic,
    /// A version or format variant this reader does not support.
    UnsupportedVersion,
    /// Header fields that contradict each other or the file length.
    BadHeader,
    /// The table's checksum does not match (the header or table was overwritten).
    TableChecksum,
    /// A tensor's data offset is not 64-byte aligned.
    Misaligned,
    /// Two tensors' data ranges overlap.
    Overlap,
    /// A tensor's data range lies (partly) outside the file's data region.
    OutOfBounds,
    /// A tensor name that is empty, too long or not UTF-8.
    BadName,
    /// A tensor name that occurs twice.
    DuplicateName,
    /// An element type other than 32-bit float.
    BadDtype,
    /// A shape with a bad rank, a zero or a size that does not fit.
    BadShape,
    /// A sparse or otherwise unsupported storage type (`.params`).
    UnsupportedStorage,
}

impl Problem {
    /// Short lowercase label used at the start of messages.
    pub fn label(self) -> &'static str {
        match self {
            Problem::Truncated => "truncated",
            Problem::TrailingBytes => "trailing bytes",
            Problem::BadMagic => "wrong magic",
            Problem::UnsupportedVersion => "unsupported version",
            Problem::BadHeader => "bad header",
            Problem::TableChecksum => "table checksum mismatch",
            Problem::Misaligned => "misaligned tensor",
            Problem::Overlap => "overlapping tensors",
            Problem::OutOfBounds => "tensor out of bounds",
            Problem::BadName => "bad tensor name",
            Problem::DuplicateName => "duplicate tensor name",
            Problem::BadDtype => "unsupported dtype",
            Problem::BadShape => "bad shape",
            Problem::UnsupportedStorage => "unsupported storage type",
        }
    }
}

/// Errors of reading, checking and writing weight files.
#[derive(Debug)]
pub enum WeightError {
    /// An operating-system error while doing `action` on `path`.
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// The file's structure is invalid.
    Malformed {
        path: PathBuf,
        problem: Problem,
        detail: String,
    },
    /// A tensor's data do not match the checksum stored in the table.
    Checksum {
        path: PathBuf,
        tensor: String,
        expected: u64,
        actual: u64,
    },
    /// A name that the file does not contain.
    NoSuchTensor { path: PathBuf, name: String },
    /// A tensor exists but not with the shape the caller or topology needs.
    WrongShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The tensors do not match the network's parameter table.
    Topology {
        path: PathBuf,
        mismatch: TopologyMismatch,
    },
    /// Tensors handed to a writer are inconsistent (data length vs shape, names).
    InvalidInput { detail: String },
}

impl WeightError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        WeightError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn malformed(path: &Path, problem: Problem, detail: impl Into<String>) -> Self {
        WeightError::Malformed {
            path: path.to_path_buf(),
            problem,
            detail: detail.into(),
        }
    }

    /// The structural problem, if this is a `Malformed` error.
    pub fn problem(&self) -> Option<Problem> {
        match self {
            WeightError::Malformed { problem, .. } => Some(*problem),
            _ => None,
        }
    }
}

impl fmt::Display for WeightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightError::Io {
                path,
                action,
                source,
            } => write!(f, "{}: cannot {action}: {source}", path.display()),
            WeightError::Malformed {
                path,
                problem,
                detail,
            } => write!(f, "{}: {}: {detail}", path.display(), problem.label()),
            WeightError::Checksum {
                path,
                tensor,
                expected,
                actual,
            } => write!(
                f,
                "{}: checksum mismatch in tensor '{tensor}': table says {expected:016x}, \
                 data hash to {actual:016x} (the file is corrupted)",
                path.display()
            ),
            WeightError::NoSuchTensor { path, name } => {
                write!(f, "{}: no tensor named '{name}'", path.display())
            }
            WeightError::WrongShape {
                path,
                name,
                expected,
                found,
            } => write!(
                f,
                "{}: tensor '{name}' has shape {found:?}, expected {expected:?}",
                path.display()
            ),
            WeightError::Topology { path, mismatch } => write!(
                f,
                "{}: does not match the brain-tumor-segmentation-0001 parameter table:\n{mismatch}",
                path.display()
            ),
            WeightError::InvalidInput { detail } => write!(f, "invalid tensors: {detail}"),
        }
    }
}

impl std::error::Error for WeightError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WeightError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias of the weights module.
pub type Result<T> = std::result::Result<T, WeightError>;
