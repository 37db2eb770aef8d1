//! All-or-nothing file output: write to a temporary file in the target's directory,
//! flush and fsync it, then rename it over the target. A crash or error part-way
//! leaves at most a stray `.tmp` file (removed on error), never a half-written
//! weight file under the requested name. Same directory so the rename cannot cross
//! file systems.
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Result, WeightError};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(target: &Path) -> PathBuf {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file = target
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_string());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{file}.tmp.{}.{n}", std::process::id()))
}

/// Runs `body` on a buffered writer for a temporary file, then renames it to `target`.
pub(crate) fn write_atomically<F>(target: &Path, body: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
{
    if target.file_name().is_none() {
        return Err(WeightError::io(
            target,
            "write (not a file path)",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
        ));
    }
    let tmp = temp_path(target);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| {
            WeightError::io(target, "create a temporary file in the output's folder", e)
        })?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let done = body(&mut w)
        .and_then(|()| w.flush())
        .and_then(|()| w.get_ref().sync_all());
    if let Err(e) = done {
        drop(w);
        let _ = fs::remove_file(&tmp);
        return Err(WeightError::io(target, "write", e));
    }
    drop(w);
    fs::rename(&tmp, target).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        WeightError::io(target, "rename the temporary file onto", e)
    })
}
