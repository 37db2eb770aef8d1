"""The parameter table of the brain-tumor-segmentation-0001 cascade, written from
../shared/MODEL.md (not from MXNet), so the float64 reference and the MXNet symbol
are checked against an independent description.

Order: MXNet's `list_arguments()` order for the full symbol (a depth-first
post-order walk from the output), minus `data_crop`. The Rust table
(crates/graph/src/weights/table.rs) uses the same order; the tool dumps this
table to fixtures/param_table.json and asserts MXNet agrees.
"""
from dataclasses import dataclass
from typing import List, Tuple

G = 4  # encoder groups (one per modality)
F = 8  # base width
NETS = {"net32": 4 * F, "net64": 2 * F, "net128": F}
NET_INDEX = {"net32": 0, "net64": 1, "net128": 2}
PREFIX = "seg_only"


@dataclass
class ParamSpec:
    name: str
    shape: Tuple[int, ...]
    kind: str  # conv_weight | conv_bias | deconv_weight | norm_gamma | norm_beta
    fan_in: int  # Cin/G * k^3 for convs, Cin for deconvs, 0 otherwise


def conv(name, cout, cin, groups, k):
    fan = cin // groups * k ** 3
    return [ParamSpec(name + "_weight", (cout, cin // groups, k, k, k), "conv_weight", fan),
            ParamSpec(name + "_bias", (cout,), "conv_bias", 0)]


def norm(name, c):
    return [ParamSpec(name + "_gamma", (c,), "norm_gamma", 0),
            ParamSpec(name + "_beta", (c,), "norm_beta", 0)]


def deconv(name, cin, cout):
    return [ParamSpec(name + "_weight", (cin, cout, 2, 2, 2), "deconv_weight", cin)]


def res_block(net, rb, c, groups):
    p = PREFIX + net + rb
    return (norm(p + "norm1", c) + conv(p + "conv1sep_conv", c, c, groups, 3)
            + norm(p + "norm2", c) + conv(p + "conv2sep_conv", c, c, groups, 3))


def pointwise(net, which):
    return "convolution%d" % (4 * NET_INDEX[net] + which)


def encoder(net):
    f = NETS[net]
    p = PREFIX + net
    out = conv(p + "conv1sep_conv", 4 * f, 4, G, 3)
    out += res_block(net, "rb1", 4 * f, G)
    out += conv(p + "pool1", 8 * f, 4 * f, G, 3)
    out += res_block(net, "rb2", 8 * f, G)
    out += conv(p + "pool2", 16 * f, 8 * f, G, 3)
    out += res_block(net, "rb3", 16 * f, G)
    out += conv(p + "pool3", 32 * f, 16 * f, G, 3)
    out += res_block(net, "rb4", 32 * f, G)
    return out


def net_table(net, stack0, stack1, before_c0=(), before_c1=()):
    """One U-Net in DFS order; before_c0/before_c1 are the cascade inputs' own
    parameters, visited by MXNet when it reaches the concat that uses them."""
    f = NETS[net]
    p = PREFIX + net
    out = encoder(net)
    out += deconv(p + "up_conv4_1", 8 * f, 8 * f)
    out += list(before_c0)
    out += conv(pointwise(net, 0), 8 * f, 8 * f + 4 * f + stack0, 1, 1)
    out += res_block(net, "rb5", 8 * f, 1)
    out += deconv(p + "up_conv3_1", 8 * f, 4 * f)
    out += list(before_c1)
    out += conv(pointwise(net, 1), 4 * f, 4 * f + 2 * f + stack1, 1, 1)
    out += res_block(net, "rb6", 4 * f, 1)
    out += deconv(p + "up_conv2_1", 4 * f, 2 * f)
    out += conv(pointwise(net, 2), 2 * f, 2 * f + f, 1, 1)
    out += res_block(net, "rb7", 2 * f, 1)
    out += conv(pointwise(net, 3), 4, 2 * f, 1, 1)
    return out


def param_table() -> List[ParamSpec]:
    t32 = net_table("net32", 0, 0)
    t64 = net_table("net64", 0, 4, before_c1=())  # net32 is visited inside net128 first
    # MXNet reaches net32 through net128's connection0, and net64 through net128's
    # connection1; net64's own connection1 then finds net32 already visited.
    return net_table("net128", 4, 4, before_c0=t32, before_c1=t64)
