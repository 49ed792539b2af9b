"""Kernel selection's read path for SQLite databases, with the standard library only.

``opsearch.runtime.loading`` picks a kernel by reading the schedule database: the best ``ok`` record of
a workload on a target, the tuned workloads of an operator, whether a workload is already noted
as pending. Importing SQLAlchemy and its ORM for that costs about half a second, more than
loading the cached kernel itself, so for a plain SQLite file (``sqlite:///path``) these reads run
here through :mod:`sqlite3`: the same queries as :class:`opsearch.db.Database`, on the live
database every time (nothing is cached between lookups, so a record committed by another
process is seen by the next lookup). Everything else goes through the ORM: in-memory or
PostgreSQL URLs, a database file that does not exist yet (the ORM creates it), a schema
revision other than :data:`SCHEMA_REVISION` (the ORM explains it), any SQLite error, and
every write (noting a pending workload the first time it is wanted).

Shipped schedules (``schedules/<target>.jsonl``) come from ``opsearch.db.shipped``, and record
forms from ``opsearch.db.records``: neither imports SQLAlchemy (``opsearch.db`` loads its store
lazily).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..db.records import RECORD_SCHEMA, workload_from_json  # noqa: F401 - re-exported; no SQLAlchemy
from ..ops.spec import Workload

#: The schema revision these queries are written for; equals ``opsearch.db.models.HEAD_REVISION``
#: (a test checks it). Another revision falls back to the ORM, which upgrades or explains.
SCHEMA_REVISION = "0002"
_VERSION_TABLE = "opsearch_alembic_version"
_BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Best:
    """The fastest ``ok`` record of a workload: what kernel selection needs of it."""

    trace: Any
    mean_us: float
    source: str  # "db" or "shipped"
    target: str  # the target it was measured on (a shipped record may be another CPU's)


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
            return Best(_json(row[0]), row[1], "db", target)
        return shipped_best(wl, target)

    def count(self, wl: Workload, target: str) -> int:
        """Like ``Database.count(wl, target)``: how many records of ``wl`` on ``target``."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT COUNT(r.id) FROM records r JOIN workloads w ON r.workload_id = w.id "
                "JOIN targets t ON r.target_id = t.id WHERE w.key = ? AND t.name = ?", (wl.key(), target)).fetchone()
        return int(row[0])

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


# ----------------------------------------------------------------------------- shipped records
def shipped_best(wl: Workload, target: str) -> Best | None:
    """The fastest shipped record of ``wl`` for ``target`` (read by ``opsearch.db.shipped``, which
    imports no SQLAlchemy)."""
    from ..db.shipped import shipped_best as best

    rec = best(wl, target)
    return None if rec is None else Best(rec.trace, rec.mean_us, "shipped", rec.target)
