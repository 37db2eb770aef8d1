//! Shared helpers of the kernel test suites: deterministic data, tolerance checks, and
//! the loop over every instruction set this host supports.
#![allow(dead_code)]

use brats_kernels::Isa;

/// Deterministic values in [-1, 1) (SplitMix64), different for every `seed`.
pub fn random(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234_5678;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f64 / (1u64 << 23) as f64 - 1.0) as f32
        })
        .collect()
}

/// Unit roundoff of f32.
pub const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Higham's gamma_n = n u / (1 - n u): the relative bound on the rounding error of any
/// f32 sum of n products (with or without FMA, in any order), relative to the sum of the
/// absolute values of the terms.
pub fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U;
    nu / (1.0 - nu)
}

/// Asserts `|got - want| <= bound(i)` everywhere, reporting the first offender.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], bound: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        assert!(
            err <= bound(i),
            "{what}: element {i}: got {} want {} (|diff| {err:.3e} > bound {:.3e})",
            got[i],
            want[i],
            bound(i)
        );
        if err > worst.0 {
            worst = (err, i);
        }
    }
}

/// Every instruction set of this host, best first (portable always included).
pub fn isas() -> Vec<Isa> {
    Isa::available()
}

/// Runs `f` in a rayon pool of `threads` threads.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}
