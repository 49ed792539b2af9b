"""Feature vectors of scheduled candidates: MetaSchedule's per-store features aggregated per
candidate (sum, mean, max over the stores) plus features of the workload itself (family,
log-FLOPs, output and reduction sizes), so one model can rank candidates of any operator.

Extraction lowers each candidate (about 4 ms apiece here) and the evolutionary search scores
the same schedule again and again: survivors and unmutated copies recur across its genetic
iterations, and every measured candidate was scored before it was picked. ``FeatureCache`` keeps
rows by the scheduled module's structural hash, so each schedule is lowered once per run.
"""

from __future__ import annotations

import math
from collections import OrderedDict

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


class FeatureCache:
    """Feature rows by (workload, structural hash of the scheduled module), least recently used
    dropped beyond ``size`` rows (a row is 2 KB)."""

    def __init__(self, size: int = 16384):
        self.size = size
        self.rows: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        row = self.rows.get(key)
        if row is not None:
            self.rows.move_to_end(key)
            self.hits += 1
        return row

    def put(self, key, row: np.ndarray) -> None:
        self.misses += 1
        self.rows[key] = row
        if len(self.rows) > self.size:
            self.rows.popitem(last=False)


def candidate_features(context, candidates, wl: Workload, cache: FeatureCache | None = None) -> np.ndarray:
    """[len(candidates), N_FEATURES] float32 matrix; rows in ``cache`` are not extracted again."""
    wf = workload_features(wl)
    if cache is not None:
        import tvm_ffi

        keys = [(wl.key(), int(tvm_ffi.structural_hash(c.sch.mod))) for c in candidates]
        rows = [cache.get(k) for k in keys]
        todo = [i for i, r in enumerate(rows) if r is None]
    else:
        rows, todo = [None] * len(candidates), list(range(len(candidates)))
    if todo:
        for i, f in zip(todo, _per_store(context, [candidates[i] for i in todo])):
            if f.size == 0:
                f = np.zeros((1, N_STORE), dtype=np.float32)
            rows[i] = np.concatenate([f.sum(0), f.mean(0), f.max(0), [math.log2(len(f) + 1)], wf]).astype(np.float32)
            if cache is not None:
                cache.put(keys[i], rows[i])
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), N_FEATURES)
