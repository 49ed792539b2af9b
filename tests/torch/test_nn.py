"""opsearch.nn modules: both paths agree (outputs and gradients), parameters and init as
PyTorch users expect."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import opsearch.nn as onn


def _modules():
    return [
        (lambda: onn.DilatedConv2d(4, 6, 3, padding=2, dilation=2), (2, 4, 9, 11)),
        (lambda: onn.DilatedConv2d(4, 6, 3, padding="same", dilation=[2, 1], padding_mode="reflect"), (1, 4, 9, 8)),
        (lambda: onn.DilatedConv1d(4, 6, 3, dilation=2), (2, 4, 17)),
        (lambda: onn.DilatedConv1d(4, 6, 5, dilation=3, causal=False), (2, 4, 19)),
        (lambda: onn.ShiftConv2d(10, 6), (2, 10, 7, 9)),
        (lambda: onn.ShiftLinear(12, 5), (3, 2, 12)),
        (lambda: onn.AdderConv2d(3, 5, 3, padding=1, bias=True), (2, 3, 7, 8)),
        (lambda: onn.CondConv2d(4, 6, 3, num_experts=3, padding=1), (2, 4, 7, 9)),
        (lambda: onn.LightweightConv1d(8, 5, heads=2, bias=True), (2, 8, 13)),
        (lambda: onn.DynamicConv1d(8, 5, heads=2, causal=True), (2, 8, 13)),
        (lambda: onn.Involution2d(8, 3, stride=2, group_channels=4, reduction_ratio=2), (2, 8, 9, 9)),
        (lambda: onn.FFTConv1d(4, 32), (2, 4, 29)),
        (lambda: onn.DctChannelAttention(16, 7, 7, reduction=4), (2, 16, 7, 7)),
        (lambda: onn.DctChannelAttention(12, 9, 11, reduction=3, groups=4), (3, 12, 9, 11)),
        (lambda: onn.SpectralConv2d(3, 4, 3, 4), (2, 3, 9, 10)),
        (lambda: onn.NeighborhoodAttention2d(12, 3, kernel_size=3, dilation=2), (2, 9, 7, 12)),
        (lambda: _deformable(onn.DeformableConv2d(4, 6, 3, padding=1, offset_groups=2)), (2, 4, 7, 9)),
    ]


def _deformable(m):
    """A DeformableConv2d whose offset predictor is not at its zero init (else every tap reads
    its regular position and the offsets' gradients are never exercised off the grid)."""
    torch.nn.init.normal_(m.conv_offset.weight, std=0.3)
    return m


def _run(m, x, flag):
    m.use_opsearch = flag
    x = x.detach().clone().requires_grad_(True)
    y = m(x)
    y.square().sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    return y.detach(), grads


@pytest.mark.parametrize("i", range(len(_modules())), ids=lambda i: f"m{i}")
def test_paths_agree(i, gen):
    make, shape = _modules()[i]
    torch.manual_seed(i)
    m = make().eval()
    x = torch.randn(shape, generator=gen)
    y1, g1 = _run(m, x, True)
    y0, g0 = _run(m, x, False)
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g0):
        # float32 gradients sum many terms in another order on each path: their error scales with
        # the tensor's largest entry (DctChannelAttention m13 once missed 1e-5 by 4e-5 at 0.26)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 + 1e-4 * float(b.abs().max()))


def test_dilated_conv2d_is_nn_conv2d():
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 6, 3, padding=2, dilation=2)
    torch.manual_seed(0)
    m = onn.DilatedConv2d(4, 6, 3, padding=2, dilation=2)
    assert isinstance(m, nn.Conv2d) and m.state_dict().keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(m.state_dict()[k], v)  # same init under the same seed
    shared = onn.DilatedConv2d.from_conv(ref)
    assert shared.weight is ref.weight and shared.bias is ref.bias


def test_dilated_conv1d_init_matches_conv1d():
    torch.manual_seed(0)
    ref = nn.Conv1d(4, 6, 3, dilation=2)
    torch.manual_seed(0)
    m = onn.DilatedConv1d(4, 6, 3, dilation=2)
    assert torch.equal(m.weight, ref.weight) and torch.equal(m.bias, ref.bias)
    with pytest.raises(ValueError, match="needs an odd kernel_size"):
        onn.DilatedConv1d(4, 6, 4, causal=False)


def test_shift_linear_loads_a_linear_state_dict():
    lin = nn.Linear(8, 3)
    m = onn.ShiftLinear(8, 3)
    m.load_state_dict(lin.state_dict())
    sign, shift = m.sign_shift()
    assert sign.dtype == shift.dtype == torch.int8
    assert int(shift.min()) >= -16 and int(shift.max()) <= 16
    decoded = onn.decode_shift(sign, shift)
    ratio = (decoded / lin.weight.detach()).abs()
    assert float(ratio.max()) <= 2**0.5 + 1e-6 and float(ratio.min()) >= 2**-0.5 - 1e-6  # nearest power of two


def test_state_dict_keys():
    assert set(onn.CondConv2d(4, 4, 3, num_experts=2).state_dict()) == {"experts", "bias", "router.weight", "router.bias"}
    assert set(onn.ShiftConv2d(5, 4).state_dict()) == {"shifts", "weight", "bias"}
    assert set(onn.FFTConv1d(4, 8).state_dict()) == {"filter", "D", "window"}
    assert onn.scnet_shifts(10).tolist()[:2] == [[0, 1], [0, 1]]


@pytest.mark.parametrize("shape,heads,k,bias", [((2, 8, 13), 2, 5, True), ((3, 12, 7), 3, 3, False)])
def test_dynamic_conv1d_kernels_are_the_predictors_softmax(shape, heads, k, bias, gen):
    """The predicted kernels equal softmax over K of nn.Linear(x[:, :, t]) (float64, computed
    the plain way), laid out [N, H, K, T]; gradients reach the predictor."""
    m = onn.DynamicConv1d(shape[1], k, heads=heads).double()
    if not bias:
        m.predictor.bias = None
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    n, _, t = shape
    want = torch.softmax(m.predictor(x.transpose(1, 2)).view(n, t, heads, k), dim=-1).permute(0, 2, 3, 1)
    got = m.kernels(x)
    assert got.shape == (n, heads, k, t) and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    (got * torch.randn(got.shape, generator=gen, dtype=torch.float64)).sum().backward()
    assert m.predictor.weight.grad is not None and m.predictor.weight.grad.abs().sum() > 0
