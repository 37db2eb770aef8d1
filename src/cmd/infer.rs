//! `brats-seg infer`: a `[1, 4, D, H, W]` f32 `.npy` in, the softmax `[1, 4, D, H, W]` out,
//! for performance engineers who feed the network tensors directly.
use super::run::ModelArgs;
use brats_graph::weights::npy::{read_npy_f32, write_npy_f32};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct InferArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input tensor: little-endian f32 .npy, C order, shape [1, 4, D, H, W] (channels T1, T2, FLAIR, T1ce; sides multiples of 32)
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the softmax [1, 4, D, H, W] (.npy; background, necrotic/non-enhancing core, edema, enhancing)
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
}

pub fn run(a: &InferArgs) -> Result<(), String> {
    let x = read_npy_f32(&a.input).map_err(|e| e.to_string())?;
    let dims = match x.shape.as_slice() {
        [1, 4, d, h, w] => [*d, *h, *w],
        s => {
            return Err(format!(
                "{}: shape {s:?} is not [1, 4, D, H, W]",
                a.input.display()
            ))
        }
    };
    // Refuse a wrong size before spending time on the weights.
    brats_graph::Model::check_input(x.data.len(), dims)
        .map_err(|e| format!("{}: {e}", a.input.display()))?;
    let model = a.model.load()?;
    let t = Instant::now();
    let y = model
        .forward(&x.data, dims)
        .map_err(|e| format!("{}: {e}", a.input.display()))?;
    let secs = t.elapsed().as_secs_f64();
    write_npy_f32(&a.output, &x.shape, &y).map_err(|e| e.to_string())?;
    eprintln!(
        "forward {}x{}x{} in {secs:.2} s ({:.1} GFLOP/s); wrote {}",
        dims[0],
        dims[1],
        dims[2],
        model.flops(dims) as f64 / secs / 1e9,
        a.output.display()
    );
    Ok(())
}
