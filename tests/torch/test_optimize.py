"""opsearch.optimize swaps dilated convolutions for opsearch modules sharing their weights,
keeps outputs, and reports each module; opsearch.load returns a torch-callable kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import opsearch
import opsearch.nn as onn
from opsearch.errors import InputError, TargetError


def _vision():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),  # not dilated: left alone
        nn.Conv2d(8, 8, 3, padding=[4, 1], dilation=[4, 1], bias=False),
        onn.Involution2d(8, 3, group_channels=4, reduction_ratio=2, use_opsearch=False),
    ).eval()


def test_optimize_swaps_dilated_conv2d(gen):
    model = _vision()
    x = torch.randn(2, 4, 13, 11, generator=gen)
    with torch.no_grad():
        want = model(x)
    weight = model[0].weight
    model, report = opsearch.optimize(model, (x,))
    assert isinstance(model[0], onn.DilatedConv2d) and model[0].weight is weight
    assert type(model[2]) is nn.Conv2d
    assert isinstance(model[3], onn.DilatedConv2d) and model[4].use_opsearch
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5)
    rows = {m.name: m for m in report.modules}
    assert set(rows) == {"0", "3", "4"}
    assert rows["0"].swapped_from == "Conv2d" and rows["4"].swapped_from is None
    assert rows["0"].workloads == ("bias=8 dilation=2x2 groups=1 padding=2x2 stride=1x1 weight=8x4x3x3 x=2x4x13x11",)
    assert all(m.schedule == "default schedule" and m.kernel_ms > 0 and m.pytorch_ms > 0 for m in report.modules)
    assert "DilatedConv2d (was Conv2d)" in str(report) and report.to_dict()["modules"][0]["speedup"] > 0


def test_optimize_conv1d_rules(gen):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.ConstantPad1d((4, 0), 0.0), nn.Conv1d(4, 6, 3, dilation=2),  # causal TCN layer
        nn.Conv1d(6, 6, 3, padding=4, dilation=4),  # 'same'
        nn.Conv1d(6, 6, 3, padding="same", dilation=3),  # 'same'
        nn.Conv1d(6, 6, 3, padding=1, dilation=2),  # neither: left alone
    )
    u = torch.randn(2, 4, 21, generator=gen)
    with torch.no_grad():
        want = model(u)
    model, report = opsearch.optimize(model, u)
    assert isinstance(model[0], nn.Identity)
    assert [getattr(model[i], "causal", None) for i in (1, 2, 3)] == [True, False, False]
    assert type(model[4]) is nn.Conv1d
    with torch.no_grad():
        torch.testing.assert_close(model(u), want, rtol=1e-5, atol=1e-5)
    assert [m.name for m in report.modules] == ["1", "2", "3"]


def test_optimize_rejects_gpu_targets():
    # (optimize(tune=N) is tested with the tuner: tests/search/test_loading.py)
    with pytest.raises(TargetError, match="not a CPU target"):
        opsearch.optimize(nn.Sequential(), (torch.randn(1),), target="cuda:sm_90")


def test_load_returns_a_kernel(gen):
    f = opsearch.load("dilated_conv2d", x=(1, 4, 9, 9), weight=(5, 4, 3, 3), padding=2, dilation=2)
    assert f.schedule == "default schedule" and "dilated_conv2d" in repr(f)
    x, w = torch.randn(1, 4, 9, 9, generator=gen), torch.randn(5, 4, 3, 3, generator=gen)
    torch.testing.assert_close(f(x, w), TF.conv2d(x, w, padding=2, dilation=2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f(x.transpose(2, 3).contiguous().transpose(2, 3), w), f(x, w))  # non-contiguous
    with pytest.raises(InputError, match=r"'x' must be a CPU tensor of shape \[1, 4, 9, 9\], got \[1, 4, 9, 8\]"):
        f(x[..., :8], w)
    with pytest.raises(InputError, match=r"expected 2 tensors \(x, weight\), got 1"):
        f(x)
    assert callable(opsearch.optimize)


def test_optimize_keeps_training_mode_and_statistics(gen):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=2, dilation=2), nn.BatchNorm2d(4))
    stats = model[1].running_mean.clone()
    model, _ = opsearch.optimize(model.train(), torch.randn(1, 3, 8, 8, generator=gen))
    assert model.training and model[1].training
    assert torch.equal(model[1].running_mean, stats)
