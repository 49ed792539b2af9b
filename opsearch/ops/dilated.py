"""Family "dilated": dilated (atrous) 2-D convolution and the dilated causal 1-D TCN convolution."""

from __future__ import annotations

from .registry import register
from .spec import CONV2D_ATTRS, Attr, OpSpec, TensorParam, prod as _prod, window_out_hw


@register
class DilatedConv2d(OpSpec):
    name = "dilated_conv2d"
    family = "dilated"
    doc = "torch.nn.functional.conv2d semantics with per-axis stride, padding, dilation and groups."
    tensors = (
        TensorParam("x", ("N", "C", "H", "W")),
        TensorParam("weight", ("O", "C/groups", "KH", "KW")),
        TensorParam("bias", ("O",), optional=True),
    )
    attrs = CONV2D_ATTRS
    # "Multi-Scale Context Aggregation by Dilated Convolutions": 3x3 context module, dilations
    # 1,1,2,4,8,16 at 64x64 feature maps; Inception Convolution: per-axis dilation.
    examples = {
        "context_d4": dict(x=[1, 64, 64, 64], weight=[64, 64, 3, 3], padding=4, dilation=4),
        "context_d16": dict(x=[1, 64, 64, 64], weight=[64, 64, 3, 3], padding=16, dilation=16),
        "inception_d2x1": dict(x=[1, 128, 28, 28], weight=[128, 128, 3, 3], padding=[2, 1], dilation=[2, 1]),
    }

    def check(self, a):
        n, c, h, w = a["x"]
        o, cg, kh, kw = a["weight"]
        g = a["groups"]
        if c % g:
            raise self.fail("groups", f"({g}) must divide the input channels C={c}")
        if o % g:
            raise self.fail("groups", f"({g}) must divide the output channels O={o}")
        if cg != c // g:
            raise self.fail("weight", f"dim 1 must be C/groups = {c // g}, got {cg}")
        self.check_bias(a, o)

    def output_shape(self, a):
        o, _, kh, kw = a["weight"]
        return (a["x"][0], o, *window_out_hw(self, a, kh, kw, "weight"))

    def _flops(self, a):
        _, cg, kh, kw = a["weight"]
        return 2 * cg * kh * kw * _prod(self.output_shape(a))

    keep_stages = ("wpack",)

    def packed(self, a) -> bool:
        """Compute in the channel-blocked layout (NCHW16c, as oneDNN does) when the output width
        is not a multiple of the block (te_util.blocked_layout_applies). Measured on
        inception_d2x1 (28x28, znver4): default schedule 15.1 -> 3.9 ms; tuned, the two forms are
        within the search's run-to-run spread (benchmarks/RESULTS.md). Widths that are multiples of
        16 keep the NCHW form, which tuned faster there (context_d4: 1.39 ms vs 1.97 ms at 64 trials)."""
        from .te_util import blocked_layout_applies

        return blocked_layout_applies(a["x"][1], a["weight"][0], a["groups"], self.output_shape(a)[3])

    def _skips_padding(self, a, lanes: int) -> bool:
        """Whether the NCHW form runs in the register tiles that skip padding taps: unit column
        stride, whole vectors of output columns, output channels in 4s."""
        return a["stride"][1] == 1 and self.output_shape(a)[3] % lanes == 0 and a["weight"][0] % 4 == 0

    def schedule_cpu(self, sch, target, a):
        """The blocked form: the weight packed in its source's order and the convolution in
        register tiles (schedules.blocked_conv_cpu). The NCHW form, where its vectors fill: tiles
        that drop the taps reading only padding (schedules.conv2d_tiles_skipping_padding); measured
        on context_d16 (znver5): 490 µs against the best tuned record's 652 and oneDNN's 520-550.
        Otherwise the generic default."""
        from .schedules import (block_names, blocked_conv_cpu, conv2d_tiles_skipping_padding,
                                float_lanes, weight_pack)

        cores = int(target.attrs.get("num-cores", 1))
        if self.packed(a):
            weight_pack(sch, sch.get_sblock("wpack"), cores)
            blocked_conv_cpu(sch, cores)
            return
        lanes = float_lanes(target)
        if not self._skips_padding(a, lanes):
            return super().schedule_cpu(sch, target, a)
        names = block_names(sch)
        if "pad" in names:
            sch.compute_inline(sch.get_sblock("pad"))
        (sh, _), (ph, _), (dh, _) = a["stride"], a["padding"], a["dilation"]
        ho = self.output_shape(a)[2]
        # Row blocks whose edges are the padding's: a tap then reads padding for a whole block.
        rows = dh if sh == 1 and ph % dh == 0 and ho % dh == 0 else 1
        conv2d_tiles_skipping_padding(sch, sch.get_sblock("conv"), rows, lanes, cores)
        if "out" in names:  # the bias, added in the tile's write-back
            sch.reverse_compute_inline(sch.get_sblock("out"))

    def compute(self, a, ins):
        from tvm import te

        from .te_util import add_bias, pad

        x, w = ins["x"], ins["weight"]
        n, o, ho, wo = self.output_shape(a)
        _, cg, kh, kw = a["weight"]
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        if self.packed(a):
            return add_bias(self._compute_packed(a, x, w), ins.get("bias"), axis=1)
        og = o // a["groups"]
        xp = pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)], "pad", likely=True)
        rc = te.reduce_axis((0, cg), "rc")
        ry = te.reduce_axis((0, kh), "ry")
        rx = te.reduce_axis((0, kw), "rx")
        y = te.compute(
            (n, o, ho, wo),
            lambda b, k, i, j: te.sum(
                xp[b, (k // og) * cg + rc, i * sh + ry * dh, j * sw + rx * dw] * w[k, rc, ry, rx],
                axis=[rc, ry, rx],
            ),
            name="conv",
        )
        return add_bias(y, ins.get("bias"), axis=1)

    def _compute_packed(self, a, x, w):
        """Pad and pack x to [N, C/16, Hp, Wp, 16] and the weight to [O/16, C/16, KH, KW, 16c, 16o];
        convolve into [N, O/16, Ho, Wo, 16] (vectorisable along the output-channel block); unpack."""
        from tvm import te

        from .te_util import BLOCK as v, conv2d_nchwc, pack_pad_nchwc, unpack_nchwc

        o, c, kh, kw = a["weight"]
        xp = pack_pad_nchwc(x, *a["padding"])
        wp = te.compute((o // v, c // v, kh, kw, v, v),
                        lambda ko, co, i, j, ci, oi: w[ko * v + oi, co * v + ci, i, j], name="wpack")
        y = conv2d_nchwc(xp, lambda b, ko, rco, ry, rx, rci, oi: wp[ko, rco, ry, rx, rci, oi],
                         self.output_shape(a), (kh, kw), a["stride"], a["dilation"])
        return unpack_nchwc(y)

    def reference(self, a, x, weight, bias=None):
        import torch.nn.functional as F

        return F.conv2d(x, weight, bias, a["stride"], a["padding"], a["dilation"], a["groups"])


@register
class DilatedConv1d(OpSpec):
    name = "dilated_conv1d"
    family = "dilated"
    doc = "Temporal convolutional network layer: causal (left-padded) or 'same' dilated conv1d."
    tensors = (
        TensorParam("x", ("N", "C", "L")),
        TensorParam("weight", ("O", "C", "K")),
        TensorParam("bias", ("O",), optional=True),
    )
    attrs = (Attr("dilation", "int", 1, minimum=1), Attr("causal", "bool", True))
    # TCN stacks: kernel 3, channels 64-128, dilations doubling to 2^k; audio compressor models
    # (rapidly growing dilations) at long sequence lengths.
    examples = {
        "tcn_d8": dict(x=[8, 64, 1024], weight=[64, 64, 3], dilation=8),
        "audio_d64": dict(x=[1, 32, 16384], weight=[32, 32, 3], dilation=64),
    }

    def _pads(self, a):
        k, d = a["weight"][2], a["dilation"]
        return ((k - 1) * d, 0) if a["causal"] else ((k - 1) * d // 2, (k - 1) * d // 2)

    def check(self, a):
        n, c, l = a["x"]
        o, cw, k = a["weight"]
        if cw != c:
            raise self.fail("weight", f"dim 1 must equal the input channels C={c}, got {cw}")
        if not a["causal"] and k % 2 == 0:
            raise self.fail("weight", f"non-causal ('same') convolution needs an odd kernel size, got K={k}")
        self.check_bias(a, o)

    def output_shape(self, a):
        return (a["x"][0], a["weight"][0], a["x"][2])

    def _flops(self, a):
        return 2 * a["weight"][1] * a["weight"][2] * _prod(self.output_shape(a))

    def compute(self, a, ins):
        from tvm import te

        from .te_util import add_bias, pad

        x, w = ins["x"], ins["weight"]
        n, o, l = self.output_shape(a)
        _, c, k = a["weight"]
        d = a["dilation"]
        xp = pad(x, [(0, 0), (0, 0), self._pads(a)], "pad")
        rc = te.reduce_axis((0, c), "rc")
        rk = te.reduce_axis((0, k), "rk")
        y = te.compute(
            (n, o, l),
            lambda b, f, t: te.sum(xp[b, rc, t + rk * d] * w[f, rc, rk], axis=[rc, rk]),
            name="conv",
        )
        return add_bias(y, ins.get("bias"), axis=1)

    def reference(self, a, x, weight, bias=None):
        import torch.nn.functional as F

        return F.conv1d(F.pad(x, self._pads(a)), weight, bias, dilation=a["dilation"])

