"""Small TE building blocks shared by operator declarations (imports TVM)."""

from __future__ import annotations

from tvm import te, tirx


def pad(x: te.Tensor, pads: list[tuple[int, int]], name: str, likely: bool = False) -> te.Tensor:
    """Zero-pad ``x``: ``pads[i] = (lo, hi)`` per axis. Returns ``x`` when nothing is padded.
    ``likely`` marks each bounds test as likely true: inlined into a consumer whose loops carry
    TVM's ``pragma_loop_partition_hint``, lowering then splits those loops where a test is
    constant, so the taps that read only padding disappear (schedules.conv2d_tiles_skipping_padding)."""
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
        if likely:
            conds = [tirx.likely(c) for c in conds]
        return tirx.if_then_else(tirx.all(*conds), x[tuple(src)], tirx.const(0, x.dtype))

    return te.compute(shape, body, name=name)


def add_bias(y: te.Tensor, bias: te.Tensor | None, axis: int, name: str = "out") -> te.Tensor:
    """``y + bias`` broadcast along ``axis`` (a separate elementwise stage), or ``y``."""
    if bias is None:
        return y
    return te.compute(y.shape, lambda *i: y[i] + bias[i[axis]], name=name)


# Channel block of the blocked layout (NCHW16c): 16 fp32 lanes, one AVX-512 vector or two AVX2 ones.
BLOCK = 16


def blocked_layout_applies(channels: int, out_channels: int, groups: int, out_width: int) -> bool:
    """Whether a 2-D convolution computes in the channel-blocked layout: dense (groups 1), both
    channel counts multiples of the block, and an output width that is not (the NCHW form can only
    vectorise along the width, and a width such as 28 leaves every vector partly empty)."""
    return groups == 1 and channels % BLOCK == 0 and out_channels % BLOCK == 0 and out_width % BLOCK != 0


def pack_pad_nchwc(x: te.Tensor, ph: int, pw: int, name: str = "pack_pad") -> te.Tensor:
    """Zero-pad ``x`` [N, C, H, W] by (ph, pw) and pack it to [N, C/16, H+2ph, W+2pw, 16] in one stage."""
    n, c, h, w = (int(d) for d in x.shape)
    v, zero = BLOCK, tirx.const(0, x.dtype)

    def body(b, co, i, j, ci):
        inside = tirx.all(i >= ph, i < h + ph, j >= pw, j < w + pw)
        return tirx.if_then_else(inside, x[b, co * v + ci, i - ph, j - pw], zero)

    return te.compute((n, c // v, h + 2 * ph, w + 2 * pw, v), body, name=name)


def unpack_nchwc(y: te.Tensor, name: str = "unpack") -> te.Tensor:
    """[N, O/16, H, W, 16] back to [N, O, H, W]."""
    n, ob, h, w, v = (int(d) for d in y.shape)
    return te.compute((n, ob * v, h, w), lambda b, k, i, j: y[b, k // v, i, j, k % v], name=name)


def conv2d_nchwc(xp: te.Tensor, weight_at, out_shape, kernel, stride, dilation, name: str = "conv") -> te.Tensor:
    """The blocked convolution [N, O/16, Ho, Wo, 16] over a packed input ``xp`` (pack_pad_nchwc):
    sums over input-channel blocks, kernel taps and the 16 lanes of a block;
    ``weight_at(b, ko, rco, ry, rx, rci, oi)`` reads the packed weight (per sample or shared)."""
    n, o, ho, wo = out_shape
    c, (kh, kw), (sh, sw), (dh, dw) = int(xp.shape[1]) * BLOCK, kernel, stride, dilation
    rco = te.reduce_axis((0, c // BLOCK), "rco")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    rci = te.reduce_axis((0, BLOCK), "rci")
    return te.compute(
        (n, o // BLOCK, ho, wo, BLOCK),
        lambda b, ko, i, j, oi: te.sum(
            xp[b, rco, i * sh + ry * dh, j * sw + rx * dw, rci] * weight_at(b, ko, rco, ry, rx, rci, oi),
            axis=[rco, ry, rx, rci],
        ),
        name=name,
    )
