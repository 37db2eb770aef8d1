//! The activation buffers of a forward pass, allocated once and reused across layers and
//! calls.
//!
//! A [`Slot`] is one growable buffer that successive layers borrow as tensors of different
//! layouts, at offset 0 or at fixed offsets further in (so that two tensors whose lifetimes
//! overlap can share one buffer that a later, larger tensor uses whole; see the memory
//! plan in [`crate::model`]). Kernels only ever write the interior of a tensor, so a
//! region's halo stays zero while it is reused with the same layout; when the layout at an
//! offset changes, or another region was written over it, [`Slot::get_at`] zeroes the new
//! layout's halo (a few percent of the volume) instead of the whole buffer.

use brats_kernels::{Layout, View, ViewMut};
use rayon::prelude::*;

/// One reusable buffer.
#[derive(Default)]
pub struct Slot {
    data: Vec<f32>,
    /// Layout last requested at each offset whose halo is known to be zero.
    regions: Vec<(usize, Layout)>,
}

impl Slot {
    /// The buffer from offset 0 as a tensor of `layout` (see [`Slot::get_at`]).
    pub fn get(&mut self, layout: Layout) -> ViewMut<'_> {
        self.get_at(0, layout)
    }

    /// The buffer from `offset` as a tensor of `layout`, grown if needed, with a zero
    /// halo. The interior holds whatever the previous user left.
    pub fn get_at(&mut self, offset: usize, layout: Layout) -> ViewMut<'_> {
        self.prepare(offset, layout);
        ViewMut::new(&mut self.data[offset..], layout).expect("slot was sized for the layout")
    }

    /// The tensor last requested at offset 0.
    pub fn view(&self) -> View<'_> {
        self.view_at(0)
    }

    /// The tensor last requested at `offset`.
    pub fn view_at(&self, offset: usize) -> View<'_> {
        let layout = self.layout_at(offset);
        View::new(&self.data[offset..], layout).expect("slot was sized for the layout")
    }

    /// Reads the tensor last requested at `read` while writing a tensor of `layout` at
    /// `write`; the two must not overlap.
    pub fn read_write(
        &mut self,
        read: usize,
        write: usize,
        layout: Layout,
    ) -> (View<'_>, ViewMut<'_>) {
        let rl = self.layout_at(read);
        assert!(
            read + rl.buffer_len() <= write || write + layout.buffer_len() <= read,
            "slot regions at {read} and {write} overlap"
        );
        self.prepare(write, layout);
        if read < write {
            let (a, b) = self.data.split_at_mut(write);
            (
                View::new(&a[read..], rl).expect("sized"),
                ViewMut::new(b, layout).expect("sized"),
            )
        } else {
            let (a, b) = self.data.split_at_mut(read);
            (
                View::new(b, rl).expect("sized"),
                ViewMut::new(&mut a[write..], layout).expect("sized"),
            )
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    fn layout_at(&self, offset: usize) -> Layout {
        self.regions
            .iter()
            .find(|(o, _)| *o == offset)
            .map(|&(_, l)| l)
            .expect("slot region read before it was written")
    }

    fn prepare(&mut self, offset: usize, layout: Layout) {
        let end = offset + layout.buffer_len();
        if self.data.len() < end {
            self.data.resize(end, 0.0);
        }
        if self
            .regions
            .iter()
            .any(|&(o, l)| o == offset && l == layout)
        {
            return;
        }
        // Regions this one covers may get garbage in their halo: forget them.
        self.regions
            .retain(|&(o, l)| o != offset && (o + l.buffer_len() <= offset || end <= o));
        zero_halo(&mut self.data[offset..], layout);
        self.regions.push((offset, layout));
    }
}

/// Zeroes the halo of a tensor of `layout` stored in `data`, plane by plane on the
/// thread pool: the border columns are two floats per row, each row on its own cache
/// line, so one thread waits on memory for most of it (8 channels at 128³: 5.9 ms).
fn zero_halo(data: &mut [f32], l: Layout) {
    if l.halo == 0 {
        return;
    }
    let (ps, rs, h) = (l.plane_stride(), l.row_stride(), l.halo);
    let (dp, hp) = (l.d + 2 * h, l.h + 2 * h);
    data[..l.c * l.channel_stride()]
        .par_chunks_mut(ps)
        .enumerate()
        .for_each(|(i, plane)| {
            let z = i % dp;
            if z < h || z >= dp - h {
                plane.fill(0.0);
                return;
            }
            for y in 0..hp {
                let row = &mut plane[y * rs..(y + 1) * rs];
                if y < h || y >= hp - h {
                    row.fill(0.0);
                } else {
                    row[..h].fill(0.0);
                    row[rs - h..].fill(0.0);
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halo_is_zero(s: &Slot, offset: usize) -> bool {
        let v = s.view_at(offset);
        let l = v.view_layout();
        let dense_sum: f32 = v.to_dense().iter().map(|x| x.abs()).sum();
        let buf_sum: f32 = s.data[offset..offset + l.len()]
            .iter()
            .map(|x| x.abs())
            .sum();
        buf_sum == dense_sum
    }

    #[test]
    fn halo_is_zero_after_a_layout_change() {
        let mut s = Slot::default();
        s.get(Layout::new(2, 3, 3, 3, 0));
        s.data.iter_mut().for_each(|x| *x = 7.0);
        let b = Layout::new(1, 2, 2, 2, 1);
        s.get(b);
        assert!(halo_is_zero(&s, 0));
        assert_eq!(s.view().to_dense().iter().sum::<f32>(), 7.0 * 8.0);
    }

    #[test]
    fn a_region_written_over_is_cleaned_when_reused() {
        let mut s = Slot::default();
        let small = Layout::new(1, 2, 2, 2, 1);
        let off = small.buffer_len();
        s.get(small);
        s.get_at(off, small);
        // A big tensor at 0 covers the region at `off` and fills it.
        let big = Layout::new(4, 2, 2, 2, 0);
        s.get(big).copy_from_dense(&[5.0; 32]).unwrap();
        // Asking for the same layout at `off` again must still give a zero halo.
        s.get_at(off, small);
        assert!(halo_is_zero(&s, off));
        let (r, w) = s.read_write(0, off, small);
        assert_eq!(r.view_layout().c, 4);
        assert_eq!(w.view_layout(), small);
    }
}
