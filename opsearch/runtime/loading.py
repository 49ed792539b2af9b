"""Which kernel runs a workload: its tuned record, a nearby tuned workload's, or the default.

``kernel_for(wl, target, db)`` looks the workload up in the database (the user's, then the
schedules shipped with opsearch). With no record it tries the best records of the nearest tuned
workloads of the same operator whose traces replay on this one (a schedule transformation that
applies is semantics-preserving), and otherwise uses the default schedule and notes the workload
as pending, so ``opsearch tune --pending`` tunes it later. A record that was never timed for
this workload on this CPU (another CPU's shipped record, another workload's) is timed against
the default schedule once per machine, and serves only if it is faster (Triton's autotuner
likewise times its configurations at the first call); ``OPSEARCH_CHECK=0`` turns that off. So is
the database's own record of a workload searched fewer than ``CONFIRMED_FROM`` candidates here:
the tuner confirms its finalists in fresh processes only from that many
(``opsearch.search.confirm``), and a short run keeps the candidate its one noisy timing ranked
first. The demo's 16-trial record of dilated_conv2d context_d4 ran 2,038 us in its table on a
znver4 VM, the default schedule 1,787 us (benchmarks/RESULTS.md).
Traces are rebuilt locally and the library cached on disk by content hash (``opsearch.runtime.cache``);
nothing executable comes from the database. A database that cannot be opened degrades to
default kernels with one warning.

For a SQLite file (the default) the reads go through ``opsearch.runtime.dbread`` (standard-library
``sqlite3``, the same queries on the live database) so a fresh process does not import
SQLAlchemy just to find its kernels; other URLs, database objects, a missing file or another
schema revision use the ORM (:class:`opsearch.db.Database`), as does the one write (noting a
workload as pending, done only when it is not noted yet).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import statistics
import warnings
from typing import Any

from . import kernels
from ..ops.spec import Workload
from ..targets import resolve

log = logging.getLogger(__name__)
NEAREST_TRIES = 5
# A workload with fewer records than this here was not confirmed by the tuner (its
# AUTO_MIN_TRIALS, opsearch.search.confirm, which sits above this layer; a test keeps them equal):
# its best record is timed against the default schedule before it serves.
CONFIRMED_FROM = 128


@functools.lru_cache(maxsize=8)
def _connect(url: str | None):
    from .. import db as dbmod

    return dbmod.connect(url)


def open_db(db: Any):
    """A Database from an object, a URL or None (default); None if it cannot be opened."""
    if db is not None and not isinstance(db, str):
        return db
    try:
        return _connect(db)
    except Exception as e:  # noqa: BLE001 - serving kernels must not fail on a bad database
        warnings.warn(f"opsearch: schedule database unavailable, using default schedules: {e}", stacklevel=3)
        return None


def kernel_from_record(rec, wl: Workload, target) -> kernels.Kernel:
    """The kernel of a stored record: its trace replayed on ``wl`` and built through the cache."""
    from ..db.replay import replay

    sch = replay(rec.trace, wl)
    k = kernels.cached_kernel(wl, target, sch, key_text=json.dumps(rec.trace, sort_keys=True))
    return k


class _OrmStore:
    """Selection's view of an ORM :class:`opsearch.db.Database`."""

    def __init__(self, store):
        self.store = store

    def best(self, wl: Workload, spec):
        return self.store.best(wl, spec)

    def count(self, wl: Workload, spec) -> int:
        return self.store.count(wl, spec)

    def tuned_workloads(self, op: str, spec) -> list[Workload]:
        return [info.workload for info in self.store.workloads(op=op, target=spec)]

    def note_pending(self, wl: Workload, spec) -> None:
        self.store.note_pending(wl, spec)


class _SqliteStore:
    """Selection's view of a SQLite file read with the standard library (``opsearch.runtime.dbread``);
    noting a workload as pending goes through the ORM, and only when it is not noted yet."""

    def __init__(self, reader, url: str | None):
        self.reader, self.url = reader, url

    def best(self, wl: Workload, spec):
        return self.reader.best(wl, spec.name)

    def count(self, wl: Workload, spec) -> int:
        return self.reader.count(wl, spec.name)

    def tuned_workloads(self, op: str, spec) -> list[Workload]:
        return self.reader.tuned_workloads(op, spec.name)

    def note_pending(self, wl: Workload, spec) -> None:
        if self.reader.is_pending(wl, spec.name):
            return
        store = open_db(self.url)
        if store is not None:
            store.note_pending(wl, spec)


def _selection_store(db: Any):
    """The store kernel selection reads: a light SQLite reader when ``db`` is a plain SQLite URL
    (or None for the default database) that opens at the current schema, else the ORM."""
    if db is None or isinstance(db, str):
        from . import dbread

        try:
            reader = dbread.Reader.open(db)
        except Exception as e:  # noqa: BLE001 - the ORM path reports problems properly
            log.debug("light database reader unavailable: %s", e)
            reader = None
        if reader is not None:
            return _SqliteStore(reader, db)
    store = open_db(db)
    return None if store is None else _OrmStore(store)


def kernel_for(wl: Workload, target: str = "cpu", db: Any = None) -> kernels.Kernel:
    """The kernel to run ``wl`` on a CPU ``target``; ``kernel.source`` says where it came from."""
    import sqlite3

    spec = resolve(target)
    store = _selection_store(db)
    if store is not None:
        try:
            return _select(store, wl, spec)
        except sqlite3.Error as e:
            if not isinstance(store, _SqliteStore):
                raise
            log.warning("reading %s failed (%s); retrying through SQLAlchemy", store.reader.path, e)
            orm = open_db(db)
            if orm is not None:
                return _select(_OrmStore(orm), wl, spec)
    k = kernels.default_kernel(wl, spec.name)
    k.source = "default schedule"
    return k


def _select(store, wl: Workload, spec) -> kernels.Kernel:
    """Exact best record, else the nearest tuned workload whose trace replays, else the default
    schedule with ``wl`` noted as pending. A record that was never timed for ``wl`` on this CPU
    serves only if it runs faster than the default here (:func:`_against_default`)."""
    rec = store.best(wl, spec)
    lost = None  # why a record lost to the default schedule
    if rec is not None:
        try:
            k = kernel_from_record(rec, wl, spec)
        except ValueError as e:
            log.warning("best record of %s not used (its trace does not replay here, or is refused): %s", wl.op, e)
        else:
            k.source = f"tuned ({rec.source}, {rec.mean_us:.1f} us)"
            k, lost = check_record(rec, k, wl, spec, store)
            if k is not None:
                return k
    if lost is None:
        k, lost = _nearest(store, wl, spec)
        if k is not None:
            return k
    try:
        store.note_pending(wl, spec)
    except Exception as e:  # noqa: BLE001 - a read-only database still serves kernels
        log.warning("could not note %s as pending: %s", wl.op, e)
    k = copy.copy(kernels.default_kernel(wl, spec.name))  # that one is shared (lru_cache)
    k.source = f"default schedule ({lost})" if lost else "default schedule"
    return k


def _nearest(store, wl: Workload, spec) -> tuple[kernels.Kernel | None, str | None]:
    """The first of the nearest tuned workloads whose best trace replays on ``wl``, if it runs
    faster than the default here; else (None, why it lost, or None if none replays)."""
    tuned = [(wl.distance(other), other) for other in store.tuned_workloads(wl.op, spec) if other != wl]
    tuned = [t for t in tuned if t[0] < math.inf]
    for _, other in sorted(tuned, key=lambda t: t[0])[:NEAREST_TRIES]:
        rec = store.best(other, spec)
        if rec is None:
            continue
        try:
            k = kernel_from_record(rec, wl, spec)
        except ValueError:
            continue
        k.source = f"nearest tuned workload ({other.short()})"
        return _against_default(k, rec.trace, wl, spec, f"the record of {other.short()}")
    return None, None


def check_record(rec, k: kernels.Kernel, wl: Workload, spec, store) -> tuple[kernels.Kernel | None, str | None]:
    """The kernel ``k`` of ``wl``'s best record ``rec`` as served: (k, None) when ``rec`` was
    measured on this target, shipped (tuned at length) or in a search of at least
    ``CONFIRMED_FROM`` candidates (``store.count(wl, spec)``: the records of ``wl`` here), or when
    it runs faster than the default here (:func:`_against_default`); else (None, why the default
    serves instead)."""
    if rec.target != spec.name:
        return _against_default(k, rec.trace, wl, spec, f"{rec.target}'s record")
    if rec.source == "db" and check_enabled() and (searched := store.count(wl, spec)) < CONFIRMED_FROM:
        what = f"this database's best of {searched} record{'s' if searched != 1 else ''}"
        return _against_default(k, rec.trace, wl, spec, what)
    return k, None


def check_enabled() -> bool:
    """Whether records never timed here are timed against the default (``OPSEARCH_CHECK=0``: no)."""
    from ..settings import env_flag

    return env_flag("OPSEARCH_CHECK")


def _against_default(k: kernels.Kernel, trace, wl: Workload, spec, what: str) -> tuple[kernels.Kernel | None, str | None]:
    """Time a record's kernel ``k`` that was measured on another CPU, for another workload or
    in a short search against ``wl``'s default schedule, once per machine: the answer is kept in
    the kernel cache (``cache.load_choice``), keyed by the trace, the workload, this target and
    opsearch's schedule code. Returns (k, None) when the record is faster, (None, why) when the
    default is. A schedule tuned elsewhere can run slower than the default (another CPU's caches,
    another shape's tiles: 1.4x slower measured on znver4, benchmarks/RESULTS.md), and serving it
    would make the tuned path the slow one."""
    from . import cache

    if not check_enabled():
        return k, None
    text = json.dumps(trace, sort_keys=True)
    choice = cache.load_choice(wl, spec, text)
    if choice is None:
        try:
            rec_us, def_us = time_pair(k, kernels.default_kernel(wl, spec.name), wl)
        except Exception as e:  # noqa: BLE001 - an untimed record still serves, as before
            log.warning("could not time %s against the default schedule: %s", wl.op, e)
            return k, None
        choice = {"use": "record" if rec_us <= def_us else "default", "record_us": rec_us, "default_us": def_us}
        try:
            cache.store_choice(wl, spec, text, choice)
        except OSError as e:
            log.warning("could not keep the timing of %s: %s", wl.op, e)
    rec_us, def_us = choice["record_us"], choice["default_us"]
    if choice["use"] == "record":
        k.source = f"{getattr(k, 'source', 'record')}; {rec_us:.1f} us here, default {def_us:.1f} us"
        return k, None
    return None, f"{def_us:.1f} us here, faster than {what}: {rec_us:.1f} us"


def time_pair(a: kernels.Kernel, b: kernels.Kernel, wl: Workload, rounds: int = 3) -> tuple[float, float]:
    """Median latencies (µs) of two kernels of ``wl`` on the same random inputs, alternating."""
    from ..ops import sample_inputs

    t = list(sample_inputs(wl).values())
    samples: tuple[list, list] = ([], [])
    for _ in range(rounds):
        for k, out in zip((a, b), samples):
            out.append(statistics.median(k.time_ms(*t, number=1, repeat=3, min_repeat_ms=10)) * 1e3)
    return statistics.median(samples[0]), statistics.median(samples[1])
