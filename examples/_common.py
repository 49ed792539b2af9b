"""Shared by the example scripts: switch a model between opsearch kernels and PyTorch, check
that both give the same output, and time both (alternating runs, median)."""

from __future__ import annotations

import statistics
import time

import torch

from opsearch.nn import OpsearchModule


def use_opsearch(model: torch.nn.Module, flag: bool) -> None:
    for m in model.modules():
        if isinstance(m, OpsearchModule):
            m.use_opsearch = flag


def _ms(fn, number: int) -> float:
    t = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t) / number * 1e3


def compare(model: torch.nn.Module, *inputs, rounds: int = 7, budget_s: float = 4.0, rtol: float = 1e-4) -> float:
    """Check opsearch vs PyTorch outputs, print both latencies and return the speedup."""
    model.eval()
    with torch.no_grad():
        use_opsearch(model, False)
        want = model(*inputs)
        use_opsearch(model, True)
        got = model(*inputs)  # compiles (or loads from the disk cache) every kernel once
        err = float((got - want).norm() / want.norm())
        assert err <= rtol, f"opsearch and PyTorch disagree: relative error {err:.2e}"
        t = time.perf_counter()
        model(*inputs)
        number = max(1, int(budget_s / (2 * rounds) / max(time.perf_counter() - t, 1e-5)))
        ours, theirs = [], []
        for _ in range(rounds):
            for flag, acc in ((False, theirs), (True, ours)):
                use_opsearch(model, flag)
                time.sleep(0.02)  # let the other runtime's worker threads go idle
                acc.append(_ms(lambda: model(*inputs), number))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"outputs agree (relative error {err:.1e})")
    print(f"opsearch {a:.3f} ms   PyTorch {b:.3f} ms   speedup {b / a:.2f}x  (median of {rounds} alternating runs)")
    return b / a
