//! What `infer`, `bench` and `profile` share: choosing the weights (a converted file or
//! the synthetic ones), the thread count, and reading the process's peak memory.
use brats_graph::weights::OpenOptions;
use brats_graph::Model;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Engine weight file (made by `convert-weights` from the official .params)
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "synthetic",
        conflicts_with = "synthetic"
    )]
    pub weights: Option<PathBuf>,
    /// Use seeded synthetic weights instead of a file (exact same network; meaningless labels)
    #[arg(long)]
    pub synthetic: bool,
    /// Seed of the synthetic weights (the reference fixtures use 1)
    #[arg(long, default_value_t = 1, requires = "synthetic")]
    pub seed: u64,
    /// Skip verifying the weight file's checksums when opening it (structure and topology are still checked)
    #[arg(long)]
    pub no_verify: bool,
    /// Worker threads (default: all cores)
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
}

impl ModelArgs {
    /// Sets up the thread pool, then loads the model, reporting what was loaded on stderr.
    pub fn load(&self) -> Result<Model, String> {
        init_threads(self.threads)?;
        let t = Instant::now();
        let model = match &self.weights {
            Some(path) => {
                let opts = OpenOptions {
                    verify_checksums: !self.no_verify,
                    ..OpenOptions::default()
                };
                Model::open_with(path, &opts).map_err(|e| e.to_string())?
            }
            None => Model::synthetic(self.seed).map_err(|e| e.to_string())?,
        };
        eprintln!(
            "loaded {} in {:.2} s ({} kernels, {} threads)",
            match &self.weights {
                Some(p) => p.display().to_string(),
                None => format!("synthetic weights (seed {})", self.seed),
            },
            t.elapsed().as_secs_f64(),
            model.isa().name(),
            rayon::current_num_threads()
        );
        Ok(model)
    }
}

/// Sizes rayon's global pool (once per process).
pub fn init_threads(threads: Option<usize>) -> Result<(), String> {
    if let Some(n) = threads {
        if n == 0 {
            return Err("--threads must be at least 1".into());
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("cannot set up {n} threads: {e}"))?;
    }
    Ok(())
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
