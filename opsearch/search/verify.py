"""Checking a scheduled candidate against the operator's reference before it is served."""

from __future__ import annotations

from ..ops import get as get_op
from ..ops.spec import Workload
from ..targets import TargetSpec


def check_schedule(sch, wl: Workload, target: TargetSpec, seed: int = 1234) -> str | None:
    """Build ``sch`` for a CPU target, run it on random inputs and compare with the float64
    reference; returns None when it matches, else a one-line description of the mismatch."""
    import torch

    from ..runtime.kernels import build

    op = get_op(wl.op)
    a = wl.args
    kernel = build(sch, wl, target)
    gen = torch.Generator().manual_seed(seed)
    t64 = {p.name: op.sample(a, p, a[p.name], gen, torch.float64) for p in op.tensors if a[p.name] is not None}
    t32 = [(v.float() if v.is_floating_point() else v) for v in t64.values()]
    y = kernel(*t32)
    ref = op.reference(a, **t64)
    if op.tolerance == 0 or not ref.is_floating_point():
        return None if torch.equal(y, ref.to(y.dtype)) else "output differs from the reference (exact match required)"
    err = float((y.double() - ref.double()).norm() / ref.double().norm())
    if err != err or err > op.tolerance:
        return f"relative error {err:.2e} exceeds {op.tolerance:.0e} against the reference"
    return None
