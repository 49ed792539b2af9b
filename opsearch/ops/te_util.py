"""Small TE building blocks shared by operator declarations (imports TVM)."""

from __future__ import annotations

from tvm import te, tirx


def pad(x: te.Tensor, pads: list[tuple[int, int]], name: str) -> te.Tensor:
    """Zero-pad ``x``: ``pads[i] = (lo, hi)`` per axis. Returns ``x`` when nothing is padded."""
    if all(lo == 0 and hi == 0 for lo, hi in pads):
        return x
    shape = [int(d) + lo + hi for d, (lo, hi) in zip(x.shape, pads)]

    def body(*idx):
        conds, src = [], []
        for i, (lo, hi), d in zip(idx, pads, x.shape):
            src.append(i - lo)
            if lo:
                conds.append(i >= lo)
            if hi:
                conds.append(i < lo + int(d))
        return tirx.if_then_else(tirx.all(*conds), x[tuple(src)], tirx.const(0, x.dtype))

    return te.compute(shape, body, name=name)


def add_bias(y: te.Tensor, bias: te.Tensor | None, axis: int, name: str = "out") -> te.Tensor:
    """``y + bias`` broadcast along ``axis`` (a separate elementwise stage), or ``y``."""
    if bias is None:
        return y
    return te.compute(y.shape, lambda *i: y[i] + bias[i[axis]], name=name)
