"""Read-only schedule records shipped with opsearch (``schedules/<target>.jsonl``).

``Database.best`` falls through to these when the user's database has no record. A file is
named after the canonical target with ``:`` replaced by ``-`` (``llvm-znver3.jsonl``); each
line is a record in export form. Files are read once per process; unreadable lines are skipped
with a warning.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

from ..ops.spec import Workload
from .records import RECORD_SCHEMA, Record


def schedules_dir() -> Path | None:
    """``opsearch/_data/schedules`` when installed, ``schedules/`` in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_data" / "schedules", here.parent / "schedules"):
        if candidate.is_dir():
            return candidate
    return None


def shipped_file(target_name: str) -> Path | None:
    d = schedules_dir()
    return None if d is None else d / f"{target_name.replace(':', '-')}.jsonl"


@functools.lru_cache(maxsize=16)
def _best_by_key(target_name: str) -> dict[str, Record]:
    path = shipped_file(target_name)
    best: dict[str, Record] = {}
    if path is None or not path.is_file():
        return best
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if d.get("schema") != RECORD_SCHEMA:
                    raise ValueError(f"schema {d.get('schema')!r}, expected {RECORD_SCHEMA}")
                rec = Record.from_json(d, source="shipped")
            except (ValueError, KeyError, TypeError) as e:
                warnings.warn(f"{path}:{n}: skipped shipped record: {e}", stacklevel=2)
                continue
            if rec.target != target_name or rec.status != "ok":
                continue
            key = rec.workload.key()
            if key not in best or rec.mean_us < best[key].mean_us:
                best[key] = rec
    return best


def shipped_best(workload: Workload, target_name: str) -> Record | None:
    """The fastest shipped record for a workload on a target, or None."""
    return _best_by_key(target_name).get(workload.key())
