//! Transposed convolution, kernel 2, stride 2, no bias (MXNet `Deconvolution`, weight
//! layout `(cin, cout, 2, 2, 2)`): every input voxel spreads into its own 2x2x2 output
//! block, `out[co][2z+a][2y+b][2x+c] = sum_ci in[ci][z][y][x] * w[ci][co][a][b][c]`.
//!
//! # Design
//!
//! The output blocks do not overlap, so this is eight independent 1x1 convolutions (one
//! per `(a, b, c)`) whose results interleave. The kernel vectorizes along the input row:
//! for a fixed `(a, b)` it keeps `OC` output channels x 2 (`c = 0, 1`) accumulators, sums
//! over the input channels, then writes both into output row `(2z+a, 2y+b)` interleaved.
//! Deconvolutions are under 2 % of the network's FLOPs and their output is 8x their input,
//! so they are bound by the output writes rather than the FMAs; the simple register tile
//! (one vector along W) is enough. A task is one input plane (two output planes).

use crate::isa::Kind;
#[cfg(target_arch = "x86_64")]
use crate::simd::{Avx2, Avx512};
use crate::simd::{Portable, Simd};
use crate::tensor::{SharedMut, View, ViewMut};
use crate::{Error, Isa};
use rayon::prelude::*;

/// A kernel-2 stride-2 transposed convolution with weights packed for one ISA.
#[derive(Clone, Debug)]
pub struct Deconv3d {
    cin: usize,
    cout: usize,
    isa: Isa,
    packed: Vec<f32>,
}

impl Deconv3d {
    /// Packs `weights` (MXNet layout `(cin, cout, 2, 2, 2)`) for `isa`.
    pub fn new(isa: Isa, cin: usize, cout: usize, weights: &[f32]) -> Result<Deconv3d, Error> {
        if cin == 0 || cout == 0 {
            return Err(Error::new(format!(
                "deconv {cin} -> {cout}: channels must be positive"
            )));
        }
        if weights.len() != cin * cout * 8 {
            return Err(Error::new(format!(
                "deconv {cin} -> {cout}: {} weights given, ({cin}, {cout}, 2, 2, 2) needs {}",
                weights.len(),
                cin * cout * 8
            )));
        }
        let oc_block = match isa.kind() {
            Kind::Avx512 => 8,
            _ => 4,
        };
        let n_ob = cout.div_ceil(oc_block);
        // Packed as [ob][a*2+b][ci][c][o], zero-padded past `cout`.
        let mut packed = vec![0.0f32; n_ob * 4 * cin * 2 * oc_block];
        let mut at = 0;
        for ob in 0..n_ob {
            for ab in 0..4 {
                for ci in 0..cin {
                    for c in 0..2 {
                        for o in 0..oc_block {
                            let co = ob * oc_block + o;
                            if co < cout {
                                packed[at] = weights[(ci * cout + co) * 8 + ab * 2 + c];
                            }
                            at += 1;
                        }
                    }
                }
            }
        }
        Ok(Deconv3d {
            cin,
            cout,
            isa,
            packed,
        })
    }

    pub fn channels(&self) -> (usize, usize) {
        (self.cin, self.cout)
    }

    /// Floating-point operations (2 per multiply-add) for an input of `in_voxels`.
    pub fn flops(&self, in_voxels: usize) -> u64 {
        2 * 8 * (in_voxels as u64) * (self.cin as u64) * (self.cout as u64)
    }

    /// Writes the transposed convolution of `input` into `output` (twice the input's
    /// size on each side; any halo).
    pub fn run(&self, input: &View, output: &mut ViewMut) -> Result<(), Error> {
        let (il, ol) = (input.view_layout(), output.view_layout());
        let fail = |m: String| {
            Err(Error::new(format!(
                "deconv {} -> {}: {m}",
                self.cin, self.cout
            )))
        };
        if il.c != self.cin || ol.c != self.cout {
            return fail(format!("given {} -> {} channels", il.c, ol.c));
        }
        if (ol.d, ol.h, ol.w) != (2 * il.d, 2 * il.h, 2 * il.w) {
            return fail(format!("output {ol} is not twice the input {il}"));
        }
        if il.voxels() == 0 {
            return Ok(());
        }
        let (ib, ob) = (input.buffer_layout(), output.buffer_layout());
        let out_origin = ob.index(output.c0(), 0, 0, 0);
        let job = Job {
            input: input.data()[ib.index(input.c0(), 0, 0, 0)..].as_ptr(),
            in_cs: ib.channel_stride(),
            in_ps: ib.plane_stride(),
            in_rs: ib.row_stride(),
            output: SharedMut(output.data_mut()[out_origin..].as_mut_ptr()),
            out_cs: ob.channel_stride(),
            out_ps: ob.plane_stride(),
            out_rs: ob.row_stride(),
            in_h: il.h,
            in_w: il.w,
            cin: self.cin,
            cout: self.cout,
            weights: self.packed.as_ptr(),
        };
        let isa = self.isa.kind();
        (0..il.d).into_par_iter().for_each(|z| {
            // Safety: `run` checked channel counts and that the output is exactly twice
            // the input, so every load is inside the input's interior rows (plus at most
            // one vector of over-read, covered by the buffer slack) and every store inside
            // the output's interior. Task `z` writes only output planes 2z and 2z+1.
            // The ISA was proven present when `self.isa` was obtained.
            crate::trace::task(|| unsafe { run_plane(isa, &job, z) })
        });
        Ok(())
    }
}

struct Job {
    input: *const f32,
    in_cs: usize,
    in_ps: usize,
    in_rs: usize,
    output: SharedMut,
    out_cs: usize,
    out_ps: usize,
    out_rs: usize,
    in_h: usize,
    in_w: usize,
    cin: usize,
    cout: usize,
    weights: *const f32,
}

// Safety: read-only pointers plus an output written at disjoint planes per task.
unsafe impl Sync for Job {}

unsafe fn run_plane(isa: Kind, job: &Job, z: usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Kind::Avx512 => plane_avx512(job, z),
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => plane_avx2(job, z),
        _ => plane_body::<Portable, 4>(Portable, job, z),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512(job: &Job, z: usize) {
    plane_body::<Avx512, 8>(Avx512, job, z)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(job: &Job, z: usize) {
    plane_body::<Avx2, 4>(Avx2, job, z)
}

#[inline(always)]
unsafe fn plane_body<S: Simd, const OC: usize>(s: S, job: &Job, z: usize) {
    let lanes = S::LANES;
    let n_ob = job.cout.div_ceil(OC);
    for y in 0..job.in_h {
        let in_row = job.input.add(z * job.in_ps + y * job.in_rs);
        let mut x0 = 0;
        while x0 < job.in_w {
            let n = (job.in_w - x0).min(lanes);
            for ob in 0..n_ob {
                for ab in 0..4 {
                    let (a, b) = (ab / 2, ab % 2);
                    let mut acc = [[s.zero(); 2]; OC];
                    let mut w = job.weights.add((ob * 4 + ab) * job.cin * 2 * OC);
                    for ci in 0..job.cin {
                        let x = s.load(in_row.add(ci * job.in_cs + x0));
                        for c in 0..2 {
                            for (o, acc_o) in acc.iter_mut().enumerate() {
                                acc_o[c] = s.mul_add_bcast(w.add(c * OC + o), x, acc_o[c]);
                            }
                        }
                        w = w.add(2 * OC);
                    }
                    let out_row = job
                        .output
                        .0
                        .add((2 * z + a) * job.out_ps + (2 * y + b) * job.out_rs + 2 * x0);
                    for (o, acc_o) in acc.iter().enumerate() {
                        let co = ob * OC + o;
                        if co >= job.cout {
                            break;
                        }
                        // Interleave c = 0 and c = 1 into the output row.
                        s.store_interleaved(out_row.add(co * job.out_cs), acc_o[0], acc_o[1], n);
                    }
                }
            }
            x0 += lanes;
        }
    }
}
