"""Which kernel runs a workload: its tuned record, a nearby tuned workload's, or the default.

``kernel_for(wl, target, db)`` looks the workload up in the database (the user's, then the
schedules shipped with opsearch). With no record it tries the best records of the nearest tuned
workloads of the same operator whose traces replay on this one (a schedule transformation that
applies is semantics-preserving), and otherwise uses the default schedule and notes the workload
as pending, so ``opsearch tune --pending`` tunes it later. Traces are rebuilt locally and the
library cached on disk by content hash (``opsearch.cache``); nothing executable comes from the
database. A database that cannot be opened degrades to default kernels with one warning.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import warnings
from typing import Any

from . import kernels
from .ops.spec import Workload
from .targets import resolve

log = logging.getLogger(__name__)
NEAREST_TRIES = 5


@functools.lru_cache(maxsize=8)
def _connect(url: str | None):
    from . import db as dbmod

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


def _distance(a: Workload, b: Workload) -> float:
    """Distance between two workloads of one operator: log-ratio of shapes, plus one per
    differing attribute (inf for a different dtype)."""
    da, db_ = a.args, b.args
    d = 0.0
    for k, va in da.items():
        vb = db_.get(k)
        if isinstance(va, tuple) and va and isinstance(va[0], int) and isinstance(vb, tuple) and len(va) == len(vb):
            d += sum(abs(math.log((x + 1) / (y + 1))) for x, y in zip(va, vb))  # sizes may be 0 (padding)
        elif k == "dtype" and va != vb:
            return math.inf
        elif va != vb:
            d += 1.0
    return d


def _from_record(rec, wl: Workload, target) -> kernels.Kernel:
    from . import cache
    from .db.replay import replay

    sch = replay(rec.trace, wl)
    k = cache.cached_kernel(wl, target, sch, key_text=json.dumps(rec.trace, sort_keys=True))
    return k


def kernel_for(wl: Workload, target: str = "cpu", db: Any = None) -> kernels.Kernel:
    """The kernel to run ``wl`` on a CPU ``target``; ``kernel.source`` says where it came from."""
    spec = resolve(target)
    store = open_db(db)
    if store is not None:
        rec = store.best(wl, spec)
        if rec is not None:
            try:
                k = _from_record(rec, wl, spec)
                k.source = f"tuned ({rec.source}, {rec.mean_us:.1f} us)"
                return k
            except ValueError as e:
                log.warning("best record of %s no longer replays: %s", wl.op, e)
        k = _nearest(store, wl, spec)
        if k is not None:
            return k
        try:
            store.note_pending(wl, spec)
        except Exception as e:  # noqa: BLE001 - a read-only database still serves kernels
            log.warning("could not note %s as pending: %s", wl.op, e)
    k = kernels.default_kernel(wl, spec.name)
    k.source = "default schedule"
    return k


def _nearest(store, wl: Workload, spec) -> kernels.Kernel | None:
    tuned = []
    for info in store.workloads(op=wl.op, target=spec):
        other = info.workload
        if other != wl and other.op == wl.op and _distance(wl, other) < math.inf:
            tuned.append((_distance(wl, other), other))
    for _, other in sorted(tuned, key=lambda t: t[0])[:NEAREST_TRIES]:
        rec = store.best(other, spec)
        if rec is None:
            continue
        try:
            k = _from_record(rec, wl, spec)
        except ValueError:
            continue
        k.source = f"nearest tuned workload ({other.short()})"
        return k
    return None
