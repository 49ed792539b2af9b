"""Family "attention": channel and spatial attention operators (FcaNet's DCT channel attention)."""

from __future__ import annotations

import math

from .registry import register
from .spec import Attr, OpSpec, TensorParam, prod

# FcaNet's "top16" frequencies on its 7x7 DCT grid (Qin et al. 2021, table of the 16 components
# that scored best one at a time on ImageNet), as (u, v); a layer scales them by H // 7, W // 7.
FCANET_TOP16 = ((0, 0), (0, 1), (6, 0), (0, 5), (0, 2), (1, 0), (1, 2), (4, 0),
                (5, 0), (1, 6), (3, 0), (0, 4), (0, 6), (0, 3), (3, 5), (2, 2))


@register
class DctChannelAttention(OpSpec):
    name = "dct_channel_attention"
    family = "attention"
    doc = ("FcaNet channel attention: each channel group pooled with one 2-D DCT basis function "
           "(frequency (u, v) per group), SE MLP w2 @ relu(w1 @ z), sigmoid, channels rescaled.")
    tensors = (
        TensorParam("x", ("N", "C", "H", "W")),
        TensorParam("freqs", ("G", "2"), dtype="int32", doc="(u, v) DCT frequency of each channel group"),
        TensorParam("w1", ("R", "C"), doc="squeeze layer (FcaNet: nn.Linear(C, C/16, bias=False))"),
        TensorParam("w2", ("C", "R"), doc="excite layer (nn.Linear(C/16, C, bias=False))"),
    )
    # FcaNet-50's attention after the last conv of each ResNet-50 stage (reduction 16, top16
    # frequencies scaled to the map), batch 8.
    examples = {
        "fcanet50_s2": dict(x=[8, 256, 56, 56], freqs=[16, 2], w1=[16, 256], w2=[256, 16]),
        "fcanet50_s4": dict(x=[8, 1024, 14, 14], freqs=[16, 2], w1=[64, 1024], w2=[1024, 64]),
    }
    # float32 pooling sums of up to H*W = 3136 terms (fcanet50_s2: 1.1e-5 against float64)
    tolerance = 1e-4
    # the cosines (G*(H+W) of them), the basis and the gate: computed once, not per element
    keep_stages = ("basis_h", "basis_w", "basis", "gate")

    def check(self, a):
        c = a["x"][1]
        g = a["freqs"][0]
        if a["freqs"][1] != 2:
            raise self.fail("freqs", f"must have shape [G, 2] (one (u, v) per channel group), got {list(a['freqs'])}")
        if c % g:
            raise self.fail("freqs", f"groups G={g} must divide the channels C={c}")
        if a["w1"][1] != c:
            raise self.fail("w1", f"must have shape [R, {c}], got {list(a['w1'])}")
        if a["w2"] != (c, a["w1"][0]):
            raise self.fail("w2", f"must have shape [{c}, {a['w1'][0]}], got {list(a['w2'])}")

    def output_shape(self, a):
        return a["x"]

    def _flops(self, a):
        n, c = a["x"][:2]
        r = a["w1"][0]
        # pooling (x * basis, sum) + rescale + the two matrix products
        return 3 * prod(a["x"]) + 4 * n * c * r

    def compute(self, a, ins):
        from tvm import te, tirx

        x, f, w1, w2 = ins["x"], ins["freqs"], ins["w1"], ins["w2"]
        n, c, h, w = a["x"]
        g = a["freqs"][0]
        cg, r = c // g, a["w1"][0]

        def cosine(freq, i, size):
            # cos(pi * freq * (i + 1/2) / size) with the angle reduced exactly: in units of
            # pi / (2 size), freq * (2i + 1) taken mod 4 size (a whole period)
            units = tirx.floormod(freq * (2 * i + 1), 4 * size)
            return tirx.cos(units.astype("float32") * tirx.const(math.pi / (2 * size), "float32"))

        bh = te.compute((g, h), lambda gi, i: cosine(f[gi, 0], i, h), name="basis_h")
        bw = te.compute((g, w), lambda gi, j: cosine(f[gi, 1], j, w), name="basis_w")
        # each group's [H, W] basis once (G*H*W products), so the pooling reads it contiguously
        basis = te.compute((g, h, w), lambda gi, i, j: bh[gi, i] * bw[gi, j], name="basis")
        ri, rj = te.reduce_axis((0, h), "ri"), te.reduce_axis((0, w), "rj")
        z = te.compute((n, c), lambda b, ch: te.sum(x[b, ch, ri, rj] * basis[ch // cg, ri, rj], axis=[ri, rj]),
                       name="pool")
        rc = te.reduce_axis((0, c), "rc")
        hid = te.compute((n, r), lambda b, k: te.sum(w1[k, rc] * z[b, rc], axis=rc), name="squeeze")
        rk = te.reduce_axis((0, r), "rk")
        e = te.compute((n, c), lambda b, ch: te.sum(w2[ch, rk] * tirx.max(hid[b, rk], tirx.const(0, "float32")), axis=rk),
                       name="excite")
        s = te.compute((n, c), lambda b, ch: tirx.sigmoid(e[b, ch]), name="gate")
        return te.compute(a["x"], lambda b, ch, i, j: x[b, ch, i, j] * s[b, ch], name="scale")

    def schedule_cpu(self, sch, target, a):
        """One sample per task: its pooling, the MLP and its gate computed at the sample's
        rescale loop, so that the second read of the sample (C*H*W floats, 3.2 MB for
        fcanet50_s2) comes from cache instead of memory. Every reduction (the pooling over
        H*W, both matrix-vector products) sums in vector lanes (rfactor) instead of one scalar
        chain per output."""
        from .schedules import float_lanes

        cores = int(target.attrs.get("num-cores", 1))
        n, c, h, w = a["x"]
        wide = float_lanes(target)

        def lanes_of(size):
            return next((t for t in (wide, 8, 4) if size % t == 0), None)

        if n < cores or lanes_of(h * w) is None:
            return super().schedule_cpu(sch, target, a)
        basis = sch.get_sblock("basis")
        _, i, j = sch.get_loops(basis)
        sch.vectorize(sch.split(sch.fuse(i, j), [None, lanes_of(h * w)])[1])
        chain = []  # consumer first: the order compute_at needs
        for name, size in (("excite", a["w1"][0]), ("squeeze", c), ("pool", h * w)):
            block = sch.get_sblock(name)
            chain.append(block)
            reduce = sch.get_loops(block)[2:]
            lanes = lanes_of(size)
            if lanes is None:
                continue
            _, lane = sch.split(sch.fuse(*reduce) if len(reduce) > 1 else reduce[0], [None, lanes])
            chain.append(sch.rfactor(lane, 2))  # <name>_rf[b, out, lane]: partial sums in lanes
        scale = sch.get_sblock("scale")
        b, ch, i, j = sch.get_loops(scale)
        sch.parallel(b)
        sch.vectorize(sch.split(sch.fuse(i, j), [None, lanes_of(h * w)])[1])
        sch.compute_at(sch.get_sblock("gate"), b)
        for block in chain:
            sch.compute_at(block, b)
        for block in chain:
            loops = sch.get_loops(block)[1:]
            if sch.get(block).name_hint.endswith("_rf"):  # (lane, out, steps) -> (out, steps, lane)
                if len(loops) == 2:  # a single step: its loop is gone
                    sch.reorder(loops[1], loops[0])
                    sch.vectorize(loops[0])
                    continue
                lane, out, steps = loops
                sch.reorder(out, steps, lane)
                sch.vectorize(lane)
                sch.decompose_reduction(block, steps)
            elif len(loops) == 2 and sch.get(block).iter_vars[1].iter_type != 0:  # (lane, out) of a final sum
                sch.reorder(loops[1], loops[0])

    def sample(self, a, param, shape, gen, dtype):
        import torch

        if param.name == "freqs":  # frequencies anywhere on the map's DCT grid
            h, w = a["x"][2:]
            return torch.stack([torch.randint(0, h, (shape[0],), generator=gen),
                                torch.randint(0, w, (shape[0],), generator=gen)], 1).to(torch.int32)
        return super().sample(a, param, shape, gen, dtype)

    def reference(self, a, x, freqs, w1, w2):
        """The FcaNet layer with the [C, H, W] basis built out in full (numpy cosines)."""
        import torch

        n, c, h, w = x.shape
        z = (x * dct_basis(freqs, c, h, w, dtype=x.dtype)).sum((2, 3))
        s = torch.sigmoid(torch.relu(z @ w1.T) @ w2.T)
        return x * s[:, :, None, None]


def neighborhood(size: int, kernel: int, dilation: int):
    """Row (or column) of each query's neighbours, NATTEN's rule: position i attends within its
    dilation lattice (the positions = i mod dilation) to the ``kernel`` lattice points nearest it,
    the window shifted inward at the borders. Returns an int64 torch tensor [size, kernel]."""
    import torch

    i = torch.arange(size)
    r, ip = i % dilation, i // dilation
    length = (size - r + dilation - 1) // dilation  # lattice points in i's residue class
    start = torch.minimum(torch.clamp(ip - kernel // 2, min=0), length - kernel)
    return (start[:, None] + torch.arange(kernel)[None, :]) * dilation + r[:, None]


@register
class NeighborhoodAttention2d(OpSpec):
    name = "neighborhood_attention2d"
    family = "attention"
    doc = ("Dilated neighborhood attention (NAT/DiNAT, 2-D): each query attends to the k x k keys "
           "nearest it on its dilation lattice (windows shifted inward at the borders), softmax "
           "of q.k / sqrt(D), weighted sum of the values.")
    tensors = (
        TensorParam("q", ("N", "heads", "H", "W", "D")),
        TensorParam("k", ("N", "heads", "H", "W", "D")),
        TensorParam("v", ("N", "heads", "H", "W", "D")),
    )
    attrs = (
        Attr("kernel_size", "int", 7, minimum=1, doc="odd window side k"),
        Attr("dilation", "int", 1, minimum=1),
    )
    # DiNAT-T (Hassani & Shi 2022): 7x7 windows, 32 channels per head; a stage-1 block at its
    # largest dilation (56x56, 2 heads, dilation 8) and a stage-2 one (28x28, 4 heads, 4).
    examples = {
        "dinat_t_s1_d8": dict(q=[2, 2, 56, 56, 32], k=[2, 2, 56, 56, 32], v=[2, 2, 56, 56, 32], kernel_size=7, dilation=8),
        "dinat_t_s2_d4": dict(q=[2, 4, 28, 28, 32], k=[2, 4, 28, 28, 32], v=[2, 4, 28, 28, 32], kernel_size=7, dilation=4),
    }
    tolerance = 1e-5

    def check(self, a):
        ks, d = a["kernel_size"], a["dilation"]
        if ks % 2 == 0:
            raise self.fail("kernel_size", f"must be odd, got {ks}")
        for name in ("k", "v"):
            if a[name] != a["q"]:
                raise self.fail(name, f"must have q's shape {list(a['q'])}, got {list(a[name])}")
        h, w = a["q"][2:4]
        if min(h, w) // d < ks:
            raise self.fail("kernel_size", f"{ks} needs at least {ks} points on every dilation-{d} lattice: "
                                           f"H // dilation and W // dilation must be >= {ks}, got {h // d} and {w // d}")

    def output_shape(self, a):
        return a["q"]

    def _flops(self, a):
        n, nh, h, w, dh = a["q"]
        kk = a["kernel_size"] ** 2
        return n * nh * h * w * kk * (4 * dh + 4)  # q.k and p.v, softmax

    def compute(self, a, ins):
        from tvm import te, tirx

        q, key, v = ins["q"], ins["k"], ins["v"]
        n, nh, h, w, dh = a["q"]
        ks, d = a["kernel_size"], a["dilation"]

        def nbr(i, t, size):  # neighbour t of position i along an axis of ``size``
            r, ip = tirx.floormod(i, d), tirx.floordiv(i, d)
            length = tirx.floordiv(size - r + d - 1, d)
            start = tirx.min(tirx.max(ip - ks // 2, 0), length - ks)
            return (start + t) * d + r

        rc = te.reduce_axis((0, dh), "rc")
        scale = tirx.const(1.0 / math.sqrt(dh), "float32")
        logits = te.compute(
            (n, nh, h, w, ks, ks),
            lambda b, m, i, j, ti, tj: te.sum(q[b, m, i, j, rc] * scale * key[b, m, nbr(i, ti, h), nbr(j, tj, w), rc],
                                              axis=rc),
            name="logits",
        )
        ri, rj = te.reduce_axis((0, ks), "ri"), te.reduce_axis((0, ks), "rj")
        mx = te.compute((n, nh, h, w), lambda b, m, i, j: te.max(logits[b, m, i, j, ri, rj], axis=[ri, rj]), name="rowmax")
        ex = te.compute((n, nh, h, w, ks, ks), lambda b, m, i, j, ti, tj: tirx.exp(logits[b, m, i, j, ti, tj] - mx[b, m, i, j]),
                        name="exp")
        si, sj = te.reduce_axis((0, ks), "si"), te.reduce_axis((0, ks), "sj")
        total = te.compute((n, nh, h, w), lambda b, m, i, j: te.sum(ex[b, m, i, j, si, sj], axis=[si, sj]), name="expsum")
        vi, vj = te.reduce_axis((0, ks), "vi"), te.reduce_axis((0, ks), "vj")
        acc = te.compute(
            a["q"],
            lambda b, m, i, j, c: te.sum(ex[b, m, i, j, vi, vj] * v[b, m, nbr(i, vi, h), nbr(j, vj, w), c], axis=[vi, vj]),
            name="weighted",
        )
        return te.compute(a["q"], lambda b, m, i, j, c: acc[b, m, i, j, c] / total[b, m, i, j], name="attend")

    keep_stages = ("exp",)

    def reference(self, a, q, k, v):
        """Explicit gather of each query's k x k neighbours (index tensors from
        :func:`neighborhood`), softmax over them, weighted sum."""
        import torch

        n, nh, h, w, dh = q.shape
        ks, d = a["kernel_size"], a["dilation"]
        rows, cols = neighborhood(h, ks, d).to(q.device), neighborhood(w, ks, d).to(q.device)  # [H, k], [W, k]
        r = rows[:, None, :, None].expand(h, w, ks, ks)
        c = cols[None, :, None, :].expand(h, w, ks, ks)
        keys, vals = k[:, :, r, c], v[:, :, r, c]  # [N, heads, H, W, k, k, D]
        logits = torch.einsum("nmijd,nmijabd->nmijab", q, keys) / math.sqrt(dh)
        p = torch.softmax(logits.reshape(n, nh, h, w, ks * ks), -1).reshape(logits.shape)
        return torch.einsum("nmijab,nmijabd->nmijd", p, vals)


def fcanet_freqs(channels: int, height: int, width: int, groups: int = 16) -> "object":
    """FcaNet's ``top{groups}`` frequencies for a ``height`` x ``width`` map as an int32 [G, 2]
    tensor: the 7x7-grid components scaled by H // 7 and W // 7 (FcaNet's own mapping)."""
    import torch

    if not 1 <= groups <= len(FCANET_TOP16):
        raise ValueError(f"groups must be 1..{len(FCANET_TOP16)}, got {groups}")
    if channels % groups:
        raise ValueError(f"groups={groups} must divide channels={channels}")
    sh, sw = max(height // 7, 1), max(width // 7, 1)
    return torch.tensor([(min(u * sh, height - 1), min(v * sw, width - 1)) for u, v in FCANET_TOP16[:groups]],
                        dtype=torch.int32)


def dct_basis(freqs, channels: int, height: int, width: int, dtype=None):
    """FcaNet's pooling weights as a [C, H, W] torch tensor: channel c of group g gets
    cos(pi u_g (h + 1/2) / H) * cos(pi v_g (w + 1/2) / W), computed in float64 (torch ops only,
    so that it also runs under ``torch.func`` transforms)."""
    import torch

    f = freqs.to(torch.float64).repeat_interleave(channels // freqs.shape[0], dim=0)  # [C, 2]
    hh = torch.arange(height, dtype=torch.float64, device=freqs.device) + 0.5
    ww = torch.arange(width, dtype=torch.float64, device=freqs.device) + 0.5
    bh = torch.cos(math.pi * f[:, :1] * hh / height)  # [C, H]
    bw = torch.cos(math.pi * f[:, 1:] * ww / width)  # [C, W]
    return (bh[:, :, None] * bw[:, None, :]).to(dtype or torch.float64)
