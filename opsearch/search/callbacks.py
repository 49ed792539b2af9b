"""Measure callbacks of a tuning run: progress, early stopping, time limit, Ctrl-C, cleanup."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

from .dedup import KNOWN


@derived_object
class SafeRemoveArtifacts(PyMeasureCallback):
    """Deletes build artifacts (each in its own directory); skips deduplicated candidates."""

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        for b in builder_results:
            path = b.artifact_path
            if path and not str(path).startswith(KNOWN):
                shutil.rmtree(os.path.dirname(str(path)), ignore_errors=True)


@derived_object
class ProgressCallback(PyMeasureCallback):
    """Counts trials per workload, reports progress and stops tasks: budget reached, patience
    exhausted, time limit passed, or Ctrl-C (after the batch in flight)."""

    def __init__(self, tuner, task_workloads, plan, stopped):
        super().__init__()
        self.tuner = tuner
        self.task_workloads = task_workloads
        self.plan = plan
        self.stopped = stopped

    def _stop(self, task_scheduler, task_id: int, reason: str, terminate: bool = True) -> None:
        wl = self.task_workloads[task_id]
        p = self.plan[wl]
        if not p.done:
            p.done = True
            self.stopped.setdefault(wl, reason)
            if terminate:
                try:
                    task_scheduler.terminate_task(task_id)
                except Exception:  # noqa: BLE001 - MetaSchedule already finished it
                    pass

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        cfg = self.tuner.config
        wl = self.task_workloads[task_id]
        p = self.plan[wl]
        for b, r in zip(builder_results, runner_results):
            p.measured += 1
            if b.artifact_path and str(b.artifact_path).startswith(KNOWN):
                p.cached += 1
            secs = [float(s) for s in (r.run_secs or [])]
            ok = b.error_msg is None and r.error_msg is None and secs and max(secs) < 1e9
            if not ok:
                p.failed += 1
                p.since_best += 1
                continue
            us = float(np.mean(secs)) * 1e6
            if p.best_us is None or us < p.best_us:
                p.best_us, p.since_best = us, 0
            else:
                p.since_best += 1
        elapsed = time.monotonic() - self.tuner.started
        self.tuner.progress({
            "event": "batch", "workload": wl, "measured": p.measured, "failed": p.failed, "best_us": p.best_us,
            "done": sum(q.measured for q in self.plan.values()),
            "total": sum(q.budget for q in self.plan.values()), "elapsed": elapsed,
        })
        if p.measured >= p.budget:  # MetaSchedule ends the task itself at its trial cap
            self._stop(task_scheduler, task_id, "budget", terminate=False)
        elif cfg.patience is not None and p.since_best >= cfg.patience:
            self._stop(task_scheduler, task_id, "early stop")
        over_time = cfg.time_limit_s is not None and elapsed >= cfg.time_limit_s
        if over_time or self.tuner.interrupted:
            for i in range(len(self.task_workloads)):
                self._stop(task_scheduler, i, "interrupted" if self.tuner.interrupted else "time limit")
