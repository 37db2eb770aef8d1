//! The parameter table of the cascade: every tensor's name, shape and kind, in the
//! order MXNet lists them, written from the topology in `../shared/MODEL.md`.
//!
//! This is what the forward pass looks tensors up by, so the names come from small
//! helpers ([`conv1`], [`rb_conv1`], [`pool`], [`up`], [`pointwise`], ...) returning a
//! [`Layer`] whose `weight()`/`bias()`/`gamma()`/`beta()` give the full names. The
//! order is MXNet's `list_arguments()` order (a depth-first walk from the output: the
//! net128 encoder, then all of net32 when net128's connection0 reaches it, then net64
//! through connection1); the reference tool checks that MXNet agrees and commits the
//! result as `tools/reference/fixtures/param_table.json`, which a test compares with
//! this table. The order matters only for writing `.params` files that are
//! byte-identical to MXNet's; lookups are by name.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Encoder groups: one per input modality.
pub const GROUPS: usize = 4;
/// Base width F: net128 has width F, net64 2F, net32 4F.
pub const BASE_WIDTH: usize = 8;
/// Input channels (modalities) and output classes.
pub const IN_CHANNELS: usize = 4;
/// Output classes of every U-Net.
pub const CLASSES: usize = 4;
/// Prefix of all named layers in the original model.
pub const PREFIX: &str = "seg_only";
/// Number of parameters tensors in the full model.
pub const PARAM_COUNT: usize = 225;
/// Number of scalar parameters in the full model.
pub const SCALAR_COUNT: usize = 38_192_316;

/// One of the three U-Nets, in build order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Net {
    /// Runs on the input average-pooled by 4.
    Net32,
    /// Runs on the input average-pooled by 2.
    Net64,
    /// Runs on the full-resolution input.
    Net128,
}

impl Net {
    /// The nets in build order (the order MXNet numbered the unnamed convolutions).
    pub const ALL: [Net; 3] = [Net::Net32, Net::Net64, Net::Net128];

    /// `"net32"`, `"net64"` or `"net128"`.
    pub fn name(self) -> &'static str {
        match self {
            Net::Net32 => "net32",
            Net::Net64 => "net64",
            Net::Net128 => "net128",
        }
    }

    /// Width f of this U-Net (32, 16, 8).
    pub fn width(self) -> usize {
        match self {
            Net::Net32 => 4 * BASE_WIDTH,
            Net::Net64 => 2 * BASE_WIDTH,
            Net::Net128 => BASE_WIDTH,
        }
    }

    /// Position in build order (0, 1, 2).
    pub fn build_index(self) -> usize {
        match self {
            Net::Net32 => 0,
            Net::Net64 => 1,
            Net::Net128 => 2,
        }
    }

    /// Average-pooling factor of this net's input (4, 2, 1).
    pub fn downsample(self) -> usize {
        match self {
            Net::Net32 => 4,
            Net::Net64 => 2,
            Net::Net128 => 1,
        }
    }

    /// Extra cascade channels concatenated at (connection0, connection1): softmax
    /// outputs of the earlier nets.
    pub fn stack_channels(self) -> (usize, usize) {
        match self {
            Net::Net32 => (0, 0),
            Net::Net64 => (0, CLASSES),
            Net::Net128 => (CLASSES, CLASSES),
        }
    }

    fn prefix(self) -> String {
        format!("{PREFIX}{}", self.name())
    }
}

/// What a parameter tensor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// Convolution weight `(Cout, Cin/G, k, k, k)`.
    ConvWeight,
    /// Convolution bias `(Cout,)`.
    ConvBias,
    /// Deconvolution (transposed conv) weight `(Cin, Cout, 2, 2, 2)`, no bias.
    DeconvWeight,
    /// InstanceNorm scale `(C,)`.
    NormGamma,
    /// InstanceNorm shift `(C,)`.
    NormBeta,
}

impl ParamKind {
    /// The label used by the reference tool's `param_table.json`.
    pub fn label(self) -> &'static str {
        match self {
            ParamKind::ConvWeight => "conv_weight",
            ParamKind::ConvBias => "conv_bias",
            ParamKind::DeconvWeight => "deconv_weight",
            ParamKind::NormGamma => "norm_gamma",
            ParamKind::NormBeta => "norm_beta",
        }
    }
}

/// One parameter tensor of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Name without the `arg:` prefix, e.g. `seg_onlynet128rb1norm1_gamma`.
    pub name: String,
    /// Shape in MXNet's layout.
    pub shape: Vec<usize>,
    /// What the tensor is.
    pub kind: ParamKind,
    /// `Cin/G * k^3` for convolution weights, `Cin` for deconvolution weights, 0 else
    /// (used by the synthetic-weight scale).
    pub fan_in: usize,
}

impl ParamSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Base name of a layer; `weight()` etc. give its parameter names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layer(String);

impl Layer {
    /// The layer's base name, e.g. `seg_onlynet128pool1`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `<base>_weight`.
    pub fn weight(&self) -> String {
        format!("{}_weight", self.0)
    }
    /// `<base>_bias`.
    pub fn bias(&self) -> String {
        format!("{}_bias", self.0)
    }
    /// `<base>_gamma` (InstanceNorm layers).
    pub fn gamma(&self) -> String {
        format!("{}_gamma", self.0)
    }
    /// `<base>_beta` (InstanceNorm layers).
    pub fn beta(&self) -> String {
        format!("{}_beta", self.0)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A residual block of a U-Net: `Rb1`..`Rb4` in the encoder, `Rb5`..`Rb7` in the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Block {
    Rb1,
    Rb2,
    Rb3,
    Rb4,
    Rb5,
    Rb6,
    Rb7,
}

impl Block {
    /// All blocks in network order.
    pub const ALL: [Block; 7] = [
        Block::Rb1,
        Block::Rb2,
        Block::Rb3,
        Block::Rb4,
        Block::Rb5,
        Block::Rb6,
        Block::Rb7,
    ];

    /// `"rb1"` .. `"rb7"`.
    pub fn name(self) -> &'static str {
        match self {
            Block::Rb1 => "rb1",
            Block::Rb2 => "rb2",
            Block::Rb3 => "rb3",
            Block::Rb4 => "rb4",
            Block::Rb5 => "rb5",
            Block::Rb6 => "rb6",
            Block::Rb7 => "rb7",
        }
    }

    /// Convolution groups inside the block (4 in the encoder, 1 in the decoder).
    pub fn groups(self) -> usize {
        match self {
            Block::Rb1 | Block::Rb2 | Block::Rb3 | Block::Rb4 => GROUPS,
            _ => 1,
        }
    }

    /// Channels of the block in a net of width f: 4f, 8f, 16f, 32f, 8f, 4f, 2f.
    pub fn channels(self, net: Net) -> usize {
        let f = net.width();
        match self {
            Block::Rb1 => 4 * f,
            Block::Rb2 => 8 * f,
            Block::Rb3 => 16 * f,
            Block::Rb4 => 32 * f,
            Block::Rb5 => 8 * f,
            Block::Rb6 => 4 * f,
            Block::Rb7 => 2 * f,
        }
    }
}

/// Strided (downsampling) convolution after rb1, rb2, rb3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pool {
    Pool1,
    Pool2,
    Pool3,
}

/// Transposed convolutions of the decoder: `Up4` (after rb4), `Up3` (after rb5),
/// `Up2` (after rb6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Up {
    Up4,
    Up3,
    Up2,
}

/// The four unnamed 1x1 convolutions of a U-Net.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pointwise {
    /// After concat(up4, skip0 [, stack0]).
    C0,
    /// After concat(up3, skip1 [, stack1]).
    C1,
    /// After concat(up2, skip2).
    C2,
    /// Final logits (fconv3).
    Logits,
}

/// `seg_only<net>conv1sep_conv`: the first grouped 3x3x3 conv, 4 -> 4f.
pub fn conv1(net: Net) -> Layer {
    Layer(format!("{}conv1sep_conv", net.prefix()))
}

/// First 3x3x3 conv of a residual block: `seg_only<net><rb>conv1sep_conv`.
pub fn rb_conv1(net: Net, block: Block) -> Layer {
    Layer(format!("{}{}conv1sep_conv", net.prefix(), block.name()))
}

/// Second 3x3x3 conv of a residual block: `seg_only<net><rb>conv2sep_conv`.
pub fn rb_conv2(net: Net, block: Block) -> Layer {
    Layer(format!("{}{}conv2sep_conv", net.prefix(), block.name()))
}

/// InstanceNorm before the block's first conv: `seg_only<net><rb>norm1`.
pub fn rb_norm1(net: Net, block: Block) -> Layer {
    Layer(format!("{}{}norm1", net.prefix(), block.name()))
}

/// InstanceNorm before the block's second conv: `seg_only<net><rb>norm2`.
pub fn rb_norm2(net: Net, block: Block) -> Layer {
    Layer(format!("{}{}norm2", net.prefix(), block.name()))
}

/// Strided conv: `seg_only<net>pool1` .. `pool3`.
pub fn pool(net: Net, pool: Pool) -> Layer {
    let n = match pool {
        Pool::Pool1 => 1,
        Pool::Pool2 => 2,
        Pool::Pool3 => 3,
    };
    Layer(format!("{}pool{n}", net.prefix()))
}

/// Transposed conv: `seg_only<net>up_conv4_1`, `up_conv3_1`, `up_conv2_1` (weight only).
pub fn up(net: Net, up: Up) -> Layer {
    let n = match up {
        Up::Up4 => 4,
        Up::Up3 => 3,
        Up::Up2 => 2,
    };
    Layer(format!("{}up_conv{n}_1", net.prefix()))
}

/// The unnamed 1x1 convs, numbered by MXNet in build order: `convolution0` ..
/// `convolution11` (net32 0-3, net64 4-7, net128 8-11; C0, C1, C2, logits).
pub fn pointwise(net: Net, which: Pointwise) -> Layer {
    let k = match which {
        Pointwise::C0 => 0,
        Pointwise::C1 => 1,
        Pointwise::C2 => 2,
        Pointwise::Logits => 3,
    };
    Layer(format!("convolution{}", 4 * net.build_index() + k))
}

fn push_conv(
    t: &mut Vec<ParamSpec>,
    layer: Layer,
    cout: usize,
    cin: usize,
    groups: usize,
    k: usize,
) {
    let fan_in = cin / groups * k * k * k;
    t.push(ParamSpec {
        name: layer.weight(),
        shape: vec![cout, cin / groups, k, k, k],
        kind: ParamKind::ConvWeight,
        fan_in,
    });
    t.push(ParamSpec {
        name: layer.bias(),
        shape: vec![cout],
        kind: ParamKind::ConvBias,
        fan_in: 0,
    });
}

fn push_norm(t: &mut Vec<ParamSpec>, layer: Layer, c: usize) {
    t.push(ParamSpec {
        name: layer.gamma(),
        shape: vec![c],
        kind: ParamKind::NormGamma,
        fan_in: 0,
    });
    t.push(ParamSpec {
        name: layer.beta(),
        shape: vec![c],
        kind: ParamKind::NormBeta,
        fan_in: 0,
    });
}

fn push_deconv(t: &mut Vec<ParamSpec>, layer: Layer, cin: usize, cout: usize) {
    t.push(ParamSpec {
        name: layer.weight(),
        shape: vec![cin, cout, 2, 2, 2],
        kind: ParamKind::DeconvWeight,
        fan_in: cin,
    });
}

fn push_block(t: &mut Vec<ParamSpec>, net: Net, block: Block) {
    let c = block.channels(net);
    let g = block.groups();
    push_norm(t, rb_norm1(net, block), c);
    push_conv(t, rb_conv1(net, block), c, c, g, 3);
    push_norm(t, rb_norm2(net, block), c);
    push_conv(t, rb_conv2(net, block), c, c, g, 3);
}

/// Appends one U-Net in MXNet's depth-first order. `before_c0` / `before_c1` are the
/// cascade inputs' own tables, which MXNet visits when it reaches the concat that
/// first uses them.
fn push_net(t: &mut Vec<ParamSpec>, net: Net, before_c0: Option<Net>, before_c1: Option<Net>) {
    let f = net.width();
    let (s0, s1) = net.stack_channels();
    push_conv(t, conv1(net), 4 * f, IN_CHANNELS, GROUPS, 3);
    push_block(t, net, Block::Rb1);
    push_conv(t, pool(net, Pool::Pool1), 8 * f, 4 * f, GROUPS, 3);
    push_block(t, net, Block::Rb2);
    push_conv(t, pool(net, Pool::Pool2), 16 * f, 8 * f, GROUPS, 3);
    push_block(t, net, Block::Rb3);
    push_conv(t, pool(net, Pool::Pool3), 32 * f, 16 * f, GROUPS, 3);
    push_block(t, net, Block::Rb4);
    push_deconv(t, up(net, Up::Up4), 8 * f, 8 * f);
    if let Some(inner) = before_c0 {
        push_net(t, inner, None, None);
    }
    push_conv(
        t,
        pointwise(net, Pointwise::C0),
        8 * f,
        8 * f + 4 * f + s0,
        1,
        1,
    );
    push_block(t, net, Block::Rb5);
    push_deconv(t, up(net, Up::Up3), 8 * f, 4 * f);
    if let Some(inner) = before_c1 {
        push_net(t, inner, None, None);
    }
    push_conv(
        t,
        pointwise(net, Pointwise::C1),
        4 * f,
        4 * f + 2 * f + s1,
        1,
        1,
    );
    push_block(t, net, Block::Rb6);
    push_deconv(t, up(net, Up::Up2), 4 * f, 2 * f);
    push_conv(t, pointwise(net, Pointwise::C2), 2 * f, 2 * f + f, 1, 1);
    push_block(t, net, Block::Rb7);
    push_conv(t, pointwise(net, Pointwise::Logits), CLASSES, 2 * f, 1, 1);
}

/// All 225 parameter tensors of the cascade in MXNet's `list_arguments()` order,
/// from `seg_onlynet128conv1sep_conv_weight` to `convolution11_bias`.
pub fn param_table() -> Vec<ParamSpec> {
    let mut t = Vec::with_capacity(PARAM_COUNT);
    // net32 is reached through net128's connection0, net64 through its connection1
    // (net64's own connection1 then finds net32 already visited).
    push_net(&mut t, Net::Net128, Some(Net::Net32), Some(Net::Net64));
    t
}

/// How a set of named tensors differs from the parameter table. Every list is sorted
/// and complete, so one run shows everything that is wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyMismatch {
    /// Table names with no tensor.
    pub missing: Vec<String>,
    /// Names (as found, with any `arg:`/`aux:` prefix) that the table does not have.
    pub extra: Vec<String>,
    /// Names that occur more than once.
    pub duplicates: Vec<String>,
    /// `(name, expected shape, found shape)`.
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl TopologyMismatch {
    /// `Ok` when nothing differs, else the topology error for the weights at `path`.
    pub fn into_result(self, path: impl Into<std::path::PathBuf>) -> super::Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(super::WeightError::Topology {
                path: path.into(),
                mismatch: self,
            })
        }
    }

    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.duplicates.is_empty()
            && self.misshaped.is_empty()
    }
}

impl fmt::Display for TopologyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut section = |f: &mut fmt::Formatter<'_>, title: &str, items: Vec<String>| {
            if items.is_empty() {
                return Ok(());
            }
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "  {title} ({}):", items.len())?;
            for it in items {
                write!(f, "\n    {it}")?;
            }
            Ok(())
        };
        section(f, "missing", self.missing.clone())?;
        section(f, "extra (not in the model)", self.extra.clone())?;
        section(f, "duplicate", self.duplicates.clone())?;
        let shapes = self
            .misshaped
            .iter()
            .map(|(n, e, g)| format!("{n}: expected {e:?}, found {g:?}"))
            .collect();
        section(f, "wrong shape", shapes)
    }
}

/// Compares `(name, shape)` pairs with the table. `name` must already be stripped of
/// any `arg:` prefix by the caller if it is meant to match; anything not in the table
/// is reported as extra under the name given.
pub fn check_against_table<'a, I>(tensors: I) -> TopologyMismatch
where
    I: IntoIterator<Item = (&'a str, &'a [usize])>,
{
    let table = param_table();
    let expected: BTreeMap<&str, &[usize]> = table
        .iter()
        .map(|p| (p.name.as_str(), p.shape.as_slice()))
        .collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut dup: BTreeSet<String> = BTreeSet::new();
    let mut m = TopologyMismatch::default();
    for (name, shape) in tensors {
        if !seen.insert(name) {
            dup.insert(name.to_string());
            continue;
        }
        match expected.get(name) {
            None => m.extra.push(name.to_string()),
            Some(want) if *want != shape => {
                m.misshaped
                    .push((name.to_string(), want.to_vec(), shape.to_vec()))
            }
            Some(_) => {}
        }
    }
    m.missing = table
        .iter()
        .filter(|p| !seen.contains(p.name.as_str()))
        .map(|p| p.name.clone())
        .collect();
    m.missing.sort();
    m.extra.sort();
    m.misshaped.sort();
    m.duplicates = dup.into_iter().collect();
    m
}
