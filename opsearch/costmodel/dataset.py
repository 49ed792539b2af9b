"""Training data from the database: replay stored traces and extract candidate features.

Records are grouped by (workload, target); each group is one ranking query. Failures are kept
as label 0 (the model must learn to avoid them); unmeasured records are left out. Pretraining
takes the features of records it has seen before from the on-disk store (``feature_store``)
instead of replaying their traces again.
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


def record_secs(rec) -> float | None:
    """A record's label input: its mean latency in seconds, None for a failure."""
    return rec.mean_us / 1e6 if rec.status == "ok" and rec.mean_us else None


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
        secs.append(record_secs(rec))
    x = candidate_features(tune_context(wl, target), cands, wl) if cands else np.zeros((0, N_FEATURES), np.float32)
    return RecordGroup(wl, target, kept, cands, x, secs)


def load_groups(db, target_kind: str, limit_per_group: int = 512, store: bool = True) -> dict[str, tuple[np.ndarray, list]]:
    """``{group key: (features, mean seconds or None)}`` for every workload measured on a target
    of ``target_kind`` (its first ``limit_per_group`` measured records). With ``store``, features
    come from the on-disk store (``feature_store``) where it has them; the other records are
    replayed and extracted, then added to it."""
    from . import feature_store

    by_group: dict[tuple[Workload, str], list] = {}
    for rec in db.iter_records():
        if not rec.target.startswith(target_kind + ":") or rec.status == "unmeasured" or rec.trace is None:
            continue
        by_group.setdefault((rec.workload, rec.target), []).append(rec)
    out, replayed, stored = {}, 0, 0
    for (wl, target), recs in by_group.items():
        recs = recs[:limit_per_group]
        key_of = {id(r): feature_store.trace_key(r.trace) for r in recs}
        path = feature_store.group_path(wl, target) if store else None
        rows = feature_store.load(path) if path is not None else {}
        todo = [r for r in recs if key_of[id(r)] not in rows]
        stored += len(recs) - len(todo)
        if todo:
            g = replay_records(todo)
            replayed += len(g)
            rows.update((key_of[id(r)], x) for r, x in zip(g.records, g.x))
            if path is not None and len(g):
                feature_store.save(path, rows)
        kept = [r for r in recs if key_of[id(r)] in rows]  # not kept: traces that no longer replay
        if len(kept) >= 2:
            out[f"{wl.key()}@{target}"] = (np.asarray([rows[key_of[id(r)]] for r in kept], dtype=np.float32),
                                           [record_secs(r) for r in kept])
    log.info("loaded %d groups, %d records for %s (%d features from the store, %d replayed)",
             len(out), sum(len(v[1]) for v in out.values()), target_kind, stored, replayed)
    return out


def pretrain(model, db, target_kind: str) -> int:
    """Load every measured record of ``target_kind`` into ``model`` and fit; returns the count."""
    groups = load_groups(db, target_kind)
    for key, (x, secs) in groups.items():
        model.add(key, x, secs)
    model.fit()
    model.n_pretrained = model.size
    return model.size
