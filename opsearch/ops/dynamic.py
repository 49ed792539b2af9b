"""Family "dynamic": input-conditioned kernels (CondConv, lightweight/dynamic conv, involution)."""

from __future__ import annotations

from .registry import register
from .spec import CONV2D_ATTRS, Attr, OpSpec, TensorParam, out_len, prod, window_out_hw


@register
class CondConv2d(OpSpec):
    name = "condconv2d"
    family = "dynamic"
    doc = "Conditionally parameterised conv: per-sample kernel W_n = sum_e routing[n,e] * experts[e]."
    tensors = (
        TensorParam("x", ("N", "C", "H", "W")),
        TensorParam("experts", ("E", "O", "C/groups", "KH", "KW")),
        TensorParam("routing", ("N", "E")),
        TensorParam("bias", ("O",), optional=True),
    )
    attrs = CONV2D_ATTRS
    # CondConv (EfficientNet-B0 / MobileNetV2 blocks, 8 experts).
    examples = {
        "effnet_3x3_e8": dict(x=[8, 64, 28, 28], experts=[8, 64, 64, 3, 3], routing=[8, 8], padding=1),
        "mbv2_dw_e8": dict(x=[8, 96, 28, 28], experts=[8, 96, 1, 3, 3], routing=[8, 8], padding=1, groups=96),
    }

    def check(self, a):
        n, c, h, w = a["x"]
        e, o, cg, kh, kw = a["experts"]
        g = a["groups"]
        if c % g:
            raise self.fail("groups", f"({g}) must divide the input channels C={c}")
        if o % g:
            raise self.fail("groups", f"({g}) must divide the output channels O={o}")
        if cg != c // g:
            raise self.fail("experts", f"dim 2 must be C/groups = {c // g}, got {cg}")
        if a["routing"] != (n, e):
            raise self.fail("routing", f"must have shape [N, E] = [{n}, {e}], got {list(a['routing'])}")
        self.check_bias(a, o)

    def output_shape(self, a):
        _, o, _, kh, kw = a["experts"]
        return (a["x"][0], o, *window_out_hw(self, a, kh, kw, "experts"))

    def _flops(self, a):
        n = a["x"][0]
        e, o, cg, kh, kw = a["experts"]
        return 2 * cg * kh * kw * prod(self.output_shape(a)) + 2 * n * e * o * cg * kh * kw

    def compute(self, a, ins):
        from tvm import te

        from .te_util import add_bias, pad

        x, ex, rt = ins["x"], ins["experts"], ins["routing"]
        n = a["x"][0]
        e, o, cg, kh, kw = a["experts"]
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        if self.packed(a):
            return add_bias(self._compute_packed(a, x, ex, rt), ins.get("bias"), axis=1)
        og = o // a["groups"]
        re_ = te.reduce_axis((0, e), "re")
        wn = te.compute(
            (n, o, cg, kh, kw),
            lambda b, k, c, i, j: te.sum(rt[b, re_] * ex[re_, k, c, i, j], axis=re_),
            name="mix",
        )
        xp = pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)], "pad")
        rc, ry, rx = te.reduce_axis((0, cg), "rc"), te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
        y = te.compute(
            self.output_shape(a),
            lambda b, k, i, j: te.sum(
                xp[b, (k // og) * cg + rc, i * sh + ry * dh, j * sw + rx * dw] * wn[b, k, rc, ry, rx],
                axis=[rc, ry, rx],
            ),
            name="conv",
        )
        return add_bias(y, ins.get("bias"), axis=1)

    def schedule_cpu(self, sch, target, a):
        """The channel-blocked form: the experts packed in their source's order, mixed per
        sample with the experts' vectors held across samples, and the convolution in register
        tiles (schedules.blocked_conv_cpu). The grouped / depthwise form
        (mbv2_dw_e8) gets register tiles of as many output rows as 16 vector registers hold x
        one vector along the output width (the whole row when it is at most 32 wide), the
        window's rows and columns unrolled, and the padding computed per tile inside the
        parallel loop (when the window's halo is at most the tile again) instead of as a pass
        over the whole input (mbv2_dw_e8 208 -> 102 us; benchmarks/RESULTS.md, session 9)."""
        from .schedules import accumulate_in_tiles, block_names, blocked_conv_cpu, parallel_vectorize, weight_pack

        cores = int(target.attrs.get("num-cores", 1))
        if self.packed(a):
            weight_pack(sch, sch.get_sblock("experts_pack"), cores)
            # mix: per (block, tap, input lane) the experts' 16-lane vectors, for every sample
            mix = sch.get_sblock("mix")
            b, ko, co, i, j, ci, oi, r = sch.get_loops(mix)
            sch.reorder(ko, co, i, j, ci, b, r, oi)
            fused = sch.fuse(ko, co)
            if cores > 1:
                sch.parallel(fused)
            sch.vectorize(oi)
            sch.decompose_reduction(mix, r)
            blocked_conv_cpu(sch, cores)
            return
        _, _, ho, wo = self.output_shape(a)
        names = block_names(sch)
        parallel_vectorize(sch, sch.get_sblock("mix"), cores)
        if "out" in names:  # bias
            parallel_vectorize(sch, sch.get_sblock("out"), cores)
        block = sch.get_sblock("conv")
        b, k, i, j, rc, ry, rx = sch.get_loops(block)
        if wo <= 32:
            lanes = wo
        else:
            lanes = next((t for t in (16, 8) if wo % t == 0), None) or max(t for t in range(1, 17) if wo % t == 0)
        # as many rows as 16 vector registers of accumulators hold (a 5x5 window on 14 x 14
        # maps: 4 rows 1078 us, 14 rows 100 us)
        regs = -(-lanes // 16)
        it_n = max(t for t in range(1, ho + 1) if ho % t == 0 and t * regs <= 16)
        io, it = sch.split(i, [None, it_n])
        jo, ji = sch.split(j, [None, lanes])
        outer = accumulate_in_tiles(sch, block, (b, k, io, jo, rc, ry, rx, it, ji), at=jo, init=rc, outer=(b, k, io),
                                    unroll=(ry, rx, it), vector=ji if lanes > 1 else None, cores=cores)
        kh, dh = a["experts"][3], a["dilation"][0]
        if "pad" in names and it_n + (kh - 1) * dh <= 2 * it_n:  # a halo of at most the tile again
            sch.compute_at(sch.get_sblock("pad"), outer)
        elif "pad" in names:
            parallel_vectorize(sch, sch.get_sblock("pad"), cores)

    def packed(self, a) -> bool:
        """Compute in the channel-blocked layout (NCHW16c, as dilated_conv2d does) under the same
        rule (te_util.blocked_layout_applies): effnet_3x3_e8's 28-wide rows leave every NCHW
        width vector partly empty (benchmarks/RESULTS.md)."""
        from .te_util import blocked_layout_applies

        return blocked_layout_applies(a["x"][1], a["experts"][1], a["groups"], self.output_shape(a)[3])

    def _compute_packed(self, a, x, ex, rt):
        """Mix each sample's kernel straight into the packed weight layout
        [N, O/16, C/16, KH, KW, 16c, 16o]; pad and pack x to [N, C/16, Hp, Wp, 16]; convolve into
        [N, O/16, Ho, Wo, 16], vectorisable along the output-channel block; unpack."""
        from tvm import te

        from .te_util import BLOCK as v, conv2d_nchwc, pack_pad_nchwc, unpack_nchwc

        n = a["x"][0]
        e, o, c, kh, kw = a["experts"]
        # the experts packed first (a transpose), so the mix reads them contiguously: mixing
        # straight from [E, O, C, KH, KW] into the packed layout reads 16-lane vectors with a
        # stride of C*KH*KW (485 us of effnet_3x3_e8's 2.2 ms, timed alone)
        ep = te.compute((e, o // v, c // v, kh, kw, v, v),
                        lambda r, ko, co, i, j, ci, oi: ex[r, ko * v + oi, co * v + ci, i, j], name="experts_pack")
        re_ = te.reduce_axis((0, e), "re")
        wn = te.compute(
            (n, o // v, c // v, kh, kw, v, v),
            lambda b, ko, co, i, j, ci, oi: te.sum(rt[b, re_] * ep[re_, ko, co, i, j, ci, oi], axis=re_),
            name="mix",
        )
        xp = pack_pad_nchwc(x, *a["padding"])
        y = conv2d_nchwc(xp, lambda b, ko, rco, ry, rx, rci, oi: wn[b, ko, rco, ry, rx, rci, oi],
                         self.output_shape(a), (kh, kw), a["stride"], a["dilation"])
        return unpack_nchwc(y)

    def sample(self, a, param, shape, gen, dtype):
        import torch

        if param.name == "routing":  # sigmoid outputs, as the module produces
            return torch.rand(shape, generator=gen, dtype=dtype)
        return super().sample(a, param, shape, gen, dtype)

    def reference(self, a, x, experts, routing, bias=None):
        import torch
        import torch.nn.functional as F

        outs = []
        for i in range(x.shape[0]):
            wn = torch.tensordot(routing[i], experts, dims=1)
            outs.append(F.conv2d(x[i : i + 1], wn, bias, a["stride"], a["padding"], a["dilation"], a["groups"]))
        return torch.cat(outs)


class _HeadConv1d(OpSpec):
    """Shared rules of lightweight and dynamic conv: heads share kernels across C/H channels."""

    family = "dynamic"
    attrs = (Attr("causal", "bool", False),)

    def _hk(self, a):  # (heads, kernel size) from the weight shape
        raise NotImplementedError

    def _pad(self, a):
        k = self._hk(a)[1]
        p = k - 1 if a["causal"] else k // 2
        return p, k - 1 - p

    def check(self, a):
        c = a["x"][1]
        h, _ = self._hk(a)
        if c % h:
            raise self.fail("weight", f"heads H={h} must divide the channels C={c}")

    def output_shape(self, a):
        return a["x"]

    def _flops(self, a):
        return 2 * self._hk(a)[1] * prod(a["x"])

    def _compute(self, a, x, wfn):
        from tvm import te

        from .te_util import pad

        n, c, t = a["x"]
        h, k = self._hk(a)
        cph = c // h
        xp = pad(x, [(0, 0), (0, 0), self._pad(a)], "pad")
        rk = te.reduce_axis((0, k), "rk")
        return te.compute(
            (n, c, t), lambda b, ch, i: te.sum(wfn(b, ch // cph, rk, i) * xp[b, ch, i + rk], axis=rk), name="conv"
        )

    def schedule_cpu(self, sch, target, a):
        """Register tiles of 4 channels of a head x 2 vectors along time, accumulated over the
        (unrolled) taps in a local tile: a head's weight (scalar, or a vector along time for
        dynamic conv) is loaded once for the tile's channels. The padding is computed per
        channel tile inside the parallel loop instead of as a pass over the whole input
        (dynamic wmt_k31 743 -> 377 us, lightweight wmt_k31 410 -> 333 us; session 9)."""
        from .schedules import accumulate_in_tiles, block_names, float_lanes

        cores = int(target.attrs.get("num-cores", 1))
        _, c, t = a["x"]
        cph = c // self._hk(a)[0]
        wide = float_lanes(target)
        # power-of-two vectors where they divide T (10-wide ones at T = 200: 2x slower)
        lanes = next((v for v in (wide, 8, 4) if t % v == 0), None) or max(v for v in range(1, wide + 1) if t % v == 0)
        strip = 2 if t % (2 * lanes) == 0 else 1
        ct_n = next(v for v in (4, 2, 1) if cph % v == 0)
        conv = sch.get_sblock("conv")
        b, ch, i, rk = sch.get_loops(conv)
        cho, cht = sch.split(ch, [None, ct_n])
        io, it, iv = sch.split(i, [None, strip, lanes])
        outer = accumulate_in_tiles(sch, conv, (b, cho, io, rk, cht, it, iv), at=io, init=rk, outer=(b, cho),
                                    unroll=(cht, it, rk), vector=iv if lanes > 1 else None, cores=cores)
        if "pad" in block_names(sch):
            sch.compute_at(sch.get_sblock("pad"), outer)

    def _windows(self, a, x):
        """x's sliding windows [N, C, T, K], zero outside (independent of the TE padding)."""
        import torch.nn.functional as F

        return F.pad(x, self._pad(a)).unfold(2, self._hk(a)[1], 1)


@register
class LightweightConv1d(_HeadConv1d):
    name = "lightweight_conv1d"
    doc = "Depthwise conv with per-head kernels shared by C/H channels (softmax-normalised weights)."
    tensors = (TensorParam("x", ("N", "C", "T")), TensorParam("weight", ("H", "K")))
    # "Pay Less Attention": d=1024, H=16, K up to 31; decoder layers are causal.
    examples = {
        "wmt_k31": dict(x=[8, 1024, 128], weight=[16, 31]),
        "decoder_k15_causal": dict(x=[8, 1024, 128], weight=[16, 15], causal=True),
    }

    def _hk(self, a):
        return a["weight"]

    def compute(self, a, ins):
        w = ins["weight"]
        return self._compute(a, ins["x"], lambda b, hh, kk, i: w[hh, kk])

    def sample(self, a, param, shape, gen, dtype):
        import torch

        if param.name == "weight":
            return torch.softmax(torch.randn(shape, generator=gen, dtype=dtype), dim=-1)
        return super().sample(a, param, shape, gen, dtype)

    def reference(self, a, x, weight):
        import torch.nn.functional as F

        c = x.shape[1]
        per_channel = weight.repeat_interleave(c // weight.shape[0], dim=0)  # [C, K]
        return F.conv1d(F.pad(x, self._pad(a)), per_channel.unsqueeze(1), groups=c)


@register
class DynamicConv1d(_HeadConv1d):
    name = "dynamic_conv1d"
    doc = "Lightweight conv whose kernel is predicted per sample and time step: weight[N,H,K,T]."
    tensors = (TensorParam("x", ("N", "C", "T")), TensorParam("weight", ("N", "H", "K", "T")))
    examples = {
        "wmt_k31": dict(x=[8, 1024, 128], weight=[8, 16, 31, 128]),
        "decoder_k7_causal": dict(x=[8, 512, 256], weight=[8, 8, 7, 256], causal=True),
    }

    def _hk(self, a):
        return a["weight"][1], a["weight"][2]

    def check(self, a):
        n, c, t = a["x"]
        wn, h, k, wt = a["weight"]
        if wn != n or wt != t:
            raise self.fail("weight", f"must have shape [N={n}, H, K, T={t}], got {list(a['weight'])}")
        super().check(a)

    def compute(self, a, ins):
        w = ins["weight"]
        return self._compute(a, ins["x"], lambda b, hh, kk, i: w[b, hh, kk, i])

    def sample(self, a, param, shape, gen, dtype):
        import torch

        if param.name == "weight":
            return torch.softmax(torch.randn(shape, generator=gen, dtype=dtype), dim=2)
        return super().sample(a, param, shape, gen, dtype)

    def reference(self, a, x, weight):
        import torch

        c, h = x.shape[1], weight.shape[1]
        per_channel = weight.repeat_interleave(c // h, dim=1)  # [N, C, K, T]
        return torch.einsum("nctk,nckt->nct", self._windows(a, x), per_channel)


@register
class Involution2d(OpSpec):
    name = "involution2d"
    family = "dynamic"
    doc = "Involution: a spatially-varying KxK kernel per position, shared by the C/G channels of a group."
    tensors = (TensorParam("x", ("N", "C", "H", "W")), TensorParam("kernel", ("N", "G", "K*K", "Ho", "Wo")))
    attrs = (
        Attr("kernel_size", "int", 7, minimum=1),
        Attr("stride", "pair", 1, minimum=1),
        Attr("padding", "pair", 0, minimum=0),
        Attr("dilation", "pair", 1, minimum=1),
    )
    # "Involution" (RedNet): K=7, 16 channels per group.
    examples = {
        "rednet_c64": dict(x=[1, 64, 56, 56], kernel=[1, 4, 49, 56, 56], kernel_size=7, padding=3),
        "rednet_c256_s2": dict(x=[1, 256, 28, 28], kernel=[1, 16, 49, 14, 14], kernel_size=7, stride=2, padding=3),
    }

    def _out_hw(self, a):
        _, _, h, w = a["x"]
        k = a["kernel_size"]
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        return out_len(h, ph, ph, dh, k, sh), out_len(w, pw, pw, dw, k, sw)

    def check(self, a):
        n, c, _, _ = a["x"]
        kn, g, kk, kho, kwo = a["kernel"]
        ho, wo = self._out_hw(a)
        if ho <= 0 or wo <= 0:
            raise self.fail("kernel_size", "dilated kernel is larger than the padded input")
        if c % g:
            raise self.fail("kernel", f"groups G={g} must divide the channels C={c}")
        k = a["kernel_size"]
        if (kn, kk, kho, kwo) != (n, k * k, ho, wo):
            raise self.fail("kernel", f"must have shape [N={n}, G, K*K={k * k}, Ho={ho}, Wo={wo}], got {list(a['kernel'])}")

    def output_shape(self, a):
        return (a["x"][0], a["x"][1], *self._out_hw(a))

    def _flops(self, a):
        return 2 * a["kernel_size"] ** 2 * prod(self.output_shape(a))

    def compute(self, a, ins):
        from tvm import te, tirx

        from .te_util import pad

        x, ker = ins["x"], ins["kernel"]
        c, g, k = a["x"][1], a["kernel"][1], a["kernel_size"]
        cpg = c // g
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        ru, rv = te.reduce_axis((0, k), "ru"), te.reduce_axis((0, k), "rv")
        if self.phased(a):
            # x[.., w] -> xs[.., w % s, w // s] (padded): window column j*s + v*d is then
            # xs[.., (v*d) % s, j + (v*d) // s], contiguous along j
            n, _, h, w = a["x"]
            wp = w + 2 * pw
            xs = te.compute(
                (n, c, h + 2 * ph, sw, wp // sw),
                lambda b, ch, hh, f, q: tirx.if_then_else(
                    tirx.all(hh >= ph, hh < ph + h, q * sw + f >= pw, q * sw + f < pw + w),
                    x[b, ch, hh - ph, q * sw + f - pw], tirx.const(0, x.dtype)),
                name="phase_pad",
            )

            def window(b, ch, i, j):
                return xs[b, ch, i * sh + ru * dh, (rv * dw) % sw, j + (rv * dw) // sw]
        else:
            xp = pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)], "pad")

            def window(b, ch, i, j):
                return xp[b, ch, i * sh + ru * dh, j * sw + rv * dw]
        return te.compute(
            self.output_shape(a),
            lambda b, ch, i, j: te.sum(ker[b, ch // cpg, ru * k + rv, i, j] * window(b, ch, i, j), axis=[ru, rv]),
            name="involution",
        )

    def phased(self, a) -> bool:
        """Whether the padded input is stored split into the stride's phases along the width
        (x[.., w] at [.., w % s, w // s]): strided windows, padded width a multiple of the
        stride. A window's vector loads along the output width are then contiguous instead of
        strided (rednet_c256_s2: 100 -> 68 us, benchmarks/RESULTS.md, session 9)."""
        sw = a["stride"][1]
        return sw > 1 and (a["x"][3] + 2 * a["padding"][1]) % sw == 0

    def schedule_cpu(self, sch, target, a):
        """Register tiles of (4 channels of a group, up to 4 output rows, one vector along the
        output width), accumulated in a local tile over the 7 x 7 window: the kernel vector
        ker[g, r, i, j] is loaded once for the channels of the tile, and with the window's
        rows unrolled the loads of x that two tile rows share are loaded once; with a stride
        the input comes split into phases (:meth:`phased`). rednet_c64 287 -> 119 us,
        rednet_c256_s2 200 -> 68 us against the tuned generic space (benchmarks/RESULTS.md,
        session 9)."""
        from .schedules import accumulate_in_tiles, block_names, parallel_vectorize

        cores = int(target.attrs.get("num-cores", 1))
        cpg = a["x"][1] // a["kernel"][1]
        ho, wo = self._out_hw(a)
        for name in {"pad", "phase_pad"} & block_names(sch):
            parallel_vectorize(sch, sch.get_sblock(name), cores)
        block = sch.get_sblock("involution")
        b, ch, i, j, ru, rv = sch.get_loops(block)
        ci_n = next(t for t in (4, 2, 1) if cpg % t == 0)
        it_n = next(t for t in (4, 2, 1) if ho % t == 0)
        lanes = next((t for t in (8, 16) if wo % t == 0), None) or max(t for t in range(1, 17) if wo % t == 0)
        cg, ci = sch.split(ch, [None, ci_n])
        io, it = sch.split(i, [None, it_n])
        jo, ji = sch.split(j, [None, lanes])
        accumulate_in_tiles(sch, block, (b, cg, io, jo, rv, ru, it, ci, ji), at=jo, init=rv, outer=(b, cg, io),
                            unroll=(ru, it, ci), vector=ji if lanes > 1 else None, cores=cores)

    def reference(self, a, x, kernel):
        import torch.nn.functional as F

        n, c, _, _ = x.shape
        g, k = kernel.shape[1], a["kernel_size"]
        ho, wo = self._out_hw(a)
        cols = F.unfold(x, k, dilation=a["dilation"], padding=a["padding"], stride=a["stride"])
        cols = cols.view(n, g, c // g, k * k, ho, wo)
        return (cols * kernel.unsqueeze(2)).sum(3).view(n, c, ho, wo)
