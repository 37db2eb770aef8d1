"""Independent float64 forward pass of the cascade, written from ../shared/MODEL.md
in plain numpy (no MXNet), batch size 1, tensors shaped (C, D, H, W).

It is the oracle for exactness: the engine (f32) and MXNet (f32) are both compared
against it. Convolutions loop over the 27 kernel offsets and accumulate a matrix
product per offset and group, so memory stays at a few copies of one activation
even at 128^3 (slow but simple).
"""
import numpy as np

from topology import F, G, PREFIX, NET_INDEX

EPS = 1e-3  # MXNet InstanceNorm default


def conv3d(x, w, b, stride=1, groups=1):
    """x (Cin, D, H, W); w (Cout, Cin/G, k, k, k); pad k//2."""
    cout, cin_g, k = w.shape[0], w.shape[1], w.shape[2]
    cin, d, h, wd = x.shape
    assert cin == cin_g * groups, (x.shape, w.shape, groups)
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (p, p))) if p else x
    do, ho, wo = [(n + 2 * p - k) // stride + 1 for n in (d, h, wd)]
    cout_g = cout // groups
    out = np.empty((cout, do, ho, wo), dtype=np.float64)
    for g in range(groups):
        acc = np.zeros((cout_g, do * ho * wo), dtype=np.float64)
        xg = xp[g * cin_g:(g + 1) * cin_g]
        wg = w[g * cout_g:(g + 1) * cout_g]
        for kd in range(k):
            for kh in range(k):
                for kw in range(k):
                    patch = xg[:, kd:kd + stride * do:stride, kh:kh + stride * ho:stride,
                               kw:kw + stride * wo:stride]
                    acc += wg[:, :, kd, kh, kw] @ patch.reshape(cin_g, -1)
        out[g * cout_g:(g + 1) * cout_g] = acc.reshape(cout_g, do, ho, wo)
    return out + b[:, None, None, None]


def deconv2(x, w):
    """Transposed conv, kernel 2 stride 2, no bias; w (Cin, Cout, 2, 2, 2)."""
    cin, d, h, wd = x.shape
    cout = w.shape[1]
    out = np.empty((cout, 2 * d, 2 * h, 2 * wd), dtype=np.float64)
    xf = x.reshape(cin, -1)
    for a in range(2):
        for b in range(2):
            for c in range(2):
                out[:, a::2, b::2, c::2] = (w[:, :, a, b, c].T @ xf).reshape(cout, d, h, wd)
    return out


def inorm(x, gamma, beta):
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2, 3), keepdims=True)
    return gamma[:, None, None, None] * (x - mean) / np.sqrt(var + EPS) + beta[:, None, None, None]


def gmax(x):
    c = x.shape[0]
    return x.reshape(G, c // G, *x.shape[1:]).max(axis=0)


def avgpool(x, k):
    c, d, h, w = x.shape
    return x.reshape(c, d // k, k, h // k, k, w // k, k).mean(axis=(2, 4, 6))


def softmax(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def relu(x):
    return np.maximum(x, 0.0)


class Net:
    def __init__(self, params, net):
        self.p = params
        self.net = net
        self.f = {"net32": 4 * F, "net64": 2 * F, "net128": F}[net]

    def w(self, name):
        return self.p[name]

    def conv(self, x, base, stride=1, groups=1):
        return conv3d(x, self.w(base + "_weight"), self.w(base + "_bias"), stride, groups)

    def rb(self, x, rb, groups):
        p = PREFIX + self.net + rb
        h = relu(inorm(x, self.w(p + "norm1_gamma"), self.w(p + "norm1_beta")))
        h = self.conv(h, p + "conv1sep_conv", 1, groups)
        h = relu(inorm(h, self.w(p + "norm2_gamma"), self.w(p + "norm2_beta")))
        h = self.conv(h, p + "conv2sep_conv", 1, groups)
        return x + h

    def pw(self, which):
        return "convolution%d" % (4 * NET_INDEX[self.net] + which)

    def run(self, x, stack0=None, stack1=None, taps=None):
        p = PREFIX + self.net
        c1 = self.conv(x, p + "conv1sep_conv", 1, G)
        rb1 = self.rb(c1, "rb1", G)
        rb2 = self.rb(self.conv(rb1, p + "pool1", 2, G), "rb2", G)
        rb3 = self.rb(self.conv(rb2, p + "pool2", 2, G), "rb3", G)
        rb4 = self.rb(self.conv(rb3, p + "pool3", 2, G), "rb4", G)
        up4 = deconv2(gmax(rb4), self.w(p + "up_conv4_1_weight"))
        cat = [up4, gmax(rb3)] + ([stack0] if stack0 is not None else [])
        rb5 = self.rb(self.conv(np.concatenate(cat), self.pw(0)), "rb5", 1)
        up3 = deconv2(rb5, self.w(p + "up_conv3_1_weight"))
        cat = [up3, gmax(rb2)] + ([stack1] if stack1 is not None else [])
        rb6 = self.rb(self.conv(np.concatenate(cat), self.pw(1)), "rb6", 1)
        up2 = deconv2(rb6, self.w(p + "up_conv2_1_weight"))
        skip2 = gmax(rb1)
        c2 = self.conv(np.concatenate([up2, skip2]), self.pw(2))
        rb7 = self.rb(c2, "rb7", 1)
        logits = self.conv(rb7, self.pw(3))
        if taps is not None:
            n = self.net
            taps.update({n + "_conv1": c1, n + "_rb1": rb1, n + "_rb1_gmax": skip2,
                         n + "_up2": up2, n + "_c2": c2, n + "_rb7": rb7, n + "_logits": logits})
        return logits


def forward(params, x):
    """params: name -> float64 array; x: (4, D, H, W). Returns dict of named outputs."""
    taps = {}
    sm32 = softmax(Net(params, "net32").run(avgpool(x, 4)))
    sm64 = softmax(Net(params, "net64").run(avgpool(x, 2), stack1=sm32))
    sm128 = softmax(Net(params, "net128").run(x, stack0=sm32, stack1=sm64, taps=taps))
    taps.update({"net32_softmax": sm32, "net64_softmax": sm64, "softmax": sm128})
    return taps
