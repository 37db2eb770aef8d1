//! Run-time choice of instruction set.
//!
//! Every optimized kernel exists in three builds: AVX-512F, AVX2+FMA and a portable one.
//! Which one runs is decided once per process ([`Isa::active`]): the best the CPU has,
//! unless the environment variable `BRATS_ISA=avx512|avx2|portable` restricts it (so the
//! tests and benchmarks can drive every path on one host, as matrixmultiply does).
//!
//! An [`Isa`] value can only be obtained through detection ([`Isa::detect`],
//! [`Isa::active`], [`Isa::available`]), so holding an `Isa::Avx512` is proof that the
//! CPU supports AVX-512F. The dispatching code relies on that proof for its `unsafe`
//! calls into `#[target_feature]` functions; the private field keeps anyone outside
//! this module from forging it.

use std::sync::OnceLock;

/// An instruction set the kernels can run with, proven present on this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa(Kind);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// The portable build: plain Rust that the compiler vectorizes for the baseline target.
    pub const PORTABLE: Isa = Isa(Kind::Portable);

    /// The instruction set named `name` (`avx512`, `avx2` or `portable`) if this CPU has
    /// it; `None` if the CPU lacks it; an error for an unknown name.
    pub fn detect(name: &str) -> Result<Option<Isa>, String> {
        match name {
            "portable" => Ok(Some(Isa::PORTABLE)),
            "avx2" => Ok(has_avx2_fma().then_some(Isa(Kind::Avx2))),
            "avx512" => Ok(has_avx512f().then_some(Isa(Kind::Avx512))),
            other => Err(format!(
                "unknown instruction set {other:?}: expected avx512, avx2 or portable"
            )),
        }
    }

    /// Every instruction set this CPU supports, best first.
    pub fn available() -> Vec<Isa> {
        ["avx512", "avx2", "portable"]
            .iter()
            .filter_map(|n| Isa::detect(n).ok().flatten())
            .collect()
    }

    /// The instruction set the kernels use by default: the best available, restricted
    /// by `BRATS_ISA` when it is set. Decided once per process. An unknown or
    /// unsupported `BRATS_ISA` is reported on stderr once and ignored, falling back to
    /// the best available set, so a typo never silently runs the slow path.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let best = Isa::available()[0];
            match std::env::var("BRATS_ISA") {
                Ok(name) if !name.is_empty() => match Isa::detect(&name) {
                    Ok(Some(isa)) => isa,
                    Ok(None) => {
                        eprintln!(
                            "warning: BRATS_ISA={name} is not supported by this CPU; using {}",
                            best.name()
                        );
                        best
                    }
                    Err(e) => {
                        eprintln!("warning: BRATS_ISA: {e}; using {}", best.name());
                        best
                    }
                },
                _ => best,
            }
        })
    }

    /// The name used by `BRATS_ISA` and in reports.
    pub fn name(self) -> &'static str {
        match self.0 {
            Kind::Portable => "portable",
            Kind::Avx2 => "avx2",
            Kind::Avx512 => "avx512",
        }
    }

    pub(crate) fn kind(self) -> Kind {
        self.0
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
fn has_avx512f() -> bool {
    is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2_fma() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512f() -> bool {
    false
}

/// Runs `f` inside a function compiled for `isa`, so that plain loops in `f` (inlined
/// into it) are auto-vectorized with that instruction set. Used by the memory-bound
/// element-wise kernels, which need no hand-written intrinsics.
#[inline]
pub(crate) fn vectorized<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    match isa.kind() {
        #[cfg(target_arch = "x86_64")]
        // Safety: an `Isa` of kind Avx512 is only made after detecting AVX-512F.
        Kind::Avx512 => unsafe { run_avx512(f) },
        #[cfg(target_arch = "x86_64")]
        // Safety: an `Isa` of kind Avx2 is only made after detecting AVX2 and FMA.
        Kind::Avx2 => unsafe { run_avx2(f) },
        _ => f(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_is_always_available_and_last() {
        let all = Isa::available();
        assert_eq!(*all.last().unwrap(), Isa::PORTABLE);
        assert!(all.windows(2).all(|w| w[0].kind() > w[1].kind()));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(Isa::detect("sse9").is_err());
        assert_eq!(Isa::detect("portable"), Ok(Some(Isa::PORTABLE)));
    }
}
