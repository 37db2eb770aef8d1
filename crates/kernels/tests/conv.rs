//! The convolution against the float64 reference, on every ISA of this host, on shapes on
//! both sides of every tile size.
//!
//! Tolerance: the reference also returns, per output, the sum of |terms| (`|w x|`, `|bias|`,
//! and the old output for the accumulate epilogue). Any f32 evaluation of a sum of n such
//! terms, FMA or not, in any order, is within gamma_n * sum|terms| of the exact value
//! (Higham, Accuracy and Stability of Numerical Algorithms, 3.1), plus half an ulp for the
//! final rounding. So a correct kernel can never fail, while a wrong tap, channel, group
//! or stride changes an output by a whole term, which for the sizes below (n <= 1729 and
//! random data) exceeds the bound by orders of magnitude somewhere in every tested volume.

mod common;

use brats_kernels::conv::{Conv3d, ConvSpec, Epilogue, Vectorize};
use brats_kernels::reference;
use brats_kernels::{Isa, Layout, Tensor};
use common::*;

#[derive(Clone, Copy, Debug)]
struct Case {
    cin_g: usize,
    cout_g: usize,
    groups: usize,
    kernel: usize,
    stride: usize,
    dims: (usize, usize, usize),
}

/// Runs one case on `isa` with each kernel (vectorized along W, across channels, and
/// the automatic choice), checks each, and checks that they agree bit for bit (they sum
/// in the same order); returns the output for determinism checks.
fn check(isa: Isa, case: Case, seed: u64, epilogue: Epilogue) -> Vec<f32> {
    let width = check_kernel(isa, case, seed, epilogue, Vectorize::Width);
    for v in [Vectorize::Channels, Vectorize::Auto] {
        let other = check_kernel(isa, case, seed, epilogue, v);
        assert!(
            width == other,
            "{} {case:?}: {v:?} differs from the width kernel",
            isa.name()
        );
    }
    width
}

fn check_kernel(
    isa: Isa,
    case: Case,
    seed: u64,
    epilogue: Epilogue,
    vectorize: Vectorize,
) -> Vec<f32> {
    let Case {
        cin_g,
        groups,
        kernel,
        stride,
        dims,
        ..
    } = case;
    let spec = case.spec();
    let (d, h, w) = dims;
    let x = random(seed, spec.cin * d * h * w);
    let weights = random(seed + 1, spec.weight_len());
    let bias = random(seed + 2, spec.cout);
    let conv = Conv3d::new(isa, spec, &weights, Some(&bias))
        .unwrap()
        .with_vectorize(vectorize);
    let input = Tensor::from_dense(Layout::new(spec.cin, d, h, w, kernel / 2), &x).unwrap();
    let (od, oh, ow) = (
        spec.output_size(d),
        spec.output_size(h),
        spec.output_size(w),
    );
    // Write into a channel range of a larger tensor with a halo, as the graph does for
    // concatenation and for the next conv's padded input.
    let before = random(seed + 3, (spec.cout + 3) * od * oh * ow);
    let mut out = Tensor::from_dense(Layout::new(spec.cout + 3, od, oh, ow, 1), &before).unwrap();
    // Every case also checks the statistics the epilogue accumulates for the next norm.
    let stats = conv
        .run_with_stats(
            &input.view(),
            &mut out.channels_mut(2, spec.cout).unwrap(),
            epilogue,
        )
        .unwrap();
    let r = reference::conv3d(
        &x,
        spec.cin,
        dims,
        &weights,
        Some(&bias),
        spec.cout,
        groups,
        kernel,
        stride,
    );
    let all = out.to_dense();
    let plane = od * oh * ow;
    let got = &all[2 * plane..(2 + spec.cout) * plane];
    let old = &before[2 * plane..(2 + spec.cout) * plane];
    let n = cin_g * kernel.pow(3) + 2;
    let (want, magnitude): (Vec<f64>, Vec<f64>) = match epilogue {
        Epilogue::Store => (r.value.clone(), r.magnitude.clone()),
        Epilogue::Accumulate => (
            r.value
                .iter()
                .zip(old)
                .map(|(v, &o)| v + o as f64)
                .collect(),
            r.magnitude
                .iter()
                .zip(old)
                .map(|(m, &o)| m + (o as f64).abs())
                .collect(),
        ),
    };
    let what = format!("{} {case:?} {epilogue:?} {vectorize:?}", isa.name());
    assert_close(&what, got, &want, |i| {
        gamma(n) * magnitude[i] + U * want[i].abs() + 1e-30
    });
    for (c, (st, (mean, var))) in stats
        .iter()
        .zip(reference::channel_stats(got, spec.cout))
        .enumerate()
    {
        let scale = mean.abs() + var.sqrt() + 1e-30;
        assert!(
            (st.mean - mean).abs() <= 1e-12 * scale,
            "{what}: channel {c} mean {} vs {mean}",
            st.mean
        );
        assert!(
            (st.var - var).abs() <= 1e-9 * scale * scale,
            "{what}: channel {c} var {} vs {var}",
            st.var
        );
    }
    // Channels outside the view are untouched.
    assert_eq!(
        &all[..2 * plane],
        &before[..2 * plane],
        "{what}: wrote below its channel range"
    );
    assert_eq!(
        &all[(2 + spec.cout) * plane..],
        &before[(2 + spec.cout) * plane..],
        "{what}: wrote above its channel range"
    );
    got.to_vec()
}

impl Case {
    fn spec(&self) -> ConvSpec {
        ConvSpec {
            cin: self.cin_g * self.groups,
            cout: self.cout_g * self.groups,
            groups: self.groups,
            kernel: self.kernel,
            stride: self.stride,
        }
    }
}

/// A conv of `spec` with weights `random(seed)` and bias `random(seed + 1)`.
fn seeded_conv(isa: Isa, spec: ConvSpec, seed: u64, vectorize: Vectorize) -> Conv3d {
    Conv3d::new(
        isa,
        spec,
        &random(seed, spec.weight_len()),
        Some(&random(seed + 1, spec.cout)),
    )
    .unwrap()
    .with_vectorize(vectorize)
}

fn case(
    cin_g: usize,
    cout_g: usize,
    groups: usize,
    kernel: usize,
    stride: usize,
    dims: (usize, usize, usize),
) -> Case {
    Case {
        cin_g,
        cout_g,
        groups,
        kernel,
        stride,
        dims,
    }
}

#[test]
fn widths_on_both_sides_of_every_vector_and_tile() {
    for isa in isas() {
        for (i, &w) in [1, 7, 15, 16, 17, 32, 33, 47, 48, 49, 80, 128]
            .iter()
            .enumerate()
        {
            let groups = if i % 2 == 0 { 1 } else { 4 };
            check(
                isa,
                case(3, 9, groups, 3, 1, (3, 5, w)),
                i as u64,
                Epilogue::Store,
            );
            check(
                isa,
                case(2, 5, groups, 3, 2, (3, 5, w)),
                50 + i as u64,
                Epilogue::Store,
            );
            check(
                isa,
                case(5, 6, groups, 1, 1, (2, 3, w)),
                100 + i as u64,
                Epilogue::Store,
            );
        }
    }
}

#[test]
fn channels_per_group_on_both_sides_of_every_block() {
    for isa in isas() {
        for (i, &c) in [1, 4, 8, 16, 64].iter().enumerate() {
            for groups in [1, 4] {
                let seed = 200 + 10 * i as u64 + groups as u64;
                check(
                    isa,
                    case(c, c, groups, 3, 1, (3, 2, 17)),
                    seed,
                    Epilogue::Store,
                );
                check(
                    isa,
                    case(c, c.max(2) + 1, groups, 3, 2, (5, 3, 7)),
                    seed + 1,
                    Epilogue::Store,
                );
                check(
                    isa,
                    case(c, c, groups, 1, 1, (2, 3, 17)),
                    seed + 2,
                    Epilogue::Accumulate,
                );
            }
            check(
                isa,
                case(c, 12, 1, 3, 1, (2, 3, 16)),
                300 + i as u64,
                Epilogue::Store,
            );
        }
    }
}

#[test]
fn network_like_shapes_with_residual_epilogue() {
    for isa in isas() {
        // rb1-like (4 groups of 8), rb7-like (16 -> 16), pool-like strided with odd sizes,
        // a deep small-volume layer whose weights take the channel-block-outer order.
        check(
            isa,
            case(8, 8, 4, 3, 1, (5, 7, 128)),
            400,
            Epilogue::Accumulate,
        );
        check(
            isa,
            case(16, 16, 1, 3, 1, (3, 5, 33)),
            401,
            Epilogue::Accumulate,
        );
        check(isa, case(8, 16, 4, 3, 2, (7, 5, 33)), 402, Epilogue::Store);
        check(
            isa,
            case(64, 64, 4, 3, 1, (3, 3, 4)),
            403,
            Epilogue::Accumulate,
        );
        check(
            isa,
            case(24, 16, 1, 1, 1, (3, 4, 128)),
            404,
            Epilogue::Store,
        );
        check(isa, case(1, 8, 4, 3, 1, (3, 5, 31)), 405, Epilogue::Store);
        // Three and five packed blocks per group (the channel kernel's last block alone),
        // the net32 deep levels' 4- and 8-voxel rows, stride 2 onto them.
        check(
            isa,
            case(5, 40, 2, 3, 1, (4, 5, 9)),
            406,
            Epilogue::Accumulate,
        );
        check(isa, case(7, 72, 1, 3, 2, (8, 8, 8)), 407, Epilogue::Store);
        check(
            isa,
            case(32, 32, 4, 3, 1, (4, 4, 4)),
            408,
            Epilogue::Accumulate,
        );
        check(isa, case(16, 48, 4, 3, 1, (8, 8, 8)), 409, Epilogue::Store);
        check(isa, case(40, 24, 1, 1, 1, (8, 8, 8)), 410, Epilogue::Store);
    }
}

#[test]
fn bit_identical_for_any_thread_count() {
    for isa in isas() {
        for c in [
            case(8, 8, 4, 3, 1, (9, 6, 40)),
            case(64, 64, 4, 3, 1, (4, 4, 4)),
            case(4, 8, 1, 3, 2, (9, 9, 9)),
        ] {
            let one = with_threads(1, || check(isa, c, 500, Epilogue::Store));
            let two = with_threads(2, || check(isa, c, 500, Epilogue::Store));
            let three = with_threads(3, || check(isa, c, 500, Epilogue::Store));
            assert_eq!(one, two, "{} {c:?}", isa.name());
            assert_eq!(one, three, "{} {c:?}", isa.name());
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let isa = Isa::PORTABLE;
    let spec = |cin, cout, groups, kernel, stride| ConvSpec {
        cin,
        cout,
        groups,
        kernel,
        stride,
    };
    // Channels not divisible by groups, unsupported kernels, wrong weight and bias counts.
    assert!(Conv3d::new(isa, spec(6, 8, 4, 3, 1), &[0.0; 8 * 2 * 27], None).is_err());
    assert!(Conv3d::new(isa, spec(4, 4, 1, 5, 1), &[0.0; 4 * 4 * 125], None).is_err());
    assert!(Conv3d::new(isa, spec(4, 4, 1, 1, 2), &[0.0; 16], None).is_err());
    assert!(Conv3d::new(isa, spec(4, 4, 1, 3, 1), &[0.0; 10], None).is_err());
    assert!(Conv3d::new(
        isa,
        spec(4, 4, 1, 3, 1),
        &[0.0; 4 * 4 * 27],
        Some(&[0.0; 3])
    )
    .is_err());
    let conv = Conv3d::new(isa, spec(4, 8, 4, 3, 1), &[0.0; 8 * 27], None).unwrap();
    let input = Tensor::zeros(Layout::new(4, 4, 4, 4, 1));
    // Wrong output shape, wrong channel counts, missing halo.
    let mut out = Tensor::zeros(Layout::new(8, 4, 4, 5, 0));
    assert!(conv
        .run(&input.view(), &mut out.view_mut(), Epilogue::Store)
        .is_err());
    let mut out = Tensor::zeros(Layout::new(7, 4, 4, 4, 0));
    assert!(conv
        .run(&input.view(), &mut out.view_mut(), Epilogue::Store)
        .is_err());
    let unpadded = Tensor::zeros(Layout::new(4, 4, 4, 4, 0));
    let mut out = Tensor::zeros(Layout::new(8, 4, 4, 4, 0));
    let err = conv
        .run(&unpadded.view(), &mut out.view_mut(), Epilogue::Store)
        .unwrap_err();
    assert!(err.to_string().contains("halo"), "{err}");
    assert!(conv
        .run(&input.view(), &mut out.view_mut(), Epilogue::Store)
        .is_ok());
}

#[test]
fn concatenated_inputs_match_one_dense_input() {
    for isa in isas() {
        for (k, parts) in [
            (1usize, vec![16usize, 8]),
            (1, vec![32, 16, 4]),
            (3, vec![3, 5]),
            (1, vec![1, 1, 1]),
        ] {
            let cin: usize = parts.iter().sum();
            let cout = 12;
            let (d, h, w) = (3, 4, 37);
            let spec = ConvSpec {
                cin,
                cout,
                groups: 1,
                kernel: k,
                stride: 1,
            };
            let seed = 700 + cin as u64 + k as u64;
            let x = random(seed, cin * d * h * w);
            let weights = random(seed + 1, spec.weight_len());
            let bias = random(seed + 2, cout);
            // Each part in its own tensor, with different halos and channel offsets.
            let mut tensors = Vec::new();
            let mut at = 0;
            for (i, &c) in parts.iter().enumerate() {
                let layout = Layout::new(c + i, d, h, w, k / 2 + i % 2);
                let mut t = Tensor::zeros(layout);
                let v = d * h * w;
                t.channels_mut(i, c)
                    .unwrap()
                    .copy_from_dense(&x[at * v..(at + c) * v])
                    .unwrap();
                tensors.push((t, i, c));
                at += c;
            }
            let views: Vec<_> = tensors
                .iter()
                .map(|(t, i, c)| t.channels(*i, *c).unwrap())
                .collect();
            let r = reference::conv3d(&x, cin, (d, h, w), &weights, Some(&bias), cout, 1, k, 1);
            let n = cin * k.pow(3) + 1;
            for vectorize in [Vectorize::Width, Vectorize::Channels] {
                let conv = Conv3d::new(isa, spec, &weights, Some(&bias))
                    .unwrap()
                    .with_vectorize(vectorize);
                let mut out = Tensor::zeros(Layout::new(cout, d, h, w, 0));
                conv.run_concat(&views, &mut out.view_mut(), Epilogue::Store)
                    .unwrap();
                assert_close(
                    &format!("{} concat {parts:?} k{k} {vectorize:?}", isa.name()),
                    &out.to_dense(),
                    &r.value,
                    |i| gamma(n) * r.magnitude[i] + 1e-30,
                );
            }
        }
    }
    // Grouped convs take one part; parts must agree in size.
    let isa = Isa::PORTABLE;
    let grouped = Conv3d::new(
        isa,
        ConvSpec {
            cin: 8,
            cout: 8,
            groups: 4,
            kernel: 1,
            stride: 1,
        },
        &[0.0; 16],
        None,
    )
    .unwrap();
    let a = Tensor::zeros(Layout::new(4, 2, 2, 2, 0));
    let mut out = Tensor::zeros(Layout::new(8, 2, 2, 2, 0));
    assert!(grouped
        .run_concat(&[a.view(), a.view()], &mut out.view_mut(), Epilogue::Store)
        .is_err());
    let plain = Conv3d::new(
        isa,
        ConvSpec {
            cin: 8,
            cout: 8,
            groups: 1,
            kernel: 1,
            stride: 1,
        },
        &[0.0; 64],
        None,
    )
    .unwrap();
    let b = Tensor::zeros(Layout::new(4, 2, 2, 3, 0));
    assert!(plain
        .run_concat(&[a.view(), b.view()], &mut out.view_mut(), Epilogue::Store)
        .is_err());
    assert!(plain
        .run_concat(&[a.view(), a.view()], &mut out.view_mut(), Epilogue::Store)
        .is_ok());
}

/// `run_with_max` writes the same output as `run` and folds it into the max tensor:
/// a copy for the first part, the element-wise maximum after; nothing outside the max
/// tensor's channel range changes.
#[test]
fn max_output_folds_the_output() {
    for isa in isas() {
        for vectorize in [Vectorize::Width, Vectorize::Channels] {
            for (i, c) in [
                case(8, 8, 1, 3, 1, (3, 5, 49)),
                case(8, 16, 1, 3, 1, (3, 7, 16)),
                case(16, 32, 1, 3, 1, (4, 5, 8)),
                case(4, 16, 2, 3, 1, (3, 4, 33)),
            ]
            .into_iter()
            .enumerate()
            {
                let spec = c.spec();
                let (d, h, w) = c.dims;
                let seed = 900 + 10 * i as u64;
                let conv = seeded_conv(isa, spec, seed, vectorize);
                let n = spec.cout * d * h * w;
                let before = random(seed + 2, (spec.cout + 2) * d * h * w);
                let mut max =
                    Tensor::from_dense(Layout::new(spec.cout + 2, d, h, w, 1), &before).unwrap();
                let mut outs = Vec::new();
                for part in 0..2u64 {
                    let x = random(seed + 3 + part, spec.cin * d * h * w);
                    let input = Tensor::from_dense(Layout::new(spec.cin, d, h, w, 1), &x).unwrap();
                    let old = random(seed + 5 + part, n);
                    let mut plain =
                        Tensor::from_dense(Layout::new(spec.cout, d, h, w, 0), &old).unwrap();
                    let mut with_max = plain.clone();
                    conv.run(&input.view(), &mut plain.view_mut(), Epilogue::Accumulate)
                        .unwrap();
                    conv.run_with_max(
                        &input.view(),
                        &mut with_max.view_mut(),
                        Epilogue::Accumulate,
                        &mut max.channels_mut(1, spec.cout).unwrap(),
                        part == 0,
                    )
                    .unwrap();
                    let what = format!("{} {c:?} {vectorize:?} part {part}", isa.name());
                    assert!(plain.to_dense() == with_max.to_dense(), "{what}: output");
                    outs.push(plain.to_dense());
                    let want: Vec<f32> = if part == 0 {
                        outs[0].clone()
                    } else {
                        outs[0]
                            .iter()
                            .zip(&outs[1])
                            .map(|(a, b)| a.max(*b))
                            .collect()
                    };
                    let all = max.to_dense();
                    let plane = d * h * w;
                    assert!(all[plane..plane + n] == want[..], "{what}: max");
                    assert!(all[..plane] == before[..plane], "{what}: below");
                    assert!(all[plane + n..] == before[plane + n..], "{what}: above");
                }
            }
        }
    }
    // A max tensor of another shape is refused.
    let isa = Isa::PORTABLE;
    let spec = ConvSpec {
        cin: 2,
        cout: 4,
        groups: 1,
        kernel: 3,
        stride: 1,
    };
    let conv = Conv3d::new(isa, spec, &[0.0; 4 * 2 * 27], None).unwrap();
    let x = Tensor::zeros(Layout::new(2, 3, 3, 3, 1));
    let mut out = Tensor::zeros(Layout::new(4, 3, 3, 3, 0));
    let mut wrong = Tensor::zeros(Layout::new(3, 3, 3, 3, 0));
    let err = conv
        .run_with_max(
            &x.view(),
            &mut out.view_mut(),
            Epilogue::Store,
            &mut wrong.view_mut(),
            true,
        )
        .unwrap_err();
    assert!(err.to_string().contains("max output"), "{err}");
}

/// `run_softmax` gives exactly `run` followed by `elementwise::softmax`, on every ISA, for
/// rows shorter than, equal to and longer than a vector, 1x1 and 3x3, and refuses convs
/// whose channels do not fit one register tile.
#[test]
fn fused_softmax_is_the_conv_then_the_softmax() {
    use brats_kernels::elementwise;
    for isa in isas() {
        for (i, &(kernel, cin, cout, w)) in [
            (1, 16, 4, 128),
            (1, 16, 4, 49),
            (1, 16, 4, 16),
            (1, 5, 3, 7),
            (3, 4, 4, 17),
            (1, 8, 2, 1),
        ]
        .iter()
        .enumerate()
        {
            let (d, h) = (3, 5);
            let spec = ConvSpec {
                cin,
                cout,
                groups: 1,
                kernel,
                stride: 1,
            };
            let seed = 1000 + 10 * i as u64;
            // Logits of a few units, as in the network, so the exponentials differ and
            // none saturates.
            let scale = 6.0 / ((cin * kernel.pow(3)) as f32).sqrt();
            let weights: Vec<f32> = random(seed, spec.weight_len())
                .iter()
                .map(|x| scale * x)
                .collect();
            let conv = Conv3d::new(isa, spec, &weights, Some(&random(seed + 1, cout))).unwrap();
            let x = random(seed + 2, cin * d * h * w);
            let input = Tensor::from_dense(Layout::new(cin, d, h, w, kernel / 2), &x).unwrap();
            let mut logits = Tensor::zeros(Layout::new(cout, d, h, w, 0));
            conv.run(&input.view(), &mut logits.view_mut(), Epilogue::Store)
                .unwrap();
            let mut want = Tensor::zeros(Layout::new(cout, d, h, w, 0));
            elementwise::softmax(isa, &logits.view(), &mut want.view_mut()).unwrap();
            // Into a channel range of a padded tensor: nothing else may change.
            let mut got = Tensor::from_dense(
                Layout::new(cout + 2, d, h, w, 1),
                &vec![0.5; (cout + 2) * d * h * w],
            )
            .unwrap();
            conv.run_softmax(&input.view(), &mut got.channels_mut(1, cout).unwrap())
                .unwrap();
            let what = format!("{} k{kernel} {cin}->{cout} w{w}", isa.name());
            assert!(
                got.channels(1, cout).unwrap().to_dense() == want.to_dense(),
                "{what}: fused softmax differs"
            );
            let all = got.to_dense();
            let plane = d * h * w;
            assert!(all[..plane]
                .iter()
                .chain(&all[(cout + 1) * plane..])
                .all(|&v| v == 0.5));
            assert!(
                want.to_dense().iter().all(|&p| p > 0.0 && p < 1.0),
                "{what}"
            );
        }
        let spec = ConvSpec {
            cin: 4,
            cout: 9,
            groups: 1,
            kernel: 1,
            stride: 1,
        };
        let conv = Conv3d::new(isa, spec, &[0.0; 36], None).unwrap();
        let x = Tensor::zeros(Layout::new(4, 2, 2, 2, 0));
        let mut out = Tensor::zeros(Layout::new(9, 2, 2, 2, 0));
        let err = conv
            .run_softmax(&x.view(), &mut out.view_mut())
            .unwrap_err();
        assert!(err.to_string().contains("fused softmax"), "{err}");
    }
}

/// A thread keeps its staged ring for its next task of the same call (the slab after
/// its last one reuses the planes it shares): on one thread every slab resumes its
/// predecessor's ring, on two some do. Calls in a row with other inputs, another affine
/// or another group must not see a previous call's planes.
#[test]
fn staged_rings_carried_between_tasks_stay_exact() {
    use brats_kernels::conv::InputNorm;
    use brats_kernels::norm;
    for threads in [1, 2] {
        // One pool for every call (not `with_threads`, which builds one per call): its
        // threads keep their staged rings from call to call, which the calls in a row
        // below must not reuse.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for isa in isas() {
            for (i, c) in [
                case(8, 8, 1, 3, 1, (40, 5, 20)),
                case(8, 8, 2, 3, 1, (33, 4, 18)),
                case(4, 8, 1, 3, 2, (41, 4, 34)),
            ]
            .into_iter()
            .enumerate()
            {
                let spec = c.spec();
                let (d, h, w) = c.dims;
                let out_layout = Layout::new(
                    spec.cout,
                    spec.output_size(d),
                    spec.output_size(h),
                    spec.output_size(w),
                    0,
                );
                let seed = 1700 + 10 * i as u64;
                let conv = seeded_conv(isa, spec, seed, Vectorize::Width);
                // Two inputs and two affines, in the order A, B, A with the other affine.
                let inputs: Vec<Tensor> = (0..2)
                    .map(|k| {
                        let x = random(seed + 1 + k, spec.cin * d * h * w);
                        Tensor::from_dense(Layout::new(spec.cin, d, h, w, 0), &x).unwrap()
                    })
                    .collect();
                for (step, (which, beta_seed)) in [(0, 3), (1, 3), (0, 4)].into_iter().enumerate() {
                    let input = inputs[which].view();
                    let stats = norm::channel_stats(isa, &input);
                    let gamma = random(seed + 5, spec.cin);
                    let beta = random(seed + beta_seed + 10, spec.cin);
                    let affine = norm::affine(&stats, &gamma, &beta, 1e-3).unwrap();
                    let mut normalized = Tensor::zeros(Layout::new(spec.cin, d, h, w, 1));
                    norm::instance_norm(
                        isa,
                        &input,
                        Some(&stats),
                        &gamma,
                        &beta,
                        1e-3,
                        true,
                        &mut normalized.view_mut(),
                    )
                    .unwrap();
                    let mut want = Tensor::zeros(out_layout);
                    conv.run(&normalized.view(), &mut want.view_mut(), Epilogue::Store)
                        .unwrap();
                    let mut got = Tensor::zeros(out_layout);
                    pool.install(|| {
                        conv.run_normalized(
                            &input,
                            InputNorm {
                                affine: &affine,
                                relu: true,
                            },
                            &mut got.view_mut(),
                            Epilogue::Store,
                            None,
                        )
                    })
                    .unwrap();
                    assert!(
                        want.to_dense() == got.to_dense(),
                        "{} {c:?} {threads} threads, call {step}",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// `run_normalized` (each task normalizes the input planes it reads) gives exactly
/// `norm::instance_norm` into a zero-halo tensor followed by the plain conv: the output,
/// the statistics and the max output bit for bit, on every ISA and kernel, for one-plane
/// and slab tasks (the width kernel's ring of staged planes wraps), weights-outer tasks,
/// groups, stride 2 and 1x1, ReLU or not, from an input that is a channel range of a
/// larger tensor, without a halo or with one of NaN.
#[test]
fn normalized_input_is_the_norm_then_the_conv() {
    use brats_kernels::conv::InputNorm;
    use brats_kernels::norm;
    for isa in isas() {
        for vectorize in [Vectorize::Width, Vectorize::Channels, Vectorize::Auto] {
            for (i, (c, relu)) in [
                (case(8, 8, 1, 3, 1, (3, 5, 49)), true),
                (case(8, 8, 4, 3, 1, (5, 6, 20)), true),
                (case(16, 16, 1, 3, 1, (6, 7, 8)), false),
                (case(4, 16, 2, 3, 2, (5, 6, 34)), true),
                (case(24, 8, 1, 1, 1, (2, 3, 17)), true),
                // Deep enough for tasks of several planes: the staged ring wraps.
                (case(4, 8, 1, 3, 1, (40, 3, 20)), true),
                (case(3, 8, 2, 3, 2, (70, 4, 21)), true),
                (case(5, 4, 1, 1, 1, (37, 2, 18)), false),
                // Per-group weights over the weights-outer limit: slabs staged whole, read
                // once per channel block.
                (case(64, 64, 1, 3, 1, (3, 4, 5)), true),
                (case(48, 64, 1, 3, 1, (20, 2, 17)), true),
                (case(40, 64, 2, 3, 2, (40, 2, 9)), true),
                // Many groups: one slab is the whole depth.
                (case(2, 4, 16, 3, 1, (9, 3, 20)), true),
                (case(2, 4, 1, 3, 1, (1, 1, 4)), true),
            ]
            .into_iter()
            .enumerate()
            {
                let spec = c.spec();
                let (d, h, w) = c.dims;
                let (od, oh, ow) = (
                    spec.output_size(d),
                    spec.output_size(h),
                    spec.output_size(w),
                );
                let seed = 1300 + 10 * i as u64;
                let conv = seeded_conv(isa, spec, seed, vectorize);
                // The input: channels 1.. of a tensor, offset from zero so that the norm
                // matters; every other case with a halo (and slack) of NaN, which the
                // staging must never read.
                let x: Vec<f32> = random(seed + 2, (spec.cin + 2) * d * h * w)
                    .iter()
                    .map(|v| 3.0 * v + 0.5)
                    .collect();
                let mut all_in = Tensor::zeros(Layout::new(spec.cin + 2, d, h, w, i % 2));
                all_in.data_mut().fill(f32::NAN);
                all_in.view_mut().copy_from_dense(&x).unwrap();
                let input = all_in.channels(1, spec.cin).unwrap();
                let stats = norm::channel_stats(isa, &input);
                let gamma = random(seed + 3, spec.cin);
                let beta = random(seed + 4, spec.cin);
                let affine = norm::affine(&stats, &gamma, &beta, 1e-3).unwrap();
                let normalized_layout = Layout::new(spec.cin, d, h, w, c.kernel / 2);
                let mut normalized = Tensor::zeros(normalized_layout);
                norm::instance_norm(
                    isa,
                    &input,
                    Some(&stats),
                    &gamma,
                    &beta,
                    1e-3,
                    relu,
                    &mut normalized.view_mut(),
                )
                .unwrap();
                let what = format!("{} {c:?} relu {relu} {vectorize:?}", isa.name());
                let out_layout = Layout::new(spec.cout, od, oh, ow, 0);
                let norm = InputNorm {
                    affine: &affine,
                    relu,
                };

                // Storing, with statistics.
                let mut want = Tensor::zeros(out_layout);
                let want_stats = conv
                    .run_with_stats(&normalized.view(), &mut want.view_mut(), Epilogue::Store)
                    .unwrap();
                let mut got = Tensor::zeros(out_layout);
                let got_stats = conv
                    .run_normalized_with_stats(&input, norm, &mut got.view_mut())
                    .unwrap();
                assert!(want.to_dense() == got.to_dense(), "{what}: output");
                assert_eq!(want_stats, got_stats, "{what}: statistics");

                // Accumulating, with a max output.
                let old = random(seed + 5, spec.cout * od * oh * ow);
                let max_before = random(seed + 6, spec.cout * od * oh * ow);
                let mut want = Tensor::from_dense(out_layout, &old).unwrap();
                let mut want_max = Tensor::from_dense(out_layout, &max_before).unwrap();
                conv.run_with_max(
                    &normalized.view(),
                    &mut want.view_mut(),
                    Epilogue::Accumulate,
                    &mut want_max.view_mut(),
                    false,
                )
                .unwrap();
                let mut got = Tensor::from_dense(out_layout, &old).unwrap();
                let mut got_max = Tensor::from_dense(out_layout, &max_before).unwrap();
                conv.run_normalized(
                    &input,
                    norm,
                    &mut got.view_mut(),
                    Epilogue::Accumulate,
                    Some((&mut got_max.view_mut(), false)),
                )
                .unwrap();
                assert!(want.to_dense() == got.to_dense(), "{what}: accumulated");
                assert!(want_max.to_dense() == got_max.to_dense(), "{what}: max");
            }
        }
    }
    // One affine per input channel, or an error.
    let spec = ConvSpec {
        cin: 2,
        cout: 4,
        groups: 1,
        kernel: 3,
        stride: 1,
    };
    let conv = Conv3d::new(Isa::PORTABLE, spec, &[0.0; 4 * 2 * 27], None).unwrap();
    let x = Tensor::zeros(Layout::new(2, 3, 3, 3, 0));
    let mut out = Tensor::zeros(Layout::new(4, 3, 3, 3, 0));
    let affine = norm::affine(
        &norm::channel_stats(Isa::PORTABLE, &x.channels(0, 1).unwrap()),
        &[1.0],
        &[0.0],
        1e-3,
    )
    .unwrap();
    let err = conv
        .run_normalized(
            &x.view(),
            InputNorm {
                affine: &affine,
                relu: true,
            },
            &mut out.view_mut(),
            Epilogue::Store,
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("affines"), "{err}");
}
