//! Optional per-task timing, for the Chrome trace of `brats-seg profile --trace`: which
//! worker thread ran which piece of a layer, and when.
//!
//! Off by default; when off, a kernel task pays one relaxed atomic load. When on
//! ([`enable`]), every parallel task of the conv, deconv and norm kernels records a
//! [`TaskSpan`]; [`take`] returns and clears them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);
static SPANS: Mutex<Vec<TaskSpan>> = Mutex::new(Vec::new());

/// One task of a kernel: the rayon worker that ran it (`None` outside a pool) and when.
#[derive(Clone, Copy, Debug)]
pub struct TaskSpan {
    pub thread: Option<usize>,
    pub start: Instant,
    pub end: Instant,
}

/// Turns task recording on or off.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The spans recorded so far, in no particular order; clears them.
pub fn take() -> Vec<TaskSpan> {
    std::mem::take(&mut *SPANS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `f`, recording its span when tracing is on.
#[inline]
pub(crate) fn task<R>(f: impl FnOnce() -> R) -> R {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let r = f();
    let span = TaskSpan {
        thread: rayon::current_thread_index(),
        start,
        end: Instant::now(),
    };
    SPANS.lock().unwrap_or_else(|e| e.into_inner()).push(span);
    r
}
