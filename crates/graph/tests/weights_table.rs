//! The Rust parameter table against the one MXNet confirmed (fixtures/param_table.json,
//! written by tools/reference after comparing with the symbol's list_arguments and
//! infer_shape), and the naming helpers against the table.
mod weights_util;

use std::collections::HashSet;

use brats_graph::weights::table::{PARAM_COUNT, SCALAR_COUNT};
use brats_graph::weights::*;

#[test]
fn table_equals_mxnet_argument_list() {
    let p = weights_util::fixtures().join("param_table.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let want = json.as_array().expect("array");
    let got = param_table();
    assert_eq!(got.len(), want.len());
    assert_eq!(got.len(), PARAM_COUNT);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let shape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(g.name, w["name"].as_str().unwrap(), "entry {i}");
        assert_eq!(g.shape, shape, "entry {i} {}", g.name);
        assert_eq!(
            g.kind.label(),
            w["kind"].as_str().unwrap(),
            "entry {i} {}",
            g.name
        );
        assert_eq!(
            g.fan_in as u64,
            w["fan_in"].as_u64().unwrap(),
            "entry {i} {}",
            g.name
        );
    }
}

#[test]
fn table_totals() {
    let t = param_table();
    assert_eq!(t.iter().map(ParamSpec::numel).sum::<usize>(), SCALAR_COUNT);
    assert_eq!(
        t.first().unwrap().name,
        "seg_onlynet128conv1sep_conv_weight"
    );
    assert_eq!(t.last().unwrap().name, "convolution11_bias");
    let names: HashSet<&str> = t.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), t.len(), "names are unique");
}

#[test]
fn helpers_name_every_table_entry_exactly_once() {
    let table = param_table();
    let shapes: std::collections::HashMap<&str, &[usize]> = table
        .iter()
        .map(|p| (p.name.as_str(), p.shape.as_slice()))
        .collect();
    let mut named = Vec::new();
    for net in Net::ALL {
        let f = net.width();
        let c = conv1(net);
        assert_eq!(shapes[c.weight().as_str()], &[4 * f, 1, 3, 3, 3]);
        named.extend([c.weight(), c.bias()]);
        for b in Block::ALL {
            let ch = b.channels(net);
            let w = rb_conv1(net, b).weight();
            assert_eq!(shapes[w.as_str()], &[ch, ch / b.groups(), 3, 3, 3], "{w}");
            for l in [rb_conv1(net, b), rb_conv2(net, b)] {
                named.extend([l.weight(), l.bias()]);
            }
            for l in [rb_norm1(net, b), rb_norm2(net, b)] {
                assert_eq!(shapes[l.gamma().as_str()], &[ch]);
                named.extend([l.gamma(), l.beta()]);
            }
        }
        for p in [Pool::Pool1, Pool::Pool2, Pool::Pool3] {
            let l = pool(net, p);
            named.extend([l.weight(), l.bias()]);
        }
        assert_eq!(
            shapes[up(net, Up::Up4).weight().as_str()],
            &[8 * f, 8 * f, 2, 2, 2]
        );
        assert_eq!(
            shapes[up(net, Up::Up3).weight().as_str()],
            &[8 * f, 4 * f, 2, 2, 2]
        );
        assert_eq!(
            shapes[up(net, Up::Up2).weight().as_str()],
            &[4 * f, 2 * f, 2, 2, 2]
        );
        for u in [Up::Up4, Up::Up3, Up::Up2] {
            named.push(up(net, u).weight());
        }
        let (s0, s1) = net.stack_channels();
        assert_eq!(
            shapes[pointwise(net, Pointwise::C0).weight().as_str()],
            &[8 * f, 12 * f + s0, 1, 1, 1]
        );
        assert_eq!(
            shapes[pointwise(net, Pointwise::C1).weight().as_str()],
            &[4 * f, 6 * f + s1, 1, 1, 1]
        );
        assert_eq!(
            shapes[pointwise(net, Pointwise::C2).weight().as_str()],
            &[2 * f, 3 * f, 1, 1, 1]
        );
        assert_eq!(
            shapes[pointwise(net, Pointwise::Logits).weight().as_str()],
            &[4, 2 * f, 1, 1, 1]
        );
        for w in [
            Pointwise::C0,
            Pointwise::C1,
            Pointwise::C2,
            Pointwise::Logits,
        ] {
            let l = pointwise(net, w);
            named.extend([l.weight(), l.bias()]);
        }
    }
    assert_eq!(
        pointwise(Net::Net32, Pointwise::C0).as_str(),
        "convolution0"
    );
    assert_eq!(
        pointwise(Net::Net128, Pointwise::Logits).as_str(),
        "convolution11"
    );
    assert_eq!(
        rb_norm1(Net::Net128, Block::Rb1).gamma(),
        "seg_onlynet128rb1norm1_gamma"
    );
    assert_eq!(
        up(Net::Net128, Up::Up4).weight(),
        "seg_onlynet128up_conv4_1_weight"
    );
    let set: HashSet<&str> = named.iter().map(String::as_str).collect();
    assert_eq!(set.len(), named.len(), "helpers produce no name twice");
    let table_names: HashSet<&str> = shapes.keys().copied().collect();
    assert_eq!(set, table_names);
}

#[test]
fn in_memory_synthetic_set_serves_every_table_entry() {
    let set = WeightSet::synthetic(1);
    set.check_topology().unwrap();
    for spec in param_table() {
        let t = set.tensor_with_shape(&spec.name, &spec.shape).unwrap();
        assert_eq!(t, synth_tensor(1, &spec).as_slice());
    }
    let e = set.tensor("nope").unwrap_err();
    assert!(
        e.to_string()
            .contains("synthetic weights (seed 1): no tensor named 'nope'"),
        "{e}"
    );
    let e = set
        .tensor_with_shape("convolution11_bias", &[3])
        .unwrap_err();
    assert!(e.to_string().contains("has shape [4], expected [3]"), "{e}");
    let dup = vec![set.tensors()[0].clone(), set.tensors()[0].clone()];
    assert!(WeightSet::new("x", dup).is_err());
}
