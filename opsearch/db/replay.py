"""Trace replay: re-apply a stored MetaSchedule trace to a workload's IR (imports TVM).

A record stores the decision trace, never a compiled artifact or pickle; replaying it on
the workload's current IR rebuilds the scheduled module, or fails if the operator's
definition moved on. ``replay`` returns the ``tvm.s_tir.Schedule``; ``module_hash`` its hash.
"""

from __future__ import annotations

import functools
from typing import Any

from ..ops.spec import Workload
from .validate import check_trace


@functools.lru_cache(maxsize=64)
def workload_mod(wl: Workload):
    """The workload's IRModule from the current operator definition (cached)."""
    from ..ops.tir import ir_module

    return ir_module(wl)


def replay(trace: Any, wl_or_mod) -> Any:
    """Apply a trace (its JSON form) to a workload's IR; raises ValueError if it no longer applies,
    and :class:`~opsearch.db.validate.TraceError` (a ValueError) before touching TVM if it holds
    anything opsearch's search spaces do not produce (``opsearch.db.validate``)."""
    from tvm.s_tir import Schedule, Trace

    check_trace(trace)
    mod = workload_mod(wl_or_mod) if isinstance(wl_or_mod, Workload) else wl_or_mod
    sch = Schedule(mod)
    try:
        Trace.apply_json_to_schedule(trace, sch)
    except Exception as e:  # noqa: BLE001 - TVM raises many types; any of them means "does not apply"
        msg = str(e).strip().splitlines()
        raise ValueError(f"trace does not replay: {msg[-1] if msg else type(e).__name__}") from None
    return sch


def module_hash(mod) -> str:
    """The structural hash of a (scheduled) IRModule as a decimal string."""
    import tvm_ffi

    return str(tvm_ffi.structural_hash(mod))


def workload_ir(wl: Workload) -> tuple[str, str]:
    """(structural hash, ``tvm.ir.save_json`` text) of a workload's IR, for the workloads table."""
    import tvm

    mod = workload_mod(wl)
    return module_hash(mod), tvm.ir.save_json(mod)


def trace_json(sch) -> Any:
    """A schedule's trace as plain JSON (what records store), e.g. for hand-written schedules."""
    return plain_json(sch.trace.as_json())


def plain_json(obj: Any) -> Any:
    """TVM's JSON-ish values (IntImm, FloatImm, Array, Map) as plain Python JSON values."""
    from tvm_ffi import Array, Map

    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple, Array)):
        return [plain_json(x) for x in obj]
    if isinstance(obj, (dict, Map)):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if hasattr(obj, "value"):  # IntImm / FloatImm / StringImm
        return obj.value
    raise TypeError(f"cannot store {type(obj).__name__} in a trace")
