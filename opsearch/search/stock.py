"""Stock MetaSchedule as a baseline tuner: ``tune_tir`` as its users run it, stored in our database.

``tune_stock(workload, target, db, trials)`` runs stock ``tvm.s_tir.meta_schedule.tune_tir`` --
its own design space, evolutionary search, ``XGBModel``, ``LocalBuilder`` and ``LocalRunner`` --
and writes every candidate it measures into an opsearch database through
:class:`~opsearch.db.metaschedule.MetaScheduleDatabase` (traces and timings, as for our own runs;
the run's settings say ``tuner: stock-metaschedule``). Nothing of ours is swapped in, with one
documented exception: ``LocalBuilder``'s 30 s timeout is raised (``build_timeout_s``), because
each of its workers imports every tensor intrinsic (22-26 s) and on 2 cores the default fails
every batch, which would compare against nothing.

Keep stock records in their own database (``opsearch tune --tuner stock --db URL``):
``opsearch bench --stock-db URL`` then times stock's best beside ours at the same trial budget.
As with ``opsearch tune``, records already in the database count against the budget, so a run
that was stopped continues where it was.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass

from ..errors import OpsearchError
from ..ops.spec import Workload
from ..targets import TargetSpec, resolve

TUNER = "stock-metaschedule"


@dataclass(frozen=True)
class StockResult:
    workload: Workload
    target: str
    trials_before: int
    trials_run: int
    failed: int
    wall_s: float
    best_us: float | None


def default_build_timeout(cores: int | None) -> float:
    """Seconds per LocalBuilder batch item: the intrinsic import (22-26 s on one core) plus the
    build, with room for the cores being shared (2 cores: 120 s, measured to work)."""
    return max(60.0, 240.0 / max(1, cores or 1))


def tune_stock(workload: Workload, target: str | TargetSpec, db, trials: int, *, batch: int = 64,
               build_timeout_s: float | None = None, seed: int | None = None) -> StockResult:
    """Tune one workload with stock MetaSchedule until ``trials`` records of it are in ``db``."""
    spec = resolve(target)
    if spec.kind != "llvm":
        raise OpsearchError(f"stock MetaSchedule is run here with its local runner, on this CPU only; got {spec.name}")
    if trials <= 0:
        raise OpsearchError(f"trials must be positive, got {trials}")
    if batch <= 0:
        raise OpsearchError(f"batch must be positive, got {batch}")
    before = db.count(workload, spec)
    left = trials - before
    if left <= 0:
        best = db.best(workload, spec, shipped=False)
        return StockResult(workload, spec.name, before, 0, 0, 0.0, best.mean_us if best else None)

    from tvm.s_tir import meta_schedule as ms

    from ..db.metaschedule import MetaScheduleDatabase
    from ..ops.tir import ir_module

    timeout = build_timeout_s or default_build_timeout(spec.num_cores)
    run = db.start_run({"tuner": TUNER, "target": spec.name, "trials": trials, "workloads": [workload.key()],
                        "batch": batch, "build_timeout_s": timeout})
    adapter = MetaScheduleDatabase(db, spec, workload, run_id=run.id)
    work_dir = tempfile.mkdtemp(prefix="opsearch-stock-")
    t0, status = time.monotonic(), "done"
    try:
        ms.tune_tir(ir_module(workload), spec.tvm(), work_dir, max_trials_global=left,
                    num_trials_per_iter=min(batch, left), builder=ms.builder.LocalBuilder(timeout_sec=timeout),
                    runner=ms.runner.LocalRunner(), database=adapter, measure_callbacks=adapter.measure_callbacks(),
                    num_tuning_cores=spec.num_cores or "physical", **({"seed": seed} if seed is not None else {}))
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException:
        status = "failed"
        raise
    finally:
        db.finish_run(run.id, status)
        shutil.rmtree(work_dir, ignore_errors=True)
    wall = time.monotonic() - t0
    history = db.history(workload, spec)[before:]
    best = db.best(workload, spec, shipped=False)
    return StockResult(workload, spec.name, before, len(history), sum(r.status != "ok" for r in history), wall,
                       best.mean_us if best else None)
