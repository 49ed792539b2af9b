"""Frozen domain objects the schedule database hands out, and their JSON (export) form.

Storage, CLI, tuner and torch bridge exchange these values, never ORM rows or TVM objects.
A record's JSON form (one line of an export file) carries ``schema`` = :data:`RECORD_SCHEMA`.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping

from ..ops.spec import Workload
from ..targets import TargetSpec, resolve

STATUSES = ("ok", "build_error", "run_error", "timeout", "wrong_result", "unmeasured")

#: Version of the record JSON form; bump when a field changes meaning.
RECORD_SCHEMA = 1
#: MetaSchedule's marker for a failed measurement (seconds).
FAILED_RUN_SECS = 1e9


@functools.lru_cache(maxsize=256)
def target_spec(target: str | TargetSpec) -> TargetSpec:
    """A :class:`TargetSpec` for storage. ``llvm:<mcpu>`` is taken as written (no TVM import)."""
    if isinstance(target, TargetSpec):
        return target

    t = str(target).strip().lower()
    m = re.fullmatch(r"llvm:([a-z][a-z0-9_.-]*)", t)
    if m and m.group(1) != "native":
        config = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": m.group(1)}
        return TargetSpec(t, "llvm", m.group(1), json.dumps(config, sort_keys=True))
    return resolve(t)


def target_name(target: str | TargetSpec) -> str:
    """The canonical name a target is stored under (``llvm:znver4``, ``cuda:sm_90``)."""
    return target_spec(target).name


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def workload_from_json(op: str, args: Mapping[str, Any]) -> Workload:
    """Rebuild a :class:`Workload` from its stored ``json_args`` without re-validating it."""
    return Workload(op, tuple(sorted((k, _freeze(v)) for k, v in args.items())))


def _iso(t: datetime | None) -> str | None:
    return None if t is None else as_utc(t).isoformat()


def as_utc(t: datetime) -> datetime:
    """SQLite returns naive datetimes: every stored time is UTC."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


def parse_time(s: str | None) -> datetime | None:
    return None if s is None else as_utc(datetime.fromisoformat(s))


@dataclass(frozen=True)
class Record:
    """One schedule candidate for a workload on a target, with its measurement.

    ``run_us`` holds every measured time in microseconds; ``mean_us`` is their mean for
    ``status == "ok"`` and None otherwise. ``module_hash`` identifies the scheduled module:
    committing the same candidate twice stores it once. ``source`` is "db" or "shipped".
    """

    workload: Workload
    target: str
    module_hash: str
    status: str = "ok"
    run_us: tuple[float, ...] = ()
    mean_us: float | None = None
    error: str | None = None
    trace: Any = None
    args_info: Any = None
    run_id: int | None = None
    created_at: datetime | None = None
    id: int | None = None
    source: str = "db"

    @classmethod
    def new(
        cls,
        workload: Workload,
        target: str,
        module_hash: str,
        *,
        run_us=(),
        status: str | None = None,
        error: str | None = None,
        trace: Any = None,
        args_info: Any = None,
        run_id: int | None = None,
        created_at: datetime | None = None,
    ) -> "Record":
        """A record to commit; ``status`` defaults to "ok" with timings, else "unmeasured"."""
        run_us = tuple(float(t) for t in run_us)
        status = status or ("ok" if run_us else "unmeasured")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        if status == "ok" and not run_us:
            raise ValueError("a record with status 'ok' needs at least one run time")
        mean = statistics.fmean(run_us) if status == "ok" else None
        return cls(workload, target, str(module_hash), status, run_us, mean, error, trace, args_info,
                   run_id, created_at or datetime.now(timezone.utc))

    @property
    def op(self) -> str:
        return self.workload.op

    @property
    def args(self) -> dict[str, Any]:
        return self.workload.json_args()

    def to_json(self) -> dict[str, Any]:
        """The export/CLI form (see INTERFACE.md)."""
        return {
            "schema": RECORD_SCHEMA,
            "id": self.id,
            "op": self.op,
            "args": self.args,
            "target": self.target,
            "status": self.status,
            "mean_us": self.mean_us,
            "run_us": list(self.run_us),
            "module_hash": self.module_hash,
            "error": self.error,
            "run_id": self.run_id,
            "created_at": _iso(self.created_at),
            "source": self.source,
            "trace": self.trace,
            "args_info": self.args_info,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], workload: Workload | None = None, source: str = "db") -> "Record":
        """Parse :meth:`to_json` output; ``workload`` overrides the (unvalidated) op/args."""
        wl = workload or workload_from_json(d["op"], d["args"])
        run_us = tuple(float(t) for t in d.get("run_us") or ())
        status = d.get("status") or ("ok" if run_us else "unmeasured")
        rec = cls.new(wl, str(d["target"]), str(d["module_hash"]), run_us=run_us, status=status,
                      error=d.get("error"), trace=d.get("trace"), args_info=d.get("args_info"),
                      run_id=d.get("run_id"), created_at=parse_time(d.get("created_at")))
        return rec if source == "db" else replace(rec, source=source)


@dataclass(frozen=True)
class WorkloadInfo:
    """A stored workload with its record counts (restricted to a target when one was given)."""

    id: int
    workload: Workload
    family: str
    structural_hash: str | None
    n_records: int = 0
    n_ok: int = 0
    best_us: float | None = None
    targets: tuple[str, ...] = ()

    @property
    def op(self) -> str:
        return self.workload.op

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "op": self.op, "family": self.family, "args": self.workload.json_args(),
            "key": self.workload.key(), "structural_hash": self.structural_hash,
            "n_records": self.n_records, "n_ok": self.n_ok, "best_us": self.best_us,
            "targets": list(self.targets),
        }


@dataclass(frozen=True)
class RunInfo:
    """A tuning session."""

    id: int
    user: str | None
    host: str | None
    started_at: datetime
    finished_at: datetime | None
    settings: Mapping[str, Any]
    opsearch_version: str | None
    tvm_version: str | None
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "user": self.user, "host": self.host, "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at), "settings": dict(self.settings),
            "opsearch_version": self.opsearch_version, "tvm_version": self.tvm_version,
            "status": self.status,
        }


@dataclass(frozen=True)
class Comparison:
    """The best records of one workload on two targets; ``ratio`` = b / a."""

    workload: Workload
    a: Record
    b: Record

    @property
    def ratio(self) -> float:
        return self.b.mean_us / self.a.mean_us

    def to_json(self) -> dict[str, Any]:
        return {"op": self.workload.op, "args": self.workload.json_args(), "target_a": self.a.target,
                "target_b": self.b.target, "a_us": self.a.mean_us, "b_us": self.b.mean_us,
                "ratio": self.ratio}


@dataclass(frozen=True)
class ImportReport:
    """What ``import_`` did: lines read, records added, duplicates skipped, bad lines."""

    lines: int = 0
    imported: int = 0
    duplicates: int = 0
    errors: tuple[tuple[int, str], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "imported": self.imported, "duplicates": self.duplicates,
                "rejected": len(self.errors),
                "errors": [{"line": n, "error": msg} for n, msg in self.errors]}


@dataclass(frozen=True)
class Info:
    """Counts and identity of a database."""

    url: str
    backend: str
    revision: str
    counts: Mapping[str, int]
    records_by_status: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "backend": self.backend, "revision": self.revision,
                "counts": dict(self.counts), "records_by_status": dict(self.records_by_status)}
