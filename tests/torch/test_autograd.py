"""Gradients of every operator (float32, opsearch kernels and fallbacks) against autograd through
the float64 reference, with a fixed seed per case."""

from __future__ import annotations

import pytest
import torch

from opsearch import ops
from opsearch.torch_bridge import library
from tests.conftest import relative_error
from tests.torch.cases import CASES, IDS, inputs

GRAD_TOL = 2e-5  # relative error of float32 gradients against the float64 reference


def _grads(fn, tensors, cotangent):
    diff = [t for t in tensors if t is not None and t.is_floating_point()]
    for t in diff:
        t.requires_grad_(True)
    y = fn(*tensors)
    return y, torch.autograd.grad(y, diff, cotangent.to(y.dtype))


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_gradients_match_reference(i):
    name, args = CASES[i]
    gen = torch.Generator().manual_seed(1000 + i)
    op = ops.get(name)
    wl, t64, attrs = inputs(name, args, gen)
    names = [p.name for p in op.tensors]
    cot = torch.randn(op.output_shape(wl.args), generator=gen, dtype=torch.float64)

    def reference(*ts):
        return op.reference(wl.args, **{n: t for n, t in zip(names, ts) if t is not None})

    t32 = [None if t is None else (t.float() if t.is_floating_point() else t) for t in t64]
    y_ref, g_ref = _grads(reference, t64, cot)
    y, g = _grads(lambda *ts: library.op(name)(*ts, *attrs), t32, cot)
    assert relative_error(y.detach(), y_ref.detach()) <= op.tolerance
    assert len(g) == len(g_ref)
    for got, want in zip(g, g_ref):
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert relative_error(got, want) <= max(GRAD_TOL, op.tolerance), name


def test_conv_backward_runs_te_kernels(gen):
    """dilated_conv2d's input and weight gradients are opsearch kernels themselves."""
    x = torch.randn(1, 3, 9, 8, generator=gen, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, generator=gen, requires_grad=True)
    with library.recording() as rec:
        y = torch.ops.opsearch.dilated_conv2d(x, w, None, [1, 1], [2, 2], [2, 2], 1)
        y.sum().backward()
    assert [wl.op for wl in rec] == ["dilated_conv2d"] * 3
    assert rec[1].args["weight"] == (3, 4, 3, 3)  # flipped, transposed kernel
    assert rec[2].args["stride"] == (2, 2)  # weight gradient: the dilation becomes the stride


def test_integer_inputs_get_no_gradient(gen):
    x = torch.randn(2, 5, 6, 6, generator=gen, requires_grad=True)
    shifts = torch.randint(-1, 2, (5, 2), dtype=torch.int32, generator=gen)
    w = torch.randn(3, 5, generator=gen, requires_grad=True)
    torch.ops.opsearch.shift_conv2d(x, shifts, w, None).sum().backward()
    assert x.grad is not None and w.grad is not None and shifts.grad is None
