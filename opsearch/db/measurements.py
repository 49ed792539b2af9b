"""Importing measurements taken on another machine: ``opsearch db import-measurements FILE``.

The file is what ``python -m opsearch.gpu_runner`` writes: a JSON document of kind
``opsearch-cuda-measurements`` holding one record per candidate of a bundle (status ``ok`` with
its run times, ``wrong_result`` or ``run_error`` with the message). Every record is checked as an
imported schedule line is (``opsearch.db.transfer.parse_line``: the trace through the
allow-list and replayed, an ok record's module hash rebuilt from its trace, finite non-negative
times) and must name the file's CUDA target. All or nothing: one bad record and the error names
it, and nothing is added. Stored candidates that were ``unmeasured`` get their measurement; a
candidate measured before keeps its first measurement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatabaseError
from .records import target_name
from .transfer import parse_line

RESULTS_KIND = "opsearch-cuda-measurements"
MEASURED = ("ok", "wrong_result", "run_error", "timeout")


@dataclass(frozen=True)
class MeasurementImport:
    target: str
    device: str
    filled: int  # unmeasured candidates that got their measurement
    added: int  # candidates the database did not hold
    kept: int  # already measured: left as they were
    by_status: dict

    def to_json(self) -> dict:
        return {"target": self.target, "device": self.device, "filled": self.filled, "added": self.added,
                "kept": self.kept, "by_status": self.by_status}


def read_measurements(path: str | Path, replay: bool = True) -> tuple[dict, list]:
    """(document, records) of a measurements file, every record validated; DatabaseError
    naming the first problem otherwise."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise DatabaseError(f"{p}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatabaseError(f"{p}: not a JSON document ({e})") from None
    if not isinstance(doc, dict) or doc.get("kind") != RESULTS_KIND:
        raise DatabaseError(f"{p}: not an opsearch measurements file (kind "
                            f"{doc.get('kind') if isinstance(doc, dict) else None!r}, expected {RESULTS_KIND!r})")
    if doc.get("schema") != 1 or not isinstance(doc.get("records"), list):
        raise DatabaseError(f"{p}: schema {doc.get('schema')!r} with records {type(doc.get('records')).__name__}: expected 1 and a list")
    try:
        target = target_name(str(doc.get("target")))
    except Exception as e:  # noqa: BLE001 - TargetError and friends
        raise DatabaseError(f"{p}: target: {e}") from None
    if not target.startswith("cuda:"):
        raise DatabaseError(f"{p}: target {target} is not a CUDA target")
    records = []
    for i, d in enumerate(doc["records"]):
        where = f"{p}: record {i}"
        if not isinstance(d, dict):
            raise DatabaseError(f"{where}: not a JSON object")
        if d.get("status") not in MEASURED:
            raise DatabaseError(f"{where}: status {d.get('status')!r} is not a measurement ({', '.join(MEASURED)})")
        try:
            rec = parse_line(json.dumps(d), replay=replay)
        except ValueError as e:
            raise DatabaseError(f"{where}: {e}") from None
        if rec.target != target:
            raise DatabaseError(f"{where}: target {rec.target} is not the file's {target}")
        if rec.status == "ok" and any(t <= 0 for t in rec.run_us):
            raise DatabaseError(f"{where}: an ok record needs positive run times")
        records.append(rec)
    if not records:
        raise DatabaseError(f"{p}: holds no records")
    return doc, records


def import_measurements(db, path: str | Path) -> MeasurementImport:
    """Validate every record of ``path``, then store them all in one transaction."""
    doc, records = read_measurements(path)
    filled, added, kept = db.store_measurements(records)
    by_status: dict[str, int] = {}
    for r in records:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    device = doc.get("device") or {}
    return MeasurementImport(records[0].target, str(device.get("name", "unknown")), filled, added, kept, by_status)
