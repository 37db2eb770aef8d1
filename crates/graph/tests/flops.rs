//! The FLOP count of a forward pass, three ways that must agree: the parameter table
//! (weights x output voxels, written here independently of the forward code), the
//! model's own count, and the per-layer events the forward pass reports. The model card
//! gives 203.13 GMAC = 406.27 GFLOP for the convolutions of a 128³ pass.

use brats_graph::weights::table::{param_table, ParamKind};
use brats_graph::weights::WeightSet;
use brats_graph::{LayerEvent, Model, Observer};
use brats_kernels::Isa;

/// Resolution level (0 = the net's input side, k = side / 2^k) of each layer's output
/// voxels (input voxels for the deconvolutions, whose FLOPs scale with the input).
fn level(name: &str) -> u32 {
    let body = name.trim_start_matches("seg_only");
    let body = body
        .trim_start_matches("net128")
        .trim_start_matches("net64")
        .trim_start_matches("net32");
    if let Some(n) = name.strip_prefix("convolution") {
        let k: u32 = n.split('_').next().unwrap().parse().unwrap();
        return [2, 1, 0, 0][(k % 4) as usize];
    }
    for (prefix, lvl) in [
        ("rb1", 0),
        ("rb7", 0),
        ("rb2", 1),
        ("rb6", 1),
        ("rb3", 2),
        ("rb5", 2),
        ("rb4", 3),
        ("conv1", 0),
        ("pool1", 1),
        ("pool2", 2),
        ("pool3", 3),
        ("up_conv4", 3),
        ("up_conv3", 2),
        ("up_conv2", 1),
    ] {
        if body.starts_with(prefix) {
            return lvl;
        }
    }
    panic!("unknown layer {name}")
}

fn downsample(name: &str) -> usize {
    if let Some(n) = name.strip_prefix("convolution") {
        let k: usize = n.split('_').next().unwrap().parse().unwrap();
        return [4, 2, 1][k / 4];
    }
    if name.contains("net128") {
        1
    } else if name.contains("net64") {
        2
    } else {
        4
    }
}

fn table_flops(side: usize) -> u64 {
    param_table()
        .iter()
        .filter(|p| matches!(p.kind, ParamKind::ConvWeight | ParamKind::DeconvWeight))
        .map(|p| {
            let s = (side / downsample(&p.name)) >> level(&p.name);
            2 * p.numel() as u64 * (s * s * s) as u64
        })
        .sum()
}

#[derive(Default)]
struct Sum(u64, usize);
impl Observer for Sum {
    fn layer(&mut self, e: &LayerEvent) {
        self.0 += e.flops;
        self.1 += 1;
    }
}

#[test]
fn flops_agree_with_the_table_and_the_model_card() {
    let model = Model::from_source(Isa::active(), &WeightSet::synthetic(1)).unwrap();
    let at128 = table_flops(128);
    assert_eq!(model.flops([128; 3]), at128);
    assert!((at128 as f64 / 1e9 - 406.27).abs() < 0.01, "{at128}");
    assert_eq!(model.flops([32; 3]), table_flops(32));
    // The events of a real 32³ pass add up to the same count.
    let mut sum = Sum::default();
    model
        .forward_observed(&vec![0.5; 4 * 32 * 32 * 32], [32; 3], Some(&mut sum))
        .unwrap();
    assert_eq!(sum.0, table_flops(32));
    assert!(sum.1 > 100, "only {} layer events", sum.1);
}
