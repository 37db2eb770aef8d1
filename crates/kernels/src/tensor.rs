//! Activation storage: NCDHW (batch 1) f32 with an optional zero halo, and views of a
//! channel range of it.
//!
//! Why a halo: the 3x3x3 convolutions read one voxel past every face. Storing each
//! channel as `(D + 2h) x (H + 2h) x (W + 2h)` with `h = 1` and zeros in the border lets
//! the inner loop load whole input rows without bounds tests; a layer that feeds a conv
//! writes its result straight into the interior of such a buffer, so padding never costs
//! a copy. Tensors that only feed 1x1 convs, norms or element-wise layers use `h = 0`.
//!
//! Why slack: vector loads near the end of a row read up to two vectors past it (into the
//! next row, which is harmless: those lanes are discarded). Every buffer therefore ends
//! with [`SLACK`] spare floats, and views refuse buffers shorter than that, so the last
//! row of the last channel can be read the same way as every other.
//!
//! Why channel-range views: concatenation in the decoder is free when each producer
//! writes its own channel range of the concatenated tensor.

use crate::Error;

/// Spare floats after the last element of every buffer (see the module note).
pub const SLACK: usize = 64;

/// Shape and halo of a 4-D `C x D x H x W` activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub c: usize,
    pub d: usize,
    pub h: usize,
    pub w: usize,
    /// Zero border width on each side of D, H and W (0 or 1 in this network).
    pub halo: usize,
}

impl Layout {
    pub const fn new(c: usize, d: usize, h: usize, w: usize, halo: usize) -> Layout {
        Layout { c, d, h, w, halo }
    }
    /// Floats between consecutive rows (consecutive `y`).
    pub const fn row_stride(&self) -> usize {
        self.w + 2 * self.halo
    }
    /// Floats between consecutive planes (consecutive `z`).
    pub const fn plane_stride(&self) -> usize {
        (self.h + 2 * self.halo) * self.row_stride()
    }
    /// Floats between consecutive channels.
    pub const fn channel_stride(&self) -> usize {
        (self.d + 2 * self.halo) * self.plane_stride()
    }
    /// Floats holding the tensor, halo included, slack excluded.
    pub const fn len(&self) -> usize {
        self.c * self.channel_stride()
    }
    /// True if the tensor holds no voxel.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Floats a buffer for this layout must have: [`Layout::len`] plus [`SLACK`].
    pub const fn buffer_len(&self) -> usize {
        self.len() + SLACK
    }
    /// Interior voxels per channel.
    pub const fn voxels(&self) -> usize {
        self.d * self.h * self.w
    }
    /// Index of interior voxel `(c, z, y, x)`.
    #[inline]
    pub const fn index(&self, c: usize, z: usize, y: usize, x: usize) -> usize {
        c * self.channel_stride()
            + (z + self.halo) * self.plane_stride()
            + (y + self.halo) * self.row_stride()
            + x
            + self.halo
    }
    /// The same spatial shape with another channel count and halo.
    pub const fn with(&self, c: usize, halo: usize) -> Layout {
        Layout { c, halo, ..*self }
    }
    pub(crate) fn same_spatial(&self, other: &Layout) -> bool {
        (self.d, self.h, self.w) == (other.d, other.h, other.w)
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}x{}", self.c, self.d, self.h, self.w)?;
        if self.halo > 0 {
            write!(f, " (halo {})", self.halo)?;
        }
        Ok(())
    }
}

/// An owned activation buffer, zero-initialised (so the halo is zero), with slack.
#[derive(Clone, Debug)]
pub struct Tensor {
    layout: Layout,
    data: Vec<f32>,
}

impl Tensor {
    /// A zero tensor.
    pub fn zeros(layout: Layout) -> Tensor {
        Tensor {
            layout,
            data: vec![0.0; layout.buffer_len()],
        }
    }

    /// A tensor with the given halo holding `dense`, a plain `C x D x H x W` array.
    pub fn from_dense(layout: Layout, dense: &[f32]) -> Result<Tensor, Error> {
        let mut t = Tensor::zeros(layout);
        t.view_mut().copy_from_dense(dense)?;
        Ok(t)
    }

    /// The interior as a plain `C x D x H x W` array.
    pub fn to_dense(&self) -> Vec<f32> {
        self.view().to_dense()
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// The whole buffer, halo and slack included.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// The whole buffer, halo and slack included.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    /// A view of all channels.
    pub fn view(&self) -> View<'_> {
        View {
            data: &self.data,
            layout: self.layout,
            c0: 0,
            c: self.layout.c,
        }
    }
    /// A mutable view of all channels.
    pub fn view_mut(&mut self) -> ViewMut<'_> {
        let c = self.layout.c;
        ViewMut {
            data: &mut self.data,
            layout: self.layout,
            c0: 0,
            c,
        }
    }
    /// A view of channels `c0 .. c0 + c`.
    pub fn channels(&self, c0: usize, c: usize) -> Result<View<'_>, Error> {
        self.view().channels(c0, c)
    }
    /// A mutable view of channels `c0 .. c0 + c`.
    pub fn channels_mut(&mut self, c0: usize, c: usize) -> Result<ViewMut<'_>, Error> {
        self.view_mut().into_channels(c0, c)
    }
}

/// A read-only view of channels `c0 .. c0 + c` of a buffer laid out as `layout`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    data: &'a [f32],
    layout: Layout,
    c0: usize,
    c: usize,
}

/// A mutable view of channels `c0 .. c0 + c` of a buffer laid out as `layout`.
#[derive(Debug)]
pub struct ViewMut<'a> {
    data: &'a mut [f32],
    layout: Layout,
    c0: usize,
    c: usize,
}

fn check_buffer(len: usize, layout: &Layout) -> Result<(), Error> {
    if len < layout.buffer_len() {
        return Err(Error::new(format!(
            "buffer of {len} floats is too short for a {layout} tensor ({} floats + {SLACK} slack)",
            layout.len()
        )));
    }
    Ok(())
}

fn check_range(c0: usize, c: usize, layout: &Layout) -> Result<(), Error> {
    if c0.checked_add(c).is_none_or(|end| end > layout.c) {
        return Err(Error::new(format!(
            "channel range {c0}..{} is outside a {layout} tensor",
            c0.saturating_add(c)
        )));
    }
    Ok(())
}

impl<'a> View<'a> {
    /// A view of all channels of `data` laid out as `layout`; `data` must have
    /// [`Layout::buffer_len`] floats.
    pub fn new(data: &'a [f32], layout: Layout) -> Result<View<'a>, Error> {
        check_buffer(data.len(), &layout)?;
        Ok(View {
            data,
            layout,
            c0: 0,
            c: layout.c,
        })
    }
    /// Channels `c0 .. c0 + c` of this view.
    pub fn channels(&self, c0: usize, c: usize) -> Result<View<'a>, Error> {
        check_range(c0, c, &self.view_layout())?;
        Ok(View {
            c0: self.c0 + c0,
            c,
            ..*self
        })
    }
    /// Layout of the underlying buffer.
    pub fn buffer_layout(&self) -> Layout {
        self.layout
    }
    /// Layout of what this view shows: the buffer layout with `c` set to the view's
    /// channel count.
    pub fn view_layout(&self) -> Layout {
        self.layout.with(self.c, self.layout.halo)
    }
    pub(crate) fn c0(&self) -> usize {
        self.c0
    }
    pub(crate) fn data(&self) -> &'a [f32] {
        self.data
    }
    /// Value of interior voxel `(c, z, y, x)` of the view.
    pub fn at(&self, c: usize, z: usize, y: usize, x: usize) -> f32 {
        self.data[self.layout.index(self.c0 + c, z, y, x)]
    }
    /// The interior as a plain `C x D x H x W` array.
    pub fn to_dense(&self) -> Vec<f32> {
        let l = self.layout;
        let mut out = Vec::with_capacity(self.c * l.voxels());
        for c in 0..self.c {
            for z in 0..l.d {
                for y in 0..l.h {
                    let at = l.index(self.c0 + c, z, y, 0);
                    out.extend_from_slice(&self.data[at..at + l.w]);
                }
            }
        }
        out
    }
}

impl<'a> ViewMut<'a> {
    /// A view of all channels of `data` laid out as `layout`; `data` must have
    /// [`Layout::buffer_len`] floats.
    pub fn new(data: &'a mut [f32], layout: Layout) -> Result<ViewMut<'a>, Error> {
        check_buffer(data.len(), &layout)?;
        Ok(ViewMut {
            data,
            layout,
            c0: 0,
            c: layout.c,
        })
    }
    /// Channels `c0 .. c0 + c` of this view.
    pub fn into_channels(self, c0: usize, c: usize) -> Result<ViewMut<'a>, Error> {
        check_range(c0, c, &self.view_layout())?;
        Ok(ViewMut {
            c0: self.c0 + c0,
            c,
            ..self
        })
    }
    /// A shorter-lived mutable view of channels `c0 .. c0 + c`.
    pub fn channels_mut(&mut self, c0: usize, c: usize) -> Result<ViewMut<'_>, Error> {
        check_range(c0, c, &self.view_layout())?;
        Ok(ViewMut {
            data: self.data,
            layout: self.layout,
            c0: self.c0 + c0,
            c,
        })
    }
    /// A read-only view of the same channels.
    pub fn as_view(&self) -> View<'_> {
        View {
            data: self.data,
            layout: self.layout,
            c0: self.c0,
            c: self.c,
        }
    }
    /// Layout of the underlying buffer.
    pub fn buffer_layout(&self) -> Layout {
        self.layout
    }
    /// Layout of what this view shows.
    pub fn view_layout(&self) -> Layout {
        self.layout.with(self.c, self.layout.halo)
    }
    pub(crate) fn c0(&self) -> usize {
        self.c0
    }
    pub(crate) fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }
    /// Copies `dense`, a plain `C x D x H x W` array, into the interior of the view.
    pub fn copy_from_dense(&mut self, dense: &[f32]) -> Result<(), Error> {
        let l = self.view_layout();
        if dense.len() != l.c * l.voxels() {
            return Err(Error::new(format!(
                "dense data has {} floats, a {l} tensor needs {}",
                dense.len(),
                l.c * l.voxels()
            )));
        }
        if l.w == 0 {
            return Ok(());
        }
        for (r, src) in dense.chunks_exact(l.w).enumerate() {
            let (c, zy) = (r / (l.d * l.h), r % (l.d * l.h));
            let at = self.layout.index(self.c0 + c, zy / l.h, zy % l.h, 0);
            self.data[at..at + l.w].copy_from_slice(src);
        }
        Ok(())
    }
}

/// A raw pointer that rayon tasks may share. Every kernel that uses it documents why
/// the tasks write disjoint elements.
pub(crate) struct SharedMut<T = f32>(pub *mut T);
impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}
// Safety: only used to let parallel tasks write disjoint parts of one buffer; each use
// site proves disjointness.
unsafe impl<T> Send for SharedMut<T> {}
// Safety: as above.
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer. (A method, so closures capture the `Sync` wrapper, not the field.)
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_round_trip_with_halo() {
        let l = Layout::new(2, 3, 4, 5, 1);
        let dense: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| i as f32).collect();
        let t = Tensor::from_dense(l, &dense).unwrap();
        assert_eq!(t.to_dense(), dense);
        // The halo stays zero: sum of the buffer equals the sum of the interior.
        let s: f32 = t.data().iter().sum();
        assert_eq!(s, dense.iter().sum::<f32>());
        assert_eq!(t.view().at(1, 2, 3, 4), dense[dense.len() - 1]);
    }

    #[test]
    fn short_buffers_and_bad_ranges_are_errors() {
        let l = Layout::new(2, 2, 2, 2, 1);
        let short = vec![0.0; l.len()];
        assert!(View::new(&short, l).is_err());
        let t = Tensor::zeros(l);
        assert!(t.channels(1, 2).is_err());
        assert!(t.channels(usize::MAX, 2).is_err());
        assert!(t.channels(1, 1).is_ok());
    }
}
