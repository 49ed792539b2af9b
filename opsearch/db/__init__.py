"""The schedule database: ``connect(url)`` returns a :class:`Database` of tuning records.

Importing this package imports neither TVM nor SQLAlchemy: the store and record types load on
first use (so ``opsearch.db.replay``, which the kernel-serving path needs, stays light). The
MetaSchedule adapter lives in ``opsearch.db.metaschedule`` and trace replay in
``opsearch.db.replay``.
"""

import importlib

from ..errors import DatabaseError

_LAZY = {"connect": "store", "Database": "store", **{n: "records" for n in (
    "RECORD_SCHEMA", "Comparison", "ImportReport", "Info", "Record", "RunInfo", "WorkloadInfo")}}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'opsearch.db' has no attribute {name!r}")


__all__ = ["connect", "Database", "DatabaseError", "Record", "WorkloadInfo", "RunInfo", "Comparison",
           "ImportReport", "Info", "RECORD_SCHEMA"]
