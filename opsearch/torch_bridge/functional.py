"""Operators as functions over torch tensors, with ``torch.nn.functional`` conventions.

Each call validates its tensors (CPU or CUDA, one device, dtype, shape), builds the workload
from their shapes and runs it through ``torch.ops.opsearch.<name>`` (``opsearch.torch_bridge.library``):
differentiable, traceable by ``torch.compile``, and backed by the kernel ``library.kernel_for``
picks (the tuned record, a nearby one or the default schedule, compiled once and cached on disk;
on CUDA tensors the CUDA kernel for their GPU). Eager CPU calls that need no gradient skip the
dispatcher and call the same kernel directly (``library.direct_ok``). Inputs are
passed zero-copy; a non-contiguous or unaligned input is copied first.

>>> y = dilated_conv2d(torch.randn(1, 8, 16, 16), torch.randn(8, 8, 3, 3), padding=2, dilation=2)
"""

from __future__ import annotations

from typing import Any

import torch

from .. import ops as _ops
from ..errors import InputError
from . import library as _library

__all__ = [
    "dilated_conv2d", "dilated_conv1d", "shift_conv2d", "shift_linear", "adder_conv2d",
    "condconv2d", "lightweight_conv1d", "dynamic_conv1d", "involution2d", "fft_conv1d",
    "dct_channel_attention", "spectral_conv2d", "neighborhood_attention2d", "deformable_conv2d",
]

_TORCH_DTYPES = {"float32": torch.float32, "int32": torch.int32, "int8": torch.int8}


def _check(op_name: str, name: str, t: Any, want: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{op_name}: '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type not in ("cpu", "cuda"):
        raise InputError(f"{op_name}: '{name}' is on {t.device}, but opsearch kernels run on the CPU or a CUDA GPU")
    dtype = _TORCH_DTYPES[want]
    if t.dtype != dtype:
        integral = not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool
        if want in ("int8", "int32") and integral and name != "x":
            return t.to(dtype)  # index-like parameters (shifts, signs) in any integer type
        raise InputError(f"{op_name}: '{name}' must be {want}, got {str(t.dtype).replace('torch.', '')}")
    return t


def run(op_name: str, tensors: dict[str, Any], attrs: dict[str, Any], dtype: str = "float32") -> torch.Tensor:
    """Validate ``tensors`` (type, device, dtype) and ``attrs``, then call
    ``torch.ops.opsearch.<op_name>``, which checks the shapes (:class:`WorkloadError`), picks the
    kernel for them and is differentiable and traceable by ``torch.compile``."""
    op = _ops.get(op_name)
    return _run(op_name, tuple(tensors.get(p.name) for p in op.tensors),
                tuple(attrs.get(a.name, a.default) for a in op.attrs), dtype)


def _run(op_name: str, tensors: tuple, attrs: tuple, dtype: str = "float32") -> torch.Tensor:
    """:func:`run` with tensors and attribute values in signature order. Eager calls whose
    shapes and attributes were seen before take ``library.fast_call`` (a few checks, then the
    kernel); everything else is validated here and goes through ``library``."""
    out = _fast_call(op_name, tensors, attrs)
    if out is not None:
        return out
    op = _ops.get(op_name)
    checked = [None if t is None else _check(op_name, p.name, t, p.dtype or dtype) for p, t in zip(op.tensors, tensors)]
    devices = {t.device for t in checked if t is not None}
    if len(devices) > 1:
        raise InputError(f"{op_name}: the tensors are on {' and '.join(sorted(map(str, devices)))}: put them on one device")
    norm = _library.attr_args(op_name, {a.name: v for a, v in zip(op.attrs, attrs)})
    if next(iter(devices)).type == "cpu" and _library.direct_ok(checked):
        y = _library._FORWARD[op_name](*checked, *norm)
        _library.remember_plan(op_name, tensors, attrs, checked, norm)
        return y
    return _library.OPS[op_name](*checked, *norm)


_fast_call = _library.fast_call


def dilated_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``F.conv2d`` semantics: x[N,C,H,W], weight[O,C/groups,KH,KW] -> [N,O,Ho,Wo]."""
    return _run("dilated_conv2d", (x, weight, bias), (stride, padding, dilation, groups))


def dilated_conv1d(x, weight, bias=None, dilation=1, causal=True):
    """TCN layer: x[N,C,L], weight[O,C,K] -> [N,O,L]; causal left padding or odd-K 'same'."""
    return _run("dilated_conv1d", (x, weight, bias), (dilation, causal))


def shift_conv2d(x, shifts, weight, bias=None):
    """Per-channel shift by shifts[C,2]=(dy,dx) (zero fill), then 1x1 conv weight[O,C]."""
    return _run("shift_conv2d", (x, shifts, weight, bias), ())


def shift_linear(x, sign, shift, bias=None):
    """y = x @ (sign * 2^shift).T (+ bias); int32 x selects the shift-and-add fixed-point path."""
    dtype = "int32" if isinstance(x, torch.Tensor) and x.dtype == torch.int32 else "float32"
    return _run("shift_linear", (x, sign, shift, bias), (), dtype)


def adder_conv2d(x, weight, stride=1, padding=0):
    """AdderNet: y = -sum |x_pad - W| over each window."""
    return _run("adder_conv2d", (x, weight), (stride, padding))


def condconv2d(x, experts, routing, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Per-sample kernel sum_e routing[n,e] * experts[e], then conv2d."""
    return _run("condconv2d", (x, experts, routing, bias), (stride, padding, dilation, groups))


def lightweight_conv1d(x, weight, causal=False):
    """Depthwise conv with kernels weight[H,K] shared by the C/H channels of each head."""
    return _run("lightweight_conv1d", (x, weight), (causal,))


def dynamic_conv1d(x, weight, causal=False):
    """Lightweight conv with a kernel per sample and time step: weight[N,H,K,T]."""
    return _run("dynamic_conv1d", (x, weight), (causal,))


def involution2d(x, kernel, kernel_size=None, stride=1, padding=0, dilation=1):
    """Involution with kernel[N,G,K*K,Ho,Wo]; ``kernel_size`` defaults to sqrt(kernel.shape[2])."""
    if kernel_size is None and isinstance(kernel, torch.Tensor) and kernel.dim() == 5:
        kernel_size = round(kernel.shape[2] ** 0.5)
    return _run("involution2d", (x, kernel), (kernel_size, stride, padding, dilation))


def fft_conv1d(u, k, n1=0):
    """Causal long convolution y[b,h,t] = sum_{s<=t} k[h,s] u[b,h,t-s] via a DFT-matrix FFT."""
    return _run("fft_conv1d", (u, k), (n1,))


def dct_channel_attention(x, freqs, w1, w2):
    """FcaNet: x[N,C,H,W] rescaled per channel by sigmoid(w2 @ relu(w1 @ z)), z the 2-D DCT
    component at freqs[g] = (u, v) of each channel group g (G groups of C/G channels)."""
    return _run("dct_channel_attention", (x, freqs, w1, w2), ())


def spectral_conv2d(x, weight):
    """FNO layer: irfft2 of the lowest modes of rfft2(x) mixed per mode by the complex
    weight[C, O, 2*m1, m2] (as [..., 2] re/im; rows 0..m1-1 low, m1..2m1-1 high)."""
    return _run("spectral_conv2d", (x, weight), ())


def neighborhood_attention2d(q, k, v, kernel_size=7, dilation=1):
    """NAT / DiNAT: q, k, v [N, heads, H, W, D]; each query attends to the kernel_size^2 keys
    nearest it on its dilation lattice (NATTEN's windows), softmax(q.k / sqrt(D)) @ v."""
    return _run("neighborhood_attention2d", (q, k, v), (kernel_size, dilation))


def deformable_conv2d(x, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """DCNv2, ``torchvision.ops.deform_conv2d``'s arguments and layout: each tap samples x
    bilinearly at its position + offset[:, 2*(g*KK + t) : +2] = (dy, dx), times mask[:, g*KK + t]."""
    return _run("deformable_conv2d", (x, offset, mask, weight, bias), (stride, padding, dilation, groups))
