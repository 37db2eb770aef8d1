//! The cascade's forward pass, written out layer by layer as `../shared/MODEL.md` gives it.
//!
//! # Memory plan
//!
//! Activations live in a few `Slot`s that are allocated on the first call and reused by
//! every later layer and call (see `Work`). What keeps the peak low:
//!
//! - **The first encoder level runs group by group.** conv1, rb1 and pool1 are grouped
//!   (one group per modality) and instance norm is per channel, so group `g`'s channels
//!   never meet another group's until the group max. Each group's `f` channels go
//!   conv1 -> rb1 -> (running max into skip2, pool1 into its channel range of the next
//!   level), and the next group reuses the buffer: at 128³ the widest full-resolution
//!   tensor of the encoder is 8 channels instead of 32.
//! - **Residual blocks need one scratch tensor**, `t` (conv1's output; rb7 uses `stream`):
//!   `x += conv2(relu(IN2(conv1(relu(IN1(x))))))` is conv1 x -> t, conv2 t -> x
//!   (accumulated in place), each conv normalizing its input as it reads it
//!   (`Conv3d::run_normalized`: no normalized tensor is written). The deeper encoder
//!   blocks also run group by group, so `t` holds one group. (With a separate norm pass
//!   into a second scratch tensor, the pass cost about what the fused normalization costs
//!   now, and the tensor 62 MB of peak RSS.)
//! - **No upsampled tensors, no concatenation buffers.** Each decoder step,
//!   `conv1x1(concat(up(x), skip, cascade))`, is one fused layer
//!   (`Deconv3d::fused_pointwise`): the 1x1 weights of the upsampled channels are
//!   multiplied into the deconvolution's, and the skip and cascade parts are read where
//!   they are. At 128³ the separate layers wrote and read back 16 channels at full
//!   resolution; fused, the decoder steps took 0.72x their time (8 alternating pairs
//!   of `brats-seg profile`, 26 ms per pass).
//! - **The group max is folded into the encoder blocks' last conv.** Each part's conv2
//!   writes its output and, in the same epilogue, copies it (first group) or takes the
//!   maximum with it (the others) into the skip (the max output of
//!   `Conv3d::run_normalized`): no pass that reads a block's whole output again (the
//!   separate pass at 128³ read 268 MB).
//! - **Only the group-maxed skips are kept** (4x smaller than the encoder outputs).
//! - **Tensors whose lifetimes end before a larger one starts share its buffer.** The
//!   full-resolution decoder block rb7 is the peak (x7 and its scratch, 16 channels each
//!   at 128³, and skip2, 8 channels, in a slot of its own that later receives the logits
//!   for an observer). `stream` holds one encoder group at full resolution and behind it
//!   level 2 (x2, x6); x7 is made from x6 and skip2, so it goes to `t` (the scratch of
//!   every earlier block) and rb7 takes `stream` as its scratch. skip1 lives in the upper
//!   part of `t`, behind everything `t` holds while skip1 is alive (`Offsets`).
//! - **Halos only where a conv reads its input unstaged**: the input and the encoder
//!   tensors the strided convs read (each group's conv1/rb1 output, x2, x3). Every other
//!   conv input is staged by the conv itself (input norm) or needs no padding (1x1,
//!   deconv), so x4 to x7 have none.
//!   A halo is zeroed whenever its region was written over by another layout (`Slot`),
//!   which with halos everywhere cost 65 ms per 128³ pass (16 channels at 128³ alone
//!   12 ms); now about 10 ms, zeroed on both threads.
//! - Slots are plain heap memory. Asking for transparent huge pages on them (anonymous maps
//!   with `MADV_HUGEPAGE`) gave 465 MB of huge pages but no measurable speed-up, and
//!   94 MB more peak RSS (copies while slots grow), so it is not done.
//!
//! Weights are repacked at load into the kernels' per-ISA layout (see
//! `brats_kernels::conv`); the mapped file is only read while packing.

use crate::observe::{LayerEvent, LayerKind, Observer};
use crate::weights::table::{
    self, Block, Net, Pointwise as Pw, Pool, Up, CLASSES, GROUPS, IN_CHANNELS,
};
use crate::weights::{OpenOptions, WeightFile, WeightSet, WeightSource};
use crate::workspace::Slot;
use brats_kernels::conv::{Conv3d, ConvSpec, Epilogue, InputNorm, Vectorize};
use brats_kernels::deconv::Deconv3d;
use brats_kernels::norm::{self, ChannelStats};
use brats_kernels::{elementwise, Isa, Layout, View, ViewMut};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// InstanceNorm epsilon of the original model (MXNet's default).
pub const EPS: f64 = 1e-3;

/// Input sides must be multiples of this (three stride-2 levels below a 4x pooled input).
pub const SIDE_MULTIPLE: usize = 32;

/// Why a model could not be built or run.
#[derive(Debug)]
pub struct GraphError(String);

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for GraphError {}

impl From<brats_kernels::Error> for GraphError {
    fn from(e: brats_kernels::Error) -> Self {
        GraphError(format!("kernel: {e}"))
    }
}
impl From<crate::weights::WeightError> for GraphError {
    fn from(e: crate::weights::WeightError) -> Self {
        GraphError(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, GraphError>;

struct NormParams {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// One group's share of a residual block (the whole block when it has one group).
struct ResPart {
    norm1: NormParams,
    conv1: Conv3d,
    norm2: NormParams,
    conv2: Conv3d,
}

struct ResBlock {
    name: String,
    channels: usize,
    parts: Vec<ResPart>,
}

/// A decoder step, `conv1x1(concat(up(x), skip[, cascade]))`, as one fused layer
/// (`Deconv3d::fused_pointwise`): the upsampled tensor is never written.
struct UpStep {
    /// `net.upN+cM`.
    name: String,
    /// `net.upN` and `net.cM`: the observer's names of the two layers' outputs.
    taps: (String, String),
    fused: Deconv3d,
    /// The plain deconvolution, run only for an observer of the intermediates.
    up: Deconv3d,
}

/// One U-Net of the cascade.
struct UNet {
    net: Net,
    f: usize,
    conv1: Vec<Conv3d>,
    rb1: ResBlock,
    pool1: Vec<Conv3d>,
    rb2: ResBlock,
    pool2: Conv3d,
    rb3: ResBlock,
    pool3: Conv3d,
    rb4: ResBlock,
    up4c0: UpStep,
    rb5: ResBlock,
    up3c1: UpStep,
    rb6: ResBlock,
    up2c2: UpStep,
    rb7: ResBlock,
    fconv3: Conv3d,
}

/// The loaded cascade.
pub struct Model {
    isa: Isa,
    nets: [UNet; 3],
    work: Mutex<Workspace>,
}

fn check_len(name: &str, data: &[f32], want: usize) -> Result<()> {
    if data.len() != want {
        return Err(GraphError(format!(
            "tensor '{name}' has {} values, expected {want}",
            data.len()
        )));
    }
    Ok(())
}

/// Splits a grouped conv into one ungrouped conv per group (MXNet's weight rows of group
/// `g` are contiguous).
fn conv_per_group(
    isa: Isa,
    src: &dyn WeightSource,
    layer: &table::Layer,
    spec: ConvSpec,
) -> Result<Vec<Conv3d>> {
    let (w, b) = (src.tensor(&layer.weight())?, src.tensor(&layer.bias())?);
    check_len(&layer.weight(), w, spec.weight_len())?;
    check_len(&layer.bias(), b, spec.cout)?;
    let g = spec.groups;
    let part = ConvSpec {
        cin: spec.cin / g,
        cout: spec.cout / g,
        groups: 1,
        ..spec
    };
    let per = part.weight_len();
    (0..g)
        .map(|i| {
            Conv3d::new(
                isa,
                part,
                &w[i * per..(i + 1) * per],
                Some(&b[i * part.cout..(i + 1) * part.cout]),
            )
            .map_err(GraphError::from)
        })
        .collect()
}

fn conv_whole(
    isa: Isa,
    src: &dyn WeightSource,
    layer: &table::Layer,
    spec: ConvSpec,
) -> Result<Conv3d> {
    let (w, b) = (src.tensor(&layer.weight())?, src.tensor(&layer.bias())?);
    check_len(&layer.weight(), w, spec.weight_len())?;
    check_len(&layer.bias(), b, spec.cout)?;
    Ok(Conv3d::new(isa, spec, w, Some(b))?)
}

fn norm_params(
    src: &dyn WeightSource,
    layer: &table::Layer,
    c: usize,
    range: std::ops::Range<usize>,
) -> Result<NormParams> {
    let (g, b) = (src.tensor(&layer.gamma())?, src.tensor(&layer.beta())?);
    check_len(&layer.gamma(), g, c)?;
    check_len(&layer.beta(), b, c)?;
    Ok(NormParams {
        gamma: g[range.clone()].to_vec(),
        beta: b[range].to_vec(),
    })
}

fn res_block(isa: Isa, src: &dyn WeightSource, net: Net, block: Block) -> Result<ResBlock> {
    let c = block.channels(net);
    let groups = block.groups();
    let spec = ConvSpec {
        cin: c,
        cout: c,
        groups,
        kernel: 3,
        stride: 1,
    };
    let conv1 = conv_per_group(isa, src, &table::rb_conv1(net, block), spec)?;
    let conv2 = conv_per_group(isa, src, &table::rb_conv2(net, block), spec)?;
    let cg = c / groups;
    let parts = conv1
        .into_iter()
        .zip(conv2)
        .enumerate()
        .map(|(g, (conv1, conv2))| {
            // The residual blocks' convs stage their input: the Winograd kernel where
            // it fits (`brats_kernels::conv::Vectorize::Winograd`).
            let (conv1, conv2) = (
                conv1.with_vectorize(Vectorize::Winograd),
                conv2.with_vectorize(Vectorize::Winograd),
            );
            Ok(ResPart {
                norm1: norm_params(src, &table::rb_norm1(net, block), c, g * cg..(g + 1) * cg)?,
                conv1,
                norm2: norm_params(src, &table::rb_norm2(net, block), c, g * cg..(g + 1) * cg)?,
                conv2,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ResBlock {
        name: format!("{}.{}", net.name(), block.name()),
        channels: c,
        parts,
    })
}

/// The decoder step `up` then `which` (a 1x1 conv over `concat(up, parts of extra
/// channels)` to `cout`), fused; `names` are the two layers' (`upN`, `cM`).
#[allow(clippy::too_many_arguments)]
fn up_step(
    isa: Isa,
    src: &dyn WeightSource,
    net: Net,
    (up, which): (Up, Pw),
    (up_name, pw_name): (&str, &str),
    cin: usize,
    cup: usize,
    extra: &[usize],
    cout: usize,
) -> Result<UpStep> {
    let layer = table::up(net, up);
    let up_w = src.tensor(&layer.weight())?;
    check_len(&layer.weight(), up_w, cin * cup * 8)?;
    let plain = Deconv3d::new(isa, cin, cup, up_w)?;
    let pw = table::pointwise(net, which);
    let k = cup + extra.iter().sum::<usize>();
    let (w, b) = (src.tensor(&pw.weight())?, src.tensor(&pw.bias())?);
    check_len(&pw.weight(), w, cout * k)?;
    check_len(&pw.bias(), b, cout)?;
    let fused = Deconv3d::fused_pointwise(isa, (cin, cup, up_w), extra, w, b)?;
    let net = net.name();
    Ok(UpStep {
        name: format!("{net}.{up_name}+{pw_name}"),
        taps: (format!("{net}.{up_name}"), format!("{net}.{pw_name}")),
        fused,
        up: plain,
    })
}

impl UNet {
    fn load(isa: Isa, src: &dyn WeightSource, net: Net) -> Result<UNet> {
        let f = net.width();
        let (s0, s1) = net.stack_channels();
        // The channels of the 1x1 convs' parts after the upsampled one: the skip, and the
        // cascade input where there is one.
        let extra = |skip: usize, stack: usize| {
            if stack > 0 {
                vec![skip, stack]
            } else {
                vec![skip]
            }
        };
        let step = |layers, names, (cin, cup), extra: &[usize], cout| {
            up_step(isa, src, net, layers, names, cin, cup, extra, cout)
        };
        let s3 = |cin, cout, groups, stride| ConvSpec {
            cin,
            cout,
            groups,
            kernel: 3,
            stride,
        };
        Ok(UNet {
            net,
            f,
            conv1: conv_per_group(
                isa,
                src,
                &table::conv1(net),
                s3(IN_CHANNELS, 4 * f, GROUPS, 1),
            )?,
            rb1: res_block(isa, src, net, Block::Rb1)?,
            pool1: conv_per_group(
                isa,
                src,
                &table::pool(net, Pool::Pool1),
                s3(4 * f, 8 * f, GROUPS, 2),
            )?,
            rb2: res_block(isa, src, net, Block::Rb2)?,
            pool2: conv_whole(
                isa,
                src,
                &table::pool(net, Pool::Pool2),
                s3(8 * f, 16 * f, GROUPS, 2),
            )?,
            rb3: res_block(isa, src, net, Block::Rb3)?,
            pool3: conv_whole(
                isa,
                src,
                &table::pool(net, Pool::Pool3),
                s3(16 * f, 32 * f, GROUPS, 2),
            )?,
            rb4: res_block(isa, src, net, Block::Rb4)?,
            // MODEL.md: upN (deconv cin -> cup), then cM (1x1 over concat(upN, extra) -> cout).
            up4c0: step(
                (Up::Up4, Pw::C0),
                ("up4", "c0"),
                (8 * f, 8 * f),
                &extra(4 * f, s0),
                8 * f,
            )?,
            rb5: res_block(isa, src, net, Block::Rb5)?,
            up3c1: step(
                (Up::Up3, Pw::C1),
                ("up3", "c1"),
                (8 * f, 4 * f),
                &extra(2 * f, s1),
                4 * f,
            )?,
            rb6: res_block(isa, src, net, Block::Rb6)?,
            up2c2: step(
                (Up::Up2, Pw::C2),
                ("up2", "c2"),
                (4 * f, 2 * f),
                &[f],
                2 * f,
            )?,
            rb7: res_block(isa, src, net, Block::Rb7)?,
            fconv3: conv_whole(
                isa,
                src,
                &table::pointwise(net, Pw::Logits),
                ConvSpec {
                    cin: 2 * f,
                    cout: CLASSES,
                    groups: 1,
                    kernel: 1,
                    stride: 1,
                },
            )?,
        })
    }
}

/// The cascade's inputs and outputs between nets.
#[derive(Default)]
struct Inputs {
    full: Slot,
    half: Slot,
    quarter: Slot,
    softmax32: Slot,
    softmax64: Slot,
}

/// One U-Net's working buffers (shared by the three nets, sized for the largest).
#[derive(Default)]
struct Work {
    /// Level 1: one encoder group (conv1 -> rb1) at offset 0 and, at
    /// [`Offsets::level2`], level 2 (x2 in the encoder, x6 in the decoder); then rb7's
    /// scratch from offset 0 over both (see the module note).
    stream: Slot,
    /// Level 3: x3, then x5.
    level3: Slot,
    skip0: Slot,
    /// Level 4: x4, and its group max.
    level4: Slot,
    bottom: Slot,
    /// The group max of rb1 (until up2+c2 reads it), then the logits for an observer.
    skip2: Slot,
    /// Residual-block scratch (rb1 to rb6) at offset 0, then x7; and skip1 at
    /// [`Offsets::skip1`], above every use of `t` while skip1 is alive.
    t: Slot,
    /// Where the shared tensors start, for the current input size.
    off: Offsets,
}

/// Where the tensors that share a slot with a larger later one start.
#[derive(Clone, Copy, Default)]
struct Offsets {
    /// Level 2 in `stream`, after the largest level-1 encoder group.
    level2: usize,
    /// skip1 in `t`, after everything `t` holds while skip1 is alive (rb2 to rb5 scratch;
    /// rb2 writes skip1 while its scratch holds one group).
    skip1: usize,
}

impl Offsets {
    fn for_input(dims: [usize; 3]) -> Offsets {
        let (mut level2, mut skip1) = (0, 0);
        for net in Net::ALL {
            let f = net.width();
            let ds = net.downsample();
            let lvl = |k: usize, c: usize| {
                Layout::new(
                    c,
                    (dims[0] / ds) >> k,
                    (dims[1] / ds) >> k,
                    (dims[2] / ds) >> k,
                    1,
                )
                .buffer_len()
            };
            level2 = level2.max(lvl(0, f));
            for l in [lvl(1, 2 * f), lvl(2, 4 * f), lvl(3, 8 * f), lvl(2, 8 * f)] {
                skip1 = skip1.max(l);
            }
        }
        Offsets { level2, skip1 }
    }
}

#[derive(Default)]
struct Workspace {
    inputs: Inputs,
    work: Work,
}

impl Workspace {
    fn bytes(&self) -> usize {
        let i = &self.inputs;
        let w = &self.work;
        [
            &i.full,
            &i.half,
            &i.quarter,
            &i.softmax32,
            &i.softmax64,
            &w.stream,
            &w.level3,
            &w.skip0,
            &w.level4,
            &w.bottom,
            &w.skip2,
            &w.t,
        ]
        .iter()
        .map(|s| s.bytes())
        .sum()
    }
}

/// Times layers and forwards tensors to an optional observer.
struct Recorder<'a> {
    observer: Option<&'a mut dyn Observer>,
    start: Instant,
}

impl Recorder<'_> {
    fn layer<R>(
        &mut self,
        name: &dyn Fn() -> String,
        kind: LayerKind,
        out: Layout,
        flops: u64,
        bytes: u64,
        f: impl FnOnce() -> R,
    ) -> R {
        let Some(obs) = self.observer.as_deref_mut() else {
            return f();
        };
        let t = Instant::now();
        let r = f();
        let duration = t.elapsed();
        obs.layer(&LayerEvent {
            name: name(),
            kind,
            shape: [out.c, out.d, out.h, out.w],
            flops,
            bytes,
            start: t - self.start,
            duration,
        });
        r
    }

    /// [`Recorder::layer`] for a convolution writing `out`: its kind and FLOPs, and
    /// `bytes` of activations moved plus its weights.
    fn conv<R>(
        &mut self,
        name: &dyn Fn() -> String,
        conv: &Conv3d,
        out: Layout,
        bytes: u64,
        f: impl FnOnce() -> R,
    ) -> R {
        let s = conv.spec();
        let bytes = bytes + (s.weight_len() * 4) as u64;
        self.layer(name, conv_event(conv), out, s.flops(out.voxels()), bytes, f)
    }

    fn wants_tensors(&self) -> bool {
        self.observer.as_ref().is_some_and(|o| o.wants_tensors())
    }

    fn tensor(&mut self, name: &dyn Fn() -> String, c0: usize, view: &View) {
        if let Some(obs) = self.observer.as_deref_mut() {
            if obs.wants_tensors() {
                obs.tensor(&name(), c0, view);
            }
        }
    }
}

fn bytes_of(layouts: &[Layout]) -> u64 {
    layouts.iter().map(|l| (l.c * l.voxels() * 4) as u64).sum()
}

fn conv_event(conv: &Conv3d) -> LayerKind {
    let s = conv.spec();
    match (s.kernel, s.stride) {
        (1, _) => LayerKind::Conv1x1,
        (_, 2) => LayerKind::StridedConv,
        _ => LayerKind::Conv3x3,
    }
}

fn run_conv(
    rec: &mut Recorder,
    name: &dyn Fn() -> String,
    conv: &Conv3d,
    input: &View,
    output: &mut ViewMut,
    epi: Epilogue,
) -> Result<()> {
    run_conv_inner(
        rec,
        name,
        conv,
        std::slice::from_ref(input),
        output,
        epi,
        false,
    )?;
    Ok(())
}

/// Runs a conv that feeds an instance norm: also returns its output's channel statistics
/// (accumulated in the conv's epilogue).
fn run_conv_stats(
    rec: &mut Recorder,
    name: &dyn Fn() -> String,
    conv: &Conv3d,
    inputs: &[View],
    output: &mut ViewMut,
) -> Result<Vec<ChannelStats>> {
    Ok(run_conv_inner(rec, name, conv, inputs, output, Epilogue::Store, true)?.unwrap_or_default())
}

fn run_conv_inner(
    rec: &mut Recorder,
    name: &dyn Fn() -> String,
    conv: &Conv3d,
    inputs: &[View],
    output: &mut ViewMut,
    epi: Epilogue,
    stats: bool,
) -> Result<Option<Vec<ChannelStats>>> {
    let ol = output.view_layout();
    let layouts: Vec<Layout> = inputs.iter().map(|v| v.view_layout()).chain([ol]).collect();
    let bytes = bytes_of(&layouts)
        + if epi == Epilogue::Accumulate {
            bytes_of(&[ol])
        } else {
            0
        };
    let r = rec.conv(name, conv, ol, bytes, || {
        if stats {
            conv.run_concat_with_stats(inputs, output, epi).map(Some)
        } else {
            conv.run_concat(inputs, output, epi).map(|()| None)
        }
    })?;
    Ok(r)
}

/// `x += conv2(relu(IN2(conv1(relu(IN1(x))))))` for one part (a group's channels or all);
/// with `skip = Some((at, first))` conv2 also folds the new `x` into the group max at `at`.
/// Each conv applies its norm and ReLU to its input as it reads it
/// (`Conv3d::run_normalized`): conv1 reads `x` into `t`, conv2 reads `t` and accumulates
/// into `x`. (The arguments are the block's tensors and scratch; bundling them would only
/// move the borrows of the workspace slots into a struct.)
fn residual_part(
    rec: &mut Recorder,
    name: &str,
    part: &ResPart,
    x: &mut ViewMut,
    x_stats: &[ChannelStats],
    t: &mut Slot,
    skip: Option<(SkipAt, bool)>,
) -> Result<()> {
    let xl = x.view_layout();
    let plain = xl.with(xl.c, 0);
    let affine1 = norm::affine(x_stats, &part.norm1.gamma, &part.norm1.beta, EPS)?;
    let norm1 = InputNorm {
        affine: &affine1,
        relu: true,
    };
    let t_stats = rec.conv(
        &|| format!("{name}.conv1"),
        &part.conv1,
        plain,
        bytes_of(&[xl, xl]),
        || {
            part.conv1
                .run_normalized_with_stats(&x.as_view(), norm1, &mut t.get(plain))
        },
    )?;
    let affine2 = norm::affine(&t_stats, &part.norm2.gamma, &part.norm2.beta, EPS)?;
    let norm2 = InputNorm {
        affine: &affine2,
        relu: true,
    };
    let max_layout = plain;
    // conv2's input, the residual read and write, and the max tensor's read (after the
    // first part) and write.
    let bytes = bytes_of(&[xl, xl, xl])
        + match skip {
            Some((_, true)) => bytes_of(&[xl]),
            Some((_, false)) => bytes_of(&[xl, xl]),
            None => 0,
        };
    let mut run = |input: &View, max: Option<(&mut ViewMut, bool)>| {
        rec.conv(
            &|| format!("{name}.conv2"),
            &part.conv2,
            plain,
            bytes,
            || {
                part.conv2
                    .run_normalized(input, norm2, x, Epilogue::Accumulate, max)
            },
        )
    };
    match skip {
        None => run(&t.view(), None)?,
        Some((SkipAt::T(offset), first)) => {
            let (input, mut max) = t.read_write(0, offset, max_layout);
            run(&input, Some((&mut max, first)))?
        }
        Some((SkipAt::Own(slot), first)) => {
            run(&t.view(), Some((&mut slot.get(max_layout), first)))?
        }
    }
    Ok(())
}

/// Where an encoder block's group max (a skip, or the bottom) goes. Each part's conv2
/// folds itself in, in the epilogue instead of a pass over the block's output: a copy for
/// the block's first part, the maximum for the others.
enum SkipAt<'a> {
    /// In `t` at this offset (skip1).
    T(usize),
    /// At offset 0 of a slot of its own.
    Own(&'a mut Slot),
}

impl SkipAt<'_> {
    /// The same place, borrowed for one part.
    fn reborrow(&mut self) -> SkipAt<'_> {
        match self {
            SkipAt::T(offset) => SkipAt::T(*offset),
            SkipAt::Own(slot) => SkipAt::Own(slot),
        }
    }
}

/// A whole residual block on `x`, group by group.
#[allow(clippy::too_many_arguments)]
fn residual_block(
    rec: &mut Recorder,
    rb: &ResBlock,
    x: &mut ViewMut,
    x_stats: &[ChannelStats],
    t: &mut Slot,
    mut max: Option<SkipAt>,
) -> Result<()> {
    let cg = rb.channels / rb.parts.len();
    if max.is_some() && rb.parts.len() != GROUPS {
        return Err(GraphError(format!(
            "{}: the group max needs the block in {GROUPS} parts, it has {}",
            rb.name,
            rb.parts.len()
        )));
    }
    for (g, part) in rb.parts.iter().enumerate() {
        residual_part(
            rec,
            &rb.name,
            part,
            &mut x.channels_mut(g * cg, cg)?,
            &x_stats[g * cg..(g + 1) * cg],
            t,
            max.as_mut().map(|at| (at.reborrow(), g == 0)),
        )?;
    }
    Ok(())
}

impl UpStep {
    /// Runs the fused step on `x` (low resolution) and the `extra` parts into `out`, and
    /// returns `out`'s statistics. An observer of the intermediates gets `out` and the
    /// upsampled tensor, made by the plain deconvolution into a buffer of its own (the
    /// fused pass never writes it).
    fn run(
        &self,
        rec: &mut Recorder,
        x: &View,
        extra: &[View],
        out: &mut ViewMut,
    ) -> Result<Vec<ChannelStats>> {
        let ol = out.view_layout();
        let (xl, parts) = (x.view_layout(), extra.iter().map(|v| v.view_layout()));
        let layouts: Vec<Layout> = [xl, ol].into_iter().chain(parts).collect();
        let (cin, cout) = self.fused.channels();
        let k_extra: usize = extra.iter().map(|v| v.view_layout().c).sum();
        let bytes = bytes_of(&layouts) + 4 * (cin * cout * 8 + cout * k_extra) as u64;
        let stats = rec.layer(
            &|| self.name.clone(),
            LayerKind::Deconv,
            ol,
            self.fused.flops(xl.voxels()),
            bytes,
            || self.fused.run_fused_with_stats(x, extra, out),
        )?;
        if rec.wants_tensors() {
            let mut up = brats_kernels::Tensor::zeros(ol.with(self.up.channels().1, 0));
            self.up.run(x, &mut up.view_mut())?;
            rec.tensor(&|| self.taps.0.clone(), 0, &up.view());
            rec.tensor(&|| self.taps.1.clone(), 0, &out.as_view());
        }
        Ok(stats)
    }
}

impl UNet {
    /// Runs this U-Net on `input` (4 channels, zero halo, sides divisible by 8) and writes
    /// its softmax into `probabilities`. (The arguments are the net's inputs, outputs and
    /// workspace; a struct for them would only move the borrows.)
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        rec: &mut Recorder,
        isa: Isa,
        input: &View,
        stack0: Option<&View>,
        stack1: Option<&View>,
        w: &mut Work,
        probabilities: &mut ViewMut,
    ) -> Result<()> {
        let off = w.off;
        let il = input.view_layout();
        let (d, h, wd) = (il.d, il.h, il.w);
        let lvl = |k: usize, c: usize, halo: usize| Layout::new(c, d >> k, h >> k, wd >> k, halo);
        let f = self.f;
        let net = self.net.name();

        // Encoder level 1, group by group (see the module note).
        let mut x2_stats = Vec::with_capacity(8 * f);
        for g in 0..GROUPS {
            let mut xg = w.stream.get(lvl(0, f, 1));
            let xg_stats = run_conv_stats(
                rec,
                &|| format!("{net}.conv1"),
                &self.conv1[g],
                &[input.channels(g, 1)?],
                &mut xg,
            )?;
            rec.tensor(&|| format!("{net}.conv1"), g * f, &xg.as_view());
            // skip2 = the running max of the groups' rb1 outputs, folded in by conv2.
            residual_part(
                rec,
                &self.rb1.name,
                &self.rb1.parts[g],
                &mut xg,
                &xg_stats,
                &mut w.t,
                Some((SkipAt::Own(&mut w.skip2), g == 0)),
            )?;
            let xv = w.stream.view();
            rec.tensor(&|| format!("{net}.rb1"), g * f, &xv);
            let (xv, mut x2) = w.stream.read_write(0, off.level2, lvl(1, 8 * f, 1));
            x2_stats.extend(run_conv_stats(
                rec,
                &|| format!("{net}.pool1"),
                &self.pool1[g],
                &[xv],
                &mut x2.channels_mut(2 * f * g, 2 * f)?,
            )?);
        }
        rec.tensor(&|| format!("{net}.skip2"), 0, &w.skip2.view());

        // Levels 2 to 4.
        residual_block(
            rec,
            &self.rb2,
            &mut w.stream.get_at(off.level2, lvl(1, 8 * f, 1)),
            &x2_stats,
            &mut w.t,
            Some(SkipAt::T(off.skip1)),
        )?;
        let x3_stats = run_conv_stats(
            rec,
            &|| format!("{net}.pool2"),
            &self.pool2,
            &[w.stream.view_at(off.level2)],
            &mut w.level3.get(lvl(2, 16 * f, 1)),
        )?;
        residual_block(
            rec,
            &self.rb3,
            &mut w.level3.get(lvl(2, 16 * f, 1)),
            &x3_stats,
            &mut w.t,
            Some(SkipAt::Own(&mut w.skip0)),
        )?;
        let x4_stats = run_conv_stats(
            rec,
            &|| format!("{net}.pool3"),
            &self.pool3,
            &[w.level3.view()],
            &mut w.level4.get(lvl(3, 32 * f, 0)),
        )?;
        residual_block(
            rec,
            &self.rb4,
            &mut w.level4.get(lvl(3, 32 * f, 0)),
            &x4_stats,
            &mut w.t,
            Some(SkipAt::Own(&mut w.bottom)),
        )?;

        // Decoder.
        let x5_stats = {
            let mut extra = vec![w.skip0.view()];
            extra.extend(stack0.copied());
            let x = w.bottom.view();
            self.up4c0
                .run(rec, &x, &extra, &mut w.level3.get(lvl(2, 8 * f, 0)))?
        };
        residual_block(
            rec,
            &self.rb5,
            &mut w.level3.get(lvl(2, 8 * f, 0)),
            &x5_stats,
            &mut w.t,
            None,
        )?;
        let x6_stats = {
            let mut extra = vec![w.t.view_at(off.skip1)];
            extra.extend(stack1.copied());
            self.up3c1.run(
                rec,
                &w.level3.view(),
                &extra,
                &mut w.stream.get_at(off.level2, lvl(1, 4 * f, 0)),
            )?
        };
        residual_block(
            rec,
            &self.rb6,
            &mut w.stream.get_at(off.level2, lvl(1, 4 * f, 0)),
            &x6_stats,
            &mut w.t,
            None,
        )?;
        // x7 goes to `t` (x6, which it reads, is in `stream` under x7's place there),
        // and rb7 takes `stream` as its scratch.
        let x7_stats = self.up2c2.run(
            rec,
            &w.stream.view_at(off.level2),
            &[w.skip2.view()],
            &mut w.t.get(lvl(0, 2 * f, 0)),
        )?;
        residual_block(
            rec,
            &self.rb7,
            &mut w.t.get(lvl(0, 2 * f, 0)),
            &x7_stats,
            &mut w.stream,
            None,
        )?;
        rec.tensor(&|| format!("{net}.rb7"), 0, &w.t.view());
        let logits = lvl(0, CLASSES, 0);
        if rec.wants_tensors() {
            // An observer that reads the intermediates gets the logits too: conv, then
            // the softmax (bit-identical to the fused pass below, which a test checks).
            run_conv(
                rec,
                &|| format!("{net}.fconv3"),
                &self.fconv3,
                &w.t.view(),
                &mut w.skip2.get(logits),
                Epilogue::Store,
            )?;
            rec.tensor(&|| format!("{net}.logits"), 0, &w.skip2.view());
            let ol = probabilities.view_layout();
            rec.layer(
                &|| format!("{net}.softmax"),
                LayerKind::Softmax,
                ol,
                0,
                bytes_of(&[ol, ol]),
                || elementwise::softmax(isa, &w.skip2.view(), probabilities),
            )?;
        } else {
            // The logits never leave the registers: the last conv stores the softmax.
            let input = w.t.view();
            let bytes = bytes_of(&[input.view_layout(), logits]);
            rec.conv(
                &|| format!("{net}.fconv3+softmax"),
                &self.fconv3,
                logits,
                bytes,
                || self.fconv3.run_softmax(&input, probabilities),
            )?;
        }
        Ok(())
    }

    /// FLOPs of convolutions and deconvolutions for an input of `dims`.
    fn flops(&self, dims: [usize; 3]) -> u64 {
        let vox = |k: usize| (dims[0] >> k) * (dims[1] >> k) * (dims[2] >> k);
        let convs = |v: &[Conv3d], k: usize| v.iter().map(|c| c.spec().flops(vox(k))).sum::<u64>();
        let rb = |b: &ResBlock, k: usize| {
            b.parts
                .iter()
                .map(|p| p.conv1.spec().flops(vox(k)) + p.conv2.spec().flops(vox(k)))
                .sum::<u64>()
        };
        let up = |u: &UpStep, k: usize| u.fused.flops(vox(k));
        convs(&self.conv1, 0)
            + rb(&self.rb1, 0)
            + convs(&self.pool1, 1)
            + rb(&self.rb2, 1)
            + self.pool2.spec().flops(vox(2))
            + rb(&self.rb3, 2)
            + self.pool3.spec().flops(vox(3))
            + rb(&self.rb4, 3)
            + up(&self.up4c0, 3)
            + rb(&self.rb5, 2)
            + up(&self.up3c1, 2)
            + rb(&self.rb6, 1)
            + up(&self.up2c2, 1)
            + rb(&self.rb7, 0)
            + self.fconv3.spec().flops(vox(0))
    }
}

impl Model {
    /// Maps and validates an engine weight file (structure, checksums, topology), then
    /// packs the weights for the active instruction set.
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// As [`Model::open`] with explicit checks (checksum verification can be skipped).
    pub fn open_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Model> {
        let file = WeightFile::open_with(path.as_ref(), opts)?;
        Self::from_source(Isa::active(), &file)
    }

    /// The model with the seeded synthetic weights of `tools/reference` (labels are
    /// meaningless; for tests, benchmarks and demos).
    pub fn synthetic(seed: u64) -> Result<Model> {
        Self::from_source(Isa::active(), &WeightSet::synthetic(seed))
    }

    /// Builds the model from any weight source (tensors in MXNet layout, looked up by
    /// their original names) for the given instruction set.
    pub fn from_source(isa: Isa, src: &dyn WeightSource) -> Result<Model> {
        Ok(Model {
            isa,
            nets: [
                UNet::load(isa, src, Net::Net32)?,
                UNet::load(isa, src, Net::Net64)?,
                UNet::load(isa, src, Net::Net128)?,
            ],
            work: Mutex::new(Workspace::default()),
        })
    }

    /// The instruction set the kernels run with.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// FLOPs (2 x MAC) of the convolutions and deconvolutions of one forward pass.
    pub fn flops(&self, dims: [usize; 3]) -> u64 {
        let [d, h, w] = dims;
        self.nets
            .iter()
            .map(|u| {
                u.flops([
                    d / u.net.downsample(),
                    h / u.net.downsample(),
                    w / u.net.downsample(),
                ])
            })
            .sum()
    }

    /// Bytes held by the activation buffers (after a forward pass).
    pub fn workspace_bytes(&self) -> usize {
        self.work.lock().map(|w| w.bytes()).unwrap_or(0)
    }

    /// Checks `[d, h, w]` and the input length for a `[1, 4, d, h, w]` input.
    pub fn check_input(input_len: usize, dims: [usize; 3]) -> Result<()> {
        if dims.iter().any(|&s| s == 0 || s % SIDE_MULTIPLE != 0) {
            return Err(GraphError(format!(
                "input size {}x{}x{} is not supported: every side must be a positive multiple of {SIDE_MULTIPLE}",
                dims[0], dims[1], dims[2]
            )));
        }
        let want = dims.iter().try_fold(IN_CHANNELS, |a, &s| a.checked_mul(s));
        if want != Some(input_len) {
            return Err(GraphError(format!(
                "input has {input_len} values, a [1, 4, {}, {}, {}] tensor has {}",
                dims[0],
                dims[1],
                dims[2],
                want.map_or("too many".to_string(), |n| n.to_string())
            )));
        }
        Ok(())
    }

    /// The forward pass: `input` is `[1, 4, d, h, w]` (C order, channels T1, T2, FLAIR,
    /// T1ce), the result the softmax `[1, 4, d, h, w]` (background, necrotic/non-enhancing
    /// core, edema, enhancing).
    pub fn forward(&self, input: &[f32], dims: [usize; 3]) -> Result<Vec<f32>> {
        self.forward_observed(input, dims, None)
    }

    /// [`Model::forward`] into `output`, which is resized to the softmax's length and
    /// keeps its allocation across calls. For repeated passes: a fresh 33 MB result at
    /// 128³ is fresh pages for the kernel to fault in and zero during the last layer.
    pub fn forward_into(
        &self,
        input: &[f32],
        dims: [usize; 3],
        output: &mut Vec<f32>,
    ) -> Result<()> {
        self.forward_observed_into(input, dims, None, output)
    }

    /// [`Model::forward`] reporting layers and intermediate tensors to `observer`.
    pub fn forward_observed(
        &self,
        input: &[f32],
        dims: [usize; 3],
        observer: Option<&mut dyn Observer>,
    ) -> Result<Vec<f32>> {
        let mut output = Vec::new();
        self.forward_observed_into(input, dims, observer, &mut output)?;
        Ok(output)
    }

    /// [`Model::forward_observed`] into `output` ([`Model::forward_into`]).
    pub fn forward_observed_into(
        &self,
        input: &[f32],
        dims: [usize; 3],
        observer: Option<&mut dyn Observer>,
        output: &mut Vec<f32>,
    ) -> Result<()> {
        Self::check_input(input.len(), dims)?;
        let mut guard = self
            .work
            .lock()
            .map_err(|_| GraphError("a previous forward pass panicked".into()))?;
        let Workspace { inputs, work } = &mut *guard;
        let isa = self.isa;
        let mut rec = Recorder {
            observer,
            start: Instant::now(),
        };
        let [d, h, w] = dims;
        let full = Layout::new(IN_CHANNELS, d, h, w, 1);

        rec.layer(
            &|| "input.copy".into(),
            LayerKind::Other,
            full,
            0,
            bytes_of(&[full, full]),
            || inputs.full.get(full).copy_from_dense(input),
        )?;
        let pooled = |k: usize| Layout::new(IN_CHANNELS, d / k, h / k, w / k, 1);
        for (k, slot) in [(2, &mut inputs.half), (4, &mut inputs.quarter)] {
            let out = pooled(k);
            rec.layer(
                &|| format!("input.avgpool{k}"),
                LayerKind::Other,
                out,
                0,
                bytes_of(&[full, out]),
                || elementwise::avg_pool(isa, k, &inputs.full.view(), &mut slot.get(out)),
            )?;
        }

        let [net32, net64, net128] = &self.nets;
        work.off = Offsets::for_input(dims);
        net32.run(
            &mut rec,
            isa,
            &inputs.quarter.view(),
            None,
            None,
            work,
            &mut inputs.softmax32.get(pooled(4).with(CLASSES, 0)),
        )?;
        rec.tensor(&|| "net32.softmax".into(), 0, &inputs.softmax32.view());
        net64.run(
            &mut rec,
            isa,
            &inputs.half.view(),
            None,
            Some(&inputs.softmax32.view()),
            work,
            &mut inputs.softmax64.get(pooled(2).with(CLASSES, 0)),
        )?;
        rec.tensor(&|| "net64.softmax".into(), 0, &inputs.softmax64.view());
        let out_layout = full.with(CLASSES, 0);
        // Every element of the interior is written; the kernels' slack past it only has
        // to exist.
        output.resize(out_layout.buffer_len(), 0.0);
        net128.run(
            &mut rec,
            isa,
            &inputs.full.view(),
            Some(&inputs.softmax32.view()),
            Some(&inputs.softmax64.view()),
            work,
            &mut ViewMut::new(output, out_layout)?,
        )?;
        output.truncate(out_layout.len());
        Ok(())
    }
}
