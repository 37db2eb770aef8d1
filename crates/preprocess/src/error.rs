//! The one error type of this crate: a single line that names the file (when there is
//! one) and the problem, ready to print after `error:` on the command line.
//!
//! Everything that can go wrong with user input (missing files, bad headers, mismatched
//! scans, unwritable outputs) ends up here as text rather than as a panic, so callers
//! only need to print it.
use std::fmt;
use std::path::Path;

/// A one-line, human-readable error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error about one file: rendered as `PATH: problem`.
    pub fn at(path: &Path, problem: impl fmt::Display) -> Self {
        Error {
            message: format!("{}: {}", path.display(), problem),
        }
    }

    /// An error that is not about one particular file.
    pub fn msg(problem: impl fmt::Display) -> Self {
        Error {
            message: problem.to_string(),
        }
    }

    /// The full message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
