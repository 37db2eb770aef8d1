//! A short FMA-throughput probe: the machine's measured f32 peak for an ISA and thread
//! count, the yardstick that benchmark and profile reports compare kernels against.
//!
//! Each thread runs chains of independent FMAs on registers only (no memory traffic),
//! enough chains to cover FMA latency times the number of FMA ports, for a fixed number
//! of iterations; the rate is total flops over the slowest thread's wall time. The same
//! generic body is compiled per ISA, like the kernels.

use crate::isa::Kind;
#[cfg(target_arch = "x86_64")]
use crate::simd::{Avx2, Avx512};
use crate::simd::{Portable, Simd};
use crate::Isa;
use std::time::Instant;

/// Independent accumulator chains per thread (latency 4 x 2 ports = 8 needed; 16 leaves
/// margin for machines with longer FMA latency).
const CHAINS: usize = 16;

/// Measured peak in GFLOP/s (2 per FMA lane) of `isa` on `threads` threads, running
/// for roughly `millis` milliseconds.
pub fn measure_peak_gflops(isa: Isa, threads: usize, millis: u64) -> f64 {
    let threads = threads.max(1);
    // Calibrate the iteration count on one short run.
    let calib_iters = 200_000u64;
    let t = Instant::now();
    let flops_per_iter = run(isa, calib_iters);
    let secs = t.elapsed().as_secs_f64().max(1e-6);
    let iters = ((millis as f64 / 1000.0) / secs * calib_iters as f64).max(1000.0) as u64;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| run(isa, iters));
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    (flops_per_iter * iters as f64 * threads as f64) / elapsed / 1e9
}

/// Runs `iters` iterations; returns flops per iteration.
fn run(isa: Isa, iters: u64) -> f64 {
    match isa.kind() {
        #[cfg(target_arch = "x86_64")]
        // Safety: the Isa proves AVX-512F.
        Kind::Avx512 => unsafe { fma_avx512(iters) },
        #[cfg(target_arch = "x86_64")]
        // Safety: the Isa proves AVX2 and FMA.
        Kind::Avx2 => unsafe { fma_avx2(iters) },
        _ => fma_body(Portable, iters),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) -> f64 {
    fma_body(Avx512, iters)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> f64 {
    fma_body(Avx2, iters)
}

#[inline(always)]
fn fma_body<S: Simd>(s: S, iters: u64) -> f64 {
    let mut acc = [s.splat(0.5); CHAINS];
    let a = s.splat(std::hint::black_box(0.999_999));
    let b = s.splat(std::hint::black_box(1e-7));
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = s.mul_add(*x, a, b);
        }
    }
    let mut out = [0.0f32; 16];
    let mut sum = s.zero();
    for x in acc {
        sum = s.add(sum, x);
    }
    // Safety: `out` has 16 floats, at least LANES.
    unsafe { s.store(out.as_mut_ptr(), sum) };
    std::hint::black_box(out);
    (CHAINS * S::LANES * 2) as f64
}
