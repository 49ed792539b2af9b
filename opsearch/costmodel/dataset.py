"""Training data from the database: replay stored traces and extract candidate features.

Records are grouped by (workload, target); each group is one ranking query. Failures are kept
as label 0 (the model must learn to avoid them); unmeasured records are left out.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

from ..ops.spec import Workload
from .features import N_FEATURES, candidate_features

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=256)
def tune_context(wl: Workload, target_name: str):
    """A TuneContext for feature extraction (cached; intrinsics are not needed)."""
    from tvm.s_tir import meta_schedule as ms

    from ..ops.tir import ir_module
    from ..targets import resolve, skip_intrinsics

    spec = resolve(target_name)
    skip_intrinsics()
    return ms.TuneContext(mod=ir_module(wl), target=spec.tvm(), task_name=wl.op, num_threads=1)


@dataclass
class RecordGroup:
    """Records of one (workload, target) replayed to schedules: the ranking query a cost model
    sees. ``records``, ``candidates``, the rows of ``x`` and ``secs`` are parallel, in the order
    the records were given; ``secs`` is the mean latency in seconds, None for a failure."""

    workload: Workload
    target: str
    records: list
    candidates: list  # tvm MeasureCandidate per record
    x: np.ndarray  # [len(records), N_FEATURES] from features.candidate_features
    secs: list

    @property
    def key(self) -> str:
        """The query-group key (as in :func:`load_groups`)."""
        return f"{self.workload.key()}@{self.target}"

    @property
    def context(self):
        """A TuneContext of the workload on the target (what MetaSchedule cost models take)."""
        return tune_context(self.workload, self.target)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, index) -> "RecordGroup":
        """The records at ``index`` (a slice or a sequence of positions), same order."""
        idx = range(len(self))[index] if isinstance(index, slice) else list(index)
        return RecordGroup(self.workload, self.target, [self.records[i] for i in idx],
                           [self.candidates[i] for i in idx], self.x[list(idx)], [self.secs[i] for i in idx])


def replay_records(records, limit: int | None = None) -> RecordGroup:
    """Replay records of ONE workload on ONE target to schedules and extract their features.

    Unmeasured records, records without a trace and traces that no longer replay are skipped;
    at most ``limit`` records are kept (the first ones). Raises ValueError if the records mix
    workloads or targets. Example::

        g = replay_records(db.history(wl, "cpu"))
        scores = model.score(g.x)
    """
    from tvm.s_tir.meta_schedule import MeasureCandidate
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from ..db.replay import replay

    records = list(records)
    if not records:
        raise ValueError("replay_records needs at least one record")
    wl, target = records[0].workload, records[0].target
    kept, cands, secs = [], [], []
    for rec in records:
        if rec.workload != wl or rec.target != target:
            raise ValueError(f"replay_records takes one workload on one target, got {wl.key()}@{target} "
                             f"and {rec.workload.key()}@{rec.target}")
        if rec.status == "unmeasured" or rec.trace is None or (limit is not None and len(kept) >= limit):
            continue
        try:
            sch = replay(rec.trace, rec.workload)
        except ValueError:
            continue
        kept.append(rec)
        cands.append(MeasureCandidate(sch, ArgInfo.from_prim_func(sch.mod["main"])))
        secs.append(rec.mean_us / 1e6 if rec.status == "ok" and rec.mean_us else None)
    x = candidate_features(tune_context(wl, target), cands, wl) if cands else np.zeros((0, N_FEATURES), np.float32)
    return RecordGroup(wl, target, kept, cands, x, secs)


def load_groups(db, target_kind: str, limit_per_group: int = 512) -> dict[str, tuple[np.ndarray, list]]:
    """``{group key: (features, mean seconds or None)}`` for every workload measured on a target
    of ``target_kind``."""
    by_key: dict[str, list] = {}
    for rec in db.iter_records():
        if not rec.target.startswith(target_kind + ":") or rec.status == "unmeasured" or rec.trace is None:
            continue
        by_key.setdefault(f"{rec.workload.key()}@{rec.target}", []).append(rec)
    out = {}
    for key, recs in by_key.items():
        g = replay_records(recs, limit=limit_per_group)
        if len(g) >= 2:
            out[key] = (g.x, g.secs)
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
