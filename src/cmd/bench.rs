//! `brats-seg bench`: load once, one warm-up pass, then N timed forward passes on a
//! synthetic input; median and minimum seconds, GFLOP/s and peak RSS.
use super::run::{peak_rss_bytes, ModelArgs};
use brats_graph::weights::synth_input;
use clap::Args;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input side (a cube; multiple of 32)
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Timed forward passes after the warm-up
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// End stdout with one JSON object (median_s, min_s, gflops, peak_rss_bytes, ...)
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &BenchArgs) -> Result<(), String> {
    if a.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let dims = [a.size; 3];
    brats_graph::Model::check_input(4 * a.size * a.size * a.size, dims)
        .map_err(|e| e.to_string())?;
    let model = a.model.load()?;
    let x = synth_input(1, &[1, 4, a.size, a.size, a.size]);
    let flops = model.flops(dims) as f64;
    let t = Instant::now();
    // One output buffer for every pass, as a caller running passes in a loop would keep.
    let mut y = Vec::new();
    model
        .forward_into(&x, dims, &mut y)
        .map_err(|e| e.to_string())?;
    eprintln!("warm-up: {:.3} s", t.elapsed().as_secs_f64());
    let mut times = Vec::with_capacity(a.runs);
    for i in 0..a.runs {
        let t = Instant::now();
        model
            .forward_into(&x, dims, &mut y)
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64());
        std::hint::black_box(&y);
        eprintln!("run {}/{}: {:.3} s", i + 1, a.runs, times[i]);
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    };
    let min = sorted[0];
    let rss = peak_rss_bytes().unwrap_or(0);
    let threads = rayon::current_num_threads();
    println!(
        "size {s}x{s}x{s}, {threads} threads, {isa}: median {median:.3} s, min {min:.3} s, {g:.1} GFLOP/s (median; {gf:.1} GFLOP per pass), peak RSS {mb:.0} MB",
        s = a.size,
        isa = model.isa().name(),
        g = flops / median / 1e9,
        gf = flops / 1e9,
        mb = rss as f64 / 1e6
    );
    if a.json {
        let obj = serde_json::json!({
            "size": a.size,
            "threads": threads,
            "isa": model.isa().name(),
            "runs": a.runs,
            "times_s": times,
            "median_s": median,
            "min_s": min,
            "gflop": flops / 1e9,
            "gflops": flops / median / 1e9,
            "peak_rss_bytes": rss,
            "workspace_bytes": model.workspace_bytes(),
        });
        println!("{obj}");
    }
    Ok(())
}
