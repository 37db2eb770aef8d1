//! The activation buffers of a forward pass, allocated once and reused across layers and
//! calls.
//!
//! A [`Slot`] is one growable buffer that successive layers borrow under different
//! layouts. Kernels only ever write the interior of a tensor, so a slot's halo stays zero
//! as long as it is reused with the same layout; when the layout changes, [`Slot::get`]
//! zeroes the new layout's halo (a few percent of the volume) instead of the whole buffer.
//! Which layer uses which slot, and why that keeps the peak low, is described in
//! [`crate::model`].

use brats_kernels::{Layout, View, ViewMut};

/// One reusable buffer.
#[derive(Default)]
pub struct Slot {
    data: Vec<f32>,
    layout: Option<Layout>,
}

impl Slot {
    /// The buffer as a tensor of `layout`, grown if needed, with a zero halo. The interior
    /// holds whatever the previous user left.
    pub fn get(&mut self, layout: Layout) -> ViewMut<'_> {
        if self.data.len() < layout.buffer_len() {
            self.data.resize(layout.buffer_len(), 0.0);
        }
        if self.layout != Some(layout) {
            zero_halo(&mut self.data, layout);
            self.layout = Some(layout);
        }
        ViewMut::new(&mut self.data, layout).expect("slot was sized for the layout")
    }

    /// The tensor last requested with [`Slot::get`].
    pub fn view(&self) -> View<'_> {
        let layout = self.layout.expect("slot read before it was written");
        View::new(&self.data, layout).expect("slot was sized for the layout")
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}

/// Zeroes the halo of a tensor of `layout` stored in `data`.
fn zero_halo(data: &mut [f32], l: Layout) {
    if l.halo == 0 {
        return;
    }
    let (ps, rs, h) = (l.plane_stride(), l.row_stride(), l.halo);
    let (dp, hp) = (l.d + 2 * h, l.h + 2 * h);
    for c in 0..l.c {
        let ch = &mut data[c * l.channel_stride()..(c + 1) * l.channel_stride()];
        for z in 0..dp {
            let plane = &mut ch[z * ps..(z + 1) * ps];
            if z < h || z >= dp - h {
                plane.fill(0.0);
                continue;
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halo_is_zero_after_a_layout_change() {
        let mut s = Slot::default();
        let a = Layout::new(2, 3, 3, 3, 0);
        s.get(a).channels_mut(0, 2).unwrap();
        // Fill the buffer with garbage through a halo-free layout, then reuse it with a halo.
        for x in s.data.iter_mut() {
            *x = 7.0;
        }
        s.layout = Some(a);
        let b = Layout::new(1, 2, 2, 2, 1);
        s.get(b);
        let v = s.view();
        let dense_sum: f32 = v.to_dense().iter().sum();
        let buf_sum: f32 = s.data[..b.len()].iter().sum();
        assert_eq!(buf_sum, dense_sum, "only the interior may hold non-zeros");
        assert_eq!(dense_sum, 7.0 * 8.0);
    }
}
