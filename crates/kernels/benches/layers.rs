//! The hot layers of the cascade at their real sizes (128³ input), on every ISA of this
//! host (or only `BRATS_ISA` when it is set) with 1 and 2 threads.
//!
//! Convolutions and the deconvolution set `Throughput::Elements` to their FLOPs (2 x MAC),
//! so criterion's "Gelem/s" reads as GFLOP/s; instance norm reports bytes moved.
//! Benchmark ids are `<isa>/<threads>t/<layer>`, with layer ids as in the kernels issue
//! (`net128.rb1.conv`, ...). Sample sizes are small because one iteration of a 128³ conv
//! is 15-30 GFLOP; the whole run stays well under 15 minutes.
//!
//! Run: `cargo bench -p brats-kernels` (filter with e.g. `-- avx512/2t/net128.rb7`).

use brats_kernels::conv::{Conv3d, ConvSpec, Epilogue, InputNorm, Vectorize};
use brats_kernels::deconv::Deconv3d;
use brats_kernels::norm;
use brats_kernels::{Isa, Layout, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

struct ConvCase {
    id: &'static str,
    groups: usize,
    cin_g: usize,
    cout_g: usize,
    kernel: usize,
    stride: usize,
    side: usize,
    /// Also time both kernels forced (`<id>.width`, `<id>.channels`): the layers whose
    /// measurements set `Vectorize::Auto`'s choice.
    compare: bool,
}

const CONVS: &[ConvCase] = &[
    ConvCase {
        id: "net128.rb1.conv",
        groups: 4,
        cin_g: 8,
        cout_g: 8,
        kernel: 3,
        stride: 1,
        side: 128,
        compare: false,
    },
    ConvCase {
        id: "net128.rb7.conv",
        groups: 1,
        cin_g: 16,
        cout_g: 16,
        kernel: 3,
        stride: 1,
        side: 128,
        compare: false,
    },
    ConvCase {
        id: "net128.rb2.conv",
        groups: 4,
        cin_g: 16,
        cout_g: 16,
        kernel: 3,
        stride: 1,
        side: 64,
        compare: false,
    },
    ConvCase {
        id: "net128.rb6.conv",
        groups: 1,
        cin_g: 32,
        cout_g: 32,
        kernel: 3,
        stride: 1,
        side: 64,
        compare: false,
    },
    ConvCase {
        id: "net128.pool1",
        groups: 4,
        cin_g: 8,
        cout_g: 16,
        kernel: 3,
        stride: 2,
        side: 128,
        compare: false,
    },
    // net128's c2 as a plain 1x1 conv over its concatenation, the 1x1 kernel's
    // memory-bound case; the network runs it fused with up2 (`net128.up2+c2` below).
    ConvCase {
        id: "net128.c2",
        groups: 1,
        cin_g: 24,
        cout_g: 16,
        kernel: 1,
        stride: 1,
        side: 128,
        compare: false,
    },
    ConvCase {
        id: "net128.pool2",
        groups: 4,
        cin_g: 16,
        cout_g: 32,
        kernel: 3,
        stride: 2,
        side: 64,
        compare: true,
    },
    ConvCase {
        id: "net64.rb3.conv",
        groups: 4,
        cin_g: 64,
        cout_g: 64,
        kernel: 3,
        stride: 1,
        side: 16,
        compare: true,
    },
    ConvCase {
        id: "net32.rb3.conv",
        groups: 4,
        cin_g: 128,
        cout_g: 128,
        kernel: 3,
        stride: 1,
        side: 8,
        compare: true,
    },
    ConvCase {
        id: "net32.pool3",
        groups: 4,
        cin_g: 128,
        cout_g: 256,
        kernel: 3,
        stride: 2,
        side: 8,
        compare: true,
    },
    ConvCase {
        id: "net32.rb4.conv",
        groups: 4,
        cin_g: 256,
        cout_g: 256,
        kernel: 3,
        stride: 1,
        side: 4,
        compare: true,
    },
];

fn isas() -> Vec<Isa> {
    match std::env::var("BRATS_ISA") {
        Ok(name) if !name.is_empty() => vec![Isa::active()],
        _ => Isa::available(),
    }
}

impl ConvCase {
    fn spec(&self) -> ConvSpec {
        ConvSpec {
            cin: self.groups * self.cin_g,
            cout: self.groups * self.cout_g,
            groups: self.groups,
            kernel: self.kernel,
            stride: self.stride,
        }
    }
}

/// Deterministic small weights for `spec`.
fn weights(spec: ConvSpec) -> Vec<f32> {
    (0..spec.weight_len())
        .map(|i| ((i % 17) as f32 - 8.0) * 0.01)
        .collect()
}

fn fill(t: &mut Tensor) {
    for (i, x) in t.data_mut().iter_mut().enumerate() {
        *x = ((i * 7919) % 1000) as f32 * 1e-3 - 0.5;
    }
}

/// Benchmarks `run` on the conv `(isa, spec, weights)` packs to, once per
/// `(id, kernel choice)` of `variants`, on `pool`.
fn bench_variants(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    pool: &rayon::ThreadPool,
    (isa, spec, weights): (Isa, ConvSpec, &[f32]),
    variants: Vec<(String, Vectorize)>,
    mut run: impl FnMut(&Conv3d) + Send,
) {
    for (id, vectorize) in variants {
        let conv = Conv3d::new(isa, spec, weights, None)
            .unwrap()
            .with_vectorize(vectorize);
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| pool.install(|| run(&conv)))
        });
    }
}

/// Convs also benchmarked with a fused input norm ([`Conv3d::run_normalized`]).
const NORMALIZED: &[&str] = &[
    "net128.rb1.conv",
    "net128.rb7.conv",
    "net128.rb2.conv",
    "net128.rb6.conv",
];

fn layers(c: &mut Criterion) {
    for isa in isas() {
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut group = c.benchmark_group(format!("{}/{threads}t", isa.name()));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(3));
            for case in CONVS {
                let spec = case.spec();
                let weights = weights(spec);
                let s = case.side;
                let mut input = Tensor::zeros(Layout::new(spec.cin, s, s, s, case.kernel / 2));
                fill(&mut input);
                let o = spec.output_size(s);
                let mut out = Tensor::zeros(Layout::new(spec.cout, o, o, o, 0));
                group.throughput(Throughput::Elements(spec.flops(o * o * o)));
                let mut variants = vec![(case.id.to_string(), Vectorize::Auto)];
                if case.compare {
                    variants.push((format!("{}.width", case.id), Vectorize::Width));
                    variants.push((format!("{}.channels", case.id), Vectorize::Channels));
                }
                bench_variants(&mut group, &pool, (isa, spec, &weights), variants, |conv| {
                    conv.run(&input.view(), &mut out.view_mut(), Epilogue::Store)
                        .unwrap()
                });
            }
            // The residual convs as the network runs them: instance norm + ReLU applied
            // while staging the input (`<id>+norm`, against `<id>` plus the norm below).
            for case in CONVS.iter().filter(|c| NORMALIZED.contains(&c.id)) {
                let spec = case.spec();
                let weights = weights(spec);
                let s = case.side;
                let mut input = Tensor::zeros(Layout::new(spec.cin, s, s, s, 0));
                fill(&mut input);
                let stats = norm::channel_stats(isa, &input.view());
                let (gamma, beta) = (vec![1.0f32; spec.cin], vec![0.1f32; spec.cin]);
                let affine = norm::affine(&stats, &gamma, &beta, 1e-3).unwrap();
                let mut out = Tensor::zeros(Layout::new(spec.cout, s, s, s, 0));
                group.throughput(Throughput::Elements(spec.flops(s * s * s)));
                // The direct kernel, and the Winograd one where it runs (rows up to 64,
                // as the graph uses it; its GFLOP/s count the direct conv's FLOPs).
                let mut variants = vec![(format!("{}+norm", case.id), Vectorize::Auto)];
                if s <= 64 {
                    variants.push((format!("{}+norm.winograd", case.id), Vectorize::Winograd));
                }
                bench_variants(&mut group, &pool, (isa, spec, &weights), variants, |conv| {
                    let norm = InputNorm {
                        affine: &affine,
                        relu: true,
                    };
                    conv.run_normalized(
                        &input.view(),
                        norm,
                        &mut out.view_mut(),
                        Epilogue::Store,
                        None,
                    )
                    .unwrap()
                });
            }
            // Instance norm + ReLU of rb1's first norm (32 channels at 128³), statistics
            // included, written into a zero-halo conv input.
            {
                let l = Layout::new(32, 128, 128, 128, 0);
                let mut x = Tensor::zeros(l);
                fill(&mut x);
                let mut y = Tensor::zeros(l.with(32, 1));
                let (gamma, beta) = (vec![1.0f32; 32], vec![0.1f32; 32]);
                group.throughput(Throughput::Bytes((2 * l.len() * 4) as u64));
                group.bench_function(BenchmarkId::from_parameter("net128.rb1.norm1"), |b| {
                    b.iter(|| {
                        pool.install(|| {
                            norm::instance_norm(
                                isa,
                                &x.view(),
                                None,
                                &gamma,
                                &beta,
                                1e-3,
                                true,
                                &mut y.view_mut(),
                            )
                            .unwrap()
                        })
                    })
                });
            }
            // up2 of net128: 32 -> 16 channels, 64³ -> 128³.
            {
                let weights: Vec<f32> = (0..32 * 16 * 8)
                    .map(|i| ((i % 13) as f32 - 6.0) * 0.02)
                    .collect();
                let deconv = Deconv3d::new(isa, 32, 16, &weights).unwrap();
                let mut x = Tensor::zeros(Layout::new(32, 64, 64, 64, 0));
                fill(&mut x);
                let mut y = Tensor::zeros(Layout::new(16, 128, 128, 128, 0));
                group.throughput(Throughput::Elements(deconv.flops(64 * 64 * 64)));
                group.bench_function(BenchmarkId::from_parameter("net128.up2.deconv"), |b| {
                    b.iter(|| pool.install(|| deconv.run(&x.view(), &mut y.view_mut()).unwrap()))
                });
                // The decoder step as the network runs it: up2 fused with c2 (1x1 over
                // concat(up2, skip2 of 8 channels) -> 16), with statistics. Its FLOPs are
                // counted as the two layers' (Deconv3d::flops).
                let pw: Vec<f32> = (0..16 * 24)
                    .map(|i| ((i % 7) as f32 - 3.0) * 0.05)
                    .collect();
                let bias = vec![0.1f32; 16];
                let fused =
                    Deconv3d::fused_pointwise(isa, (32, 16, &weights), &[8], &pw, &bias).unwrap();
                let mut skip = Tensor::zeros(Layout::new(8, 128, 128, 128, 0));
                fill(&mut skip);
                group.throughput(Throughput::Elements(fused.flops(64 * 64 * 64)));
                group.bench_function(BenchmarkId::from_parameter("net128.up2+c2"), |b| {
                    b.iter(|| {
                        pool.install(|| {
                            fused
                                .run_fused_with_stats(&x.view(), &[skip.view()], &mut y.view_mut())
                                .unwrap()
                        })
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, layers);
criterion_main!(benches);
