"""The best pure-PyTorch implementation of each operator: what ``opsearch bench`` races against.

One function per operator, registered by operator name, taking ``(args, **tensors)`` like
:meth:`OpSpec.baseline`. Each entry states its ``method`` in one line (shown by the benchmark).
Work that depends only on weights a layer holds fixed at inference (a filter spectrum,
materialised power-of-two weights, per-channel kernels, gather indices) is done once by the
entry's ``prepare`` step and not timed; everything that depends on the inputs of the call (the
activations, CondConv's routing, DynamicConv's predicted kernels) is timed. Calling an entry
runs both steps. Every entry is checked against the operator's independent ``reference`` by the
benchmark before it is timed and by ``tests/ops/test_baselines.py``.

>>> from opsearch import baselines
>>> baselines.get("fft_conv1d").method  # doctest: +ELLIPSIS
'torch.fft: rfft of u ...'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .. import ops


@dataclass(frozen=True)
class Baseline:
    """One operator's PyTorch implementation: ``run`` is timed, ``prepare`` is not."""

    op: str
    method: str
    run: Callable[..., Any]  # (args, **prepared tensors) -> output
    prepare: Callable[..., dict] | None = None  # (args, **tensors) -> tensors for ``run``

    def prepared(self, a: dict, **tensors) -> dict:
        """The tensors ``run`` takes: the inputs, with weight-only work done."""
        return self.prepare(a, **tensors) if self.prepare else tensors

    def __call__(self, a: dict, **tensors):
        return self.run(a, **self.prepared(a, **tensors))


_BASELINES: dict[str, Baseline] = {}


def register(op: str, method: str, prepare: Callable[..., dict] | None = None):
    """Decorator: ``run`` becomes operator ``op``'s baseline."""

    def deco(run):
        if op in _BASELINES:  # pragma: no cover - declaration error
            raise ValueError(f"baseline for {op} registered twice")
        _BASELINES[op] = Baseline(op, method, run, prepare)
        return run

    return deco


def get(name: str) -> Baseline:
    """The baseline of operator ``name`` (raises ``UnknownOperatorError`` for an unknown name);
    an operator without a registered one falls back to its ``OpSpec.baseline``."""
    spec = ops.get(name)
    if name in _BASELINES:
        return _BASELINES[name]
    return Baseline(name, "OpSpec.baseline", spec.baseline)


def registered() -> list[str]:
    return sorted(_BASELINES)


# ----------------------------------------------------------------------------- dilated
@register("dilated_conv2d", "F.conv2d with dilation (oneDNN)")
def dilated_conv2d(a, x, weight, bias=None):
    import torch.nn.functional as F

    return F.conv2d(x, weight, bias, a["stride"], a["padding"], a["dilation"], a["groups"])


@register("dilated_conv1d", "F.conv1d with dilation (oneDNN), causal: left zero-pad first")
def dilated_conv1d(a, x, weight, bias=None):
    import torch.nn.functional as F

    d, k = a["dilation"], weight.shape[2]
    if a["causal"]:
        return F.conv1d(F.pad(x, ((k - 1) * d, 0)), weight, bias, dilation=d)
    return F.conv1d(x, weight, bias, padding=(k - 1) * d // 2, dilation=d)


# ----------------------------------------------------------------------------- dynamic
@register("condconv2d", "grouped-conv trick: routing @ experts mixes per-sample kernels, one F.conv2d with groups=N*groups over the batch")
def condconv2d(a, x, experts, routing, bias=None):
    import torch.nn.functional as F

    n, c, h, w = x.shape
    e, o, cg, kh, kw = experts.shape
    mixed = (routing @ experts.reshape(e, -1)).reshape(n * o, cg, kh, kw)
    y = F.conv2d(x.reshape(1, n * c, h, w), mixed, None, a["stride"], a["padding"], a["dilation"], a["groups"] * n)
    y = y.view(n, o, y.shape[2], y.shape[3])
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def _head_pad(a, k: int) -> tuple[int, int]:
    """(left, right) zero padding of lightweight/dynamic conv: causal or centred."""
    p = k - 1 if a["causal"] else k // 2
    return p, k - 1 - p


def _lightweight_prepare(a, x, weight):
    c, h = x.shape[1], weight.shape[0]
    return {"x": x, "per_channel": weight.repeat_interleave(c // h, dim=0).unsqueeze(1).contiguous()}


@register("lightweight_conv1d", "depthwise F.conv1d (groups=C), head kernels expanded to channels once", _lightweight_prepare)
def lightweight_conv1d(a, x, per_channel):
    import torch.nn.functional as F

    return F.conv1d(F.pad(x, _head_pad(a, per_channel.shape[2])), per_channel, groups=x.shape[1])


@register("dynamic_conv1d", "shifted multiply-accumulate over the K taps (addcmul_ on strided views), picked over unfold+bmm and a band matrix by timing the examples")
def dynamic_conv1d(a, x, weight):
    import torch.nn.functional as F

    n, c, t = x.shape
    _, h, k, _ = weight.shape
    xp = F.pad(x, _head_pad(a, k)).view(n, h, c // h, t + k - 1)
    y = xp[..., 0:t] * weight[:, :, 0].unsqueeze(2)
    for j in range(1, k):
        y.addcmul_(xp[..., j : j + t], weight[:, :, j].unsqueeze(2))
    return y.view(n, c, t)


@register("involution2d", "F.unfold windows times the per-position kernels, summed over K*K (RedNet's PyTorch path)")
def involution2d(a, x, kernel):
    import torch.nn.functional as F

    n, c = x.shape[:2]
    g, ho, wo = kernel.shape[1], kernel.shape[3], kernel.shape[4]
    k = a["kernel_size"]
    cols = F.unfold(x, k, dilation=a["dilation"], padding=a["padding"], stride=a["stride"])
    cols = cols.view(n, g, c // g, k * k, ho, wo)
    return (cols * kernel.unsqueeze(2)).sum(3).view(n, c, ho, wo)


# ----------------------------------------------------------------------------- attention
def _dct_prepare(a, x, freqs, w1, w2):
    from ..ops.attention import dct_basis

    return {"x": x, "basis": dct_basis(freqs, x.shape[1], *x.shape[2:], dtype=x.dtype), "w1": w1, "w2": w2}


@register("dct_channel_attention", "FcaNet's layer: the [C, H, W] DCT basis built once, pooling as one einsum, the SE MLP (F.linear), x * gate", _dct_prepare)
def dct_channel_attention(a, x, basis, w1, w2):
    import torch
    import torch.nn.functional as F

    z = torch.einsum("nchw,chw->nc", x, basis)
    s = torch.sigmoid(F.linear(torch.relu(F.linear(z, w1)), w2))
    return x * s[:, :, None, None]


def _na_prepare(a, q, k, v):
    from ..ops.attention import neighborhood

    h, w = q.shape[2:4]
    return {"q": q, "k": k, "v": v, "rows": neighborhood(h, a["kernel_size"], a["dilation"]).to(q.device),
            "cols": neighborhood(w, a["kernel_size"], a["dilation"]).to(q.device)}


@register("neighborhood_attention2d", "per window offset (k*k of them): index_select of the key and value maps at each query's neighbour (indices made once), multiply-sum logits, softmax, addcmul_; picked over gathering [.., k*k, D] and two batched matmuls (2x slower at dinat_t_s1_d8)", _na_prepare)
def neighborhood_attention2d(a, q, k, v, rows, cols):
    import torch

    ks = rows.shape[1]
    logits = []
    for ti in range(ks):
        kr = k.index_select(2, rows[:, ti])
        for tj in range(ks):
            logits.append((q * kr.index_select(3, cols[:, tj])).sum(-1))
    p = torch.softmax(torch.stack(logits, -1) * q.shape[-1] ** -0.5, -1)
    out = torch.zeros_like(q)
    for ti in range(ks):
        vr = v.index_select(2, rows[:, ti])
        for tj in range(ks):
            out.addcmul_(vr.index_select(3, cols[:, tj]), p[..., ti * ks + tj, None])
    return out


# ----------------------------------------------------------------------------- deformable
def _deform_prepare(a, x, offset, mask, weight, bias=None):
    import torch

    ho, wo = offset.shape[2:]
    o, cg, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    taps = kh * kw
    tap = torch.arange(taps)
    # each tap's regular sampling position [taps, Ho, Wo], (y, x)
    base_y = ((torch.arange(ho) * sh - ph)[None, :, None] + (tap // kw * dh)[:, None, None]).expand(taps, ho, wo)
    base_x = ((torch.arange(wo) * sw - pw)[None, None, :] + (tap % kw * dw)[:, None, None]).expand(taps, ho, wo)
    g = a["groups"]
    return {"x": x, "offset": offset, "mask": mask, "base": torch.stack([base_x, base_y], -1).to(x.device, x.dtype),
            "weight": weight.reshape(g, o // g, cg * taps), "bias": bias}


@register("deformable_conv2d", "F.grid_sample (bilinear, zeros outside) of every tap at once from grids built on precomputed regular positions, times the mask, then the convolution as one batched matmul per group (the pure-PyTorch DCN; torchvision's compiled ops do not load against this CPU build of torch)", _deform_prepare)
def deformable_conv2d(a, x, offset, mask, base, weight, bias=None):
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    taps, ho, wo = base.shape[:3]
    og = offset.shape[1] // (2 * taps)
    off = offset.view(n * og, taps, 2, ho, wo).permute(0, 1, 3, 4, 2).flip(-1)  # (dy, dx) -> (x, y)
    pos = base + off  # [N*G, taps, Ho, Wo, 2] in pixels
    size = torch.tensor([w, h], dtype=x.dtype, device=x.device)
    grid = (2 * pos + 1) / size - 1  # align_corners=False: pixel p -> (2p + 1) / size - 1
    cols = F.grid_sample(x.view(n * og, c // og, h, w), grid.view(n * og, taps * ho, wo, 2), mode="bilinear",
                         padding_mode="zeros", align_corners=False)  # [N*G, C/G, taps*Ho, Wo]
    cols = cols.view(n, og, c // og, taps, ho * wo) * mask.view(n, og, 1, taps, ho * wo)
    g = weight.shape[0]
    y = torch.matmul(weight, cols.reshape(n, g, -1, ho * wo))  # [N, g, O/g, Ho*Wo]
    y = y.reshape(n, -1, ho, wo)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


# ----------------------------------------------------------------------------- fft
def _fft_prepare(a, u, k):
    import torch

    n = u.shape[-1]
    return {"u": u, "k_spectrum": torch.fft.rfft(k, n=2 * n)}


@register("fft_conv1d", "torch.fft: rfft of u (length 2N) times the filter spectrum precomputed once, irfft, first N", _fft_prepare)
def fft_conv1d(a, u, k_spectrum):
    import torch

    n = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=2 * n) * k_spectrum, n=2 * n)[..., :n]


def _spectral_prepare(a, x, weight):
    import torch

    m1 = weight.shape[2] // 2
    r = torch.view_as_complex(weight.contiguous())
    return {"x": x, "low": r[:, :, :m1].contiguous(), "high": r[:, :, m1:].contiguous()}


@register("spectral_conv2d", "FNO's SpectralConv2d: torch.fft.rfft2, einsum over the two corners of modes (complex weights made once), zeros elsewhere, irfft2", _spectral_prepare)
def spectral_conv2d(a, x, low, high):
    import torch

    n, _, h, w = x.shape
    o, m1, m2 = low.shape[1], low.shape[2], low.shape[3]
    xf = torch.fft.rfft2(x)
    out = torch.zeros(n, o, h, w // 2 + 1, dtype=xf.dtype, device=x.device)
    out[:, :, :m1, :m2] = torch.einsum("bixy,ioxy->boxy", xf[:, :, :m1, :m2], low)
    out[:, :, h - m1:, :m2] = torch.einsum("bixy,ioxy->boxy", xf[:, :, h - m1:, :m2], high)
    return torch.fft.irfft2(out, s=(h, w))


# ----------------------------------------------------------------------------- shift-add
def _shift_conv_prepare(a, x, shifts, weight, bias=None):
    import torch

    _, c, h, w = x.shape
    p = int(shifts.abs().max()) if shifts.numel() else 0
    sh = shifts.to(torch.int64)
    # Row/column of each channel's shifted window in x padded by p; zero padding covers the border.
    rows = torch.arange(h)[None, :, None] + sh[:, 0, None, None] + p  # [C, H, 1]
    cols = torch.arange(w)[None, None, :] + sh[:, 1, None, None] + p  # [C, 1, W]
    return {"x": x, "pad": p, "chan": torch.arange(c)[:, None, None], "rows": rows, "cols": cols,
            "weight": weight, "bias": bias}


@register("shift_conv2d", "zero-pad, one advanced-index gather of every channel's shifted window (indices precomputed), 1x1 conv as matmul", _shift_conv_prepare)
def shift_conv2d(a, x, pad, chan, rows, cols, weight, bias=None):
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad)) if pad else x
    shifted = xp[:, chan, rows, cols]  # [N, C, H, W]
    y = torch.matmul(weight, shifted.reshape(n, c, h * w)).view(n, -1, h, w)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def _shift_linear_prepare(a, x, sign, shift, bias=None):
    import torch

    s = shift.to(torch.int64)
    if a["dtype"] == "float32":
        w = torch.ldexp(sign.to(x.dtype), s.to(x.dtype))  # sign * 2^shift, exact
        return {"x": x, "weight": w, "bias": bias}
    # int32: x << s == x * 2^s exactly for s >= 0; x >> k (floor) for k = -s > 0 is not a product,
    # so each right shift that occurs gets its own column block: y = [x, x>>k1, ...] @ W_cat.T,
    # in float64, exact for |y| < 2^53.
    sg = sign.to(torch.float64)
    blocks = [torch.where(s >= 0, torch.ldexp(sg, s.clamp(min=0).to(torch.float64)), torch.zeros(()))]
    rights = sorted({int(v) for v in (-s[s < 0]).unique()})
    blocks += [torch.where(s == -k, sg, torch.zeros(())) for k in rights]
    return {"x": x, "weight": torch.cat(blocks, dim=1), "rights": tuple(rights), "bias": bias}


@register("shift_linear", "float32: F.linear with materialised sign*2^shift weights; int32: [x, x>>k...] @ exact float64 weights", _shift_linear_prepare)
def shift_linear(a, x, weight, bias=None, rights=None):
    import torch
    import torch.nn.functional as F

    if a["dtype"] == "float32":
        return F.linear(x, weight, bias)
    parts = torch.cat([x, *(x >> k for k in rights)], dim=-1).to(torch.float64)
    return F.linear(parts, weight).round().to(torch.int32)


@register("adder_conv2d", "F.unfold + torch.cdist(p=1) between all windows and all filters, one batch")
def adder_conv2d(a, x, weight):
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    o = weight.shape[0]
    _, _, ho, wo = ops.get("adder_conv2d").output_shape(a)
    cols = F.unfold(x, weight.shape[2:], padding=a["padding"], stride=a["stride"])  # [N, C*KH*KW, L]
    dist = torch.cdist(cols.transpose(1, 2).reshape(1, -1, cols.shape[1]), weight.reshape(1, o, -1), p=1)
    return (-dist).view(n, ho * wo, o).transpose(1, 2).reshape(n, o, ho, wo)
