"""MetaSchedule adapter: a ``PyDatabase`` that stores tuning records in an opsearch database.

``MetaScheduleDatabase(db, target, workload)`` is bound to one target and one or more opsearch
workloads; pass it as ``ms.tune_tir(..., database=adapter,
measure_callbacks=adapter.measure_callbacks())`` and every measured candidate lands in ``db``.
Unlike MetaSchedule's own databases, queries are target-aware (apache/tvm#15549): a cuda query
never returns an llvm record. Top-k excludes failures. With ``transfer=N``, a workload with fewer than k records of its own
is topped up with the best records of its N nearest tuned workloads of the same operator whose
traces replay on it (:meth:`Workload.distance`): MetaSchedule's evolutionary search seeds its
population from top-k, so a new shape starts from what tuned shapes found. Those seeds are never
committed as this workload's measurements. MetaSchedule commits a failed candidate
as ``run_secs=[1e10]`` and drops its error text; the callback from :meth:`measure_callbacks`
captures the builder/runner message so the record keeps it (status build_error, run_error or
timeout). Imports TVM.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import Schedule
from tvm.s_tir import meta_schedule as ms

from ..errors import DatabaseError
from ..ops.spec import Workload
from ..targets import TargetSpec
from .records import FAILED_RUN_SECS, Record, target_spec
from .replay import module_hash, workload_mod
from .store import Database

log = logging.getLogger(__name__)

UNKNOWN_FAILURE = "measurement failed (MetaSchedule did not report why)"


def tvm_target_name(target: tvm.target.Target) -> str:
    """Canonical opsearch name of a TVM target (``llvm:<mcpu>``, ``cuda:<arch>``)."""
    kind = target.kind.name
    attrs = target.attrs
    if kind == "llvm":
        return f"llvm:{attrs.get('mcpu', 'generic')}"
    if kind == "cuda":
        return f"cuda:{attrs.get('arch', 'unknown')}"
    return kind


@derived_object
class MetaScheduleDatabase(ms.database.PyDatabase):
    """A MetaSchedule database over :class:`~opsearch.db.Database` (see the module docstring).

    ``workloads`` is one :class:`Workload`, several, or a mapping of the structural hash of each
    workload's IRModule to the workload. ``run_id`` tags every committed record.
    """

    def __init__(self, db: Database, target: str | TargetSpec,
                 workloads: Workload | Iterable[Workload] | Mapping[str, Workload], run_id: int | None = None,
                 transfer: int = 0, skip: Iterable[str] = ()):
        super().__init__()
        self.db = db
        self.transfer = transfer
        self.skip = set(skip)  # module hashes never offered as seeds (e.g. hand-written defaults)
        self._seeds: dict[tuple[str, str], list[ms.database.TuningRecord]] = {}
        self.spec = target_spec(target)
        self.run_id = run_id
        if isinstance(workloads, Workload):
            workloads = [workloads]
        if isinstance(workloads, Mapping):
            self._by_hash = {str(h): wl for h, wl in workloads.items()}
        else:
            self._by_hash = {module_hash(workload_mod(wl)): wl for wl in workloads}
        self._ms_workloads: dict[str, ms.database.Workload] = {}
        self._errors: dict[str, tuple[str, str]] = {}  # module hash -> (status, message)
        db.ensure_target(self.spec)

    # ------------------------------------------------------------------ helpers
    def _workload(self, mod: tvm.IRModule) -> tuple[str, Workload]:
        h = module_hash(mod)
        if h not in self._by_hash:
            raise DatabaseError(f"IRModule with structural hash {h} is not a workload of this database adapter "
                                f"(bound to {', '.join(w.op for w in self._by_hash.values())})")
        return h, self._by_hash[h]

    def _to_tuning_record(self, rec: Record, workload: ms.database.Workload, target_json,
                          quiet: bool = False) -> ms.database.TuningRecord | None:
        run_secs = [t / 1e6 for t in rec.run_us] if rec.status == "ok" else [1e10] if rec.status != "unmeasured" else None
        try:
            return ms.database.TuningRecord.from_json([rec.trace, run_secs, target_json, rec.args_info], workload)
        except Exception as e:  # noqa: BLE001 - a stale trace must not stop tuning
            if not quiet:
                log.warning("record %s no longer replays on its workload: %s", rec.id, str(e).splitlines()[-1:])
            return None

    def _transferred(self, wl: Workload, workload: ms.database.Workload, target_name: str, target_json,
                     k: int) -> list[ms.database.TuningRecord]:
        """Best records of the nearest tuned workloads, replayed on ``wl`` (cached per run)."""
        key = (wl.key(), target_name)
        if key not in self._seeds:
            near = [(wl.distance(info.workload), info.workload) for info in self.db.workloads(op=wl.op, target=target_name)
                    if info.workload != wl]
            near = sorted((t for t in near if t[0] != float("inf")), key=lambda t: t[0])[: self.transfer]
            seeds = []
            for _, other in near:
                for rec in self.db.top_k(other, target_name, k):
                    tr = self._to_tuning_record(rec, workload, target_json, quiet=True)
                    if tr is not None:
                        seeds.append(tr)
            self._seeds[key] = seeds
            if seeds:
                log.info("%s: %d seed schedules from %d nearest tuned workloads", wl.op, len(seeds), len(near))
        return self._seeds[key][:k]

    def capture(self, candidate_mod: tvm.IRModule, status: str, message: str) -> None:
        """Remember why a candidate failed, for the record MetaSchedule commits next."""
        self._errors[module_hash(candidate_mod)] = (status, message)

    def measure_callbacks(self) -> list:
        """MetaSchedule's default callbacks preceded by one that keeps failure messages."""
        return [CaptureErrors(self), *ms.measure_callback.MeasureCallback.create("default")]

    # ------------------------------------------------------------------ PyDatabase
    def has_workload(self, mod: tvm.IRModule) -> bool:
        return module_hash(mod) in self._by_hash

    def commit_workload(self, mod: tvm.IRModule) -> ms.database.Workload:
        h, wl = self._workload(mod)
        if h not in self._ms_workloads:
            self.db.ensure_workload(wl, h, tvm.ir.save_json(mod))
            self._ms_workloads[h] = ms.database.Workload(mod)
        return self._ms_workloads[h]

    def commit_tuning_record(self, record: ms.database.TuningRecord) -> None:
        _, wl = self._workload(record.workload.mod)
        sch = Schedule(record.workload.mod)
        record.trace.apply_to_schedule(sch, remove_postproc=False)
        mhash = module_hash(sch.mod)
        trace, run_secs, _, args_info = record.as_json()
        target = tvm_target_name(record.target) if record.target is not None else self.spec.name
        if run_secs is None:
            status, run_us, error = "unmeasured", (), None
        elif any(float(t) >= FAILED_RUN_SECS for t in run_secs):
            status, error = self._errors.pop(mhash, ("run_error", UNKNOWN_FAILURE))
            run_us = ()
        else:
            status, run_us, error = "ok", [float(t) * 1e6 for t in run_secs], None
        self.db.add_records([Record.new(wl, target, mhash, run_us=run_us, status=status, error=error,
                                        trace=trace, args_info=args_info, run_id=self.run_id)])

    def get_top_k(self, workload: ms.database.Workload, top_k: int) -> list[ms.database.TuningRecord]:
        return self._top_k(workload, self.spec.name, self.spec.tvm(), top_k)

    def _top_k(self, workload, target_name: str, target, k: int) -> list[ms.database.TuningRecord]:
        if k <= 0:
            return []
        _, wl = self._workload(workload.mod)
        out = []
        target_json = target.export()
        recs = [r for r in self.db.top_k(wl, target_name, k + len(self.skip)) if r.module_hash not in self.skip][:k]
        for rec in recs:
            tr = self._to_tuning_record(rec, workload, target_json)
            if tr is not None:
                out.append(tr)
        if self.transfer and len(out) < k:
            out += self._transferred(wl, workload, target_name, target_json, k)[: k - len(out)]
        return out

    def get_all_tuning_records(self) -> list[ms.database.TuningRecord]:
        target_json = self.spec.tvm().export()
        out = []
        for h, wl in self._by_hash.items():
            if h not in self._ms_workloads:
                continue
            for rec in self.db.history(wl, self.spec.name):
                tr = self._to_tuning_record(rec, self._ms_workloads[h], target_json)
                if tr is not None:
                    out.append(tr)
        return out

    def __len__(self) -> int:
        return sum(self.db.count(wl, self.spec.name) for wl in self._by_hash.values())

    def query_tuning_record(self, mod: tvm.IRModule, target: tvm.target.Target,
                            workload_name: str | None = None) -> ms.database.TuningRecord | None:
        if not self.has_workload(mod):
            return None
        found = self._top_k(self.commit_workload(mod), tvm_target_name(target), target, 1)
        return found[0] if found else None

    def query_schedule(self, mod: tvm.IRModule, target: tvm.target.Target,
                       workload_name: str | None = None) -> Schedule | None:
        rec = self.query_tuning_record(mod, target, workload_name)
        if rec is None:
            return None
        sch = Schedule(mod)
        rec.trace.apply_to_schedule(sch, remove_postproc=False)
        return sch

    def query_ir_module(self, mod: tvm.IRModule, target: tvm.target.Target,
                        workload_name: str | None = None) -> tvm.IRModule | None:
        sch = self.query_schedule(mod, target, workload_name)
        return None if sch is None else sch.mod


@derived_object
class CaptureErrors(ms.measure_callback.PyMeasureCallback):
    """Hands each failed candidate's builder/runner message to the adapter before it commits."""

    def __init__(self, adapter: MetaScheduleDatabase):
        super().__init__()
        self.adapter = adapter

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        for cand, built, ran in zip(measure_candidates, builder_results, runner_results):
            if built.error_msg:
                self.adapter.capture(cand.sch.mod, "build_error", built.error_msg.strip())
            elif ran.error_msg:
                msg = ran.error_msg.strip()
                if msg.startswith("build: "):  # opsearch's build-and-run worker compiles in the runner
                    status, msg = "build_error", msg[len("build: "):]
                elif msg.startswith("run: "):
                    status, msg = ("timeout" if msg.startswith("run: timeout") else "run_error"), msg[len("run: "):]
                else:
                    status = "timeout" if "timeout" in msg.lower() else "run_error"
                self.adapter.capture(cand.sch.mod, status, msg)
