//! `brats-seg profile`: where the FLOPs of one forward pass go, layer by layer, against
//! this machine's measured FMA peak.
//!
//! One warm-up pass, one plain timed pass, then a pass with the forward pass's
//! [`Observer`] hook timing every layer (the two timed passes give the instrumentation's
//! overhead). Layers that run group by group (the first encoder level) report one event per
//! group; the table sums them under one name. The peak comes from
//! `brats_kernels::peak` for the active ISA and thread count, cached per machine in
//! `$XDG_CACHE_HOME/brats-seg/peak.json` (or `~/.cache/...`), so repeated profiles do
//! not pay for the probe.
use super::run::ModelArgs;
use brats_graph::weights::synth_input;
use brats_graph::{LayerEvent, LayerKind, Observer};
use clap::Args;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input side (a cube; multiple of 32)
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Print one JSON object on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    /// Also write a Chrome trace (chrome://tracing, Perfetto): one event per layer call, and per worker thread the kernel tasks it ran
    #[arg(long, value_name = "FILE.json")]
    pub trace: Option<PathBuf>,
    /// Measure the FMA peak again instead of using the cached figure
    #[arg(long)]
    pub remeasure_peak: bool,
}

#[derive(Default)]
struct Events(Vec<LayerEvent>);

impl Observer for Events {
    fn layer(&mut self, e: &LayerEvent) {
        self.0.push(e.clone());
    }
}

/// One row of the table: all calls of one layer name.
#[derive(Clone)]
pub struct Row {
    pub name: String,
    pub kind: LayerKind,
    pub shape: [usize; 4],
    pub flops: u64,
    pub bytes: u64,
    pub secs: f64,
    pub calls: usize,
}

/// Sums events by layer name, in order of first appearance; channel counts of layers run
/// group by group are added up.
pub fn rows(events: &[LayerEvent]) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events {
        match index.get(e.name.as_str()) {
            Some(&i) => {
                let r = &mut out[i];
                r.flops += e.flops;
                r.bytes += e.bytes;
                r.secs += e.duration.as_secs_f64();
                r.calls += 1;
            }
            None => {
                index.insert(&e.name, out.len());
                out.push(Row {
                    name: e.name.clone(),
                    kind: e.kind,
                    shape: e.shape,
                    flops: e.flops,
                    bytes: e.bytes,
                    secs: e.duration.as_secs_f64(),
                    calls: 1,
                });
            }
        }
    }
    // A layer split into groups reports the output channels of one call; calls on
    // distinct channel ranges add up (the residual blocks' and the first level's convs
    // run per group).
    for r in &mut out {
        if r.calls > 1 && !r.name.ends_with("skip2") {
            r.shape[0] *= r.calls;
        }
    }
    out
}

fn cache_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("brats-seg").join("peak.json"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into())
}

/// The FMA peak in GFLOP/s for `isa` on `threads` threads: cached, or measured (~0.5 s).
pub fn peak_gflops(isa: brats_kernels::Isa, threads: usize, remeasure: bool) -> (f64, bool) {
    let key = format!("{} | {} | {} threads", cpu_model(), isa.name(), threads);
    let path = cache_path();
    let mut cache: BTreeMap<String, f64> = path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    if !remeasure {
        if let Some(&g) = cache.get(&key) {
            return (g, true);
        }
    }
    let g = brats_kernels::peak::measure_peak_gflops(isa, threads, 500);
    cache.insert(key, g);
    if let Some(p) = path {
        let _ = std::fs::create_dir_all(p.parent().unwrap_or(&p));
        let _ = std::fs::write(&p, serde_json::to_string_pretty(&cache).unwrap_or_default());
    }
    (g, false)
}

fn net_of(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

pub fn run(a: &ProfileArgs) -> Result<(), String> {
    let dims = [a.size; 3];
    brats_graph::Model::check_input(4 * a.size.pow(3), dims).map_err(|e| e.to_string())?;
    let model = a.model.load()?;
    let threads = rayon::current_num_threads();
    let (peak, cached) = peak_gflops(model.isa(), threads, a.remeasure_peak);
    eprintln!(
        "FMA peak {peak:.1} GFLOP/s ({} on {threads} threads, {})",
        model.isa().name(),
        if cached { "cached" } else { "measured now" }
    );
    let x = synth_input(1, &[1, 4, a.size, a.size, a.size]);
    // Warm-up (allocates and faults in the workspace), then one plain timed pass, so the
    // instrumented pass below can be compared with an uninstrumented one.
    // Every pass writes into the same output buffer, as `bench` does.
    let mut y = Vec::new();
    model
        .forward_into(&x, dims, &mut y)
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    model
        .forward_into(&x, dims, &mut y)
        .map_err(|e| e.to_string())?;
    let plain_secs = t.elapsed().as_secs_f64();
    let mut events = Events::default();
    brats_kernels::trace::enable(a.trace.is_some());
    let t = Instant::now();
    let result = model.forward_observed_into(&x, dims, Some(&mut events), &mut y);
    let wall = t.elapsed().as_secs_f64();
    brats_kernels::trace::enable(false);
    let spans = brats_kernels::trace::take();
    result.map_err(|e| e.to_string())?;
    let rows = rows(&events.0);
    let total: f64 = rows.iter().map(|r| r.secs).sum();

    if let Some(path) = &a.trace {
        // Track 0: one event per layer call. Tracks 1..: the kernel tasks each worker
        // thread ran, named after the layer whose call contains them.
        let mut trace: Vec<Value> = events
            .0
            .iter()
            .map(|e| {
                json!({"name": e.name, "cat": e.kind.label(), "ph": "X", "pid": 1, "tid": 0,
                       "ts": e.start.as_secs_f64() * 1e6, "dur": e.duration.as_secs_f64() * 1e6,
                       "args": {"gflop": e.flops as f64 / 1e9, "shape": e.shape, "bytes": e.bytes}})
            })
            .collect();
        let mut threads = std::collections::BTreeSet::new();
        for span in &spans {
            let ts = span.start.saturating_duration_since(t).as_secs_f64();
            let dur = span.end.saturating_duration_since(span.start).as_secs_f64();
            let mid = ts + dur / 2.0;
            let layer = events
                .0
                .iter()
                .find(|e| {
                    let s = e.start.as_secs_f64();
                    s <= mid && mid <= s + e.duration.as_secs_f64()
                })
                .map_or("task", |e| e.name.as_str());
            let tid = span.thread.map_or(1, |i| i + 1);
            threads.insert(tid);
            trace.push(
                json!({"name": layer, "cat": "task", "ph": "X", "pid": 1, "tid": tid,
                              "ts": ts * 1e6, "dur": dur * 1e6}),
            );
        }
        trace.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "layers"}}));
        for tid in threads {
            trace.push(
                json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid,
                              "args": {"name": format!("worker {}", tid - 1)}}),
            );
        }
        let doc = json!({"traceEvents": trace, "displayTimeUnit": "ms"});
        std::fs::write(path, doc.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!(
            "wrote {} ({} layer events, {} kernel task spans)",
            path.display(),
            events.0.len(),
            spans.len()
        );
    }

    if a.json {
        let layers: Vec<Value> = rows
            .iter()
            .map(|r| {
                let g = r.flops as f64 / r.secs.max(1e-12) / 1e9;
                json!({"name": r.name, "kind": r.kind.label(), "shape": r.shape, "calls": r.calls,
                       "gflop": r.flops as f64 / 1e9, "ms": r.secs * 1e3, "gflops": g,
                       "pct_peak": 100.0 * g / peak, "bytes": r.bytes})
            })
            .collect();
        let obj = json!({"size": a.size, "threads": threads, "isa": model.isa().name(),
                         "total_ms": total * 1e3, "wall_ms": wall * 1e3, "uninstrumented_wall_ms": plain_secs * 1e3,
                         "peak_gflops": peak, "gflop": rows.iter().map(|r| r.flops).sum::<u64>() as f64 / 1e9,
                         "layers": layers});
        println!("{obj}");
        return Ok(());
    }

    println!(
        "{:<22} {:<9} {:>20} {:>8} {:>9} {:>8} {:>6} {:>9} {:>6}",
        "layer", "kind", "output", "GFLOP", "ms", "GFLOP/s", "%peak", "MB", "share"
    );
    for r in &rows {
        let g = r.flops as f64 / r.secs.max(1e-12) / 1e9;
        println!(
            "{:<22} {:<9} {:>20} {:>8.2} {:>9.2} {:>8.1} {:>6.1} {:>9.1} {:>5.1}%",
            r.name,
            r.kind.label(),
            format!(
                "{}x{}x{}x{}",
                r.shape[0], r.shape[1], r.shape[2], r.shape[3]
            ),
            r.flops as f64 / 1e9,
            r.secs * 1e3,
            g,
            100.0 * g / peak,
            r.bytes as f64 / 1e6,
            100.0 * r.secs / total
        );
    }
    let rollup = |title: &str, key: &dyn Fn(&Row) -> String| {
        let mut m: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        for r in &rows {
            let e = m.entry(key(r)).or_default();
            e.0 += r.flops;
            e.1 += r.secs;
        }
        println!("\nby {title}:");
        for (k, (f, s)) in m {
            let g = f as f64 / s.max(1e-12) / 1e9;
            println!("  {k:<12} {:>8.2} GFLOP {:>9.1} ms {:>8.1} GFLOP/s {:>5.1}% of peak {:>5.1}% of time", f as f64 / 1e9, s * 1e3, g, 100.0 * g / peak, 100.0 * s / total);
        }
    };
    rollup("sub-network", &|r| net_of(&r.name).to_string());
    rollup("kind", &|r| r.kind.label().to_string());
    let flops: u64 = rows.iter().map(|r| r.flops).sum();
    println!(
        "\ntotal {:.1} ms over the layers ({:.1} GFLOP, {:.1} GFLOP/s = {:.1}% of the measured peak {peak:.1} GFLOP/s, {} on {threads} threads)",
        total * 1e3,
        flops as f64 / 1e9,
        flops as f64 / total / 1e9,
        100.0 * flops as f64 / total / 1e9 / peak,
        model.isa().name()
    );
    println!(
        "wall {:.1} ms with instrumentation, {:.1} ms for the pass before it without; instrumentation overhead {:+.1}% (compare with the run-to-run spread of `bench`)",
        wall * 1e3,
        plain_secs * 1e3,
        100.0 * (wall / plain_secs - 1.0)
    );
    Ok(())
}
