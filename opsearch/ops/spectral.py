"""Family "spectral": mixing in a truncated 2-D Fourier basis (the Fourier Neural Operator layer)."""

from __future__ import annotations

import math

from .registry import register
from .spec import OpSpec, TensorParam


@register
class SpectralConv2d(OpSpec):
    name = "spectral_conv2d"
    family = "spectral"
    doc = ("FNO layer: rfft2 of x, per-mode complex channel mixing on the lowest modes (rows 0..m1-1 "
           "and H-m1..H-1, columns 0..m2-1), zero elsewhere, irfft2; as truncated DFT-matrix products.")
    tensors = (
        TensorParam("x", ("N", "C", "H", "W")),
        TensorParam("weight", ("C", "O", "2*m1", "m2", "2"),
                    doc="complex R[c, o, row, col] as (re, im); rows 0..m1-1 are the low rows, m1..2m1-1 the high ones"),
    )
    # FNO-2D (Li et al. 2021): Darcy flow at 85x85 (width 32) and Navier-Stokes at 64x64 (width
    # 20), 12 modes per axis, batch 20 as in the paper's training runs.
    examples = {
        "fno_darcy_85": dict(x=[20, 32, 85, 85], weight=[32, 32, 24, 12, 2]),
        "fno_ns_64": dict(x=[20, 20, 64, 64], weight=[20, 20, 24, 12, 2]),
    }
    # float32 sums over H*W inputs and 2*m1*m2 modes
    tolerance = 1e-4

    def check(self, a):
        n, c, h, w = a["x"]
        wc, o, rows, cols, two = a["weight"]
        if wc != c or two != 2:
            raise self.fail("weight", f"must have shape [{c}, O, 2*m1, m2, 2] (complex as re, im), got {list(a['weight'])}")
        if rows % 2:
            raise self.fail("weight", f"dim 2 holds the low and the high rows, 2*m1, so it must be even, got {rows}")
        if rows > h:
            raise self.fail("weight", f"2*m1 = {rows} row modes exceed the height H={h}")
        if cols > w // 2 + 1:
            raise self.fail("weight", f"m2 = {cols} column modes exceed W/2+1 = {w // 2 + 1}")

    def output_shape(self, a):
        n, _, h, w = a["x"]
        return (n, a["weight"][1], h, w)

    def _flops(self, a):
        n, c, h, w = a["x"]
        _, o, rows, cols, _ = a["weight"]
        return (4 * n * c * h * w * cols + 8 * n * c * rows * cols * h + 8 * n * o * c * rows * cols
                + 8 * n * o * h * rows * cols + 4 * n * o * h * w * cols)

    @staticmethod
    def mode_rows(h: int, rows: int) -> list[int]:
        """The frequency of each weight row: 0..m1-1, then H-m1..H-1."""
        m1 = rows // 2
        return list(range(m1)) + list(range(h - m1, h))

    def constants(self, a):
        """The four truncated DFT matrices (float64 angles, float32 values), complex as pairs:
        ``fw[w, q, k]`` e^{-2 pi i k w / W}; ``fh[r, h, p, q]`` and ``ih[h, r, p, q]`` the row
        transforms as 2x2 real blocks (forward e^{-i...}, inverse e^{+i...}); ``iw[q, k, w]`` the
        half-spectrum inverse with its 1 / (H W) and the weight 2 of the columns whose mirror
        image is not stored (every column but 0 and W/2). The two width transforms are laid out
        with their matrix-product output axis contiguous (``fw``: the 2*m2 spectrum values of a
        row; ``iw``: the row's W pixels)."""
        import numpy as np

        _, _, h, w = a["x"]
        _, _, rows, cols, _ = a["weight"]
        k = np.arange(cols)[:, None]
        ang_w = 2 * np.pi * k * np.arange(w)[None, :] / w  # [k, w]
        fw = np.stack([np.cos(ang_w), -np.sin(ang_w)], 0).transpose(2, 0, 1)  # [w, q, k]
        twice = np.where((k == 0) | (2 * k == w), 1.0, 2.0) / (h * w)
        iw = np.stack([twice * np.cos(ang_w), -twice * np.sin(ang_w)], 0)  # [q, k, w]
        kx = np.array(self.mode_rows(h, rows))[:, None]
        ang_h = 2 * np.pi * kx * np.arange(h)[None, :] / h  # [r, h]
        c, s = np.cos(ang_h), np.sin(ang_h)
        # X = A e^{-i t}: re = Ar c + Ai s, im = Ai c - Ar s;  Z = Y e^{+i t}: re = Yr c - Yi s, im = Yr s + Yi c
        fh = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # [r, h, p, q]
        ih = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2).transpose(1, 0, 2, 3)  # [h, r, p, q]
        return {name: np.ascontiguousarray(v, dtype=np.float32) for name, v in
                (("fw", fw), ("fh", fh), ("ih", ih), ("iw", iw))}

    def compute(self, a, ins):
        from tvm import te, tirx

        x, wt = ins["x"], ins["weight"]
        fw, fh, ih, iw = ins["fw"], ins["fh"], ins["ih"], ins["iw"]
        n, c, h, w = a["x"]
        _, o, rows, cols, _ = a["weight"]
        rw = te.reduce_axis((0, w), "rw")
        # along the rows' width: A[b, c, h, q, k] = sum_w x e^{-2 pi i k w / W}
        spec_w = te.compute((n, c, h, 2, cols), lambda b, ch, i, q, k: te.sum(x[b, ch, i, rw] * fw[rw, q, k], axis=rw),
                            name="dft_w")
        rh, rq = te.reduce_axis((0, h), "rh"), te.reduce_axis((0, 2), "rq")
        # down the columns, the kept rows only: X[b, c, p, r, k]
        spec = te.compute((n, c, 2, rows, cols),
                          lambda b, ch, p, r, k: te.sum(spec_w[b, ch, rh, rq, k] * fh[r, rh, p, rq], axis=[rh, rq]),
                          name="dft_h")
        rc = te.reduce_axis((0, c), "rc")

        def mix(b, oc, p, r, k):  # (Xr + i Xi)(Wr + i Wi): re = Xr Wr - Xi Wi, im = Xr Wi + Xi Wr
            sign = tirx.Cast(x.dtype, 2 * p - 1)
            return te.sum(spec[b, rc, 0, r, k] * wt[rc, oc, r, k, p] + spec[b, rc, 1, r, k] * wt[rc, oc, r, k, 1 - p] * sign,
                          axis=rc)

        mixed = te.compute((n, o, 2, rows, cols), mix, name="mix")
        rr, rq2 = te.reduce_axis((0, rows), "rr"), te.reduce_axis((0, 2), "rq2")
        # back along the columns: Z[b, o, h, q, k]
        back_h = te.compute((n, o, h, 2, cols),
                            lambda b, oc, i, p, k: te.sum(mixed[b, oc, rq2, rr, k] * ih[i, rr, p, rq2], axis=[rr, rq2]),
                            name="idft_h")
        rq3, rk = te.reduce_axis((0, 2), "rq3"), te.reduce_axis((0, cols), "rk")
        return te.compute(self.output_shape(a),
                          lambda b, oc, i, j: te.sum(back_h[b, oc, i, rq3, rk] * iw[rq3, rk, j], axis=[rq3, rk]),
                          name="idft_w")

    def reference(self, a, x, weight):
        """FNO's own formulation: torch.fft.rfft2, the two corners of modes mixed with einsum
        (complex), zeros elsewhere, irfft2 back to H x W."""
        import torch

        n, c, h, w = x.shape
        _, o, rows, cols, _ = weight.shape
        m1 = rows // 2
        cdt = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        r = torch.view_as_complex(weight.contiguous())  # [C, O, 2*m1, m2]
        xf = torch.fft.rfft2(x)
        out = torch.zeros(n, o, h, w // 2 + 1, dtype=cdt, device=x.device)
        out[:, :, :m1, :cols] = torch.einsum("bixy,ioxy->boxy", xf[:, :, :m1, :cols], r[:, :, :m1])
        out[:, :, h - m1:, :cols] = torch.einsum("bixy,ioxy->boxy", xf[:, :, h - m1:, :cols], r[:, :, m1:])
        return torch.fft.irfft2(out, s=(h, w))
