//! Deconvolution, instance norm, softmax, pooling, group max and add against the float64
//! reference, on every ISA of this host, on widths on both sides of every vector size.
//!
//! Tolerances:
//! - deconv: a sum of `cin` products, bounded by gamma_cin * sum|terms| as for the conv;
//!   fused with the 1x1 conv after it, see `deconv_fused_with_pointwise_matches_reference`.
//! - instance norm statistics are accumulated in f64, so mean and variance agree with the
//!   two-pass f64 reference to ~1e-12 relative; the f32 write `x * scale + shift` (scale
//!   and shift rounded once from f64) is within 4u (|x scale| + |shift|) of the exact value.
//! - softmax: our exp is within 2 ulp (tested below); with the max subtraction, the sum
//!   and the division the result is within ~10u relative (4 channels); we allow 16u + 1e-30.
//! - average pooling sums k³ <= 64 values: gamma_{k³+1} * mean|x|; group max and add are
//!   exact (max) or one rounding (add).

mod common;

use brats_kernels::deconv::Deconv3d;
use brats_kernels::elementwise;
use brats_kernels::norm::{self, ChannelStats};
use brats_kernels::reference;
use brats_kernels::{Layout, Tensor};
use common::*;

const WIDTHS: [usize; 7] = [1, 7, 15, 16, 17, 33, 128];

#[test]
fn deconv_matches_reference() {
    for isa in isas() {
        for (i, &w) in WIDTHS.iter().enumerate() {
            for (cin, cout) in [(4, 4), (8, 12), (16, 8), (3, 17)] {
                let (d, h) = (3, 2);
                let seed = 10 * i as u64 + cin as u64;
                let x = random(seed, cin * d * h * w);
                let wts = random(seed + 1, cin * cout * 8);
                let deconv = Deconv3d::new(isa, cin, cout, &wts).unwrap();
                let input = Tensor::from_dense(Layout::new(cin, d, h, w, 0), &x).unwrap();
                // Into a channel range of a concatenation buffer with a halo.
                let mut out = Tensor::zeros(Layout::new(cout + 2, 2 * d, 2 * h, 2 * w, 1));
                deconv
                    .run(&input.view(), &mut out.channels_mut(1, cout).unwrap())
                    .unwrap();
                let all = out.to_dense();
                let plane = 8 * d * h * w;
                let r = reference::deconv3d(&x, cin, (d, h, w), &wts, cout);
                let what = format!("{} deconv {cin}->{cout} w={w}", isa.name());
                assert_close(&what, &all[plane..(1 + cout) * plane], &r.value, |j| {
                    gamma(cin) * r.magnitude[j] + 1e-30
                });
                assert!(
                    all[..plane]
                        .iter()
                        .chain(&all[(1 + cout) * plane..])
                        .all(|&v| v == 0.0),
                    "{what}: wrote outside its channels"
                );
            }
        }
    }
    assert!(Deconv3d::new(brats_kernels::Isa::PORTABLE, 4, 4, &[0.0; 10]).is_err());
}

/// The deconvolution fused with the 1x1 conv over `concat(up, extra parts)`: against
/// the reference through the upsampled tensor, with the output statistics. The kernel
/// composes the weights (one rounding per composed weight) and sums `cin` composed terms
/// plus the extra parts' terms and the bias: within gamma(cin + extra + cup + 2) of the
/// magnitude (the reference's magnitude substitutes the upsampled values' own).
///
/// Input widths put `2 w` output columns on both sides of one and two vectors of 8 and
/// 16 lanes; the tensors' halos vary (the network's decoder tensors have none, so the
/// input's last vector reads real data past the row), and the extra parts and the
/// output each have strides of their own.
#[test]
fn deconv_fused_with_pointwise_matches_reference() {
    // (cin, cup, extra parts, cout): the decoder's shapes (up2+c2, up3+c1 with a cascade
    // input), odd ones on both sides of the output-channel blocks (4, 8), and none.
    let cases: [(usize, usize, &[usize], usize); 6] = [
        (32, 16, &[8], 16),
        (16, 8, &[8, 4], 8),
        (3, 5, &[2], 9),
        (8, 4, &[1, 3], 4),
        (5, 17, &[17], 17),
        (4, 6, &[], 5),
    ];
    let widths = [1, 2, 3, 4, 7, 8, 9, 12, 15, 16, 17, 24, 33];
    for isa in isas() {
        for (i, &w) in widths.iter().enumerate() {
            for (j, &(cin, cup, extra, cout)) in cases.iter().enumerate() {
                let (d, h) = (2, 3);
                // Halos of the input, the extra parts (alternating) and the output.
                let (in_halo, part_halo, out_halo) = (j % 2, (i + j) % 2, (i / 2) % 2);
                let seed = 1000 + 10 * i as u64 + j as u64;
                let out_plane = 8 * d * h * w;
                let x = random(seed, cin * d * h * w);
                let up_w = random(seed + 1, cin * cup * 8);
                let k: usize = cup + extra.iter().sum::<usize>();
                let pw = random(seed + 2, cout * k);
                let bias = random(seed + 3, cout);
                let parts: Vec<Vec<f32>> = extra
                    .iter()
                    .enumerate()
                    .map(|(e, &c)| random(seed + 4 + e as u64, c * out_plane))
                    .collect();
                let fused =
                    Deconv3d::fused_pointwise(isa, (cin, cup, &up_w), extra, &pw, &bias).unwrap();
                // The input is followed by a channel of large values, which the last
                // vector of a row may read (its lanes past the row must not count).
                let mut xs = x.clone();
                xs.extend(std::iter::repeat_n(1e6f32, d * h * w));
                let input_all =
                    Tensor::from_dense(Layout::new(cin + 1, d, h, w, in_halo), &xs).unwrap();
                let input = input_all.view().channels(0, cin).unwrap();
                // Each extra part is a channel range of a larger tensor, with the part's
                // own channel count and halo (so strides differ from the output's).
                let part_tensors: Vec<Tensor> = parts
                    .iter()
                    .zip(extra)
                    .enumerate()
                    .map(|(e, (p, &c))| {
                        let halo = (part_halo + e) % 2;
                        let l = Layout::new(c + 1 + e, 2 * d, 2 * h, 2 * w, halo);
                        let mut t = Tensor::zeros(l);
                        t.channels_mut(1, c).unwrap().copy_from_dense(p).unwrap();
                        t
                    })
                    .collect();
                let views: Vec<_> = part_tensors
                    .iter()
                    .zip(extra)
                    .map(|(t, &c)| t.view().channels(1, c).unwrap())
                    .collect();
                let ol = Layout::new(cout + 2, 2 * d, 2 * h, 2 * w, out_halo);
                let before = random(seed + 9, (cout + 2) * out_plane);
                let mut out = Tensor::from_dense(ol, &before).unwrap();
                let raw_before = out.data().to_vec();
                let stats = fused
                    .run_fused_with_stats(&input, &views, &mut out.channels_mut(1, cout).unwrap())
                    .unwrap();
                let extra_ref: Vec<(&[f32], usize)> = parts
                    .iter()
                    .map(|p| p.as_slice())
                    .zip(extra.iter().copied())
                    .collect();
                let r = reference::deconv_pointwise(
                    &x,
                    cin,
                    (d, h, w),
                    &up_w,
                    cup,
                    &extra_ref,
                    &pw,
                    &bias,
                );
                let all = out.to_dense();
                let got = &all[out_plane..(1 + cout) * out_plane];
                let what = format!(
                    "{} deconv {cin}->{cup} + 1x1 over {extra:?} -> {cout}, w={w}, halos \
                     {in_halo}/{part_halo}/{out_halo}",
                    isa.name()
                );
                let n = cin + k + 2;
                assert_close(&what, got, &r.value, |i| gamma(n) * r.magnitude[i] + 1e-30);
                // Nothing but the interior of its channels changed: not the other
                // channels, not the halo, not the slack.
                let mut written = vec![false; raw_before.len()];
                for c in 1..1 + cout {
                    for z in 0..2 * d {
                        for y in 0..2 * h {
                            let at = ol.index(c, z, y, 0);
                            written[at..at + 2 * w].fill(true);
                        }
                    }
                }
                let changed = (0..raw_before.len())
                    .filter(|&i| !written[i] && out.data()[i] != raw_before[i])
                    .count();
                assert_eq!(changed, 0, "{what}: wrote outside its channels' interior");
                for (c, (st, (mean, var))) in stats
                    .iter()
                    .zip(reference::channel_stats(got, cout))
                    .enumerate()
                {
                    let scale = mean.abs() + var.sqrt() + 1e-30;
                    assert!(
                        (st.mean - mean).abs() <= 1e-12 * scale
                            && (st.var - var).abs() <= 1e-9 * scale * scale,
                        "{what}: channel {c} statistics {st:?} vs ({mean}, {var})"
                    );
                }
            }
        }
    }
}

/// A fused deconvolution refuses a plain run, wrong extra parts and bad weights; a plain
/// one refuses a fused run.
#[test]
fn deconv_fused_checks_its_arguments() {
    let isa = brats_kernels::Isa::PORTABLE;
    let up_w = random(1, 2 * 3 * 8);
    let up = Deconv3d::new(isa, 2, 3, &up_w).unwrap();
    let pw = random(2, 4 * (3 + 2));
    let bias = random(3, 4);
    let fuse = |up_w: &[f32], extra: &[usize], pw: &[f32]| {
        Deconv3d::fused_pointwise(isa, (2, 3, up_w), extra, pw, &bias)
    };
    assert!(fuse(&up_w, &[2], &pw[1..]).is_err());
    assert!(fuse(&up_w[1..], &[2], &pw).is_err());
    // An empty part, and more parts than MAX_EXTRA_PARTS (weights of the right length).
    assert!(fuse(&up_w, &[2, 0], &pw).is_err());
    assert!(fuse(&up_w, &[1, 1], &pw).is_ok());
    let pw6 = random(4, 4 * 6);
    assert!(fuse(&up_w, &[1, 1, 1], &pw6).is_err());
    let fused = fuse(&up_w, &[2], &pw).unwrap();
    let input = Tensor::zeros(Layout::new(2, 1, 2, 2, 0));
    let skip = Tensor::zeros(Layout::new(2, 2, 4, 4, 0));
    let wrong = Tensor::zeros(Layout::new(3, 2, 4, 4, 0));
    let small = Tensor::zeros(Layout::new(2, 2, 4, 2, 0));
    let mut out = Tensor::zeros(Layout::new(4, 2, 4, 4, 0));
    let e = fused.run(&input.view(), &mut out.view_mut()).unwrap_err();
    assert!(e.message().contains("run_fused_with_stats"), "{e}");
    for bad in [
        vec![],
        vec![wrong.view()],
        vec![small.view()],
        vec![skip.view(), skip.view()],
    ] {
        assert!(fused
            .run_fused_with_stats(&input.view(), &bad, &mut out.view_mut())
            .is_err());
    }
    fused
        .run_fused_with_stats(&input.view(), &[skip.view()], &mut out.view_mut())
        .unwrap();
    assert!(up
        .run_fused_with_stats(&input.view(), &[skip.view()], &mut out.view_mut())
        .is_err());
}

#[test]
fn instance_norm_matches_reference() {
    for isa in isas() {
        for (i, &w) in WIDTHS.iter().enumerate() {
            let (c, d, h) = (5, 3, 4);
            let seed = 100 + i as u64;
            // A large common offset tests the shifted accumulation of the variance.
            let x: Vec<f32> = random(seed, c * d * h * w)
                .iter()
                .map(|v| 3.0 * v + 40.0)
                .collect();
            let gamma_v = random(seed + 1, c);
            let beta_v = random(seed + 2, c);
            let input = Tensor::from_dense(Layout::new(c, d, h, w, 0), &x).unwrap();
            let stats = norm::channel_stats(isa, &input.view());
            for (s, r) in stats.iter().zip(reference::channel_stats(&x, c)) {
                assert!(
                    (s.mean - r.0).abs() <= 1e-12 * r.0.abs(),
                    "{}: mean {} vs {}",
                    isa.name(),
                    s.mean,
                    r.0
                );
                assert!(
                    (s.var - r.1).abs() <= 1e-9 * r.1,
                    "{}: var {} vs {}",
                    isa.name(),
                    s.var,
                    r.1
                );
            }
            for relu in [false, true] {
                let mut out = Tensor::zeros(Layout::new(c, d, h, w, 1));
                norm::instance_norm(
                    isa,
                    &input.view(),
                    None,
                    &gamma_v,
                    &beta_v,
                    1e-3,
                    relu,
                    &mut out.view_mut(),
                )
                .unwrap();
                let want = reference::instance_norm(&x, c, &gamma_v, &beta_v, 1e-3, relu);
                let voxels = d * h * w;
                let bound = |j: usize| {
                    let ch = j / voxels;
                    let st: ChannelStats = stats[ch];
                    let scale = gamma_v[ch] as f64 / (st.var + 1e-3).sqrt();
                    let shift = beta_v[ch] as f64 - st.mean * scale;
                    4.0 * U * ((x[j] as f64 * scale).abs() + shift.abs()) + 1e-30
                };
                assert_close(
                    &format!("{} norm relu={relu} w={w}", isa.name()),
                    &out.to_dense(),
                    &want,
                    bound,
                );
            }
        }
    }
    let t = Tensor::zeros(Layout::new(2, 2, 2, 2, 0));
    let mut o = Tensor::zeros(Layout::new(3, 2, 2, 2, 0));
    let isa = brats_kernels::Isa::PORTABLE;
    assert!(norm::instance_norm(
        isa,
        &t.view(),
        None,
        &[1.0; 2],
        &[0.0; 2],
        1e-3,
        true,
        &mut o.view_mut()
    )
    .is_err());
    let mut o = Tensor::zeros(Layout::new(2, 2, 2, 2, 0));
    assert!(norm::instance_norm(
        isa,
        &t.view(),
        None,
        &[1.0; 3],
        &[0.0; 2],
        1e-3,
        true,
        &mut o.view_mut()
    )
    .is_err());
    assert!(norm::instance_norm(
        isa,
        &t.view(),
        None,
        &[1.0; 2],
        &[0.0; 2],
        0.0,
        true,
        &mut o.view_mut()
    )
    .is_err());
}

#[test]
fn softmax_pool_group_max_add_match_reference() {
    for isa in isas() {
        for (i, &w) in WIDTHS.iter().enumerate() {
            let seed = 200 + i as u64;
            let (c, d, h) = (4, 4, 4);
            let x: Vec<f32> = random(seed, c * d * h * w)
                .iter()
                .map(|v| 6.0 * v)
                .collect();
            let input = Tensor::from_dense(Layout::new(c, d, h, w, 1), &x).unwrap();
            let name = isa.name();

            let mut sm = Tensor::zeros(Layout::new(c + 1, d, h, w, 0));
            elementwise::softmax(isa, &input.view(), &mut sm.channels_mut(1, c).unwrap()).unwrap();
            let want = reference::softmax(&x, c);
            let got = sm.channels(1, c).unwrap().to_dense();
            assert_close(&format!("{name} softmax w={w}"), &got, &want, |j| {
                16.0 * U * want[j] + 1e-30
            });

            let mut gm = Tensor::zeros(Layout::new(1, d, h, w, 1));
            elementwise::group_max(isa, 4, &input.view(), &mut gm.view_mut()).unwrap();
            assert_close(
                &format!("{name} group max w={w}"),
                &gm.to_dense(),
                &reference::group_max(&x, c, 4),
                |_| 0.0,
            );

            let y = random(seed + 1, c * d * h * w);
            let mut sum = Tensor::from_dense(Layout::new(c, d, h, w, 0), &y).unwrap();
            elementwise::add_assign(isa, &input.view(), &mut sum.view_mut()).unwrap();
            let want: Vec<f64> = x
                .iter()
                .zip(&y)
                .map(|(&a, &b)| a as f64 + b as f64)
                .collect();
            assert_close(&format!("{name} add w={w}"), &sum.to_dense(), &want, |j| {
                U * want[j].abs()
            });

            for k in [2, 4] {
                let (pd, ph, pw) = (2 * k, 3 * k, k * w);
                let xs = random(seed + k as u64, 3 * pd * ph * pw);
                let src = Tensor::from_dense(Layout::new(3, pd, ph, pw, 0), &xs).unwrap();
                let mut dst = Tensor::zeros(Layout::new(3, 2, 3, w, 1));
                elementwise::avg_pool(isa, k, &src.view(), &mut dst.view_mut()).unwrap();
                let want = reference::avg_pool(&xs, 3, (pd, ph, pw), k);
                assert_close(
                    &format!("{name} avg pool k{k} w={w}"),
                    &dst.to_dense(),
                    &want,
                    |_| gamma(k * k * k + 1),
                );
            }
        }
    }
    let isa = brats_kernels::Isa::PORTABLE;
    let t = Tensor::zeros(Layout::new(6, 4, 4, 4, 0));
    let mut o = Tensor::zeros(Layout::new(1, 4, 4, 4, 0));
    assert!(elementwise::group_max(isa, 4, &t.view(), &mut o.view_mut()).is_err());
    assert!(elementwise::softmax(isa, &t.view(), &mut o.view_mut()).is_err());
    let mut p = Tensor::zeros(Layout::new(6, 1, 1, 1, 0));
    assert!(elementwise::avg_pool(isa, 3, &t.view(), &mut p.view_mut()).is_err());
}

#[test]
fn exp_is_within_two_ulp_on_the_softmax_range() {
    let mut worst = 0.0f64;
    let mut x = 0.0f32;
    while x > -87.0 {
        let got = brats_kernels::elementwise::exp_nonpositive(x) as f64;
        let want = (x as f64).exp();
        worst = worst.max((got - want).abs() / want);
        x -= 0.000_37;
    }
    assert!(
        worst <= 2.0 * 2f64.powi(-23),
        "max relative error {worst:e}"
    );
    assert_eq!(brats_kernels::elementwise::exp_nonpositive(0.0), 1.0);
    assert!(brats_kernels::elementwise::exp_nonpositive(-200.0) < 1e-37);
}
