"""Drop-in ``torch.nn`` modules for every opsearch operator, with their parameter generators.

Each module holds its parameters as a PyTorch user expects (``weight``/``bias`` initialised like
``nn.Conv2d``/``nn.Linear``, plain ``state_dict``), computes whatever the operator takes as input
(CondConv's routing, DynamicConv's per-step kernels, Involution's kernels, FFTConv's filter) with
ordinary torch layers, and runs the operator itself through ``opsearch.functional`` when
``use_opsearch`` is True, or through a pure-PyTorch path when it is False (kept for comparison
and as the reference for ``opsearch.optimize``). Both paths are differentiable. The opsearch path
takes float32 CPU tensors and raises ``InputError`` for anything else.

>>> conv = DilatedConv2d(64, 64, 3, padding=2, dilation=2)   # an nn.Conv2d subclass
>>> tcn = DilatedConv1d(32, 32, 3, dilation=4, causal=True)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as TF
from torch import nn

from .. import ops as _ops
from . import functional as F

__all__ = [
    "DilatedConv2d", "DilatedConv1d", "ShiftConv2d", "ShiftLinear", "AdderConv2d", "CondConv2d",
    "LightweightConv1d", "DynamicConv1d", "Involution2d", "FFTConv1d", "DctChannelAttention", "SpectralConv2d",
    "NeighborhoodAttention2d", "DeformableConv2d", "OpsearchModule",
]


#: Operator name -> ``fn(args, **tensors)`` that the modules' PyTorch path runs instead of the
#: operator's own formulation (``OpSpec.baseline``). Empty by default; the model benchmark
#: (``opsearch.bench.models``) installs the fastest pure-PyTorch implementations
#: (``opsearch.bench.baselines``) so that a model's eager side is the best PyTorch can do.
PYTORCH_PATHS: dict = {}


def _pytorch(op_name: str, tensors: dict, attrs: dict) -> torch.Tensor:
    """The operator's pure-PyTorch formulation (``OpSpec.baseline``, or the one installed in
    :data:`PYTORCH_PATHS`) on these tensors."""
    op = _ops.get(op_name)
    shapes = {k: list(v.shape) for k, v in tensors.items() if v is not None}
    a = op.workload(**shapes, **attrs).args
    impl = PYTORCH_PATHS.get(op_name)
    return impl(a, **tensors) if impl is not None else op.baseline(a, **tensors)


def _conv_init(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int) -> None:
    """``nn.Conv2d.reset_parameters``: kaiming_uniform(a=sqrt(5)) and U(-1/sqrt(fan_in), ...)."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(bias, -bound, bound)


class OpsearchModule(nn.Module):
    """Marker base: a module whose operator runs on opsearch kernels when ``use_opsearch``."""

    op_name: str = ""
    use_opsearch: bool = True


# --------------------------------------------------------------------------- dilated
class DilatedConv2d(nn.Conv2d, OpsearchModule):
    """``nn.Conv2d`` (same arguments, parameters and init) running ``dilated_conv2d``.

    Non-zero ``padding_mode`` is applied with ``F.pad`` first; ``padding='same'`` with an odd total
    padding (even dilated kernel extent) runs the PyTorch path.
    """

    op_name = "dilated_conv2d"

    def __init__(self, *args, use_opsearch: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_opsearch = use_opsearch

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, use_opsearch: bool = True) -> "DilatedConv2d":
        """A DilatedConv2d sharing ``conv``'s parameters (no copy)."""
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.groups, conv.bias is not None, conv.padding_mode, device="meta", use_opsearch=use_opsearch)
        m.weight, m.bias = conv.weight, conv.bias
        m.train(conv.training)
        return m

    def _padding(self):
        if not isinstance(self.padding, str):
            return list(self.padding)
        if self.padding == "valid":
            return [0, 0]
        total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
        return [t // 2 for t in total] if all(t % 2 == 0 for t in total) else None

    def forward(self, x):
        pad = self._padding()
        if not self.use_opsearch or pad is None:
            return super().forward(x)
        if self.padding_mode != "zeros":
            x, pad = TF.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode), [0, 0]
        return F.dilated_conv2d(x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)


class DilatedConv1d(nn.Conv1d, OpsearchModule):
    """TCN layer ``dilated_conv1d``: causal (left padding ``(K-1)·d``) or odd-K 'same' padding.

    Parameters and init are ``nn.Conv1d``'s (``weight[O, C, K]``, ``bias[O]``); the output has the
    input's length. No stride or groups.
    """

    op_name = "dilated_conv1d"

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, causal=True, bias=True,
                 device=None, dtype=None, use_opsearch: bool = True):
        if not causal and kernel_size % 2 == 0:
            raise ValueError(f"DilatedConv1d: non-causal ('same') padding needs an odd kernel_size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias, device=device, dtype=dtype)
        self.causal = causal
        self.use_opsearch = use_opsearch

    def extra_repr(self):
        return super().extra_repr() + f", causal={self.causal}"

    def _pads(self):
        total = (self.kernel_size[0] - 1) * self.dilation[0]
        return (total, 0) if self.causal else (total // 2, total // 2)

    def forward(self, x):
        if self.use_opsearch:
            return F.dilated_conv1d(x, self.weight, self.bias, self.dilation[0], self.causal)
        return TF.conv1d(TF.pad(x, self._pads()), self.weight, self.bias, dilation=self.dilation)


# --------------------------------------------------------------------------- shift-add
def scnet_shifts(channels: int) -> torch.Tensor:
    """SCNet's five shift groups (0,0),(0,1),(0,-1),(1,0),(-1,0): [C, 2] int32 (centre gets the rest)."""
    offsets = [(0, 1), (0, -1), (1, 0), (-1, 0)]
    per = channels // 5
    s = torch.zeros(channels, 2, dtype=torch.int32)
    for g, off in enumerate(offsets):
        s[g * per : (g + 1) * per] = torch.tensor(off, dtype=torch.int32)
    return s


class ShiftConv2d(OpsearchModule):
    """Per-channel spatial shift (zero fill) fused with a 1×1 conv (SCNet).

    ``shifts`` is a [C, 2] int32 buffer of (dy, dx) offsets (default: SCNet's five groups);
    ``weight[O, C]`` and ``bias[O]`` are initialised like a 1×1 ``nn.Conv2d``.
    """

    op_name = "shift_conv2d"

    def __init__(self, in_channels, out_channels, bias=True, shifts=None, use_opsearch: bool = True):
        super().__init__()
        shifts = scnet_shifts(in_channels) if shifts is None else torch.as_tensor(shifts, dtype=torch.int32)
        if tuple(shifts.shape) != (in_channels, 2):
            raise ValueError(f"ShiftConv2d: shifts must have shape [{in_channels}, 2], got {list(shifts.shape)}")
        self.register_buffer("shifts", shifts.clone())
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.use_opsearch = use_opsearch
        _conv_init(self.weight, self.bias, in_channels)

    def forward(self, x):
        if self.use_opsearch:
            return F.shift_conv2d(x, self.shifts, self.weight, self.bias)
        return _pytorch(self.op_name, dict(x=x, shifts=self.shifts, weight=self.weight, bias=self.bias), {})


def quantize_shift(weight: torch.Tensor, max_shift: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepShift-Q rounding: (sign, shift) int8 with weight ≈ sign·2^shift, shift in [-16, 16];
    magnitudes below 2^-16.5 become sign 0."""
    w = weight.detach()
    shift = torch.round(torch.log2(w.abs().clamp_min(2.0 ** -(max_shift + 2))))
    sign = torch.where(shift < -max_shift, torch.zeros_like(w), torch.sign(w))
    return sign.to(torch.int8), shift.clamp(-max_shift, max_shift).to(torch.int8)


def decode_shift(sign: torch.Tensor, shift: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return sign.to(dtype) * torch.pow(2.0, shift.to(dtype))


class _ShiftLinearSTE(torch.autograd.Function):
    """y = shift_linear(x, quantise(W)) + b; the weight gradient passes straight through."""

    @staticmethod
    def forward(x, weight, bias, sign, shift, use_opsearch):
        if use_opsearch:
            return F.shift_linear(x, sign, shift, bias)
        return TF.linear(x, decode_shift(sign, shift, x.dtype), bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, sign, shift, _ = inputs
        ctx.save_for_backward(x, sign, shift)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad):
        x, sign, shift = ctx.saved_tensors
        wq = decode_shift(sign, shift, grad.dtype)
        gx = grad @ wq
        gw = grad.reshape(-1, grad.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        gb = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.has_bias else None
        return gx, gw, gb, None, None, None


class ShiftLinear(OpsearchModule):
    """DeepShift-Q linear layer: a float ``weight`` (``nn.Linear``'s shape, init and state_dict)
    quantised on every forward to sign·2^shift (``quantize_shift``); the straight-through
    estimator passes the weight gradient unchanged. ``sign_shift()`` gives the int8 pair an
    inference runtime stores.
    """

    op_name = "shift_linear"

    def __init__(self, in_features, out_features, bias=True, use_opsearch: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.use_opsearch = use_opsearch
        _conv_init(self.weight, self.bias, in_features)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def sign_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        return quantize_shift(self.weight)

    def forward(self, x):
        sign, shift = self.sign_shift()
        return _ShiftLinearSTE.apply(x, self.weight, self.bias, sign, shift, self.use_opsearch)


class AdderConv2d(OpsearchModule):
    """AdderNet layer: y = -Σ|x_pad - W| (+ bias). ``weight[O, C, KH, KW]`` initialised like
    ``nn.Conv2d``; no bias by default (AdderNet follows it with batch norm)."""

    op_name = "adder_conv2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=False,
                 use_opsearch: bool = True):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.use_opsearch = use_opsearch
        _conv_init(self.weight, self.bias, in_channels * kh * kw)

    def forward(self, x):
        attrs = dict(stride=self.stride, padding=self.padding)
        if self.use_opsearch:
            y = F.adder_conv2d(x, self.weight, **attrs)
        else:
            y = _pytorch(self.op_name, dict(x=x, weight=self.weight), attrs)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


# --------------------------------------------------------------------------- dynamic
class CondConv2d(OpsearchModule):
    """CondConv: ``experts[E, O, C/groups, KH, KW]`` mixed per sample by
    ``routing = sigmoid(router(global_avg_pool(x)))``, ``router = nn.Linear(C, E)``."""

    op_name = "condconv2d"

    def __init__(self, in_channels, out_channels, kernel_size, num_experts=8, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, use_opsearch: bool = True):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.experts = nn.Parameter(torch.empty(num_experts, out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.router = nn.Linear(in_channels, num_experts)
        self.use_opsearch = use_opsearch
        fan_in = in_channels // groups * kh * kw
        for e in range(num_experts):
            _conv_init(self.experts.data[e], None, fan_in)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def routing(self, x):
        return torch.sigmoid(self.router(x.mean((2, 3))))

    def forward(self, x):
        r = self.routing(x)
        attrs = dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)
        if self.use_opsearch:
            return F.condconv2d(x, self.experts, r, self.bias, **attrs)
        # CondConv's batched formulation: one grouped conv with the batch folded into groups.
        n, c, h, w = x.shape
        e, o = self.experts.shape[:2]
        wn = (r @ self.experts.reshape(e, -1)).reshape(n * o, *self.experts.shape[2:])
        y = TF.conv2d(x.reshape(1, n * c, h, w), wn, None, self.stride, self.padding, self.dilation, n * self.groups)
        y = y.reshape(n, o, *y.shape[2:])
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


class LightweightConv1d(OpsearchModule):
    """Lightweight convolution (Wu et al. 2019): ``weight[H, K]`` softmax-normalised over K
    (``weight_softmax``), shared by the C/H channels of each head; input [N, C, T]."""

    op_name = "lightweight_conv1d"

    def __init__(self, channels, kernel_size=3, heads=1, causal=False, weight_softmax=True, bias=False,
                 use_opsearch: bool = True):
        super().__init__()
        if channels % heads:
            raise ValueError(f"LightweightConv1d: heads={heads} must divide channels={channels}")
        self.causal, self.weight_softmax = causal, weight_softmax
        self.weight = nn.Parameter(torch.empty(heads, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.use_opsearch = use_opsearch
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x):
        w = torch.softmax(self.weight, -1) if self.weight_softmax else self.weight
        if self.use_opsearch:
            y = F.lightweight_conv1d(x, w, causal=self.causal)
        else:
            y = _pytorch(self.op_name, dict(x=x, weight=w), dict(causal=self.causal))
        return y if self.bias is None else y + self.bias.view(1, -1, 1)


class DynamicConv1d(OpsearchModule):
    """Dynamic convolution (Wu et al. 2019): a kernel per sample and time step predicted by
    ``predictor = nn.Linear(C, H·K)`` from x[:, :, t], softmax over K; input [N, C, T]."""

    op_name = "dynamic_conv1d"

    def __init__(self, channels, kernel_size=3, heads=1, causal=False, bias=False, use_opsearch: bool = True):
        super().__init__()
        if channels % heads:
            raise ValueError(f"DynamicConv1d: heads={heads} must divide channels={channels}")
        self.heads, self.kernel_size, self.causal = heads, kernel_size, causal
        self.predictor = nn.Linear(channels, heads * kernel_size)
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.use_opsearch = use_opsearch

    def kernels(self, x):
        n, _, t = x.shape
        # The predictor applied as W[H·K, C] @ x[n] (+ b): its output is already [N, H, K, T], so
        # neither x nor the logits are transposed and copied, and the softmax over K runs along
        # T-contiguous rows (over a last dimension of K = 3-15 it ran 5x slower: 517 against
        # 105 us at N=4, T=256, H=8, K=7). 123 against 221 us for the old nn.Linear over
        # x.transpose(1, 2) + permute + softmax (same sizes, znver4, 2026-12-04).
        p = self.predictor
        w = p.weight.expand(n, -1, -1)
        logits = torch.bmm(w, x) if p.bias is None else torch.baddbmm(p.bias.view(1, -1, 1), w, x)
        return torch.softmax(logits.view(n, self.heads, self.kernel_size, t), dim=2)

    def forward(self, x):
        w = self.kernels(x)
        if self.use_opsearch:
            y = F.dynamic_conv1d(x, w, causal=self.causal)
        else:
            y = _pytorch(self.op_name, dict(x=x, weight=w), dict(causal=self.causal))
        return y if self.bias is None else y + self.bias.view(1, -1, 1)


class Involution2d(OpsearchModule):
    """Involution (Li et al. 2021) with its kernel generator: avgpool(stride) → 1×1 conv C→C/r →
    BN → ReLU → 1×1 conv → G·K·K kernels per output position (G = C / group_channels)."""

    op_name = "involution2d"

    def __init__(self, channels, kernel_size=7, stride=1, group_channels=16, reduction_ratio=4,
                 use_opsearch: bool = True):
        super().__init__()
        if channels % group_channels:
            raise ValueError(f"Involution2d: group_channels={group_channels} must divide channels={channels}")
        self.kernel_size, self.stride = kernel_size, stride
        self.groups = channels // group_channels
        self.padding = (kernel_size - 1) // 2
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.reduce = nn.Sequential(
            nn.Conv2d(channels, channels // reduction_ratio, 1, bias=False),
            nn.BatchNorm2d(channels // reduction_ratio),
            nn.ReLU(inplace=True),
        )
        self.span = nn.Conv2d(channels // reduction_ratio, self.groups * kernel_size**2, 1)
        self.use_opsearch = use_opsearch

    def kernels(self, x):
        k = self.span(self.reduce(self.pool(x)))
        n, _, ho, wo = k.shape
        return k.view(n, self.groups, self.kernel_size**2, ho, wo)

    def forward(self, x):
        ker = self.kernels(x)
        attrs = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)
        if self.use_opsearch:
            return F.involution2d(x, ker, **attrs)
        return _pytorch(self.op_name, dict(x=x, kernel=ker), attrs)


# --------------------------------------------------------------------------- long conv
class FFTConv1d(OpsearchModule):
    """Hyena-style long causal convolution y = k * u + D·u over u[B, H, L], L <= ``max_len``.

    The filter is ``filter[H, max_len]`` modulated by a fixed per-channel exponential decay
    (Hyena's window, with decay rates log-spaced across channels) — a simple implicit-bias
    parametrisation; ``D[H]`` is the skip term.
    """

    op_name = "fft_conv1d"

    def __init__(self, channels, max_len, fast_decay_pct=0.3, slow_decay_pct=1.5, target=1e-2,
                 use_opsearch: bool = True):
        super().__init__()
        self.filter = nn.Parameter(torch.randn(channels, max_len) / math.sqrt(max_len))
        self.D = nn.Parameter(torch.randn(channels))
        # Hyena's ExponentialModulation: channel h decays to ``target`` after a fraction of the
        # sequence between fast_decay_pct and slow_decay_pct.
        t = torch.linspace(0, 1, max_len)
        rates = torch.linspace(math.log(target) / slow_decay_pct, math.log(target) / fast_decay_pct, channels).abs()
        self.register_buffer("window", torch.exp(-rates[:, None] * t[None, :]))
        self.use_opsearch = use_opsearch

    def kernel(self, length: int) -> torch.Tensor:
        return (self.filter * self.window)[:, :length]

    def forward(self, u):
        k = self.kernel(u.shape[-1])
        if self.use_opsearch:
            y = F.fft_conv1d(u, k.contiguous())
        else:
            y = _pytorch(self.op_name, dict(u=u, k=k), {})
        return y + u * self.D.view(1, -1, 1)


# --------------------------------------------------------------------------- deformable
class DeformableConv2d(OpsearchModule):
    """Modulated deformable convolution, DCNv2 (Zhu et al. 2019), as mmcv's
    ``ModulatedDeformConv2dPack``: ``conv_offset`` (an ``nn.Conv2d`` with the layer's kernel,
    stride, padding and dilation, initialised to zero so training starts from the regular grid)
    predicts 3 * G * KH * KW maps per position: the first two thirds are the offsets, the last
    the masks (through a sigmoid). ``weight``/``bias`` are initialised like ``nn.Conv2d``."""

    op_name = "deformable_conv2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 offset_groups=1, bias=True, use_opsearch: bool = True):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"DeformableConv2d: groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        if in_channels % offset_groups:
            raise ValueError(f"DeformableConv2d: offset_groups={offset_groups} must divide in_channels={in_channels}")
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        _conv_init(self.weight, self.bias, in_channels // groups * kh * kw)
        self.conv_offset = nn.Conv2d(in_channels, 3 * offset_groups * kh * kw, (kh, kw), stride, padding, dilation)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)
        self.use_opsearch = use_opsearch

    def forward(self, x):
        o1, o2, m = self.conv_offset(x).chunk(3, dim=1)
        offset, mask = torch.cat((o1, o2), dim=1).contiguous(), torch.sigmoid(m).contiguous()
        attrs = dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)
        tensors = dict(x=x, offset=offset, mask=mask, weight=self.weight, bias=self.bias)
        if self.use_opsearch:
            return F.deformable_conv2d(**tensors, **attrs)
        return _pytorch(self.op_name, tensors, attrs)


# --------------------------------------------------------------------------- spectral
class SpectralConv2d(OpsearchModule):
    """The Fourier Neural Operator's spectral layer (Li et al. 2021) on x[N, C, H, W]: rfft2,
    the lowest ``modes1`` rows (top and bottom) x ``modes2`` columns mixed by complex weights,
    zeros elsewhere, irfft2. ``weight[C, O, 2*modes1, modes2, 2]`` holds FNO's ``weights1`` and
    ``weights2`` as one real tensor, ``torch.view_as_real(torch.cat([weights1, weights2], 2))``,
    initialised like FNO (uniform [0, 1/(C*O)) in each of re and im)."""

    op_name = "spectral_conv2d"

    def __init__(self, in_channels, out_channels, modes1, modes2, use_opsearch: bool = True):
        super().__init__()
        self.modes1, self.modes2 = modes1, modes2
        scale = 1 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(in_channels, out_channels, 2 * modes1, modes2, 2))
        self.use_opsearch = use_opsearch

    def extra_repr(self):
        c, o = self.weight.shape[:2]
        return f"{c}, {o}, modes1={self.modes1}, modes2={self.modes2}"

    def forward(self, x):
        if self.use_opsearch:
            return F.spectral_conv2d(x, self.weight)
        return _pytorch(self.op_name, dict(x=x, weight=self.weight), {})


# --------------------------------------------------------------------------- attention
class DctChannelAttention(OpsearchModule):
    """FcaNet's multi-spectral channel attention (Qin et al. 2021) on x[N, C, H, W].

    The channels fall into ``groups`` groups; group g is pooled with the 2-D DCT basis function
    of frequency ``freqs[g] = (u, v)`` (FcaNet's top-``groups`` components scaled to a
    ``height`` x ``width`` map, an int32 buffer), then ``fc`` (FcaNet's own
    ``Linear(C, C/reduction, bias=False), ReLU, Linear(C/reduction, C, bias=False), Sigmoid``,
    so its state_dict keys match) gives each channel its gate. Unlike FcaNet, a map of another
    size is not average-pooled to ``height`` x ``width`` first: the basis follows the input.
    """

    op_name = "dct_channel_attention"

    def __init__(self, channels, height, width, reduction=16, groups=16, use_opsearch: bool = True):
        super().__init__()
        from ..ops.attention import fcanet_freqs

        if channels // reduction < 1:
            raise ValueError(f"DctChannelAttention: reduction={reduction} leaves no hidden units for {channels} channels")
        self.register_buffer("freqs", fcanet_freqs(channels, height, width, groups))
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False), nn.Sigmoid())
        self.use_opsearch = use_opsearch

    def forward(self, x):
        tensors = dict(x=x, freqs=self.freqs, w1=self.fc[0].weight, w2=self.fc[2].weight)
        if self.use_opsearch:
            return F.dct_channel_attention(**tensors)
        return _pytorch(self.op_name, tensors, {})


class NeighborhoodAttention2d(OpsearchModule):
    """A NAT / DiNAT attention layer on channels-last maps x[N, H, W, C] (NATTEN's
    ``NeighborhoodAttention2D`` without relative position biases): ``qkv = nn.Linear(C, 3C)``,
    ``heads`` heads of C/heads channels, each query attending to the ``kernel_size``^2 keys
    nearest it on its ``dilation`` lattice (``neighborhood_attention2d``), then ``proj =
    nn.Linear(C, C)``."""

    op_name = "neighborhood_attention2d"

    def __init__(self, dim, heads, kernel_size=7, dilation=1, use_opsearch: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"NeighborhoodAttention2d: heads={heads} must divide dim={dim}")
        if kernel_size % 2 == 0:
            raise ValueError(f"NeighborhoodAttention2d: kernel_size must be odd, got {kernel_size}")
        self.heads, self.kernel_size, self.dilation = heads, kernel_size, dilation
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.use_opsearch = use_opsearch

    def extra_repr(self):
        return f"heads={self.heads}, kernel_size={self.kernel_size}, dilation={self.dilation}"

    def forward(self, x):
        n, h, w, c = x.shape
        q, k, v = self.qkv(x).view(n, h, w, 3, self.heads, c // self.heads).permute(3, 0, 4, 1, 2, 5).unbind(0)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        attrs = dict(kernel_size=self.kernel_size, dilation=self.dilation)
        if self.use_opsearch:
            y = F.neighborhood_attention2d(q, k, v, **attrs)
        else:
            y = _pytorch(self.op_name, dict(q=q, k=k, v=v), attrs)
        return self.proj(y.permute(0, 2, 3, 1, 4).reshape(n, h, w, c))
