//! The whole cascade at 128³ on synthetic weights (weights do not change the timing), with
//! the thread pool rayon gives (all cores unless RAYON_NUM_THREADS is set).
//! `Throughput::Elements` is the pass's FLOPs, so criterion's Gelem/s reads as GFLOP/s.
//!
//! Run: `cargo bench --bench forward`.
use brats_graph::weights::synth_input;
use brats_graph::Model;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn forward(c: &mut Criterion) {
    let model = Model::synthetic(1).expect("synthetic model");
    for side in [64usize, 128] {
        let dims = [side; 3];
        let x = synth_input(1, &[1, 4, side, side, side]);
        let mut g = c.benchmark_group("forward");
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(3))
            .measurement_time(Duration::from_secs(if side == 128 { 40 } else { 10 }));
        g.throughput(Throughput::Elements(model.flops(dims)));
        let mut y = Vec::new();
        g.bench_function(format!("{side}^3"), |b| {
            b.iter(|| model.forward_into(&x, dims, &mut y).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
