//! The vector operations the kernels are written in, one implementation per ISA.
//!
//! Kernels are written once, generic over [`Simd`], and marked `#[inline(always)]`; thin
//! `#[target_feature]` wrappers (see `dispatch!` users) instantiate them per ISA, so the
//! intrinsics below are inlined into code compiled with the right features (the shape
//! rten-simd uses). The implementing types are zero-sized tokens that only the
//! dispatchers construct, after [`crate::Isa`] has proven the features present.
//!
//! Only what the kernels need is here: full-width and strided loads, masked loads and
//! stores for row tails, fused multiply-add with a broadcast weight (which AVX-512 folds
//! into an embedded-broadcast memory operand), the interleave of the stride-2 transposed
//! convolution's two output columns, and the two pieces of the Winograd kernel that
//! depend on the lane layout (a 4-float weight broadcast, the output transform).

/// One SIMD register type and the operations on it.
///
/// # Safety
/// Implementors' methods may only be called when the CPU supports the ISA they
/// are written for; the pointer methods additionally require the documented memory
/// to be readable/writable.
pub(crate) unsafe trait Simd: Copy {
    type V: Copy;
    /// f64 accumulators of the conv epilogue's statistics: (sum, sum of squares).
    type Stats: Copy;
    /// f32 lanes per vector.
    const LANES: usize;

    fn zero(self) -> Self::V;
    fn splat(self, x: f32) -> Self::V;
    /// `a * b + c`, fused where the ISA has FMA.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise maximum (`f32::max` for finite lanes).
    fn max(self, a: Self::V, b: Self::V) -> Self::V;

    /// Zero statistics accumulators.
    fn stats_zero(self) -> Self::Stats;
    /// Adds the first `n <= LANES` lanes of `v` and their squares, in f64.
    fn stats_add(self, acc: Self::Stats, v: Self::V, n: usize) -> Self::Stats;
    /// `(sum, sum of squares)` of everything added.
    fn stats_reduce(self, acc: Self::Stats) -> (f64, f64);

    /// Adds [`Simd::stats_reduce`]`(acc)` into the `(sum, sum of squares)` pair at `at`:
    /// one (channel, plane) entry of a kernel's statistics partials.
    ///
    /// # Safety
    /// `at .. at + 2` must be writable, and no other thread may write it meanwhile.
    #[inline(always)]
    unsafe fn stats_add_to(self, acc: Self::Stats, at: *mut f64) {
        let (sum, sq) = self.stats_reduce(acc);
        *at += sum;
        *at.add(1) += sq;
    }

    /// Loads `LANES` floats from `p`.
    ///
    /// # Safety
    /// `p .. p + LANES` must be readable.
    unsafe fn load(self, p: *const f32) -> Self::V;

    /// Loads `p[0], p[2], .., p[2 * (LANES - 1)]` (the stride-2 input of a strided conv).
    ///
    /// # Safety
    /// `p .. p + 2 * LANES` must be readable.
    unsafe fn load_even(self, p: *const f32) -> Self::V;

    /// Stores all lanes to `p`.
    ///
    /// # Safety
    /// `p .. p + LANES` must be writable.
    unsafe fn store(self, p: *mut f32, v: Self::V);

    /// Stores the first `n` lanes (`n <= LANES`) to `p`, leaving the rest untouched.
    ///
    /// # Safety
    /// `p .. p + n` must be writable.
    unsafe fn store_first(self, p: *mut f32, v: Self::V, n: usize);

    /// `acc + (*w) * x`: the broadcast-weight FMA of the convolution inner loops.
    ///
    /// # Safety
    /// `w` must be readable.
    #[inline(always)]
    unsafe fn mul_add_bcast(self, w: *const f32, x: Self::V, acc: Self::V) -> Self::V {
        self.mul_add(self.splat(*w), x, acc)
    }

    /// Stores the first `n` lanes, or all of them without a mask when `n == LANES`.
    ///
    /// # Safety
    /// `p .. p + n` must be writable.
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, v: Self::V, n: usize) {
        if n == Self::LANES {
            self.store(p, v)
        } else {
            self.store_first(p, v, n)
        }
    }

    /// `a[0], b[0], a[1], b[1], ..` as two vectors (`a` and `b`'s first halves, then their
    /// second halves): the two output columns of a stride-2 transposed convolution, in
    /// output order.
    #[inline(always)]
    fn interleave(self, a: Self::V, b: Self::V) -> (Self::V, Self::V) {
        let (mut ea, mut eb, mut out) = ([0.0f32; 16], [0.0f32; 16], [0.0f32; 32]);
        // Safety: the buffers hold at least one vector each (`out` two).
        unsafe {
            self.store(ea.as_mut_ptr(), a);
            self.store(eb.as_mut_ptr(), b);
        }
        for i in 0..Self::LANES {
            out[2 * i] = ea[i];
            out[2 * i + 1] = eb[i];
        }
        // Safety: as above.
        unsafe {
            (
                self.load(out.as_ptr()),
                self.load(out.as_ptr().add(Self::LANES)),
            )
        }
    }

    /// Stores [`Simd::interleave`]`(a, b)` for the first `n <= LANES` lanes of `a` and `b`
    /// (`2 n` floats).
    ///
    /// # Safety
    /// `p .. p + 2 n` must be writable.
    #[inline(always)]
    unsafe fn store_interleaved(self, p: *mut f32, a: Self::V, b: Self::V, n: usize) {
        let (first, second) = self.interleave(a, b);
        self.store_n(p, first, (2 * n).min(Self::LANES));
        if 2 * n > Self::LANES {
            self.store_n(p.add(Self::LANES), second, 2 * n - Self::LANES);
        }
    }

    /// Loads `p[0..4]` into every group of 4 lanes: one output channel's four
    /// transformed weights of a Winograd tap, against 4-float input tiles
    /// (`conv/winograd.rs`).
    ///
    /// # Safety
    /// `p .. p + 4` must be readable.
    #[inline(always)]
    unsafe fn load4_splat(self, p: *const f32) -> Self::V {
        let mut buf = [0.0f32; 16];
        for (i, x) in buf.iter_mut().enumerate().take(Self::LANES) {
            *x = *p.add(i % 4);
        }
        self.load(buf.as_ptr())
    }

    /// The Winograd F(2,3) output transform of two accumulators of 4-float tiles
    /// `[m0 m1 m2 m3]` (`conv/winograd.rs`): per tile the outputs `(m0 + m1) + m2` and
    /// `(m1 - m2) - m3`, `a`'s tiles' outputs in the first half of the result, `b`'s in
    /// the second.
    #[inline(always)]
    fn winograd_outputs(self, a: Self::V, b: Self::V) -> Self::V {
        let (mut m, mut out) = ([0.0f32; 32], [0.0f32; 16]);
        // Safety: `m` holds two vectors of at most 16 lanes, `out` one.
        unsafe {
            self.store(m.as_mut_ptr(), a);
            self.store(m.as_mut_ptr().add(Self::LANES), b);
        }
        for (pair, q) in out[..Self::LANES]
            .chunks_exact_mut(2)
            .zip(m.chunks_exact(4))
        {
            pair[0] = (q[0] + q[1]) + q[2];
            pair[1] = (q[1] - q[2]) - q[3];
        }
        // Safety: as above.
        unsafe { self.load(out.as_ptr()) }
    }

    /// Loads `n <= LANES` floats from `p`; the other lanes are zero.
    ///
    /// # Safety
    /// `p .. p + n` must be readable.
    #[inline(always)]
    unsafe fn load_n(self, p: *const f32, n: usize) -> Self::V {
        if n == Self::LANES {
            self.load(p)
        } else {
            let mut buf = [0.0f32; 16];
            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            self.load(buf.as_ptr())
        }
    }
}

/// Portable build over `wide::f32x8` (SSE2 on a baseline x86-64 target). It uses a
/// separate multiply and add: `mul_add` without hardware FMA would be a libm call.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

// Safety: plain safe Rust; the pointer methods document their own requirements.
unsafe impl Simd for Portable {
    type V = wide::f32x8;
    type Stats = ([f64; 8], [f64; 8]);
    const LANES: usize = 8;

    #[inline(always)]
    fn stats_zero(self) -> Self::Stats {
        ([0.0; 8], [0.0; 8])
    }
    #[inline(always)]
    fn stats_add(self, (mut s, mut q): Self::Stats, v: Self::V, n: usize) -> Self::Stats {
        for (i, &x) in v.to_array().iter().enumerate().take(n) {
            let x = x as f64;
            s[i] += x;
            q[i] += x * x;
        }
        (s, q)
    }
    #[inline(always)]
    fn stats_reduce(self, (s, q): Self::Stats) -> (f64, f64) {
        (s.iter().sum(), q.iter().sum())
    }

    #[inline(always)]
    fn zero(self) -> Self::V {
        wide::f32x8::ZERO
    }
    #[inline(always)]
    fn splat(self, x: f32) -> Self::V {
        wide::f32x8::splat(x)
    }
    #[inline(always)]
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        a * b + c
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        a + b
    }
    #[inline(always)]
    fn max(self, a: Self::V, b: Self::V) -> Self::V {
        a.max(b)
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> Self::V {
        // Safety: the caller guarantees 8 readable floats at `p`.
        wide::f32x8::from(std::ptr::read_unaligned(p as *const [f32; 8]))
    }
    #[inline(always)]
    unsafe fn load_even(self, p: *const f32) -> Self::V {
        let mut v = [0.0f32; 8];
        for (i, x) in v.iter_mut().enumerate() {
            // Safety: the caller guarantees 16 readable floats at `p`.
            *x = *p.add(2 * i);
        }
        wide::f32x8::from(v)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: Self::V) {
        // Safety: the caller guarantees 8 writable floats at `p`.
        std::ptr::write_unaligned(p as *mut [f32; 8], v.to_array());
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, v: Self::V, n: usize) {
        let a = v.to_array();
        // Safety: the caller guarantees `n <= 8` writable floats at `p`.
        std::ptr::copy_nonoverlapping(a.as_ptr(), p, n.min(8));
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// AVX2 + FMA, 8 lanes.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2;

    /// All bits set in lanes `0 .. n` of an AVX2 vector (`n <= 8`), clear in the others:
    /// the mask of a row tail's loads, stores and statistics.
    ///
    /// # Safety
    /// AVX2 must be present.
    #[inline(always)]
    unsafe fn first_lanes(n: usize) -> __m256i {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lane)
    }

    // Safety: only constructed by dispatchers holding an `Isa` that proved AVX2 and FMA.
    unsafe impl Simd for Avx2 {
        type V = __m256;
        type Stats = (__m256d, __m256d);
        const LANES: usize = 8;

        #[inline(always)]
        fn stats_zero(self) -> Self::Stats {
            // Safety: AVX is present (see the impl's contract).
            unsafe { (_mm256_setzero_pd(), _mm256_setzero_pd()) }
        }
        #[inline(always)]
        fn stats_add(self, (s, q): Self::Stats, v: __m256, n: usize) -> Self::Stats {
            // Safety: AVX2 and FMA are present.
            unsafe {
                let v = _mm256_and_ps(v, _mm256_castsi256_ps(first_lanes(n)));
                let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
                let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
                let s = _mm256_add_pd(_mm256_add_pd(s, lo), hi);
                let q = _mm256_fmadd_pd(hi, hi, _mm256_fmadd_pd(lo, lo, q));
                (s, q)
            }
        }
        #[inline(always)]
        fn stats_reduce(self, (s, q): Self::Stats) -> (f64, f64) {
            let (mut a, mut b) = ([0.0f64; 4], [0.0f64; 4]);
            // Safety: AVX is present; the arrays hold 4 doubles.
            unsafe {
                _mm256_storeu_pd(a.as_mut_ptr(), s);
                _mm256_storeu_pd(b.as_mut_ptr(), q);
            }
            ((a[0] + a[1]) + (a[2] + a[3]), (b[0] + b[1]) + (b[2] + b[3]))
        }

        #[inline(always)]
        fn zero(self) -> __m256 {
            // Safety: AVX is present (see the impl's contract).
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        fn splat(self, x: f32) -> __m256 {
            // Safety: as above.
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            // Safety: FMA is present.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            // Safety: AVX is present.
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn max(self, a: __m256, b: __m256) -> __m256 {
            // Safety: AVX is present.
            unsafe { _mm256_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load4_splat(self, p: *const f32) -> __m256 {
            let x = _mm_loadu_ps(p);
            _mm256_set_m128(x, x)
        }
        #[inline(always)]
        unsafe fn load_even(self, p: *const f32) -> __m256 {
            let a = _mm256_loadu_ps(p);
            let b = _mm256_loadu_ps(p.add(8));
            // Per 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6]; then put the 64-bit
            // pairs in order a0a2, a4a6, b0b2, b4b6.
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
                even,
            )))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        fn interleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
            // Safety: AVX is present (see the impl's contract).
            unsafe {
                let lo = _mm256_unpacklo_ps(a, b); // a0 b0 a1 b1 | a4 b4 a5 b5
                let hi = _mm256_unpackhi_ps(a, b); // a2 b2 a3 b3 | a6 b6 a7 b7
                (
                    _mm256_permute2f128_ps::<0x20>(lo, hi),
                    _mm256_permute2f128_ps::<0x31>(lo, hi),
                )
            }
        }
        #[inline(always)]
        unsafe fn load_n(self, p: *const f32, n: usize) -> __m256 {
            // Masked-out lanes are neither read nor faulted on.
            _mm256_maskload_ps(p, first_lanes(n))
        }
        #[inline(always)]
        unsafe fn store_first(self, p: *mut f32, v: __m256, n: usize) {
            _mm256_maskstore_ps(p, first_lanes(n), v)
        }
    }

    /// AVX-512F, 16 lanes.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512;

    /// The AVX-512 mask of lanes `0 .. n` (`n <= 16`): a row tail's loads, stores and
    /// statistics.
    #[inline(always)]
    fn first_lanes_mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    // Safety: only constructed by dispatchers holding an `Isa` that proved AVX-512F.
    unsafe impl Simd for Avx512 {
        type V = __m512;
        type Stats = (__m512d, __m512d);
        const LANES: usize = 16;

        #[inline(always)]
        fn stats_zero(self) -> Self::Stats {
            // Safety: AVX-512F is present (see the impl's contract).
            unsafe { (_mm512_setzero_pd(), _mm512_setzero_pd()) }
        }
        #[inline(always)]
        fn stats_add(self, (s, q): Self::Stats, v: __m512, n: usize) -> Self::Stats {
            // Safety: as above.
            unsafe {
                let v = _mm512_maskz_mov_ps(first_lanes_mask(n), v);
                let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
                let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(v),
                )));
                let s = _mm512_add_pd(_mm512_add_pd(s, lo), hi);
                let q = _mm512_fmadd_pd(hi, hi, _mm512_fmadd_pd(lo, lo, q));
                (s, q)
            }
        }
        #[inline(always)]
        fn stats_reduce(self, (s, q): Self::Stats) -> (f64, f64) {
            // Safety: as above.
            unsafe { (_mm512_reduce_add_pd(s), _mm512_reduce_add_pd(q)) }
        }

        #[inline(always)]
        fn zero(self) -> __m512 {
            // Safety: AVX-512F is present (see the impl's contract).
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        fn splat(self, x: f32) -> __m512 {
            // Safety: as above.
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            // Safety: as above.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            // Safety: as above.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn max(self, a: __m512, b: __m512) -> __m512 {
            // Safety: as above.
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn load(self, p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load4_splat(self, p: *const f32) -> __m512 {
            _mm512_broadcast_f32x4(_mm_loadu_ps(p))
        }
        #[inline(always)]
        fn winograd_outputs(self, a: __m512, b: __m512) -> __m512 {
            // Safety: AVX-512F is present (see the impl's contract).
            unsafe {
                // Per 128-bit lane (one tile) `[m0 m1 m2 m3]`: the rotations by 1, 2, 3
                // put (m0 + m1) + m2 and (m1 - m2) - m3 in element 0.
                let even_odd = |m: __m512| {
                    let r1 = _mm512_permute_ps::<0b00_11_10_01>(m);
                    let r2 = _mm512_permute_ps::<0b01_00_11_10>(m);
                    let r3 = _mm512_permute_ps::<0b10_01_00_11>(m);
                    let even = _mm512_add_ps(_mm512_add_ps(m, r1), r2);
                    let odd = _mm512_sub_ps(_mm512_sub_ps(r1, r2), r3);
                    // Per lane [even, odd, .., ..].
                    _mm512_unpacklo_ps(even, odd)
                };
                let idx =
                    _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
                _mm512_permutex2var_ps(even_odd(a), idx, even_odd(b))
            }
        }
        #[inline(always)]
        unsafe fn load_even(self, p: *const f32) -> __m512 {
            let a = _mm512_loadu_ps(p);
            let b = _mm512_loadu_ps(p.add(16));
            let idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            _mm512_permutex2var_ps(a, idx, b)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        fn interleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
            // Safety: AVX-512F is present (see the impl's contract).
            unsafe {
                let lo_idx =
                    _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                let hi_idx =
                    _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
                (
                    _mm512_permutex2var_ps(a, lo_idx, b),
                    _mm512_permutex2var_ps(a, hi_idx, b),
                )
            }
        }
        #[inline(always)]
        unsafe fn load_n(self, p: *const f32, n: usize) -> __m512 {
            // Masked-out lanes are neither read nor faulted on.
            _mm512_maskz_loadu_ps(first_lanes_mask(n), p)
        }
        #[inline(always)]
        unsafe fn store_first(self, p: *mut f32, v: __m512, n: usize) {
            _mm512_mask_storeu_ps(p, first_lanes_mask(n), v)
        }
    }
}
