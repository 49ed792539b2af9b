"""Family "shift-add": multiplication-reduced operators (shift conv, DeepShift linear, AdderNet)."""

from __future__ import annotations

from .registry import register
from .spec import Attr, OpSpec, TensorParam, out_len, prod


@register
class ShiftConv2d(OpSpec):
    name = "shift_conv2d"
    family = "shift-add"
    doc = "Per-channel integer spatial shift (zero fill) fused with a 1x1 convolution."
    tensors = (
        TensorParam("x", ("N", "C", "H", "W")),
        TensorParam("shifts", ("C", "2"), dtype="int32", doc="(dy, dx) per channel"),
        TensorParam("weight", ("O", "C")),
        TensorParam("bias", ("O",), optional=True),
    )
    # SCNet: fully 1x1 super-resolution network, 64 channels, five shift groups.
    examples = {
        "scnet_64": dict(x=[1, 64, 128, 128], shifts=[64, 2], weight=[64, 64]),
        "scnet_b4": dict(x=[4, 32, 96, 96], shifts=[32, 2], weight=[32, 32], bias=[32]),
    }
    keep_stages = ("shift",)  # shifted once, read by every output channel

    def check(self, a):
        c = a["x"][1]
        if a["shifts"] != (c, 2):
            raise self.fail("shifts", f"must have shape [{c}, 2] (one (dy, dx) per channel), got {list(a['shifts'])}")
        if a["weight"][1] != c:
            raise self.fail("weight", f"must have shape [O, {c}], got {list(a['weight'])}")
        o = a["weight"][0]
        self.check_bias(a, o)

    def output_shape(self, a):
        n, _, h, w = a["x"]
        return (n, a["weight"][0], h, w)

    def _flops(self, a):
        return 2 * a["x"][1] * prod(self.output_shape(a))

    def compute(self, a, ins):
        from tvm import te, tirx

        from .te_util import add_bias

        x, s, wt = ins["x"], ins["shifts"], ins["weight"]
        n, c, h, w = a["x"]

        def shifted(b, ch, i, j):
            si, sj = i + s[ch, 0], j + s[ch, 1]
            inside = tirx.all(si >= 0, si < h, sj >= 0, sj < w)
            return tirx.if_then_else(inside, x[b, ch, si, sj], tirx.const(0, x.dtype))

        xs = te.compute((n, c, h, w), shifted, name="shift")
        rc = te.reduce_axis((0, c), "rc")
        y = te.compute(
            self.output_shape(a), lambda b, o, i, j: te.sum(wt[o, rc] * xs[b, rc, i, j], axis=rc), name="conv1x1"
        )
        return add_bias(y, ins.get("bias"), axis=1)

    def schedule_cpu(self, sch, target, a):
        """The 1x1 convolution as a matrix product in register tiles: 4 output channels x up to
        4 vectors of pixels along a row, accumulated over the input channels in a local tile.
        The shift is computed per (row, pixel strip) inside the parallel loop, for all input
        channels (a strip of up to 64 pixels x C fits L1), instead of as a pass through memory,
        and the bias is added as the tile is written (scnet_64 1015 -> 453 us, scnet_b4
        695 -> 343 us; benchmarks/RESULTS.md, session 9)."""
        from .schedules import accumulate_in_tiles, float_lanes

        cores = int(target.attrs.get("num-cores", 1))
        o, w = a["weight"][0], a["x"][3]
        wide = float_lanes(target)
        # power-of-two vectors where they divide the width, else its largest divisor up to a
        # vector if that is at least 4 wide (w = 30: 15-wide, 19x the generic default); narrower
        # ones (w = 57: 3-wide) ran slower than the generic default, which then schedules it
        lanes = next((t for t in (wide, 8, 4) if w % t == 0), None) or max(t for t in range(1, wide + 1) if w % t == 0)
        if lanes < 4:
            return super().schedule_cpu(sch, target, a)
        strip = next(t for t in (4, 2, 1) if w % (t * lanes) == 0)
        ot_n = next(t for t in (4, 2, 1) if o % t == 0)
        conv = sch.get_sblock("conv1x1")
        b, oc, i, j, rc = sch.get_loops(conv)
        jo, jt, jv = sch.split(j, [None, strip, lanes])
        oo, ot = sch.split(oc, [None, ot_n])
        outer = accumulate_in_tiles(sch, conv, (b, i, jo, oo, rc, ot, jt, jv), at=oo, init=rc, outer=(b, i, jo),
                                    unroll=(ot, jt), vector=jv, cores=cores)
        if a["bias"] is not None:  # added in the tile's write-back
            sch.reverse_compute_inline(sch.get_sblock("out"))
        shift = sch.get_sblock("shift")
        sch.compute_at(shift, outer)
        sch.vectorize(sch.get_loops(shift)[-1])

    def sample(self, a, param, shape, gen, dtype):
        import torch

        if param.name == "shifts":  # SCNet-like offsets, some reaching past the border
            return torch.randint(-2, 3, shape, generator=gen, dtype=torch.int32)
        return super().sample(a, param, shape, gen, dtype)

    def baseline(self, a, x, shifts, weight, bias=None):
        """Vectorised PyTorch: pad, gather every channel's shifted window, 1x1 conv as matmul."""
        import torch
        import torch.nn.functional as F

        n, c, h, w = x.shape
        p = int(shifts.abs().max())
        xp = F.pad(x, (p, p, p, p))
        rows = (torch.arange(h)[None, :] + shifts[:, :1] + p).clamp(0, h + 2 * p - 1)  # [C, H]
        cols = (torch.arange(w)[None, :] + shifts[:, 1:] + p).clamp(0, w + 2 * p - 1)  # [C, W]
        shifted = xp[:, torch.arange(c)[:, None, None], rows[:, :, None], cols[:, None, :]]
        y = torch.matmul(weight, shifted.reshape(n, c, h * w)).view(n, -1, h, w)
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    def reference(self, a, x, shifts, weight, bias=None):
        import torch

        n, c, h, w = x.shape
        shifted = torch.zeros_like(x)
        for ch in range(c):  # explicit per-channel roll with zero fill
            dy, dx = int(shifts[ch, 0]), int(shifts[ch, 1])
            ys, ye = max(0, -dy), min(h, h - dy)
            xs, xe = max(0, -dx), min(w, w - dx)
            if ys < ye and xs < xe:
                shifted[:, ch, ys:ye, xs:xe] = x[:, ch, ys + dy : ye + dy, xs + dx : xe + dx]
        y = torch.einsum("oc,nchw->nohw", weight, shifted)
        return y if bias is None else y + bias.view(1, -1, 1, 1)


@register
class ShiftLinear(OpSpec):
    name = "shift_linear"
    family = "shift-add"
    doc = (
        "DeepShift/ShiftAddViT linear layer with weights sign * 2^shift. float32, or int32 fixed "
        "point computed with shifts and adds only (no bias)."
    )
    tensors = (
        TensorParam("x", ("...", "I")),
        TensorParam("sign", ("O", "I"), dtype="int8", doc="values in {-1, 0, 1}"),
        TensorParam("shift", ("O", "I"), dtype="int8", doc="values in [-16, 16]"),
        TensorParam("bias", ("O",), optional=True),
    )
    dtypes = ("float32", "int32")
    # ShiftAddViT (PVT/DeiT-tiny MLP blocks): 197 tokens x 192 -> 768, batch of tokens.
    examples = {
        "vit_mlp_fc1": dict(x=[1, 197, 192], sign=[768, 192], shift=[768, 192]),
        "vit_mlp_fc2_int32": dict(x=[1, 197, 768], sign=[192, 768], shift=[192, 768], dtype="int32"),
    }
    keep_stages = ("decode",)  # weights decoded once, not once per row of x

    def check(self, a):
        i = a["x"][-1]
        for p in ("sign", "shift"):
            if a[p][1] != i:
                raise self.fail(p, f"must have shape [O, {i}] (I from x's last dim), got {list(a[p])}")
        if a["shift"][0] != a["sign"][0]:
            raise self.fail("shift", f"must have the same shape as sign {list(a['sign'])}, got {list(a['shift'])}")
        if a["bias"] is not None:
            if a["dtype"] == "int32":
                raise self.fail("bias", "is not defined for the int32 shift-only path")
            if a["bias"] != (a["sign"][0],):
                raise self.fail("bias", f"must have shape [{a['sign'][0]}], got {list(a['bias'])}")

    def output_shape(self, a):
        return (*a["x"][:-1], a["sign"][0])

    def _flops(self, a):
        return 2 * a["x"][-1] * prod(self.output_shape(a))

    def compute(self, a, ins):
        from tvm import te, tirx

        from .te_util import add_bias

        x, sg, sh = ins["x"], ins["sign"], ins["shift"]
        i_dim = a["x"][-1]
        r = te.reduce_axis((0, i_dim), "ri")
        if a["dtype"] == "float32":
            # 2^shift built exactly from the exponent bits: (shift + 127) << 23.
            wdec = te.compute(
                sh.shape,
                lambda o, i: sg[o, i].astype("float32")
                * tirx.reinterpret("float32", (sh[o, i].astype("int32") + 127) << 23),
                name="decode",
            )
            y = te.compute(
                self.output_shape(a), lambda *idx: te.sum(x[(*idx[:-1], r)] * wdec[idx[-1], r], axis=r), name="matmul"
            )
            return add_bias(y, ins.get("bias"), axis=len(a["x"]) - 1)

        # Shift-only int32: each weight decoded once into four int32 planes, laid out [I, O] so that
        # the output features are the contiguous (vectorised) axis: left shift, right shift, a
        # negate mask (-1 where sign < 0) and a keep mask (0 where sign == 0). The inner loop is then
        # branch-free shifts, xor/sub and and, with per-lane shift counts (vpsllvd/vpsravd):
        #   t = (x << ls) >> rs;  y += ((t ^ neg) - neg) & keep
        # instead of two nested selects on the raw int8 sign and shift per multiply-add
        # (a Select chain that kept the generic space at 7% of peak; benchmarks/RESULTS.md).
        zero, minus1 = tirx.const(0, "int32"), tirx.const(-1, "int32")

        def plane(k, i, o):
            s, g = sh[o, i].astype("int32"), sg[o, i]
            return tirx.Select(k == 0, tirx.Select(s > 0, s, zero),
                               tirx.Select(k == 1, tirx.Select(s < 0, zero - s, zero),
                                           tirx.Select(k == 2, tirx.Select(g < 0, minus1, zero),
                                                       tirx.Select(g != 0, minus1, zero))))

        dec = te.compute((4, i_dim, a["sign"][0]), plane, name="decode")

        def term(idx):
            o = idx[-1]
            t = (x[(*idx[:-1], r)] << dec[0, r, o]) >> dec[1, r, o]
            return ((t ^ dec[2, r, o]) - dec[2, r, o]) & dec[3, r, o]

        return te.compute(self.output_shape(a), lambda *idx: te.sum(term(idx), axis=r), name="shiftadd")

    def sample(self, a, param, shape, gen, dtype):
        import torch

        if param.name == "sign":
            return torch.randint(-1, 2, shape, generator=gen, dtype=torch.int8)
        if param.name == "shift":
            lo, hi = (-16, 17) if a["dtype"] == "float32" else (-8, 9)
            return torch.randint(lo, hi, shape, generator=gen, dtype=torch.int8)
        if a["dtype"] == "int32" and param.name == "x":
            return torch.randint(-(2**12), 2**12, shape, generator=gen, dtype=torch.int32)
        return super().sample(a, param, shape, gen, dtype)

    def reference(self, a, x, sign, shift, bias=None):
        import torch

        if a["dtype"] == "int32":
            xs = x.to(torch.int64).unsqueeze(-2)  # [..., 1, I]
            s = shift.to(torch.int64)
            v = torch.where(s >= 0, xs << s.clamp(min=0), xs >> (-s).clamp(min=0))
            y = (v * sign.to(torch.int64)).sum(-1)
            assert y.abs().max() < 2**31, "reference overflowed int32: sample smaller inputs"
            return y.to(torch.int32)
        w = sign.to(x.dtype) * torch.pow(torch.tensor(2.0, dtype=x.dtype), shift.to(x.dtype))
        y = torch.matmul(x, w.T)
        return y if bias is None else y + bias


@register
class AdderConv2d(OpSpec):
    name = "adder_conv2d"
    family = "shift-add"
    doc = "AdderNet: y = -sum |x_pad - W| over the window (L1 similarity instead of products)."
    tensors = (TensorParam("x", ("N", "C", "H", "W")), TensorParam("weight", ("O", "C", "KH", "KW")))
    attrs = (Attr("stride", "pair", 1, minimum=1), Attr("padding", "pair", 0, minimum=0))
    # AdderNet ResNet-20 (CIFAR) and ResNet-50 (ImageNet) 3x3 layers.
    examples = {
        "resnet20_c16": dict(x=[16, 16, 32, 32], weight=[16, 16, 3, 3], padding=1),
        "resnet50_s2": dict(x=[1, 128, 56, 56], weight=[128, 128, 3, 3], stride=2, padding=1),
    }

    def check(self, a):
        if a["weight"][1] != a["x"][1]:
            raise self.fail("weight", f"dim 1 must equal the input channels C={a['x'][1]}, got {a['weight'][1]}")

    def output_shape(self, a):
        n, _, h, w = a["x"]
        o, _, kh, kw = a["weight"]
        (sh, sw), (ph, pw) = a["stride"], a["padding"]
        ho, wo = out_len(h, ph, ph, 1, kh, sh), out_len(w, pw, pw, 1, kw, sw)
        if ho <= 0 or wo <= 0:
            raise self.fail("weight", f"kernel {kh}x{kw} is larger than the padded input")
        return (n, o, ho, wo)

    def _flops(self, a):  # subtract, abs, add per tap
        _, c, kh, kw = a["weight"]
        return 3 * c * kh * kw * prod(self.output_shape(a))

    def compute(self, a, ins):
        from tvm import te

        from .te_util import pad

        x, w = ins["x"], ins["weight"]
        _, c, kh, kw = a["weight"]
        (sh, sw), (ph, pw) = a["stride"], a["padding"]
        xp = pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)], "pad")
        rc, ry, rx = te.reduce_axis((0, c), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
        return te.compute(
            self.output_shape(a),
            lambda b, o, i, j: te.sum(
                te.abs(w[o, rc, ry, rx] - xp[b, rc, i * sh + ry, j * sw + rx]) * -1.0,
                axis=[rc, ry, rx],
            ),
            name="adder",
        )

    def reference(self, a, x, weight):
        import torch
        import torch.nn.functional as F

        n = x.shape[0]
        o, c, kh, kw = weight.shape
        _, _, ho, wo = self.output_shape(a)
        cols = F.unfold(x, (kh, kw), padding=a["padding"], stride=a["stride"])  # [N, C*KH*KW, L]
        dist = torch.cdist(cols.transpose(1, 2), weight.reshape(1, o, -1).expand(n, o, -1), p=1)
        return (-dist).transpose(1, 2).reshape(n, o, ho, wo)
