"""Read-only schedule records shipped with opsearch (``schedules/<target>.jsonl``).

``Database.best`` falls through to these when the user's database has no record. A file is
named after the canonical target with ``:`` replaced by ``-`` (``llvm-znver3.jsonl``); each
line is a record in export form. Files are read once per process; unreadable lines are skipped
with a warning. The target's own file serves first; workloads it lacks (all of them, with no such
file) are served by the files of other targets of the same kind (e.g. a CPU's schedules on another
CPU), those of CPUs with the same widest vector extension first: records are schedule traces,
rebuilt for the local target, so they are correct anywhere they replay and usually fast on a
similar machine.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

from ..ops.spec import Workload
from .records import RECORD_SCHEMA, Record
from .validate import TraceError, check_numbers, check_trace


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


def _files(target_name: str) -> tuple[Path | None, list[Path]]:
    """The shipped file for exactly this target (or None), and the other files of its kind."""
    path = shipped_file(target_name)
    if path is None:
        return None, []
    kind = target_name.split(":", 1)[0]
    others = [p for p in sorted(path.parent.glob(f"{kind}-*.jsonl")) if p != path]
    return (path if path.is_file() else None), others


# Vector extensions that set how a CPU schedule is tiled and vectorised, widest first.
_VECTOR_ISAS = ("avx512f", "avx2", "avx", "sse4.2")


@functools.lru_cache(maxsize=32)
def vector_isa(target_name: str) -> str | None:
    """The widest vector extension of an ``llvm:<mcpu>`` target per LLVM (imports TVM), or None."""
    kind, _, mcpu = target_name.partition(":")
    if kind != "llvm" or not mcpu:
        return None
    try:
        import tvm
        from tvm.target import codegen

        t = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu})
        return next((isa for isa in _VECTOR_ISAS if codegen.llvm_cpu_has_features([isa], t)), "scalar")
    except Exception:  # noqa: BLE001 - an unknown CPU name only loses the preference
        return None


def _by_similarity(target_name: str, files: list[Path]) -> list[list[Path]]:
    """Other targets' files grouped by preference: those of a CPU with the same widest vector
    extension first (schedules tiled for 16-lane AVX-512 ran up to 2x slower than the default on
    an AVX2 CPU, benchmarks/RESULTS.md), then the rest."""
    if len(files) < 2 or not target_name.startswith("llvm:"):
        return [files] if files else []
    mine = vector_isa(target_name)
    same = [p for p in files if mine is not None and vector_isa(p.stem.replace("-", ":", 1)) == mine]
    rest = [p for p in files if p not in same]
    return [g for g in (same, rest) if g]


@functools.lru_cache(maxsize=16)
def _best_by_key(target_name: str) -> dict[str, Record]:
    """Per workload, the fastest record of the target's own file; workloads that file lacks
    (or every workload, with no such file) take the fastest record of the most similar CPUs'
    files that have one (:func:`_by_similarity`). Latencies are compared only within a group."""
    exact, others = _files(target_name)
    kind = target_name.split(":", 1)[0]
    best: dict[str, Record] = {}
    if exact is not None:
        _read(exact, target_name, kind, best)
    for group in _by_similarity(target_name, others):
        fallback: dict[str, Record] = {}
        for path in group:
            _read(path, None, kind, fallback)
        for key, rec in fallback.items():
            best.setdefault(key, rec)
    return best


def _read(path: Path, target_name: str | None, kind: str, best: dict[str, Record]) -> None:
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
            if rec.status != "ok" or (rec.target != target_name if target_name else not rec.target.startswith(kind + ":")):
                continue
            key = rec.workload.key()
            if key not in best or rec.mean_us < best[key].mean_us:
                try:  # checked when it would serve: a hostile line must not shadow the good ones
                    check_trace(rec.trace)
                    check_numbers(rec.run_us, rec.mean_us)
                except TraceError as e:
                    warnings.warn(f"{path}:{n}: skipped shipped record: {e}", stacklevel=2)
                    continue
                best[key] = rec


def shipped_best(workload: Workload, target_name: str) -> Record | None:
    """The fastest shipped record for a workload on a target, or None."""
    return _best_by_key(target_name).get(workload.key())
