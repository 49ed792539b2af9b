"""Training data from the database: replay stored traces and extract candidate features.

Records are grouped by (workload, target); each group is one ranking query. Failures are kept
as label 0 (the model must learn to avoid them); unmeasured records are left out.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from ..ops.spec import Workload
from .features import candidate_features

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=256)
def tune_context(wl: Workload, target_name: str):
    """A TuneContext for feature extraction (cached; intrinsics are not needed)."""
    from tvm.s_tir import meta_schedule as ms

    from ..kernels import ir_module
    from ..search import intrin
    from ..targets import resolve

    spec = resolve(target_name)
    intrin.prepare_build_worker()
    return ms.TuneContext(mod=ir_module(wl), target=spec.tvm(), task_name=wl.op, num_threads=1)


def load_groups(db, target_kind: str, limit_per_group: int = 512) -> dict[str, tuple[np.ndarray, list]]:
    """``{group key: (features, mean seconds or None)}`` for every workload measured on a target
    of ``target_kind``."""
    from tvm.s_tir.meta_schedule import MeasureCandidate
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from ..db.replay import replay

    groups: dict[str, tuple[list, list]] = {}
    for rec in db.iter_records():
        if not rec.target.startswith(target_kind + ":") or rec.status == "unmeasured" or rec.trace is None:
            continue
        key = f"{rec.workload.key()}@{rec.target}"
        cands, secs = groups.setdefault(key, ([], []))
        if len(secs) >= limit_per_group:
            continue
        try:
            sch = replay(rec.trace, rec.workload)
        except ValueError:
            continue
        cands.append((rec.workload, rec.target, MeasureCandidate(sch, ArgInfo.from_prim_func(sch.mod["main"]))))
        secs.append(rec.mean_us / 1e6 if rec.status == "ok" and rec.mean_us else None)
    out = {}
    for key, (cands, secs) in groups.items():
        if len(cands) < 2:
            continue
        wl, target = cands[0][0], cands[0][1]
        x = candidate_features(tune_context(wl, target), [c[2] for c in cands], wl)
        out[key] = (x, secs)
    log.info("loaded %d groups, %d records for %s", len(out), sum(len(v[1]) for v in out.values()), target_kind)
    return out


def pretrain(model, db, target_kind: str) -> int:
    """Load every measured record of ``target_kind`` into ``model`` and fit; returns the count."""
    groups = load_groups(db, target_kind)
    for key, (x, secs) in groups.items():
        model.add(key, x, secs)
    model.fit()
    model.n_pretrained = model.size
    return model.size
