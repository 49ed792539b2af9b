"""The schedule database: ``connect(url)`` returns a :class:`Database` of tuning records.

Importing this package does not import TVM; the MetaSchedule adapter lives in
``opsearch.db.metaschedule`` and trace replay in ``opsearch.db.replay``.
"""

from ..errors import DatabaseError
from .records import RECORD_SCHEMA, Comparison, ImportReport, Info, Record, RunInfo, WorkloadInfo
from .store import Database, connect

__all__ = ["connect", "Database", "DatabaseError", "Record", "WorkloadInfo", "RunInfo", "Comparison",
           "ImportReport", "Info", "RECORD_SCHEMA"]
