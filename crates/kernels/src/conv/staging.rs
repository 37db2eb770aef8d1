//! The input normalization of [`super::Conv3d::run_normalized`]: a task normalizes (instance
//! norm, ReLU) the input planes it reads into a per-thread buffer with a zero halo, and
//! the kernels read that buffer as their input.
//!
//! Why: a residual block's `conv(relu(norm(x)))` otherwise writes the normalized tensor
//! and reads it back, two passes over a tensor of up to 268 MB at 128³ that run at the
//! memory's streaming rate (the norms were 177-206 ms of a 2.2 s forward pass). Staged,
//! the input is read once, by the task that needs it, and the normalized copy lives in
//! cache.
//!
//! How: the buffer is a ring of `slots` padded planes of the group's input channels,
//! `[slot][channel][row][column]`; input plane `p` lives in slot `(p - first) % slots`.
//! - The width kernel walks its output planes in order with a ring of `K` slots: each
//!   output plane stages the `ST` input planes it newly needs (the first one all `K`), so
//!   each input plane is normalized once per task, and the kernel reaches the plane of
//!   tap `kz` through [`Part::taps_z`], which follows the ring. The ring outlives the
//!   task: when the thread's next task is the following slab of the same call and group
//!   (rayon hands a thread consecutive tasks), it keeps the `K - 1` planes the two share
//!   instead of staging them again ([`Staged::ring`]). A 128³ pass stages 412 M input
//!   voxels instead of 517 M (slabs are 2 to 8 planes, and each restaged 2).
//! - The channel kernel's tiles span several planes, so its task (a slab of small planes)
//!   stages every plane of the slab first, with as many slots as planes (no wrap)
//!   ([`Staged::slab`]). Its tasks that share a slab but not a channel chunk each stage it
//!   (up to 8 times on net32's deepest level, where the planes are 6x6).
//!
//! - For the Winograd kernel (`conv/winograd.rs`) a staged row is stored as its
//!   transformed tiles (4 floats per 2 outputs, no halo columns) instead of the padded
//!   row; the ring, slabs and carry-over are the same.
//! - Weights-outer tasks (per-group weights over `WEIGHTS_INNER_LIMIT`) become slabs too,
//!   staged whole and read once per channel block, instead of one block over the volume
//!   restaging every plane per block.
//!
//! Measured (2 threads, norm pass + conv against the fused conv, medians of 5 in one
//! run, machine load ~1): 16 channels at 128³ 133 against 125 ms, 32 at 64³ 65.6 against
//! 61.8, 64 at 32³ 43.9 against 42.1, 128 at 16³ 19.3 against 16.3. In the whole pass it
//! is about even (`brats-seg bench`, 6 alternating pairs: 2.03 against 2.01 s medians)
//! and peak RSS drops from 727 to 665 MB (no normalized tensor). The normalization still
//! costs about what the pass did: the source is read from memory either way, and here
//! the read is not overlapped with the FMAs. (Reading is the cost, not normalizing: a 1x1
//! conv to one channel, which is almost only its input read, takes 7.3 ms staged against
//! 7.0 plain for 8 channels at 128³, 9.5 GB/s on 2 threads and 4-5 GB/s on one; a 3x3
//! conv with 8 output channels, 38 ms plain, takes about 48 fused.)
//!
//! Tried and not kept: one-plane tasks staging their three planes each (net128.rb1's
//! convs 165 + 200 ms against 112 + 142 plus 56 ms of norms), prefetching the next
//! planes' source rows during a plane's last column (16 channels at 128³, 1 thread: 241
//! against 232 ms without) or spread over the whole plane into L2/L3 (no consistent
//! difference in alternating runs), weights-outer tasks that restage per block (64
//! channels at 32³: 43.8 against 36.5 ms for norm + conv). Later, with the whole 128³
//! pass timed with and without the change alternating in one process (10-12 pairs,
//! median of the per-pair ratios): staging the next output plane's input planes a few
//! rows at a time between the current plane's row tiles, to spread the reads over the
//! FMAs (1.016), and staging in bands of rows so that a task's ring stays under 1 MB
//! (net128.rb7's ring of whole planes is 3.2 MB, more than this machine's 2 MB of L2 per
//! core) (1.012).

use super::{winograd, Job, Part, MAX_PARTS};
use crate::norm;
use crate::tensor::SLACK;
use std::cell::Cell;

thread_local! {
    /// Each worker thread's buffer, lent to one task at a time ([`Staged`]), and what its
    /// ring holds when the last task left it resumable.
    static BUFFER: Cell<(Vec<f32>, Option<RingTag>)> = const { Cell::new((Vec::new(), None)) };
}

/// Which staged planes a thread's buffer holds after a ring task: the next task of the
/// same job and group that starts where that one stopped keeps them instead of staging
/// them again (rayon hands a thread consecutive tasks, so a slab's first `K - 1` planes
/// are usually its predecessor's last ones).
#[derive(Clone, Copy)]
struct RingTag {
    job: u64,
    group: usize,
    slots: usize,
    first: isize,
    next: isize,
}

/// A number no other convolution call has, for [`RingTag`].
pub(super) fn new_job_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A task's normalized input planes (see the module note); gives the thread's buffer back
/// when dropped.
pub(super) struct Staged {
    buf: Vec<f32>,
    /// Floats from the buffer's start to slot 0 (a 64-byte boundary).
    base: usize,
    /// A Winograd-transformed ring (`conv/winograd.rs`): rows of transformed tiles, and
    /// the padded row they are transformed from.
    padded_row: Option<Vec<f32>>,
    group: usize,
    pad: usize,
    slots: usize,
    /// Floats per padded row, per padded plane of one channel, per slot.
    rs: usize,
    cs: usize,
    ss: usize,
    /// The input plane of slot 0 (interior coordinates: -1 is the zero halo plane).
    first: isize,
    /// The next input plane to stage.
    next: isize,
    /// For a ring ([`Staged::ring`]): the call whose next task on this thread may resume
    /// it.
    resume_in: Option<u64>,
}

impl Staged {
    /// An empty ring of `slots` planes for group `g`'s input channels, starting at input
    /// plane `first`, for a kernel of size `k`.
    pub(super) fn new(job: &Job, k: usize, g: usize, first: isize, slots: usize) -> Staged {
        Staged::with_buffer(job, k, g, first, slots).0
    }

    /// [`Staged::new`], and what the thread's buffer held when its last task left it.
    fn with_buffer(
        job: &Job,
        k: usize,
        g: usize,
        first: isize,
        slots: usize,
    ) -> (Staged, Option<RingTag>) {
        let pad = k / 2;
        // A transformed row has no halo columns: its tiles include the padding.
        let rs = if job.winograd {
            winograd::row_floats(job.in_w)
        } else {
            job.in_w + 2 * pad
        };
        let cs = rs * (job.in_h + 2 * pad);
        let ss = cs * job.cin_g;
        let (mut buf, tag) = BUFFER.with(Cell::take);
        // 16 floats more, to start slot 0 on a 64-byte boundary.
        if buf.len() < ss * slots + SLACK + 16 {
            // Zeroes the new floats once; every later read of the slack (the width
            // kernel's over-read past a row end, never stored) sees some finite value.
            buf.resize(ss * slots + SLACK + 16, 0.0);
        }
        let base = buf.as_ptr().align_offset(64).min(16);
        let padded_row = job
            .winograd
            .then(|| vec![0.0f32; job.in_w.div_ceil(winograd::TILE_OUT) * winograd::TILE_OUT + 2]);
        let staged = Staged {
            buf,
            base,
            padded_row,
            group: g,
            pad,
            slots,
            rs,
            cs,
            ss,
            first,
            next: first,
            resume_in: None,
        };
        (staged, tag)
    }

    /// A ring of `k` slots for group `g` whose first plane is `first`: the thread's ring
    /// from its previous task when that staged this job's group up to a plane from which
    /// `first` is still held ([`RingTag`]), else empty.
    pub(super) fn ring(job: &Job, k: usize, g: usize, first: isize) -> Staged {
        let (mut staged, tag) = Staged::with_buffer(job, k, g, first, k);
        let held = tag.filter(|t| {
            t.job == job.id
                && t.group == g
                && t.slots == k
                && t.first.max(t.next - t.slots as isize) <= first
                && first <= t.next
        });
        if let Some(t) = held {
            staged.first = t.first;
            staged.next = t.next;
        }
        staged.resume_in = Some(job.id);
        staged
    }

    /// Every input plane that output planes `z_range` of group `g` read, staged (as many
    /// slots as planes: no wrap), for a kernel of size `K` and stride `ST`; the task's
    /// parts are then [`Staged::parts`] at `first_plane::<K, ST>(z_range.0)`.
    ///
    /// # Safety
    /// As [`Staged::stage_to`].
    #[inline(always)]
    pub(super) unsafe fn slab<const K: usize, const ST: usize>(
        job: &Job,
        g: usize,
        z_range: (usize, usize),
    ) -> Staged {
        let first = first_plane::<K, ST>(z_range.0);
        let planes = (z_range.1 - z_range.0 - 1) * ST + K;
        let mut staged = Staged::new(job, K, g, first, planes);
        staged.stage_to(job, first + planes as isize - 1);
        staged
    }

    fn slot(&self, plane: isize) -> usize {
        (plane - self.first) as usize % self.slots
    }

    /// Normalizes every input plane up to `last` not staged yet into its slot.
    ///
    /// # Safety
    /// The job must be valid with an input norm; the planes between the last staged one
    /// and `last` must fit the ring (at most `slots`, none still read).
    #[inline(always)]
    pub(super) unsafe fn stage_to(&mut self, job: &Job, last: isize) {
        let (pad, rs, cs) = (self.pad, self.rs, self.cs);
        let rows = job.in_h + 2 * pad;
        let src = &job.parts[0];
        while self.next <= last {
            let z = self.next;
            let slot = self.base + self.slot(z) * self.ss;
            for ci in 0..job.cin_g {
                let plane = &mut self.buf[slot + ci * cs..][..cs];
                if z < 0 || z as usize >= job.in_d {
                    plane.fill(0.0);
                    continue;
                }
                let c = self.group * job.cin_g + ci;
                let affine = *job.input_norm.add(c);
                plane[..pad * rs].fill(0.0);
                plane[(rows - pad) * rs..].fill(0.0);
                for y in 0..job.in_h {
                    let row = &mut plane[(y + pad) * rs..][..rs];
                    // Safety (caller): row (c, z, y) of the input's interior.
                    let from = std::slice::from_raw_parts(
                        src.input.add(c * src.cs + z as usize * src.ps + y * src.rs),
                        job.in_w,
                    );
                    if let Some(padded) = &mut self.padded_row {
                        // Its halo and tail stay zero from the allocation.
                        norm::normalize_row(from, &mut padded[1..=job.in_w], affine, job.relu);
                        winograd::input_row(padded, row);
                        continue;
                    }
                    row[..pad].fill(0.0);
                    row[pad + job.in_w..].fill(0.0);
                    norm::normalize_row(from, &mut row[pad..pad + job.in_w], affine, job.relu);
                }
            }
            self.next += 1;
        }
    }

    /// The job's parts with the first one reading this ring: the first tap of a task
    /// row in input plane `plane` (staged, with the next `k - 1`), row and column 0.
    pub(super) fn parts(&self, job: &Job, plane: isize) -> [Part; MAX_PARTS] {
        let mut parts = job.parts;
        parts[0] = Part {
            // Safety: `base` is within the buffer (it has 16 floats more than the slots).
            input: unsafe { self.buf.as_ptr().add(self.base) },
            cs: self.cs,
            ps: self.ss,
            rs: self.rs,
            channels: job.cin_g,
            taps_z: [0, 1, 2].map(|kz| self.slot(plane + kz) * self.ss),
        };
        parts
    }
}

/// The input plane of output plane `z`'s first tap (interior coordinates: -1 is the zero
/// halo plane).
pub(super) fn first_plane<const K: usize, const ST: usize>(z: usize) -> isize {
    (z * ST) as isize - (K / 2) as isize
}

impl Drop for Staged {
    fn drop(&mut self) {
        let tag = self.resume_in.map(|job| RingTag {
            job,
            group: self.group,
            slots: self.slots,
            first: self.first,
            next: self.next,
        });
        BUFFER.with(|cell| cell.set((std::mem::take(&mut self.buf), tag)));
    }
}
