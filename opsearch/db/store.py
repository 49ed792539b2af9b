"""The schedule database: :class:`Database` over SQLAlchemy, returning frozen domain objects.

Every query and write goes through :meth:`Database._run`, the one session helper: it opens a
session (SQLite writers with ``BEGIN IMMEDIATE``), commits, rolls back on error, retries
transient lock/serialisation failures and maps SQLAlchemy errors to :class:`DatabaseError`.
ORM rows become :class:`Record`/:class:`WorkloadInfo` in ``opsearch.db.rows`` only.

Thread/process safety: one ``Database`` may be shared by threads (SQLAlchemy pools the
connections); any number of processes may write the same database at once: records are
inserted with ``ON CONFLICT DO NOTHING`` on (workload, target, module_hash) and workloads and
targets are get-or-created the same way, so nothing is lost or duplicated. Nothing here
imports TVM, except resolving the target ``"cpu"`` (which asks LLVM for the host CPU name).
"""

from __future__ import annotations

import functools
import getpass
import json
import platform
import random
import time
from datetime import datetime
from typing import IO, Any, Callable, Iterable, Iterator, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from .. import ops
from ..errors import DatabaseError, OpsearchError
from ..ops.spec import Workload
from ..targets import TargetSpec, host_cpu_model
from . import engine as _engine
from .models import (BaselineRow, CostModelRow, PendingRow, RecordRow, RunRow, TargetRow, WorkloadRow,
                     utcnow)
from .records import (STATUSES, Comparison, ImportReport, Info, Record, RunInfo, WorkloadInfo, as_utc, target_name,
                      target_spec, workload_from_json)
from .rows import TOP_K, as_workload, record_row, records_query, run_info, to_records, workload_info
from .transfer import import_lines
from .validate import TraceError, check_numbers

T = TypeVar("T")
_RETRIES = 10
_BATCH = 500


def connect(url: str | None = None) -> "Database":
    """Open the schedule database at ``url`` (else ``$OPSEARCH_DB``, else the user's SQLite file).

    A new database is created at the current schema; one with an older schema raises
    :class:`DatabaseError` naming ``opsearch db upgrade``. Raises :class:`DatabaseError` (one line)
    for a bad URL, an unreachable server or a file that is not a database.

    >>> db = connect("sqlite:///:memory:")  # doctest: +SKIP
    """
    return Database(_engine.resolve_url(url))


@functools.lru_cache(maxsize=1)
def _host() -> str:
    model = host_cpu_model()
    return f"{platform.node()}: {model or platform.processor() or platform.machine()}".strip()


def _is_transient(e: SQLAlchemyError) -> bool:
    msg = str(getattr(e, "orig", e)).lower()
    code = getattr(getattr(e, "orig", None), "sqlstate", None)
    return ("database is locked" in msg or "database is busy" in msg or code in ("40001", "40P01"))


class Database:
    """A schedule database (see the module docstring for its concurrency contract)."""

    def __init__(self, url: str):
        self.engine = _engine.create_engine(url)
        self.url = _engine.safe_url(self.engine)
        self.backend = self.engine.dialect.name
        self.revision = _engine.ensure_schema(self.engine)
        self._writer = _engine.writer(self.engine)
        self._wl_ids: dict[str, int] = {}  # committed workload key -> id
        self._tg_ids: dict[str, int] = {}  # committed target name -> id

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the session helper
    def _run(self, fn: Callable[[Session], T], write: bool = False) -> T:
        """Run ``fn(session)`` in one transaction: commit, or roll back and raise DatabaseError."""
        for attempt in range(_RETRIES):
            try:
                with Session(self._writer if write else self.engine, expire_on_commit=False) as s:
                    with s.begin():
                        return fn(s)
            except OperationalError as e:
                if _is_transient(e) and attempt < _RETRIES - 1:
                    time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))
                    continue
                raise self._error(e) from None
            except SQLAlchemyError as e:
                raise self._error(e) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, e: SQLAlchemyError) -> DatabaseError:
        if isinstance(e, OperationalError) and not _is_transient(e):
            return _engine.connect_error(self.engine, e)
        return DatabaseError(f"database error on {self.url}: {_engine.one_line(e)}")

    def _insert(self, table):
        return (postgresql.insert if self.backend == "postgresql" else sqlite.insert)(table)

    # ------------------------------------------------------------------ get-or-create
    def _target_id(self, s: Session, spec: TargetSpec) -> int:
        return self._ids(s, [], [spec])[1][spec.name]

    def _workload_id(self, s: Session, wl: Workload, structural_hash=None, ir_json=None) -> int:
        return self._ids(s, [(wl, structural_hash, ir_json)], [])[0][wl.key()]

    def _ids(self, s: Session, workloads, specs) -> tuple[dict[str, int], dict[str, int]]:
        """Ids of workloads ``(wl, hash, ir)`` by key and of targets by name; missing rows are
        inserted in bulk with ``ON CONFLICT DO NOTHING`` (safe against concurrent writers)."""
        conn = s.connection()
        wl_rows = {wl.key(): dict(op=wl.op, family=ops.get(wl.op).family, args=wl.json_args(),
                                  dtype=str(wl.args.get("dtype")), key=wl.key(), structural_hash=h,
                                  ir_json=ir, created_at=utcnow())
                   for wl, h, ir in workloads}
        tg_rows = {t.name: dict(name=t.name, config=t.config, kind=t.kind, arch=t.arch, host=_host(),
                                created_at=utcnow()) for t in specs}
        out: tuple[dict[str, int], dict[str, int]] = ({}, {})
        for table, col, rows, ids in ((WorkloadRow.__table__, "key", wl_rows, out[0]),
                                      (TargetRow.__table__, "name", tg_rows, out[1])):
            if not rows:
                continue
            conn.execute(self._insert(table).on_conflict_do_nothing(index_elements=[col]), list(rows.values()))
            keys = list(rows)
            for i in range(0, len(keys), _BATCH):
                q = sa.select(table.c.id, table.c[col]).where(table.c[col].in_(keys[i:i + _BATCH]))
                ids.update((k, i_) for i_, k in conn.execute(q))
        return out

    # ------------------------------------------------------------------ writes
    def add_records(self, records: Iterable[Record]) -> int:
        """Commit records in one transaction; those already present (same workload, target and
        module_hash) are skipped. Returns how many were new."""
        records = list(records)
        if not records:
            return 0
        keys = {r.workload: r.workload.key() for r in records}

        def write(s: Session):
            wl_ids, tg_ids = self._record_ids(s, records, keys)
            rows = [record_row(r, wl_ids[keys[r.workload]], tg_ids[r.target]) for r in records]
            return self._insert_rows(s, rows), wl_ids, tg_ids

        added, wl_ids, tg_ids = self._run(write, write=True)
        self._remember(wl_ids, tg_ids)
        return added

    def _record_ids(self, s: Session, records: list[Record], keys: dict) -> tuple[dict, dict]:
        """Ids of the records' workloads (by key) and targets (by name), inserting new ones."""
        new_wls = [(wl, None, None) for wl, k in keys.items() if k not in self._wl_ids]
        new_tgs = {r.target for r in records if r.target not in self._tg_ids}
        wl_ids, tg_ids = self._ids(s, new_wls, [target_spec(t) for t in sorted(new_tgs)])
        wl_ids.update(self._wl_ids)
        tg_ids.update(self._tg_ids)
        return wl_ids, tg_ids

    def store_measurements(self, records: Iterable[Record]) -> tuple[int, int, int]:
        """Commit measurements taken elsewhere (a GPU machine) in one transaction: a candidate
        stored as ``unmeasured`` gets its measurement, an absent one is added, one already
        measured keeps its measurement (never overwritten). Returns (filled, added, kept)."""
        records = list(records)
        if not records:
            return 0, 0, 0
        keys = {r.workload: r.workload.key() for r in records}

        def write(s: Session):
            wl_ids, tg_ids = self._record_ids(s, records, keys)
            filled = kept = 0
            fresh = []
            for r in records:
                wid, tid = wl_ids[keys[r.workload]], tg_ids[r.target]
                row = s.execute(sa.select(RecordRow).where(RecordRow.workload_id == wid, RecordRow.target_id == tid,
                                                           RecordRow.module_hash == r.module_hash)).scalar_one_or_none()
                if row is None:
                    fresh.append(record_row(r, wid, tid))
                elif row.status == "unmeasured":
                    row.status, row.run_us, row.mean_us, row.error = r.status, list(r.run_us), r.mean_us, r.error
                    filled += 1
                else:
                    kept += 1
            added = self._insert_rows(s, fresh) if fresh else 0
            return (filled, added, kept), wl_ids, tg_ids

        counts, wl_ids, tg_ids = self._run(write, write=True)
        self._remember(wl_ids, tg_ids)
        return counts

    def _remember(self, wl_ids: dict[str, int], tg_ids: dict[str, int]) -> None:
        """Cache ids of committed workloads/targets (rows are never deleted by opsearch)."""
        if len(self._wl_ids) < 100_000:
            self._wl_ids.update(wl_ids)
        self._tg_ids.update(tg_ids)

    def _insert_rows(self, s: Session, rows: list[dict]) -> int:
        table = RecordRow.__table__
        stmt = self._insert(table).on_conflict_do_nothing(
            index_elements=["workload_id", "target_id", "module_hash"]).returning(table.c.id)
        conn = s.connection()
        return sum(len(conn.execute(stmt, rows[i:i + _BATCH]).all()) for i in range(0, len(rows), _BATCH))

    def add_record(self, workload: Workload, target: str | TargetSpec, *, module_hash: str, **fields) -> bool:
        """Commit one record (see :meth:`Record.new` for ``fields``); False if already present."""
        rec = Record.new(workload, target_name(target), module_hash, **fields)
        if isinstance(target, TargetSpec):
            self.ensure_target(target)
        return self.add_records([rec]) == 1

    def ensure_target(self, target: str | TargetSpec) -> None:
        """Store a target's full TVM configuration (before records name it by string)."""
        spec = target_spec(target)
        if spec.name not in self._tg_ids:
            self._remember({}, {spec.name: self._run(lambda s: self._target_id(s, spec), write=True)})

    def ensure_workload(self, wl: Workload, structural_hash: str | None = None, ir_json: str | None = None) -> int:
        """Store a workload (with its IR hash and JSON when known); returns its id."""

        def write(s: Session) -> int:
            wid = self._workload_id(s, wl, structural_hash, ir_json)
            if structural_hash is not None:
                s.execute(sa.update(WorkloadRow).where(WorkloadRow.id == wid, WorkloadRow.structural_hash.is_(None))
                          .values(structural_hash=structural_hash, ir_json=ir_json))
            return wid

        return self._run(write, write=True)

    def mark(self, record: Record | int, status: str, error: str | None = None) -> None:
        """Change a stored record's status (e.g. to ``wrong_result`` after a failed check).

        Its timings stay in ``run_us``; ``mean_us`` is cleared unless the new status is ``ok``.
        """
        if status not in STATUSES:
            raise DatabaseError(f"unknown status '{status}': expected one of {', '.join(STATUSES)}")
        rid = record if isinstance(record, int) else record.id
        if rid is None:
            raise DatabaseError("only stored records (with an id) can be marked")

        def write(s: Session) -> None:
            row = s.get(RecordRow, rid)
            if row is None:
                raise DatabaseError(f"no record with id {rid} in {self.url}")
            row.status, row.error = status, error
            row.mean_us = sum(row.run_us) / len(row.run_us) if status == "ok" and row.run_us else None

        self._run(write, write=True)

    def retime(self, record: Record | int, run_us: list[float]) -> None:
        """Replace an ``ok`` record's timings with a later measurement of it (``run_us``, µs; the
        tuner's confirmation of its finalists); ``mean_us`` becomes their mean."""
        try:
            check_numbers(run_us)
        except TraceError as e:
            raise DatabaseError(f"a new measurement needs finite, non-negative times: {e}") from None
        if not run_us:
            raise DatabaseError("a new measurement needs finite, non-negative times: none given")
        rid = record if isinstance(record, int) else record.id

        def write(s: Session) -> None:
            row = s.get(RecordRow, rid)
            if row is None:
                raise DatabaseError(f"no record with id {rid} in {self.url}")
            if row.status != "ok":
                raise DatabaseError(f"record {rid} is '{row.status}': only ok records are timed again")
            row.run_us, row.mean_us = [float(v) for v in run_us], sum(run_us) / len(run_us)

        self._run(write, write=True)

    def note_pending(self, workload: Workload, target: str | TargetSpec) -> None:
        """Note that a workload was wanted on a target (``opsearch tune --pending`` tunes it)."""
        spec = target_spec(target)

        def write(s: Session) -> None:
            wid, tid = self._workload_id(s, workload), self._target_id(s, spec)
            s.execute(self._insert(PendingRow).values(workload_id=wid, target_id=tid, noted_at=utcnow())
                      .on_conflict_do_nothing(index_elements=["workload_id", "target_id"]))

        self._run(write, write=True)

    def pending(self, target: str | TargetSpec) -> list[tuple[Workload, datetime]]:
        """Workloads noted as wanted on ``target`` that still have no ``ok`` record there, oldest first."""
        name = target_name(target)
        tuned = (sa.select(RecordRow.id).where(RecordRow.workload_id == PendingRow.workload_id,
                                                RecordRow.target_id == PendingRow.target_id, RecordRow.status == "ok"))
        q = (sa.select(WorkloadRow.op, WorkloadRow.args, PendingRow.noted_at)
             .join(WorkloadRow, PendingRow.workload_id == WorkloadRow.id)
             .join(TargetRow, PendingRow.target_id == TargetRow.id)
             .where(TargetRow.name == name, ~tuned.exists()).order_by(PendingRow.noted_at, PendingRow.id))
        return self._run(lambda s: [(workload_from_json(op, args), as_utc(t)) for op, args, t in s.execute(q)])

    def start_run(self, settings: dict | None = None) -> RunInfo:
        """Record the start of a tuning session; pass its ``id`` as records' ``run_id``."""
        import opsearch

        try:
            from importlib.metadata import version

            tvm_version = version("apache-tvm")
        except Exception:  # pragma: no cover - not installed from a wheel
            tvm_version = None

        def write(s: Session) -> RunInfo:
            row = RunRow(user=getpass.getuser(), host=platform.node(), settings=settings or {},
                         opsearch_version=opsearch.__version__, tvm_version=tvm_version, status="running",
                         started_at=utcnow())
            s.add(row)
            s.flush()
            return run_info(row)

        return self._run(write, write=True)

    def finish_run(self, run_id: int, status: str = "done") -> None:
        self._run(lambda s: s.execute(sa.update(RunRow).where(RunRow.id == run_id)
                                      .values(status=status, finished_at=utcnow())), write=True)

    def runs(self) -> list[RunInfo]:
        return self._run(lambda s: [run_info(r) for r in s.scalars(sa.select(RunRow).order_by(RunRow.id))])

    def add_baseline(self, workload: Workload, target: str | TargetSpec, implementation: str, latency_us: float) -> None:
        """Store (or replace) a reference implementation's latency."""
        spec = target_spec(target)

        def write(s: Session) -> None:
            wid, tid = self._workload_id(s, workload), self._target_id(s, spec)
            s.execute(sa.delete(BaselineRow).where(BaselineRow.workload_id == wid, BaselineRow.target_id == tid,
                                                   BaselineRow.implementation == implementation))
            s.add(BaselineRow(workload_id=wid, target_id=tid, implementation=implementation,
                              latency_us=float(latency_us), created_at=utcnow()))

        self._run(write, write=True)

    def baselines(self, workload: Workload, target: str | TargetSpec) -> dict[str, float]:
        name = target_name(target)
        q = (sa.select(BaselineRow.implementation, BaselineRow.latency_us).join(WorkloadRow).join(TargetRow)
             .where(WorkloadRow.key == workload.key(), TargetRow.name == name))
        return self._run(lambda s: {k: v for k, v in s.execute(q)})

    def save_cost_model(self, target_kind: str, data: bytes, *, format: str = "xgboost-ubj",
                        n_samples: int = 0, metrics: dict | None = None) -> int:
        """Store a cost model in XGBoost's own format ('xgboost-json' or 'xgboost-ubj')."""
        if format not in ("xgboost-json", "xgboost-ubj"):
            raise DatabaseError(f"cost model format must be 'xgboost-json' or 'xgboost-ubj', got '{format}'")

        def write(s: Session) -> int:
            row = CostModelRow(target_kind=target_kind, format=format, data=bytes(data), n_samples=int(n_samples),
                               metrics=metrics or {}, created_at=utcnow())
            s.add(row)
            s.flush()
            return row.id

        return self._run(write, write=True)

    def load_cost_model(self, target_kind: str) -> tuple[str, bytes, int, dict] | None:
        """The newest cost model for a target kind as (format, bytes, n_samples, metrics)."""
        q = (sa.select(CostModelRow).where(CostModelRow.target_kind == target_kind)
             .order_by(CostModelRow.id.desc()).limit(1))
        row = self._run(lambda s: s.scalars(q).first())
        return None if row is None else (row.format, bytes(row.data), row.n_samples, dict(row.metrics))

    # ------------------------------------------------------------------ reads
    def best(self, op: str | Workload, target: str | TargetSpec = "cpu", *, shipped: bool = True,
             **args: Any) -> Record | None:
        """The fastest ``ok`` record for a workload on a target, or None.

        ``op`` is an operator name with its workload arguments (``x=(1, 64, 56, 56), ...``) or a
        :class:`Workload`. Falls through to the schedules shipped with opsearch when this database
        has none (``shipped=False`` disables that). ``target="cpu"`` asks LLVM for this host's CPU
        name (imports TVM once); canonical names such as ``"llvm:znver3"`` do not.

        >>> db.best("dilated_conv1d", "llvm:znver3", x=[1, 8, 32], weight=[8, 8, 3])  # doctest: +SKIP
        """
        wl = as_workload(op, args)
        name = target_name(target)
        found = self.top_k(wl, name, 1)
        if found:
            return found[0]
        if shipped:
            from .shipped import shipped_best

            return shipped_best(wl, name)
        return None

    def top_k(self, workload: Workload, target: str | TargetSpec, k: int) -> list[Record]:
        """The ``k`` fastest ``ok`` records of a workload on a target, fastest first."""
        params = {"key": workload.key(), "target": target_name(target), "k": k}
        return self._run(lambda s: to_records(s.execute(TOP_K, params)))

    def records(self, op: str | None = None, family: str | None = None, target: str | TargetSpec | None = None,
                status: str | None = None, since: datetime | str | None = None, limit: int | None = None,
                workload: Workload | None = None) -> list[Record]:
        """Records matching every given filter, oldest first (the newest ``limit`` if given)."""
        if status is not None and status not in STATUSES:
            raise DatabaseError(f"unknown status '{status}': expected one of {', '.join(STATUSES)}")
        q = records_query()
        if op is not None:
            q = q.where(WorkloadRow.op == op)
        if family is not None:
            q = q.where(WorkloadRow.family == family)
        if target is not None:
            q = q.where(TargetRow.name == target_name(target))
        if status is not None:
            q = q.where(RecordRow.status == status)
        if since is not None:
            since = as_utc(datetime.fromisoformat(since) if isinstance(since, str) else since)
            q = q.where(RecordRow.created_at >= since)
        if workload is not None:
            q = q.where(WorkloadRow.key == workload.key())
        if limit is not None:
            q = q.order_by(RecordRow.id.desc()).limit(limit)
            return list(reversed(self._run(lambda s: to_records(s.execute(q)))))
        return self._run(lambda s: to_records(s.execute(q.order_by(RecordRow.id))))

    def count(self, workload: Workload | None = None, target: str | TargetSpec | None = None) -> int:
        """How many records (of a workload, on a target, when given)."""
        q = sa.select(sa.func.count(RecordRow.id)).join(WorkloadRow).join(TargetRow)
        if workload is not None:
            q = q.where(WorkloadRow.key == workload.key())
        if target is not None:
            q = q.where(TargetRow.name == target_name(target))
        return self._run(lambda s: s.execute(q).scalar_one())

    def get(self, record_id: int) -> Record:
        """The record with this id; raises :class:`DatabaseError` if there is none."""
        found = self._run(lambda s: to_records(s.execute(records_query().where(RecordRow.id == record_id))))
        if not found:
            raise DatabaseError(f"no record with id {record_id} in {self.url}")
        return found[0]

    def history(self, workload: Workload, target: str | TargetSpec) -> list[Record]:
        """Every record of a workload on a target, in measurement (commit) order."""
        return self.records(workload=workload, target=target)

    def workload_ir(self, workload: Workload) -> tuple[str | None, str | None]:
        """The stored (structural hash, IR JSON) of a workload, (None, None) when unknown."""
        q = sa.select(WorkloadRow.structural_hash, WorkloadRow.ir_json).where(WorkloadRow.key == workload.key())
        row = self._run(lambda s: s.execute(q).first())
        return (row[0], row[1]) if row else (None, None)

    def workloads(self, op: str | None = None, family: str | None = None,
                  target: str | TargetSpec | None = None) -> list[WorkloadInfo]:
        """Stored workloads with record counts; with ``target``, only those with records there."""
        name = target_name(target) if target is not None else None
        join = RecordRow.workload_id == WorkloadRow.id
        if name is not None:
            join = sa.and_(join, RecordRow.target_id == sa.select(TargetRow.id).where(TargetRow.name == name)
                           .scalar_subquery())
        ok = RecordRow.status == "ok"
        q = (sa.select(WorkloadRow, sa.func.count(RecordRow.id), sa.func.count(sa.case((ok, 1))),
                       sa.func.min(sa.case((ok, RecordRow.mean_us))))
             .outerjoin(RecordRow, join).group_by(WorkloadRow.id).order_by(WorkloadRow.op, WorkloadRow.id))
        if op is not None:
            q = q.where(WorkloadRow.op == op)
        if family is not None:
            q = q.where(WorkloadRow.family == family)
        if name is not None:
            q = q.having(sa.func.count(RecordRow.id) > 0)
        pairs = (sa.select(RecordRow.workload_id, TargetRow.name).join(TargetRow)
                 .distinct().order_by(TargetRow.name))

        def read(s: Session) -> list[WorkloadInfo]:
            targets: dict[int, list[str]] = {}
            for wid, tname in s.execute(pairs):
                targets.setdefault(wid, []).append(tname)
            return [workload_info(w, n, n_ok, best, targets.get(w.id, ())) for w, n, n_ok, best in s.execute(q)]

        return self._run(read)

    def compare(self, target_a: str | TargetSpec, target_b: str | TargetSpec) -> list[Comparison]:
        """Best records on both targets for every workload tuned on both, by operator."""
        a, b = target_name(target_a), target_name(target_b)
        best_a = {r.workload: r for r in self._best_per_workload(a)}
        out = [Comparison(r.workload, best_a[r.workload], r) for r in self._best_per_workload(b) if r.workload in best_a]
        return sorted(out, key=lambda c: (c.workload.op, c.workload.key()))

    def _best_per_workload(self, name: str) -> list[Record]:
        rank = sa.func.row_number().over(partition_by=RecordRow.workload_id,
                                         order_by=(RecordRow.mean_us, RecordRow.id)).label("rank")
        inner = (sa.select(RecordRow.id, rank).join(TargetRow)
                 .where(TargetRow.name == name, RecordRow.status == "ok").subquery())
        q = records_query().join(inner, inner.c.id == RecordRow.id).where(inner.c.rank == 1)
        return self._run(lambda s: to_records(s.execute(q)))

    def targets(self) -> list[TargetSpec]:
        """Every stored target with the TVM configuration it was first stored with."""
        q = sa.select(TargetRow).order_by(TargetRow.name)
        return self._run(lambda s: [TargetSpec(r.name, r.kind, r.arch, json.dumps(r.config, sort_keys=True))
                                    for r in s.scalars(q)])

    def info(self) -> Info:
        """Row counts per table and records per status."""
        tables = {"targets": TargetRow, "workloads": WorkloadRow, "runs": RunRow, "records": RecordRow,
                  "cost_models": CostModelRow, "baselines": BaselineRow, "pending": PendingRow}

        def read(s: Session) -> Info:
            counts = {k: s.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for k, t in tables.items()}
            by_status = dict(s.execute(sa.select(RecordRow.status, sa.func.count()).group_by(RecordRow.status)).all())
            return Info(self.url, self.backend, self.revision, counts, by_status)

        return self._run(read)

    # ------------------------------------------------------------------ export / import
    def iter_records(self, target: str | TargetSpec | None = None, chunk: int = 2000) -> Iterator[Record]:
        """Every record (of one target if given) in id order, read in chunks."""
        last = 0
        while True:
            q = records_query().where(RecordRow.id > last)
            if target is not None:
                q = q.where(TargetRow.name == target_name(target))
            batch = self._run(lambda s: to_records(s.execute(q.order_by(RecordRow.id).limit(chunk))))
            yield from batch
            if len(batch) < chunk:
                return
            last = batch[-1].id

    def export(self, fp: IO[str], target: str | TargetSpec | None = None, best: int | None = None) -> int:
        """Write records as JSON lines (see :meth:`Record.to_json`); returns how many.

        ``best=K`` writes only the K fastest ``ok`` records of each (workload, target), fastest
        first: the form of the schedule files shipped with opsearch."""
        if best is not None and best < 1:
            raise OpsearchError(f"best must be at least 1, got {best}")
        records: Iterable[Record] = self.iter_records(target)
        if best is not None:
            groups: dict[tuple[str, str], list[Record]] = {}
            for rec in records:
                if rec.status == "ok" and rec.mean_us is not None:
                    groups.setdefault((rec.workload.key(), rec.target), []).append(rec)
            records = [r for key in sorted(groups) for r in sorted(groups[key], key=lambda r: r.mean_us)[:best]]
        n = 0
        for rec in records:
            fp.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")
            n += 1
        return n

    def import_(self, fp: IO[str], replay: bool = True) -> ImportReport:
        """Import JSON lines, validating each; see :func:`opsearch.db.transfer.import_lines`."""
        return import_lines(self, fp, replay=replay)
