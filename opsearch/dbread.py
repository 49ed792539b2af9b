"""Kernel selection's read path for SQLite databases, with the standard library only.

``opsearch.loading`` picks a kernel by reading the schedule database: the best ``ok`` record of
a workload on a target, the tuned workloads of an operator, whether a workload is already noted
as pending. Importing SQLAlchemy and its ORM for that costs about half a second, more than
loading the cached kernel itself, so for a plain SQLite file (``sqlite:///path``) these reads run
here through :mod:`sqlite3`: the same queries as :class:`opsearch.db.Database`, on the live
database every time (nothing is cached between lookups, so a record committed by another
process is seen by the next lookup). Everything else goes through the ORM: in-memory or
PostgreSQL URLs, a database file that does not exist yet (the ORM creates it), a schema
revision other than :data:`SCHEMA_REVISION` (the ORM explains it), any SQLite error, and
every write (noting a pending workload the first time it is wanted).

Shipped schedules (``schedules/<target>.jsonl``) are read here too, with the same rules as
``opsearch.db.shipped`` (fastest ``ok`` record per workload; with no file for the target, the
files of other targets of the same kind; malformed lines skipped with a warning); a test checks
both readers agree.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .ops.spec import Workload

#: The schema revision these queries are written for; equals ``opsearch.db.models.HEAD_REVISION``
#: (a test checks it). Another revision falls back to the ORM, which upgrades or explains.
SCHEMA_REVISION = "0002"
RECORD_SCHEMA = 1  # equals opsearch.db.records.RECORD_SCHEMA (checked by a test)
_VERSION_TABLE = "opsearch_alembic_version"
_BUSY_TIMEOUT_S = 60.0
_STATUSES = ("ok", "build_error", "run_error", "timeout", "wrong_result", "unmeasured")


@dataclass(frozen=True)
class Best:
    """The fastest ``ok`` record of a workload: what kernel selection needs of it."""

    trace: Any
    mean_us: float
    source: str  # "db" or "shipped"


def sqlite_path(url: str | None) -> str | None:
    """The file behind a plain SQLite URL (``url``, else ``$OPSEARCH_DB``, else the default
    database), or None when the ORM must handle the URL."""
    url = url or os.environ.get("OPSEARCH_DB")
    if not url:
        import platformdirs

        return str(Path(platformdirs.user_data_dir("opsearch")) / "opsearch.db")
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = url[len("sqlite:///"):]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


class Reader:
    """Read-only queries on one SQLite schedule database (a connection per use)."""

    def __init__(self, path: str):
        self.path = path

    @classmethod
    def open(cls, url: str | None) -> "Reader | None":
        """A reader for ``url``, or None when the ORM must be used (see the module docstring)."""
        path = sqlite_path(url)
        if path is None or not os.path.isfile(path):
            return None
        reader = cls(path)
        try:
            with reader._connect() as conn:
                row = conn.execute(f"SELECT version_num FROM {_VERSION_TABLE}").fetchone()
        except sqlite3.Error:
            return None
        return reader if row is not None and row[0] == SCHEMA_REVISION else None

    def _connect(self) -> "_Conn":
        return _Conn(self.path)

    def best(self, wl: Workload, target: str) -> Best | None:
        """Like ``Database.best(wl, target)``: this database's fastest ``ok`` record, else the
        shipped one."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT r.trace, r.mean_us FROM records r JOIN workloads w ON r.workload_id = w.id "
                "JOIN targets t ON r.target_id = t.id WHERE w.key = ? AND t.name = ? AND r.status = 'ok' "
                "ORDER BY r.mean_us, r.id LIMIT 1", (wl.key(), target)).fetchone()
        if row is not None:
            return Best(_json(row[0]), row[1], "db")
        return shipped_best(wl, target)

    def tuned_workloads(self, op: str, target: str) -> list[Workload]:
        """Like ``[i.workload for i in Database.workloads(op=op, target=target)]``: workloads of
        ``op`` with at least one record on ``target``, by id."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT w.op, w.args FROM workloads w WHERE w.op = ? AND EXISTS (SELECT 1 FROM records r "
                "WHERE r.workload_id = w.id AND r.target_id = (SELECT id FROM targets WHERE name = ?)) "
                "ORDER BY w.op, w.id", (op, target)).fetchall()
        return [workload_from_json(o, _json(a)) for o, a in rows]

    def is_pending(self, wl: Workload, target: str) -> bool:
        """True when ``wl`` is already noted as wanted on ``target``."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM pending p JOIN workloads w ON p.workload_id = w.id "
                "JOIN targets t ON p.target_id = t.id WHERE w.key = ? AND t.name = ?", (wl.key(), target)).fetchone()
        return row is not None


class _Conn:
    """A short-lived connection that cannot create the file (``mode=rw``); closed on exit."""

    def __init__(self, path: str):
        uri = "file:" + _quote(os.path.abspath(path)) + "?mode=rw"
        self.conn = sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None,
                                    check_same_thread=False)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc) -> None:
        self.conn.close()


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, (str, bytes)) else v


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def workload_from_json(op: str, args: dict) -> Workload:
    """A :class:`Workload` from its stored ``json_args`` (as ``opsearch.db.records`` does)."""
    return Workload(op, tuple(sorted((k, _freeze(v)) for k, v in args.items())))


# ----------------------------------------------------------------------------- shipped records
def schedules_dir() -> Path | None:
    """``opsearch/_data/schedules`` when installed, ``schedules/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "schedules", here.parent / "schedules"):
        if candidate.is_dir():
            return candidate
    return None


def _shipped_files(target: str) -> tuple[list[Path], bool]:
    """The shipped files serving a target and whether they are for exactly that target: with no
    file for the target, every file of the same kind (as ``opsearch.db.shipped``)."""
    d = schedules_dir()
    if d is None:
        return [], True
    path = d / f"{target.replace(':', '-')}.jsonl"
    if path.is_file():
        return [path], True
    kind = target.split(":", 1)[0]
    return sorted(d.glob(f"{kind}-*.jsonl")), False


@functools.lru_cache(maxsize=16)
def _shipped_table(paths: tuple[str, ...], target: str | None, kind: str) -> dict[str, Best]:
    """Fastest ``ok`` record per workload key over ``paths``: records for ``target``, or with
    ``target`` None for any target of ``kind``."""
    best: dict[str, Best] = {}
    for p in map(Path, paths):
        _read_shipped(p, target, kind, best)
    return best


def _read_shipped(p: Path, target: str | None, kind: str, best: dict[str, Best]) -> None:
    with p.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if d.get("schema") != RECORD_SCHEMA:
                    raise ValueError(f"schema {d.get('schema')!r}, expected {RECORD_SCHEMA}")
                op, args, tname = d["op"], d["args"], str(d["target"])
                str(d["module_hash"])
                run_us = tuple(float(t) for t in d.get("run_us") or ())
                status = d.get("status") or ("ok" if run_us else "unmeasured")
                if status not in _STATUSES:
                    raise ValueError(f"status must be one of {', '.join(_STATUSES)}, got {status!r}")
                if status == "ok" and not run_us:
                    raise ValueError("a record with status 'ok' needs at least one run time")
                if d.get("created_at") is not None:
                    datetime.fromisoformat(d["created_at"])
                key = workload_from_json(op, args).key()
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                warnings.warn(f"{p}:{n}: skipped shipped record: {e}", stacklevel=2)
                continue
            if status != "ok" or (tname != target if target else not tname.startswith(kind + ":")):
                continue
            import statistics

            mean = statistics.fmean(run_us)
            if key not in best or mean < best[key].mean_us:
                best[key] = Best(d.get("trace"), mean, "shipped")


def shipped_best(wl: Workload, target: str) -> Best | None:
    """The fastest shipped record of ``wl`` for ``target`` (``opsearch.db.shipped.shipped_best``:
    the target's own file, else every file of the same kind)."""
    files, exact = _shipped_files(target)
    if not files:
        return None
    table = _shipped_table(tuple(map(str, files)), target if exact else None, target.split(":", 1)[0])
    return table.get(wl.key())
