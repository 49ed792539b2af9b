"""Shared by the example scripts: check a model's opsearch path against its PyTorch path and
time both (``opsearch.torch_bridge.optimize.compare_model``)."""

from __future__ import annotations

import torch

from opsearch.torch_bridge.optimize import compare_model


def compare(model: torch.nn.Module, *inputs, rtol: float = 1e-4) -> float:
    """Check opsearch vs PyTorch outputs, print both latencies and return the speedup."""
    model.eval()
    err, ours, theirs = compare_model(model, *inputs)
    assert err <= rtol, f"opsearch and PyTorch disagree: relative error {err:.2e}"
    print(f"outputs agree (relative error {err:.1e})")
    print(f"opsearch {ours:.3f} ms   PyTorch {theirs:.3f} ms   speedup {theirs / ours:.2f}x  (median of alternating runs)")
    return theirs / ours
