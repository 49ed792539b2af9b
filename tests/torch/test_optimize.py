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
    model, report = opsearch.optimize(model, (x,), keep_slower=True)
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
        nn.ConstantPad1d((2, 0), 0.0), nn.Conv1d(6, 5, 3),  # causal, dilation 1 (a TCN's first block)
        nn.Conv1d(5, 5, 5, padding=2),  # 'same', dilation 1
        nn.Conv1d(5, 5, 3, padding=1, stride=2),  # strided: left alone
    )
    u = torch.randn(2, 4, 21, generator=gen)
    with torch.no_grad():
        want = model(u)
    model, report = opsearch.optimize(model, u, keep_slower=True)
    assert isinstance(model[0], nn.Identity) and isinstance(model[5], nn.Identity)
    assert [getattr(model[i], "causal", None) for i in (1, 2, 3, 6, 7)] == [True, False, False, True, False]
    assert type(model[4]) is nn.Conv1d and type(model[8]) is nn.Conv1d
    with torch.no_grad():
        torch.testing.assert_close(model(u), want, rtol=1e-5, atol=1e-5)
    assert [m.name for m in report.modules] == ["1", "2", "3", "6", "7"]
    assert all(m.kept for m in report.modules)


@pytest.mark.parametrize("slower", ["1", "3"])
def test_a_swap_slower_than_pytorch_is_undone(gen, monkeypatch, slower):
    """The swap whose module timed slower goes back to the modules it replaced (the pad too);
    the faster ones stay, and the model still computes the same."""
    from opsearch.torch_bridge import optimize as opt

    torch.manual_seed(0)
    model = nn.Sequential(nn.ConstantPad1d((4, 0), 0.0), nn.Conv1d(4, 6, 3, dilation=2), nn.ReLU(),
                          nn.Conv1d(6, 6, 3, padding=4, dilation=4))
    pad, conv, same = model[0], model[1], model[3]
    u = torch.randn(2, 4, 19, generator=gen)
    with torch.no_grad():
        want = model(u)
    timings = iter([(2.0, 1.0), (1.0, 2.0)] if slower == "1" else [(1.0, 2.0), (2.0, 1.0)])

    def fake_time_both(module, args, kwargs):  # (opsearch ms, PyTorch ms) in report order
        return next(timings)

    monkeypatch.setattr(opt, "_time_both", fake_time_both)
    monkeypatch.setattr(opt, "_time_model", lambda model, inputs, swapped: (1.0, 2.0))  # the model gains
    model, report = opsearch.optimize(model, u)
    rows = {m.name: m for m in report.modules}
    assert [rows["1"].kept, rows["3"].kept] == [slower != "1", slower != "3"]
    if slower == "1":
        assert model[0] is pad and model[1] is conv and isinstance(model[3], onn.DilatedConv1d)
        assert "slower than PyTorch here, kept Conv1d" in str(report)
    else:
        assert isinstance(model[0], nn.Identity) and isinstance(model[1], onn.DilatedConv1d) and model[3] is same
    with torch.no_grad():
        torch.testing.assert_close(model(u), want, rtol=1e-5, atol=1e-5)


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
    model, _ = opsearch.optimize(model.train(), torch.randn(1, 3, 8, 8, generator=gen), keep_slower=True)
    assert model.training and model[1].training
    assert torch.equal(model[1].running_mean, stats)


def test_every_swap_is_undone_when_the_whole_model_runs_slower(gen, monkeypatch):
    """Each module timed faster alone, but the model with them ran slower: nothing stays swapped."""
    from opsearch.torch_bridge import optimize as opt

    torch.manual_seed(0)
    model = nn.Sequential(nn.ConstantPad1d((2, 0), 0.0), nn.Conv1d(4, 4, 3), nn.Conv1d(4, 4, 3, padding=2, dilation=2))
    originals = list(model)
    u = torch.randn(2, 4, 15, generator=gen)
    monkeypatch.setattr(opt, "_time_both", lambda module, args, kwargs: (1.0, 2.0))
    calls = []

    def slower_model(model, inputs, swapped):
        calls.append(len(swapped))
        return 3.0, 2.0

    monkeypatch.setattr(opt, "_time_model", slower_model)
    model, report = opsearch.optimize(model, u)
    assert calls == [2] and list(model) == originals
    assert [m.kept for m in report.modules] == [False, False] and report.model_ms == (3.0, 2.0)
    assert "the model ran slower with the swaps, kept Conv1d" in str(report)
    assert "every swap undone" in str(report)
