"""A workload as TVM IR: the TE PrimFunc, its IRModule and the operator's default schedule.

``prim_func(wl)`` is the one place a workload becomes TVM IR; ``default_schedule`` applies the
operator's untuned schedule for a target. Search, the database's trace replay, the cost model
and the kernel runtime all start from these.
"""

from __future__ import annotations

from typing import Any

from ..targets import TargetSpec, resolve
from .registry import get as _get_op
from .spec import Workload


def _te_inputs(wl: Workload):
    from tvm import te

    op = _get_op(wl.op)
    a = wl.args
    placeholders: dict[str, Any] = {}
    for t in op.tensors:
        if a[t.name] is not None:
            placeholders[t.name] = te.placeholder(a[t.name], t.dtype or a["dtype"], t.name)
    consts = op.constants(a)
    for name, arr in consts.items():
        placeholders[name] = te.placeholder(arr.shape, str(arr.dtype), name)
    return op, a, placeholders, consts


def prim_func(wl: Workload):
    """The workload's TIR PrimFunc, parameters: tensors (signature order), constants, output."""
    from tvm import te

    op, a, placeholders, _ = _te_inputs(wl)
    out = op.compute(a, placeholders)
    return te.create_prim_func([*placeholders.values(), out]).with_attr("global_symbol", "main")


def ir_module(wl: Workload):
    import tvm

    return tvm.IRModule({"main": prim_func(wl)})


def default_schedule(wl: Workload, target: TargetSpec | str):
    """A ``tvm.s_tir.Schedule`` with the operator's untuned schedule for ``target``."""
    import tvm

    target = resolve(target)
    sch = tvm.s_tir.Schedule(ir_module(wl))
    op = _get_op(wl.op)
    tt = target.tvm()
    if target.kind == "cuda":
        op.schedule_cuda(sch, tt, wl.args)
    else:
        op.schedule_cpu(sch, tt, wl.args)
    return sch
