//! The Winograd F(2,3) kernel ([`Vectorize::Winograd`], `conv/winograd.rs`) against the
//! float64 reference, on every ISA of this host, on widths on both sides of its vectors
//! (8 outputs with AVX-512, 4 otherwise), tiles (3 vectors) and limits (rows of 16 to 64
//! outputs with AVX-512, 8 to 64 otherwise; other widths take the direct kernels, which
//! are within the same bound), heights on both sides of its row tiles, channel counts on
//! both sides of its channel tile, and depths that wrap the staged ring.
//!
//! Tolerance: the kernel computes each output as `(m0 + m1) + m2` or `(m1 - m2) - m3`
//! (plus bias, plus the old output when accumulating), each `m_c` a sum over (input
//! channel, kz, ky) of `(G g)_c (Bᵀ d)_c`, whose two factors are each one rounding away
//! from exact. So an output is within `gamma(9 cin/G + 6)` times the sum of the absolute
//! values of those products (over the output's three `c`s) and of the bias and old
//! output, plus half an ulp; [`winograd_magnitude`] computes that sum in f64. A wrong
//! tap, channel or tile changes an output by a whole term, orders of magnitude more.

mod common;

use brats_kernels::conv::{Conv3d, ConvSpec, Epilogue, InputNorm, Vectorize};
use brats_kernels::{norm, reference, Isa, Layout, Tensor};
use common::*;

/// Per output voxel of a 3x3x3 stride-1 pad-1 conv (`weights` in MXNet's layout), the
/// sum of `|(G g)_c (Bᵀ d)_c|` over (input channel, kz, ky) and the output's three `c`s.
fn winograd_magnitude(
    x: &[f32],
    spec: ConvSpec,
    dims: (usize, usize, usize),
    weights: &[f32],
) -> Vec<f64> {
    let (d, h, w) = dims;
    let (cin_g, cout_g) = (spec.cin / spec.groups, spec.cout / spec.groups);
    let at = |c: usize, z: isize, y: isize, x_: isize| -> f64 {
        if z < 0 || y < 0 || x_ < 0 || z >= d as isize || y >= h as isize || x_ >= w as isize {
            0.0
        } else {
            x[((c * d + z as usize) * h + y as usize) * w + x_ as usize] as f64
        }
    };
    let mut out = vec![0.0; spec.cout * d * h * w];
    for co in 0..spec.cout {
        let g = co / cout_g;
        for z in 0..d {
            for y in 0..h {
                for xo in 0..w {
                    let first = (xo / 2 * 2) as isize - 1;
                    let cs = if xo % 2 == 0 { [0, 1, 2] } else { [1, 2, 3] };
                    let mut mag = 0.0;
                    for ci in 0..cin_g {
                        let c = g * cin_g + ci;
                        for kz in 0..3 {
                            for ky in 0..3 {
                                let (iz, iy) = ((z + kz) as isize - 1, (y + ky) as isize - 1);
                                let dv: [f64; 4] =
                                    std::array::from_fn(|i| at(c, iz, iy, first + i as isize));
                                let gv: [f64; 3] = std::array::from_fn(|kx| {
                                    weights[(((co * cin_g + ci) * 3 + kz) * 3 + ky) * 3 + kx] as f64
                                });
                                let v = [
                                    gv[0],
                                    (gv[0] + gv[1] + gv[2]) / 2.0,
                                    (gv[0] - gv[1] + gv[2]) / 2.0,
                                    gv[2],
                                ];
                                let u =
                                    [dv[0] - dv[2], dv[1] + dv[2], dv[2] - dv[1], dv[1] - dv[3]];
                                mag += cs.iter().map(|&c| (v[c] * u[c]).abs()).sum::<f64>();
                            }
                        }
                    }
                    out[((co * d + z) * h + y) * w + xo] = mag;
                }
            }
        }
    }
    out
}

fn spec(cin_g: usize, cout_g: usize, groups: usize) -> ConvSpec {
    ConvSpec {
        cin: cin_g * groups,
        cout: cout_g * groups,
        groups,
        kernel: 3,
        stride: 1,
    }
}

/// Runs one case with [`Vectorize::Winograd`] on `isa` and `threads` threads: storing
/// with statistics, then accumulating with a max output, each checked against the
/// reference; returns both outputs.
fn check(
    isa: Isa,
    spec: ConvSpec,
    dims: (usize, usize, usize),
    seed: u64,
    threads: usize,
) -> Vec<f32> {
    let (d, h, w) = dims;
    let cin_g = spec.cin / spec.groups;
    let weights = random(seed, spec.weight_len());
    let bias = random(seed + 1, spec.cout);
    let conv = Conv3d::new(isa, spec, &weights, Some(&bias))
        .unwrap()
        .with_vectorize(Vectorize::Winograd);
    // The input: channels 1.. of a tensor with a halo of NaN (which the staging must never
    // read), offset from zero so that the norm matters.
    let x: Vec<f32> = random(seed + 2, (spec.cin + 2) * d * h * w)
        .iter()
        .map(|v| 3.0 * v + 0.5)
        .collect();
    let mut all_in = Tensor::zeros(Layout::new(spec.cin + 2, d, h, w, 1));
    all_in.data_mut().fill(f32::NAN);
    all_in.view_mut().copy_from_dense(&x).unwrap();
    let input = all_in.channels(1, spec.cin).unwrap();
    let stats = norm::channel_stats(isa, &input);
    let gamma_ = random(seed + 3, spec.cin);
    let beta = random(seed + 4, spec.cin);
    let affine = norm::affine(&stats, &gamma_, &beta, 1e-3).unwrap();
    let relu = seed.is_multiple_of(2);
    // What the staging normalizes to: the same row function as the norm kernel.
    let mut normalized = Tensor::zeros(Layout::new(spec.cin, d, h, w, 0));
    norm::instance_norm(
        isa,
        &input,
        Some(&stats),
        &gamma_,
        &beta,
        1e-3,
        relu,
        &mut normalized.view_mut(),
    )
    .unwrap();
    let xn = normalized.to_dense();
    let r = reference::conv3d(
        &xn,
        spec.cin,
        dims,
        &weights,
        Some(&bias),
        spec.cout,
        spec.groups,
        3,
        1,
    );
    let magnitude = winograd_magnitude(&xn, spec, dims, &weights);
    let n = 9 * cin_g + 6;
    let what = format!(
        "{} {spec:?} {dims:?} relu {relu} {threads} threads",
        isa.name()
    );
    let norm = InputNorm {
        affine: &affine,
        relu,
    };
    let out_layout = Layout::new(spec.cout, d, h, w, 0);

    // Storing, with statistics.
    let mut out = Tensor::zeros(out_layout);
    let got_stats = with_threads(threads, || {
        conv.run_normalized_with_stats(&input, norm, &mut out.view_mut())
    })
    .unwrap();
    let stored = out.to_dense();
    assert_close(&format!("{what} store"), &stored, &r.value, |i| {
        gamma(n) * (magnitude[i] + (bias[i / (d * h * w)] as f64).abs()) + U * r.value[i].abs()
    });
    for (c, (st, (mean, var))) in got_stats
        .iter()
        .zip(reference::channel_stats(&stored, spec.cout))
        .enumerate()
    {
        let scale = mean.abs() + var.sqrt() + 1e-30;
        assert!(
            (st.mean - mean).abs() <= 1e-12 * scale,
            "{what}: channel {c} mean"
        );
        assert!(
            (st.var - var).abs() <= 1e-9 * scale * scale,
            "{what}: channel {c} var"
        );
    }

    // Accumulating, with a max output.
    let old = random(seed + 5, spec.cout * d * h * w);
    let max_before = random(seed + 6, spec.cout * d * h * w);
    let mut out = Tensor::from_dense(out_layout, &old).unwrap();
    let mut max = Tensor::from_dense(out_layout, &max_before).unwrap();
    with_threads(threads, || {
        conv.run_normalized(
            &input,
            norm,
            &mut out.view_mut(),
            Epilogue::Accumulate,
            Some((&mut max.view_mut(), false)),
        )
    })
    .unwrap();
    let accumulated = out.to_dense();
    let want: Vec<f64> = r
        .value
        .iter()
        .zip(&old)
        .map(|(v, &o)| v + o as f64)
        .collect();
    assert_close(&format!("{what} accumulate"), &accumulated, &want, |i| {
        gamma(n) * (magnitude[i] + (bias[i / (d * h * w)] as f64).abs() + (old[i] as f64).abs())
            + U * want[i].abs()
    });
    let want_max: Vec<f32> = accumulated
        .iter()
        .zip(&max_before)
        .map(|(a, m)| a.max(*m))
        .collect();
    assert!(max.to_dense() == want_max, "{what}: max output");
    [stored, accumulated].concat()
}

#[test]
fn widths_on_both_sides_of_every_vector_and_tile() {
    for isa in isas() {
        for (i, &w) in [
            8, 12, 13, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49, 64, 72, 128,
        ]
        .iter()
        .enumerate()
        {
            let groups = if i % 2 == 0 { 1 } else { 2 };
            check(isa, spec(3, 9, groups), (3, 5, w), 10 * i as u64, 1);
        }
    }
}

#[test]
fn heights_and_channels_on_both_sides_of_every_tile() {
    for isa in isas() {
        for (i, &h) in [1, 2, 3, 4, 7].iter().enumerate() {
            // Rows 25 wide: full tiles and a one-vector column, which takes rows per tile.
            check(isa, spec(4, 8, 1), (2, h, 25), 300 + i as u64, 1);
        }
        for (i, &(cin_g, cout_g)) in [
            (1, 1),
            (2, 4),
            (8, 7),
            (8, 8),
            (16, 9),
            (16, 16),
            (5, 17),
            (32, 33),
        ]
        .iter()
        .enumerate()
        {
            check(isa, spec(cin_g, cout_g, 1), (2, 4, 20), 400 + i as u64, 1);
        }
    }
}

/// Deep inputs: a task's ring wraps and carries over between slabs, on one thread and
/// two; the output is the same bit for bit.
#[test]
fn staged_ring_wraps_and_any_thread_count_gives_the_same_bits() {
    for isa in isas() {
        for (i, (s, dims)) in [
            (spec(8, 8, 1), (40, 4, 32)),
            (spec(4, 8, 4), (21, 3, 18)),
            // Per-group weights over the weights-outer limit: slabs staged whole.
            (spec(64, 64, 1), (6, 3, 16)),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 500 + 10 * i as u64;
            let one = check(isa, s, dims, seed, 1);
            let two = check(isa, s, dims, seed, 2);
            assert!(one == two, "{} {s:?}: 1 and 2 threads differ", isa.name());
        }
    }
}

/// Calls the transform does not fit (no staged input, stride 2, rows narrower than two
/// of its vectors or wider than 64) run the other kernels: bit-identical to
/// [`Vectorize::Auto`].
#[test]
fn calls_it_does_not_fit_are_the_automatic_choice() {
    for isa in isas() {
        for (i, (s, dims)) in [
            (spec(4, 8, 1), (3, 4, 32)),
            (spec(4, 8, 1), (3, 4, 4)),
            (spec(4, 8, 1), (3, 2, 65)),
            (spec(4, 8, 1), (2, 2, 128)),
            (
                ConvSpec {
                    stride: 2,
                    ..spec(4, 8, 1)
                },
                (4, 4, 34),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 700 + 10 * i as u64;
            let weights = random(seed, s.weight_len());
            let (d, h, w) = dims;
            let x = random(seed + 1, s.cin * d * h * w);
            let input = Tensor::from_dense(Layout::new(s.cin, d, h, w, 1), &x).unwrap();
            let out_layout = Layout::new(
                s.cout,
                s.output_size(d),
                s.output_size(h),
                s.output_size(w),
                0,
            );
            let run = |v: Vectorize, staged: bool| {
                let conv = Conv3d::new(isa, s, &weights, None)
                    .unwrap()
                    .with_vectorize(v);
                let mut out = Tensor::zeros(out_layout);
                if staged {
                    let stats = norm::channel_stats(isa, &input.view());
                    let ones = vec![1.0; s.cin];
                    let zeros = vec![0.0; s.cin];
                    let affine = norm::affine(&stats, &ones, &zeros, 1e-3).unwrap();
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
                    .unwrap();
                } else {
                    conv.run(&input.view(), &mut out.view_mut(), Epilogue::Store)
                        .unwrap();
                }
                out.to_dense()
            };
            // Unstaged: never the transform.
            assert!(
                run(Vectorize::Winograd, false) == run(Vectorize::Auto, false),
                "{s:?} {dims:?}"
            );
            // Staged: the transform only for stride-1 rows of 16 (AVX-512) or 8 to 64.
            let lanes = if isa.name() == "avx512" { 16 } else { 8 };
            if s.stride == 2 || w < lanes || w > 64 {
                assert!(
                    run(Vectorize::Winograd, true) == run(Vectorize::Auto, true),
                    "{s:?} {dims:?}"
                );
            }
        }
    }
}
