"""Family "deformable": convolutions that sample their input at learned, per-position offsets (DCNv2)."""

from __future__ import annotations

from .registry import register
from .spec import CONV2D_ATTRS, OpSpec, TensorParam, prod, window_out_hw


@register
class DeformableConv2d(OpSpec):
    name = "deformable_conv2d"
    family = "deformable"
    doc = ("Modulated deformable convolution (DCNv2): each kernel tap reads x by bilinear sampling at "
           "its regular position plus a predicted (dy, dx), times a predicted mask (used as given), "
           "then the convolution's weighted sum; torchvision.ops.deform_conv2d's layout.")
    tensors = (
        TensorParam("x", ("N", "C", "H", "W")),
        TensorParam("offset", ("N", "2*G*KH*KW", "Ho", "Wo"), doc="(dy, dx) per offset group g and tap, g-major"),
        TensorParam("mask", ("N", "G*KH*KW", "Ho", "Wo"), doc="modulation per offset group and tap"),
        TensorParam("weight", ("O", "C/groups", "KH", "KW")),
        TensorParam("bias", ("O",), optional=True),
    )
    attrs = CONV2D_ATTRS
    # DCNv2 in ResNet-50's stages 3 and 5 (the 3x3 conv of each bottleneck, one offset group),
    # batch 2 at 448x448 inputs (a detector's training crop halved).
    examples = {
        "r50_dcn_c3": dict(x=[2, 128, 56, 56], offset=[2, 18, 56, 56], mask=[2, 9, 56, 56], weight=[128, 128, 3, 3],
                           padding=1),
        "r50_dcn_c5": dict(x=[2, 512, 14, 14], offset=[2, 18, 14, 14], mask=[2, 9, 14, 14], weight=[512, 512, 3, 3],
                           padding=1),
    }
    tolerance = 1e-5
    # the corners once per group, the samples once per (channel, tap, position): read by every
    # channel of the group / every output channel
    keep_stages = ("corner_weight", "corner_row", "corner_col", "sample")

    def _taps(self, a) -> int:
        return a["weight"][2] * a["weight"][3]

    def offset_groups(self, a) -> int:
        return a["offset"][1] // (2 * self._taps(a))

    def check(self, a):
        n, c, h, w = a["x"]
        o, cg, kh, kw = a["weight"]
        g = a["groups"]
        if c % g or o % g:
            raise self.fail("groups", f"({g}) must divide the input channels C={c} and the output channels O={o}")
        if cg != c // g:
            raise self.fail("weight", f"dim 1 must be C/groups = {c // g}, got {cg}")
        taps, og = self._taps(a), self.offset_groups(a)
        ho, wo = self.output_shape(a)[2:]
        if a["offset"][1] % (2 * taps) or og < 1 or c % og:
            raise self.fail("offset", f"dim 1 must be 2*G*KH*KW = 2*G*{taps} with G offset groups dividing C={c}, "
                                      f"got {a['offset'][1]}")
        if a["offset"] != (n, 2 * og * taps, ho, wo):
            raise self.fail("offset", f"must have shape [{n}, {2 * og * taps}, {ho}, {wo}], got {list(a['offset'])}")
        if a["mask"] != (n, og * taps, ho, wo):
            raise self.fail("mask", f"must have shape [{n}, {og * taps}, {ho}, {wo}] (G*KH*KW = {og}*{taps}), "
                                    f"got {list(a['mask'])}")
        self.check_bias(a, o)

    def output_shape(self, a):
        o, _, kh, kw = a["weight"]
        return (a["x"][0], o, *window_out_hw(self, a, kh, kw, "weight"))

    def _flops(self, a):
        n, c = a["x"][:2]
        _, cg, kh, kw = a["weight"]
        ho, wo = self.output_shape(a)[2:]
        return 2 * cg * kh * kw * prod(self.output_shape(a)) + 12 * n * c * kh * kw * ho * wo  # conv + sampling

    def compute(self, a, ins):
        from tvm import te, tirx

        from .te_util import add_bias

        x, off, msk, wt = ins["x"], ins["offset"], ins["mask"], ins["weight"]
        n, c, h, w = a["x"]
        o, cg, kh, kw = a["weight"]
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        ho, wo = self.output_shape(a)[2:]
        taps, og = kh * kw, self.offset_groups(a)
        per_og = c // og
        f32 = x.dtype

        # Per (sample, offset group, tap, output position) and corner k = 2 dy + dx of the
        # bilinear cell: the corner's pixel (clamped into the image) and its weight, zero outside
        # the image, times the mask. Computed once, shared by the C / G channels of the group.
        def position(b, g, t, i, j):
            py = tirx.Cast(f32, i * sh - ph + (t // kw) * dh) + off[b, 2 * (g * taps + t), i, j]
            px = tirx.Cast(f32, j * sw - pw + (t % kw) * dw) + off[b, 2 * (g * taps + t) + 1, i, j]
            return py, px

        def corner(b, g, t, k, i, j):
            py, px = position(b, g, t, i, j)
            fy, fx = tirx.floor(py), tirx.floor(px)
            yy, xx = tirx.Cast("int32", fy) + k // 2, tirx.Cast("int32", fx) + k % 2
            return py - fy, px - fx, yy, xx

        def coef(b, g, t, k, i, j):
            ly, lx, yy, xx = corner(b, g, t, k, i, j)
            one = tirx.const(1, f32)
            wy = tirx.if_then_else(k // 2 == 1, ly, one - ly)
            wx = tirx.if_then_else(k % 2 == 1, lx, one - lx)
            inside = tirx.all(yy >= 0, yy < h, xx >= 0, xx < w)
            return tirx.if_then_else(inside, wy * wx * msk[b, g * taps + t, i, j], tirx.const(0, f32))

        cell = (n, og, taps, 4, ho, wo)  # the output row innermost: contiguous for the sampling
        weight4 = te.compute(cell, coef, name="corner_weight")
        row4 = te.compute(cell, lambda *ix: tirx.max(tirx.min(corner(*ix)[2], h - 1), 0), name="corner_row")
        col4 = te.compute(cell, lambda *ix: tirx.max(tirx.min(corner(*ix)[3], w - 1), 0), name="corner_col")

        def sample(b, ch, t, i, j):
            g = ch // per_og
            return sum((x[b, ch, row4[b, g, t, k, i, j], col4[b, g, t, k, i, j]] * weight4[b, g, t, k, i, j] for k in range(4)),
                       tirx.const(0, f32))

        cols = te.compute((n, c, taps, ho, wo), sample, name="sample")
        og_out = o // a["groups"]
        rc, rt = te.reduce_axis((0, cg), "rc"), te.reduce_axis((0, taps), "rt")
        y = te.compute(
            (n, o, ho, wo),
            lambda b, oc, i, j: te.sum(cols[b, (oc // og_out) * cg + rc, rt, i, j] * wt[oc, rc, rt // kw, rt % kw],
                                       axis=[rc, rt]),
            name="conv",
        )
        return add_bias(y, ins.get("bias"), axis=1)

    def schedule_cpu(self, sch, target, a):
        """The convolution over the sampled columns as a matrix product in register tiles (4
        output channels x up to 4 vectors along the output row, accumulated over the input
        channels and taps), parallel over (sample, output row); the bilinear sampling of each
        output row's columns (C x taps x Wo values, 258 KB for r50_dcn_c3) computed inside that
        loop, so the columns never go through memory whole (and the bias is added as the tile is
        written)."""
        from .schedules import accumulate_in_tiles, float_lanes

        cores = int(target.attrs.get("num-cores", 1))
        o, wo = a["weight"][0], self.output_shape(a)[3]
        wide = float_lanes(target)
        lanes = max(t for t in range(1, wide + 1) if wo % t == 0)
        if lanes < 4:
            return super().schedule_cpu(sch, target, a)
        strip = next(t for t in (4, 2, 1) if wo % (t * lanes) == 0)
        # up to 16 accumulator vectors: more output channels when the row takes few vectors
        ot_n = next(t for t in (16 // strip, 8 // strip, 4, 2, 1) if t and (o // a["groups"]) % t == 0)
        conv = sch.get_sblock("conv")
        b, oc, i, j, rc, rt = sch.get_loops(conv)
        jo, jt, jv = sch.split(j, [None, strip, lanes])
        oo, ot = sch.split(oc, [None, ot_n])
        outer = accumulate_in_tiles(sch, conv, (b, i, jo, oo, rc, rt, ot, jt, jv), at=oo, init=rc, outer=(b, i, jo),
                                    unroll=(ot, jt), vector=jv, cores=cores)
        if a["bias"] is not None:
            sch.reverse_compute_inline(sch.get_sblock("out"))
        sample = sch.get_sblock("sample")
        sch.compute_at(sample, outer)
        sch.vectorize(sch.get_loops(sample)[-1])  # along the output row: gathers of x

    def sample(self, a, param, shape, gen, dtype):
        import torch

        if param.name == "offset":  # a few pixels either way: taps land between pixels and past the border
            return 2.5 * torch.randn(shape, generator=gen, dtype=dtype)
        if param.name == "mask":  # DCNv2's sigmoid output
            return torch.rand(shape, generator=gen, dtype=dtype)
        return super().sample(a, param, shape, gen, dtype)

    def reference(self, a, x, offset, mask, weight, bias=None):
        """Bilinear sampling written out: for each tap, the four neighbouring pixels gathered
        with their weights (zero outside the image), times the mask; then the grouped
        convolution as one einsum per group."""
        import torch

        n, c, h, w = x.shape
        o, cg, kh, kw = weight.shape
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        ho, wo = offset.shape[2:]
        taps = kh * kw
        og = offset.shape[1] // (2 * taps)
        off = offset.view(n, og, taps, 2, ho, wo)
        dev = x.device
        ti = torch.arange(taps, device=dev) // kw
        tj = torch.arange(taps, device=dev) % kw
        base_y = (torch.arange(ho, device=dev) * sh - ph)[None, :, None] + (ti * dh)[:, None, None]  # [taps, Ho, 1]
        base_x = (torch.arange(wo, device=dev) * sw - pw)[None, None, :] + (tj * dw)[:, None, None]  # [taps, 1, Wo]
        py = base_y.to(x.dtype) + off[:, :, :, 0]  # [N, G, taps, Ho, Wo]
        px = base_x.to(x.dtype) + off[:, :, :, 1]
        y0, x0 = torch.floor(py), torch.floor(px)
        xg = x.view(n, og, c // og, h * w)
        cols = torch.zeros(n, og, c // og, taps, ho, wo, dtype=x.dtype, device=dev)
        for dy in (0, 1):
            for dx in (0, 1):
                yy, xx = y0 + dy, x0 + dx
                wgt = (1 - (py - y0 - dy).abs()) * (1 - (px - x0 - dx).abs())
                ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()  # [N, G, taps, Ho, Wo]
                vals = torch.gather(xg, 3, idx.view(n, og, 1, -1).expand(n, og, c // og, idx[0, 0].numel()))
                cols += vals.view(n, og, c // og, taps, ho, wo) * (wgt * ok).unsqueeze(2)
        cols = (cols * mask.view(n, og, 1, taps, ho, wo)).reshape(n, c, taps, ho, wo)
        g = a["groups"]
        cols = cols.view(n, g, cg, taps, ho, wo)
        wg = weight.view(g, o // g, cg, taps)
        y = torch.einsum("ngctij,gpct->ngpij", cols, wg).reshape(n, o, ho, wo)
        return y if bias is None else y + bias.view(1, -1, 1, 1)
