"""The cascade as an MXNet symbol with the original parameter names.

Rebuilt from the structure of the original training code
(lachinov/brats2018-graphlabunn, scripts/segmentation_model.py, joint_model.py),
written anew here: same operators, same explicit names, the same four unnamed 1x1
convolutions per U-Net (MXNet numbers them convolution0..11 in build order), and the
inference output BlockGrad(softmax(net128)). Only the base width differs from the
public config (OMZ's model has F = 8, i.e. filters_number 8 with multiplier 2 and
4 groups; see ../shared/MODEL.md). The loss/label branch is left out: it has no
parameters.

`build()` returns the output symbol and a dict of internal symbols that the fixture
tool also evaluates (the softmax of each net and a few net128 intermediates).
"""
import mxnet as mx

from topology import F, G, PREFIX


def _conv(x, name, k, stride, num_filter, groups):
    pad = (k // 2,) * 3
    return mx.sym.Convolution(data=x, kernel=(k,) * 3, pad=pad, stride=(stride,) * 3,
                              num_filter=num_filter, num_group=groups, name=name)


def _res_block(x, c, net, rb, groups):
    p = PREFIX + net + rb
    h = mx.sym.InstanceNorm(x, name=p + "norm1")
    h = mx.sym.Activation(h, act_type="relu", name=net + rb + "relu1")
    h = _conv(h, p + "conv1sep_conv", 3, 1, c, groups)
    h = mx.sym.InstanceNorm(h, name=p + "norm2")
    h = mx.sym.Activation(h, act_type="relu", name=net + rb + "relu2")
    h = _conv(h, p + "conv2sep_conv", 3, 1, c, groups)
    return mx.sym.elemwise_add(x, h, name=net + rb + "sum")


def _gmax(x):
    parts = mx.sym.split(x, axis=1, num_outputs=G)
    return mx.sym.max_axis(mx.sym.stack(*parts, axis=5), axis=5)


def _unet(x, f, net, stack0, stack1, taps):
    p = PREFIX + net
    c1 = _conv(x, p + "conv1sep_conv", 3, 1, 4 * f, G)
    rb1 = _res_block(c1, 4 * f, net, "rb1", G)
    pool1 = _conv(rb1, p + "pool1", 3, 2, 8 * f, G)
    pool1 = mx.sym.Dropout(pool1, p=0.1, name=p + "do1")
    rb2 = _res_block(pool1, 8 * f, net, "rb2", G)
    pool2 = _conv(rb2, p + "pool2", 3, 2, 16 * f, G)
    pool2 = mx.sym.Dropout(pool2, p=0.1, name=p + "do2")
    rb3 = _res_block(pool2, 16 * f, net, "rb3", G)
    pool3 = _conv(rb3, p + "pool3", 3, 2, 32 * f, G)
    pool3 = mx.sym.Dropout(pool3, p=0.1, name=p + "do3")
    rb4 = _res_block(pool3, 32 * f, net, "rb4", G)
    x4 = _gmax(rb4)
    up4 = mx.sym.Deconvolution(x4, kernel=(2, 2, 2), pad=(0, 0, 0), stride=(2, 2, 2),
                               num_filter=8 * f, name=p + "up_conv4_1")
    parts = [up4, _gmax(rb3)] + ([stack0] if stack0 is not None else [])
    c0 = mx.sym.Convolution(data=mx.sym.concat(*parts, dim=1), kernel=(1, 1, 1),
                            pad=(0, 0, 0), num_filter=8 * f)
    rb5 = _res_block(c0, 8 * f, net, "rb5", 1)
    up3 = mx.sym.Deconvolution(rb5, kernel=(2, 2, 2), pad=(0, 0, 0), stride=(2, 2, 2),
                               num_filter=4 * f, name=p + "up_conv3_1")
    parts = [up3, _gmax(rb2)] + ([stack1] if stack1 is not None else [])
    cc1 = mx.sym.Convolution(data=mx.sym.concat(*parts, dim=1), kernel=(1, 1, 1),
                             pad=(0, 0, 0), num_filter=4 * f)
    rb6 = _res_block(cc1, 4 * f, net, "rb6", 1)
    up2 = mx.sym.Deconvolution(rb6, kernel=(2, 2, 2), pad=(0, 0, 0), stride=(2, 2, 2),
                               num_filter=2 * f, name=p + "up_conv2_1")
    skip2 = _gmax(rb1)
    c2 = mx.sym.Convolution(data=mx.sym.concat(up2, skip2, dim=1), kernel=(1, 1, 1),
                            pad=(0, 0, 0), num_filter=2 * f)
    rb7 = _res_block(c2, 2 * f, net, "rb7", 1)
    logits = mx.sym.Convolution(data=rb7, kernel=(1, 1, 1), pad=(0, 0, 0), num_filter=4)
    if taps is not None:
        taps.update({net + "_conv1": c1, net + "_rb1": rb1, net + "_rb1_gmax": skip2,
                     net + "_up2": up2, net + "_c2": c2, net + "_rb7": rb7,
                     net + "_logits": logits})
    return logits


def build(data_name="data_crop"):
    """Returns (output symbol, dict of internal symbols by fixture name)."""
    taps = {}
    with mx.name.NameManager():
        data = mx.sym.Variable(data_name)
        d64 = mx.sym.Pooling(data=data, pool_type="avg", kernel=(2, 2, 2), stride=(2, 2, 2))
        d32 = mx.sym.Pooling(data=data, pool_type="avg", kernel=(4, 4, 4), stride=(4, 4, 4))
        n32 = _unet(d32, 4 * F, "net32", None, None, None)
        sm32 = mx.sym.softmax(n32, axis=1, name="softmax_lbl32")
        n64 = _unet(d64, 2 * F, "net64", None, sm32, None)
        sm64 = mx.sym.softmax(n64, axis=1, name="softmax_lbl64")
        n128 = _unet(data, F, "net128", sm32, sm64, taps)
        sm128 = mx.sym.softmax(n128, axis=1, name="softmax_lbl128")
        out = mx.sym.BlockGrad(sm128, name="blockgrad7")
    taps.update({"net32_softmax": sm32, "net64_softmax": sm64, "softmax": sm128})
    return out, taps
