"""The backward formula of every ``torch.ops.opsearch`` operator (see the docstring of
:mod:`opsearch.torch_bridge.library`): TE convolutions for the gradients of ``dilated_conv2d``
and ``dilated_conv1d`` where they apply, else the PyTorch fallback ``opsearch::<name>_vjp``.
Every kernel is reached through ``torch.ops.opsearch`` by name, so this module needs only the
operator declarations."""

from __future__ import annotations

import torch

from .. import ops as _ops
from ..ops.spec import OpSpec


def differentiable(op: OpSpec, tensors) -> list[int]:
    """Indices of present floating-point tensor inputs."""
    return [i for i, t in enumerate(tensors) if t is not None and t.is_floating_point()]


def _call_op(name: str, *args):
    return getattr(torch.ops.opsearch, name)(*args)


def _vjp_grads(name: str, grad, tensors, attrs) -> list:
    """Fallback gradients for every tensor input (None for integer or absent ones)."""
    op = _ops.get(name)
    got = iter(_call_op(f"{name}_vjp", grad, *tensors, *attrs))
    idx = set(differentiable(op, tensors))
    return [next(got) if i in idx else None for i in range(len(tensors))]


def _flip_transpose(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[O, C/g, *K] -> [C, O/g, *K], spatially flipped: the kernel of the input gradient."""
    o, cg, *k = w.shape
    dims = tuple(range(2, w.dim()))
    wt = w.flip(dims).reshape(groups, o // groups, cg, *k).transpose(1, 2)
    return wt.reshape(groups * cg, o // groups, *k)


def _conv2d_grads(needs, grad, x, w, b, stride, padding, dilation, groups):
    kh, kw = w.shape[2:]
    back = [(k - 1) * d - p for k, d, p in zip((kh, kw), dilation, padding)]
    gx = gw = gb = None
    te_x = stride == [1, 1] and min(back) >= 0
    te_w = groups == 1
    if (needs[0] and not te_x) or (needs[1] and not te_w):
        gx, gw, _ = _vjp_grads("dilated_conv2d", grad, [x, w, None], [stride, padding, dilation, groups])
    if needs[0] and te_x:
        gx = _call_op("dilated_conv2d", grad, _flip_transpose(w, groups), None, [1, 1], back, dilation, groups)
    if needs[1] and te_w:
        gt = _call_op("dilated_conv2d", x.transpose(0, 1), grad.transpose(0, 1), None, dilation, padding, stride, 1)
        gw = gt[:, :, :kh, :kw].transpose(0, 1).contiguous()
    if b is not None and needs[2]:
        gb = grad.sum((0, 2, 3))
    return gx, gw, gb


def _conv1d_grads(needs, grad, x, w, b, dilation, causal):
    import torch.nn.functional as F

    k = w.shape[2]
    lo = (k - 1) * dilation if causal else (k - 1) * dilation // 2
    hi = (k - 1) * dilation - lo
    gx = gw = gb = None
    if needs[0]:
        gp = F.pad(grad, (hi, lo)).unsqueeze(2)
        wt = _flip_transpose(w, 1).unsqueeze(2)
        gx = _call_op("dilated_conv2d", gp, wt, None, [1, 1], [0, 0], [1, dilation], 1).squeeze(2)
    if needs[1]:
        xp = F.pad(x, (lo, hi)).transpose(0, 1).unsqueeze(2)
        gt = grad.transpose(0, 1).unsqueeze(2)
        gw = _call_op("dilated_conv2d", xp, gt, None, [1, dilation], [0, 0], [1, 1], 1).squeeze(2).transpose(0, 1).contiguous()
    if b is not None and needs[2]:
        gb = grad.sum((0, 2))
    return gx, gw, gb


_TE_BACKWARD = {"dilated_conv2d": _conv2d_grads, "dilated_conv1d": _conv1d_grads}


def backward_fn(op: OpSpec):
    n = len(op.tensors)

    def backward(tensors, needs, attrs, grad):
        te = _TE_BACKWARD.get(op.name)
        if te is not None:
            grads = list(te(needs, grad.contiguous(), *tensors, *attrs))
        else:
            grads = _vjp_grads(op.name, grad.contiguous(), tensors, attrs)
        return [g if need else None for g, need in zip(grads, needs[:n])]

    return backward
