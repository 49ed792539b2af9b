"""Import of exported JSON lines: validate every line, report bad ones by number, add the rest.

A line is accepted when it is a JSON object of the current record schema, its workload is
valid for the operator (``opsearch.ops``), its target and status are known, its trace holds only
what opsearch's search spaces produce and its latencies are finite and non-negative
(``opsearch.db.validate``), and (with ``replay=True``) its trace replays on the workload's current
IR and, for an ``ok`` record, builds the schedule its ``module_hash`` names. Bad lines add nothing;
the good lines of the same file are added. Records already present are
left untouched, so importing a file twice adds nothing. ``run_id`` is not carried across
databases (runs are local), so imported records have none.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from typing import IO, Iterable, Protocol

from .. import ops
from ..errors import OpsearchError
from .records import RECORD_SCHEMA, STATUSES, ImportReport, Record, target_name
from .validate import check_numbers, check_trace

_CHUNK = 2000


def parse_line(line: str, replay: bool = True) -> Record:
    """One export line to a validated :class:`Record`; raises ValueError with the reason."""
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    if d.get("schema") != RECORD_SCHEMA:
        raise ValueError(f"schema version {d.get('schema')!r} is not {RECORD_SCHEMA}")
    missing = [k for k in ("op", "args", "target", "status", "module_hash", "trace") if k not in d]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    if d["status"] not in STATUSES:
        raise ValueError(f"unknown status {d['status']!r}")
    if not isinstance(d["args"], dict):
        raise ValueError("args must be a JSON object")
    if not replay:
        check_trace(d["trace"])  # replay() checks it itself, before touching TVM
    check_numbers(d.get("run_us"), d.get("mean_us"))
    try:
        wl = _validated(d["op"], json.dumps(d["args"], sort_keys=True))
        target = target_name(d["target"])
        rec = Record.from_json(d, workload=wl)
    except OpsearchError as e:
        raise ValueError(str(e)) from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad record: {e}") from None
    rec = replace(rec, target=target, run_id=None)
    if replay:
        from .replay import module_hash
        from .replay import replay as _replay

        built = module_hash(_replay(rec.trace, wl).mod)
        if rec.status == "ok" and built != rec.module_hash:
            raise ValueError(f"module_hash {str(rec.module_hash)[:24]} is not the schedule its trace builds ({built}): "
                             "altered, or measured on another definition of the operator")
    return rec


@functools.lru_cache(maxsize=4096)
def _validated(op: str, args_json: str):
    """The validated workload (cached: export files repeat each workload many times)."""
    return ops.get(op).workload(**json.loads(args_json))


class RecordSink(Protocol):
    """What an import writes to: :class:`opsearch.db.Database` (which calls :func:`import_lines`)."""

    def add_records(self, records: list[Record]) -> int: ...


def import_lines(db: RecordSink, lines: Iterable[str] | IO[str], replay: bool = True) -> ImportReport:
    """Validate and import export lines into ``db``; see the module docstring."""
    n = imported = valid = 0
    errors: list[tuple[int, str]] = []
    pending: list[Record] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            pending.append(parse_line(line, replay=replay))
            valid += 1
        except ValueError as e:
            errors.append((n, str(e)))
        if len(pending) >= _CHUNK:
            imported += db.add_records(pending)
            pending = []
    imported += db.add_records(pending)
    return ImportReport(n, imported, valid - imported, tuple(errors))
