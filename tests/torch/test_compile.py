"""A small model of several opsearch modules under ``torch.compile(fullgraph=True)`` with the
eager, aot_eager and inductor backends: outputs equal eager; gradients flow through."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import opsearch.nn as onn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.dilated = onn.DilatedConv2d(3, 8, 3, padding=2, dilation=2)
        self.shift = onn.ShiftConv2d(8, 8)
        self.adder = onn.AdderConv2d(8, 4, 3, padding=1)
        self.head = onn.ShiftLinear(4, 5)

    def forward(self, x):
        y = self.adder(torch.relu(self.shift(self.dilated(x))))
        return self.head(y.mean((2, 3)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Small().eval()


@pytest.mark.parametrize("backend", ["eager", "aot_eager", "inductor"])
def test_fullgraph_matches_eager(model, backend, gen):
    x = torch.randn(2, 3, 9, 7, generator=gen)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    with torch.no_grad():
        want = model(x)
        got = compiled(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fullgraph_backward(model, gen):
    x = torch.randn(2, 3, 9, 7, generator=gen, requires_grad=True)
    model(x).sum().backward()
    want = x.grad.clone()
    x.grad = None
    torch._dynamo.reset()
    torch.compile(model, backend="aot_eager", fullgraph=True)(x).sum().backward()
    torch.testing.assert_close(x.grad, want, rtol=1e-5, atol=1e-6)
    model.zero_grad()


def test_fullgraph_fallback_ops(gen):
    """Operators whose backward is the PyTorch fallback also trace (the vjp is an opaque op)."""
    torch.manual_seed(1)
    m = nn.Sequential(onn.LightweightConv1d(6, 3, heads=2), onn.DynamicConv1d(6, 3, heads=3), onn.FFTConv1d(6, 16))
    u = torch.randn(2, 6, 16, generator=gen, requires_grad=True)
    m(u).square().sum().backward()
    want = u.grad.clone()
    u.grad = None
    torch._dynamo.reset()
    torch.compile(m, backend="aot_eager", fullgraph=True)(u).square().sum().backward()
    torch.testing.assert_close(u.grad, want, rtol=1e-5, atol=1e-6)
