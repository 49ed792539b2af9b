"""Family "attention": channel and spatial attention operators (FcaNet's DCT channel attention)."""

from __future__ import annotations

import math

from .registry import register
from .spec import OpSpec, TensorParam, prod

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
