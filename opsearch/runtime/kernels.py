"""Compiled kernels: a schedule of a workload built into a :class:`Kernel` called with torch tensors.

``build`` compiles a schedule into a :class:`Kernel` that takes and returns torch tensors
(zero-copy through DLPack); ``cached_kernel`` does the same through the on-disk cache
(``opsearch.runtime.cache``); ``default_kernel`` keeps one default-schedule kernel per
(workload, target) in the process. The IR itself comes from ``opsearch.ops.tir``.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass
from typing import Any

from .. import ops
from ..ops.spec import Workload
from ..ops.tir import default_schedule
from ..targets import TargetSpec, resolve
from . import cache


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


def time_alternating(kernels: dict, args: list, rounds: int = 5, number: int = 1, repeat: int = 5,
                     min_repeat_ms: int = 20) -> dict[str, list[float]]:
    """Per-round median latencies (µs) of several kernels of one workload on the same inputs,
    timed in this process, alternating between them for ``rounds`` rounds."""
    for k in kernels.values():  # untimed: the thread pool and the caches warm up before any sample
        k.time_ms(*args, number=1, repeat=1, min_repeat_ms=min_repeat_ms)
    samples: dict[str, list[float]] = {name: [] for name in kernels}
    for _ in range(rounds):
        for name, k in kernels.items():
            samples[name].append(statistics.median(k.time_ms(*args, number=number, repeat=repeat,
                                                             min_repeat_ms=min_repeat_ms)) * 1e3)
    return samples


def time_traces(wl: Workload, traces: dict, target: TargetSpec | str = "cpu", rounds: int = 5
                ) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Per-round latencies (µs) of the schedules (name -> trace JSON) of one workload that build,
    timed in this process with :func:`time_alternating`; and the last line of the error of each
    that does not build."""
    from ..db.replay import replay

    ks, errors = {}, {}
    for name, tr in traces.items():
        if not tr:
            continue
        try:
            ks[name] = build(replay(tr, wl), wl, target)
        except Exception as e:  # noqa: BLE001 - reported per schedule; the others are still timed
            errors[name] = (str(e).strip().splitlines() or [type(e).__name__])[-1]
    samples = time_alternating(ks, list(ops.sample_inputs(wl).values()), rounds) if ks else {}
    return samples, errors


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def _constants(wl: Workload) -> tuple:
    import torch

    # clone(): torch allocates 64-byte aligned memory, as TVM kernels assume; numpy does not.
    return tuple(torch.from_numpy(v).clone() for v in ops.get(wl.op).constants(wl.args).values())


def kernel_from_module(module, wl: Workload, target: TargetSpec) -> Kernel:
    """A compiled runtime module of ``wl`` wrapped as a :class:`Kernel` (constants attached)."""
    op, a = ops.get(wl.op), wl.args
    return Kernel(wl, target, module, _constants(wl), op.output_shape(a), torch_dtype(op.output_dtype(a)))


def build(sch_or_mod, wl: Workload, target: TargetSpec | str) -> Kernel:
    """Compile a scheduled module for a CPU target into a :class:`Kernel` (no disk cache)."""
    import tvm

    target = resolve(target)
    mod = sch_or_mod.mod if hasattr(sch_or_mod, "mod") else sch_or_mod
    return kernel_from_module(tvm.compile(mod, target=target.tvm()).mod, wl, target)


def cached_kernel(wl: Workload, target: TargetSpec | str, schedule: Any, key_text: str | None = None,
                  memo: str | None = None) -> Kernel:
    """:func:`opsearch.runtime.cache.cached_module` wrapped as a :class:`Kernel`."""
    target = resolve(target)
    return kernel_from_module(cache.cached_module(wl, target, schedule, key_text, memo), wl, target)


@functools.lru_cache(maxsize=256)
def default_kernel(wl: Workload, target: str = "cpu") -> Kernel:
    """The untuned default-schedule kernel for ``wl`` on a CPU target, cached per process and
    on disk (``opsearch.runtime.cache``: a later process loads the library instead of compiling)."""
    # memo: a later process finds the library without rebuilding the schedule to hash it
    return cached_kernel(wl, target, lambda: default_schedule(wl, target), memo="default")
