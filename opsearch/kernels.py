"""From a workload to a compiled kernel: the TE PrimFunc, default schedules, builds, calls.

``prim_func(wl)`` is the one place a workload becomes TVM IR; ``default_schedule`` applies the
operator's untuned schedule for a target; ``build`` compiles a schedule into a :class:`Kernel`
that takes and returns torch tensors (zero-copy through DLPack). ``default_kernel`` caches one
compiled kernel per (workload, target) in the process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from . import ops
from .ops.spec import Workload
from .targets import TargetSpec, resolve


def _te_inputs(wl: Workload):
    from tvm import te

    op = ops.get(wl.op)
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
    op = ops.get(wl.op)
    tt = target.tvm()
    if target.kind == "cuda":
        op.schedule_cuda(sch, tt, wl.args)
    else:
        op.schedule_cpu(sch, tt, wl.args)
    return sch


@dataclass
class Kernel:
    """A compiled kernel for one workload: call it with torch tensors, get the output."""

    workload: Workload
    target: TargetSpec
    module: Any  # tvm runtime module
    constants: tuple  # torch tensors passed after the inputs
    out_shape: tuple[int, ...]
    out_dtype: Any  # torch dtype

    def __post_init__(self):
        self.func = self.module["main"]

    def __call__(self, *tensors, out=None):
        import torch

        if out is None:
            out = torch.empty(self.out_shape, dtype=self.out_dtype)
        self.func(*tensors, *self.constants, out)
        return out

    def time_ms(self, *tensors, number: int = 10, repeat: int = 5, min_repeat_ms: int = 50) -> list[float]:
        """Per-call latencies (ms), one per repeat, from TVM's time evaluator."""
        import torch
        import tvm

        out = torch.empty(self.out_shape, dtype=self.out_dtype)
        ev = self.module.time_evaluator("main", tvm.cpu(), number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
        return [r * 1e3 for r in ev(*tensors, *self.constants, out).results]


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def build(sch_or_mod, wl: Workload, target: TargetSpec | str) -> Kernel:
    """Compile a scheduled module for a CPU target into a :class:`Kernel`."""
    import torch
    import tvm

    target = resolve(target)
    mod = sch_or_mod.mod if hasattr(sch_or_mod, "mod") else sch_or_mod
    ex = tvm.compile(mod, target=target.tvm())
    op = ops.get(wl.op)
    a = wl.args
    # clone(): torch allocates 64-byte aligned memory, as TVM kernels assume; numpy does not.
    consts = tuple(torch.from_numpy(v).clone() for v in op.constants(a).values())
    return Kernel(wl, target, ex.mod, consts, op.output_shape(a), torch_dtype(op.output_dtype(a)))


@functools.lru_cache(maxsize=256)
def default_kernel(wl: Workload, target: str = "cpu") -> Kernel:
    """The untuned default-schedule kernel for ``wl`` on a CPU target, cached per process and
    on disk (``opsearch.cache``: a later process loads the library instead of compiling)."""
    from . import cache

    # memo: a later process finds the library without rebuilding the schedule to hash it
    return cache.cached_kernel(wl, target, lambda: default_schedule(wl, target), memo="default")


def cuda_source(wl: Workload, target: str = "cuda:sm_90") -> str:
    """CUDA C source of the default schedule (TVM emits it without calling nvcc here)."""
    import tvm

    spec = resolve(target)
    if spec.kind != "cuda":
        from .errors import TargetError

        raise TargetError(f"cuda_source needs a cuda target, got '{spec.name}'")
    ex = tvm.compile(default_schedule(wl, spec).mod, target=spec.tvm())
    return ex.mod.imports[0].inspect_source()
