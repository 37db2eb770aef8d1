//! Plain scalar float64 versions of every kernel: the oracle the optimized kernels are
//! tested against. Written for obviousness, not speed: one loop nest per definition in
//! `MODEL.md`, on dense `C x D x H x W` arrays without halo.
//!
//! The convolutions also return, per output element, the sum of the absolute values of
//! the terms they added (`|w * x|` and `|bias|`), which is what bounds the rounding error
//! of an f32 evaluation (see the tests' tolerance).

/// Spatial dimensions `(d, h, w)`.
pub type Dims = (usize, usize, usize);

/// A float64 result and, per element, the sum of |terms| that produced it.
pub struct WithMagnitude {
    pub value: Vec<f64>,
    pub magnitude: Vec<f64>,
}

/// Convolution with kernel `k` (pad `k / 2`), stride `stride`, `groups`, MXNet weight
/// layout `(cout, cin/groups, k, k, k)`.
#[allow(clippy::too_many_arguments)]
pub fn conv3d(
    input: &[f32],
    cin: usize,
    dims: Dims,
    weights: &[f32],
    bias: Option<&[f32]>,
    cout: usize,
    groups: usize,
    k: usize,
    stride: usize,
) -> WithMagnitude {
    let (d, h, w) = dims;
    let pad = k / 2;
    let out_size = |n: usize| (n + 2 * pad - k) / stride + 1;
    let (od, oh, ow) = (out_size(d), out_size(h), out_size(w));
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let n = cout * od * oh * ow;
    let (mut value, mut magnitude) = (vec![0.0; n], vec![0.0; n]);
    for co in 0..cout {
        let g = co / cout_g;
        let b = bias.map_or(0.0, |b| b[co] as f64);
        for z in 0..od {
            for y in 0..oh {
                for x in 0..ow {
                    let (mut sum, mut mag) = (b, b.abs());
                    for ci in 0..cin_g {
                        let c = g * cin_g + ci;
                        for kz in 0..k {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iz = (z * stride + kz) as isize - pad as isize;
                                    let iy = (y * stride + ky) as isize - pad as isize;
                                    let ix = (x * stride + kx) as isize - pad as isize;
                                    if iz < 0
                                        || iy < 0
                                        || ix < 0
                                        || iz >= d as isize
                                        || iy >= h as isize
                                        || ix >= w as isize
                                    {
                                        continue;
                                    }
                                    let (iz, iy, ix) = (iz as usize, iy as usize, ix as usize);
                                    let xv = input[((c * d + iz) * h + iy) * w + ix] as f64;
                                    let wv = weights
                                        [(((co * cin_g + ci) * k + kz) * k + ky) * k + kx]
                                        as f64;
                                    sum += wv * xv;
                                    mag += (wv * xv).abs();
                                }
                            }
                        }
                    }
                    let at = ((co * od + z) * oh + y) * ow + x;
                    value[at] = sum;
                    magnitude[at] = mag;
                }
            }
        }
    }
    WithMagnitude { value, magnitude }
}

/// Transposed convolution, kernel 2, stride 2, no bias, MXNet weight layout
/// `(cin, cout, 2, 2, 2)`: `out[co][2z+a][2y+b][2x+c] = sum_ci in[ci][z][y][x] * w[ci][co][a][b][c]`.
pub fn deconv3d(
    input: &[f32],
    cin: usize,
    dims: Dims,
    weights: &[f32],
    cout: usize,
) -> WithMagnitude {
    let (d, h, w) = dims;
    let (od, oh, ow) = (2 * d, 2 * h, 2 * w);
    let n = cout * od * oh * ow;
    let (mut value, mut magnitude) = (vec![0.0; n], vec![0.0; n]);
    for co in 0..cout {
        for z in 0..od {
            for y in 0..oh {
                for x in 0..ow {
                    let (mut sum, mut mag) = (0.0f64, 0.0f64);
                    for ci in 0..cin {
                        let xv = input[((ci * d + z / 2) * h + y / 2) * w + x / 2] as f64;
                        let wv = weights[(((ci * cout + co) * 2 + z % 2) * 2 + y % 2) * 2 + x % 2]
                            as f64;
                        sum += wv * xv;
                        mag += (wv * xv).abs();
                    }
                    let at = ((co * od + z) * oh + y) * ow + x;
                    value[at] = sum;
                    magnitude[at] = mag;
                }
            }
        }
    }
    WithMagnitude { value, magnitude }
}

/// The decoder's `conv1x1(concat(deconv3d(input), extra parts...))` with `bias` (no
/// nonlinearity between), as the network defines it: through the upsampled tensor, in
/// float64. `up_weights` as [`deconv3d`] (`cin -> cup`); `extra` the other parts (dense,
/// at the output's size) with their channel counts; `weights` `(cout, cup + extra)`.
/// The magnitude is the sum of |terms| with the upsampled values' own magnitudes
/// substituted, which bounds a kernel that composes the two weights first.
#[allow(clippy::too_many_arguments)]
pub fn deconv_pointwise(
    input: &[f32],
    cin: usize,
    dims: Dims,
    up_weights: &[f32],
    cup: usize,
    extra: &[(&[f32], usize)],
    weights: &[f32],
    bias: &[f32],
) -> WithMagnitude {
    let up = deconv3d(input, cin, dims, up_weights, cup);
    let cout = bias.len();
    let k = cup + extra.iter().map(|e| e.1).sum::<usize>();
    let plane = 8 * dims.0 * dims.1 * dims.2;
    let (mut value, mut magnitude) = (vec![0.0; cout * plane], vec![0.0; cout * plane]);
    for co in 0..cout {
        for i in 0..plane {
            let b = bias[co] as f64;
            let (mut sum, mut mag) = (b, b.abs());
            for j in 0..cup {
                let w = weights[co * k + j] as f64;
                sum += w * up.value[j * plane + i];
                mag += w.abs() * up.magnitude[j * plane + i];
            }
            let mut j = cup;
            for &(part, channels) in extra {
                for c in 0..channels {
                    let t = weights[co * k + j] as f64 * part[c * plane + i] as f64;
                    sum += t;
                    mag += t.abs();
                    j += 1;
                }
            }
            value[co * plane + i] = sum;
            magnitude[co * plane + i] = mag;
        }
    }
    WithMagnitude { value, magnitude }
}

/// Per-channel population mean and variance over `voxels` values per channel.
pub fn channel_stats(input: &[f32], channels: usize) -> Vec<(f64, f64)> {
    let voxels = input.len() / channels.max(1);
    (0..channels)
        .map(|c| {
            let xs = &input[c * voxels..(c + 1) * voxels];
            let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / voxels as f64;
            let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / voxels as f64;
            (mean, var)
        })
        .collect()
}

/// MXNet `InstanceNorm` (population variance, `eps`), affine, then optionally ReLU.
pub fn instance_norm(
    input: &[f32],
    channels: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    relu: bool,
) -> Vec<f64> {
    let voxels = input.len() / channels.max(1);
    let stats = channel_stats(input, channels);
    let mut out = Vec::with_capacity(input.len());
    for (c, &(mean, var)) in stats.iter().enumerate() {
        let inv = 1.0 / (var + eps).sqrt();
        for &x in &input[c * voxels..(c + 1) * voxels] {
            let y = (x as f64 - mean) * inv * gamma[c] as f64 + beta[c] as f64;
            out.push(if relu { y.max(0.0) } else { y });
        }
    }
    out
}

/// Softmax over the channel axis.
pub fn softmax(input: &[f32], channels: usize) -> Vec<f64> {
    let voxels = input.len() / channels.max(1);
    let mut out = vec![0.0; input.len()];
    for v in 0..voxels {
        let max = (0..channels)
            .map(|c| input[c * voxels + v] as f64)
            .fold(f64::MIN, f64::max);
        let sum: f64 = (0..channels)
            .map(|c| (input[c * voxels + v] as f64 - max).exp())
            .sum();
        for c in 0..channels {
            out[c * voxels + v] = (input[c * voxels + v] as f64 - max).exp() / sum;
        }
    }
    out
}

/// Average pooling with kernel = stride = `k`, no padding.
pub fn avg_pool(input: &[f32], channels: usize, dims: Dims, k: usize) -> Vec<f64> {
    let (d, h, w) = dims;
    let (od, oh, ow) = (d / k, h / k, w / k);
    let mut out = vec![0.0; channels * od * oh * ow];
    for c in 0..channels {
        for z in 0..od {
            for y in 0..oh {
                for x in 0..ow {
                    let mut s = 0.0f64;
                    for dz in 0..k {
                        for dy in 0..k {
                            for dx in 0..k {
                                s += input[((c * d + z * k + dz) * h + y * k + dy) * w + x * k + dx]
                                    as f64;
                            }
                        }
                    }
                    out[((c * od + z) * oh + y) * ow + x] = s / (k * k * k) as f64;
                }
            }
        }
    }
    out
}

/// The group max: `out[c] = max_g in[g * C / groups + c]`.
pub fn group_max(input: &[f32], channels: usize, groups: usize) -> Vec<f64> {
    let voxels = input.len() / channels.max(1);
    let cg = channels / groups;
    let mut out = vec![f64::MIN; cg * voxels];
    for g in 0..groups {
        for c in 0..cg {
            for v in 0..voxels {
                let x = input[(g * cg + c) * voxels + v] as f64;
                let o = &mut out[c * voxels + v];
                *o = o.max(x);
            }
        }
    }
    out
}
