"""ORM rows <-> the database's domain objects: the one query that reads records with their
workload and target, and the conversions of rows to :class:`Record`, :class:`WorkloadInfo` and
:class:`RunInfo` (and of a record to the row that stores it). :class:`Database` runs them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from .. import ops
from ..ops.spec import Workload
from .models import RecordRow, RunRow, TargetRow, WorkloadRow
from .records import Record, RunInfo, WorkloadInfo, as_utc, workload_from_json


def as_workload(op: str | Workload, args: dict) -> Workload:
    if isinstance(op, Workload):
        if args:
            raise TypeError("pass either a Workload or an operator name with its arguments, not both")
        return op
    return ops.get(op).workload(**args)


RECORD_COLUMNS = (RecordRow.id, RecordRow.workload_id, RecordRow.module_hash, RecordRow.status, RecordRow.run_us,
                   RecordRow.mean_us, RecordRow.error, RecordRow.trace, RecordRow.args_info, RecordRow.run_id,
                   RecordRow.created_at)


def records_query():
    # Workload args come as raw JSON text: to_records decodes them once per workload, not per row.
    return (sa.select(*RECORD_COLUMNS, WorkloadRow.op, sa.type_coerce(WorkloadRow.args, sa.Text), TargetRow.name)
            .join(WorkloadRow, RecordRow.workload_id == WorkloadRow.id)
            .join(TargetRow, RecordRow.target_id == TargetRow.id))


# Built once: the best-record lookup is the hot path (compiled-statement cache hit every call).
TOP_K = (records_query()
          .where(WorkloadRow.key == sa.bindparam("key"), TargetRow.name == sa.bindparam("target"),
                 RecordRow.status == "ok")
          .order_by(RecordRow.mean_us, RecordRow.id).limit(sa.bindparam("k")))


def to_records(rows) -> list[Record]:
    """Rows of :func:`records_query` to :class:`Record` (the one place rows become records)."""
    cache: dict[int, Workload] = {}
    out = []
    for rid, wid, mhash, status, run_us, mean_us, error, trace, args_info, run_id, created, op, args, tname in rows:
        wl = cache.get(wid)
        if wl is None:
            wl = cache[wid] = workload_from_json(op, json.loads(args) if isinstance(args, str) else args)
        out.append(Record(wl, tname, mhash, status, tuple(run_us or ()), mean_us, error, trace, args_info, run_id,
                          as_utc(created), rid))
    return out


def record_row(r: Record, workload_id: int, target_id: int) -> dict[str, Any]:
    return {"workload_id": workload_id, "target_id": target_id, "run_id": r.run_id, "trace": r.trace,
            "args_info": r.args_info, "run_us": list(r.run_us), "mean_us": r.mean_us, "status": r.status,
            "error": r.error, "module_hash": r.module_hash,
            "created_at": r.created_at or datetime.now(timezone.utc)}


def workload_info(w: WorkloadRow, n: int, n_ok: int, best: float | None, targets) -> WorkloadInfo:
    return WorkloadInfo(w.id, workload_from_json(w.op, w.args), w.family, w.structural_hash, n, n_ok, best,
                        tuple(targets))


def run_info(r: RunRow) -> RunInfo:
    return RunInfo(r.id, r.user, r.host, as_utc(r.started_at), r.finished_at and as_utc(r.finished_at),
                   dict(r.settings or {}), r.opsearch_version, r.tvm_version, r.status)
