"""Feature vectors of scheduled candidates: MetaSchedule's per-store features aggregated per
candidate (sum, mean, max over the stores) plus features of the workload itself (family,
log-FLOPs, output and reduction sizes), so one model can rank candidates of any operator.
"""

from __future__ import annotations

import math

import numpy as np

from ..ops import get as get_op
from ..ops.spec import Workload

FAMILIES = ("dilated", "shift-add", "dynamic", "fft")
FEATURE_VERSION = 1  # bump when the layout below changes: stored models become stale
N_STORE = 164  # MetaSchedule PerStoreFeature length (buffers_per_store=5)


def workload_features(wl: Workload) -> np.ndarray:
    op = get_op(wl.op)
    a = wl.args
    flops = max(op.flops(wl), 1)
    out = math.prod(op.output_shape(a))
    fam = [1.0 if op.family == f else 0.0 for f in FAMILIES]
    return np.array([*fam, math.log2(flops), math.log2(out), math.log2(max(flops / out, 1.0))], dtype=np.float32)


N_WORKLOAD = 7
N_FEATURES = 3 * N_STORE + 1 + N_WORKLOAD


_extractor = None


def _per_store(context, candidates) -> list[np.ndarray]:
    global _extractor
    if _extractor is None:
        from tvm.s_tir.meta_schedule.feature_extractor import PerStoreFeature

        _extractor = PerStoreFeature(extract_workload=False)
    return [f.numpy() for f in _extractor.extract_from(context, candidates)]


def candidate_features(context, candidates, wl: Workload) -> np.ndarray:
    """[len(candidates), N_FEATURES] float32 matrix."""
    wf = workload_features(wl)
    rows = []
    for f in _per_store(context, candidates):
        if f.size == 0:
            f = np.zeros((1, N_STORE), dtype=np.float32)
        rows.append(np.concatenate([f.sum(0), f.mean(0), f.max(0), [math.log2(len(f) + 1)], wf]))
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), N_FEATURES)
