"""opsearch: operator search and autotuning for novel convolutions.

Operators are declared once in TVM tensor expressions (``opsearch.ops``), run from PyTorch
(``opsearch.functional``), tuned for CPU and CUDA targets, and stored in a SQL database.
Submodules load on first use, so ``import opsearch`` stays cheap.
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.2.0"


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# TVM's CPU thread pool defaults to half the hardware threads on x86 (it assumes SMT pairs), so
# on a 2-vCPU machine every TVM kernel, and every tuning measurement, ran on one thread. Use
# the cores this process may use unless the user chose (set before TVM's pool first starts;
# worker processes inherit it).
os.environ.setdefault("TVM_NUM_THREADS", str(_usable_cores()))

_LAZY = {
    "ops", "functional", "targets", "kernels", "errors", "cuda", "db", "bench",
    "cache", "torch_ops", "nn", "optimize",  # optimize: a callable module, opsearch.optimize(model, ...)
    "search", "costmodel", "loading", "baselines", "report",
}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name == "load":
        return importlib.import_module(".optimize", __name__).load
    if name == "tune":
        return importlib.import_module(".search", __name__).tune
    raise AttributeError(f"module 'opsearch' has no attribute {name!r}")
