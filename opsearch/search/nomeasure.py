"""Tuning without a device (CUDA here): compile every candidate with nvcc, measure nothing.

The evolutionary search still proposes candidates ranked by the cost model (pretrained on
measured records of the same target kind); each proposed candidate is compiled for real and
stored with status ``unmeasured`` (or ``build_error`` with nvcc's message). Unmeasured records
never carry timings and are never returned as "best".
"""

from __future__ import annotations

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
from tvm.s_tir.meta_schedule.runner import PyRunner
from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture

UNMEASURED = "unmeasured: no device to measure on"


@derived_object
class NoMeasureRunner(PyRunner):
    def run(self, runner_inputs):
        return [LocalRunnerFuture(res=None, error_message=UNMEASURED) for _ in runner_inputs]


@derived_object
class RecordUnmeasured(PyMeasureCallback):
    """Stores each compiled candidate as ``unmeasured`` and each failed build with its message."""

    def __init__(self, db, target, task_workloads, run_id):
        super().__init__()
        self.db, self.target, self.task_workloads, self.run_id = db, target, task_workloads, run_id

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        from ..db.records import Record
        from ..db.replay import module_hash, replay, trace_json

        wl = self.task_workloads[task_id]
        records = []
        for cand, b in zip(measure_candidates, builder_results):
            if b.artifact_path and str(b.artifact_path).startswith("opsearch-known:"):
                continue
            status, error = ("build_error", b.error_msg.strip()) if b.error_msg else ("unmeasured", None)
            trace = trace_json(cand.sch)
            # The hash of the module the trace rebuilds, as for measured records: what a bundle
            # exports and a measurement imported later names (cand.sch.mod can differ from it).
            records.append(Record.new(wl, self.target.name, module_hash(replay(trace, wl).mod), status=status,
                                      error=error, trace=trace, args_info=[a.as_json() for a in cand.args_info],
                                      run_id=self.run_id))
        self.db.add_records(records)
