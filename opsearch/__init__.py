"""opsearch: operator search and autotuning for novel convolutions.

Operators are declared once in TVM tensor expressions (``opsearch.ops``), tuned for CPU and
CUDA targets (``opsearch.search``, ``opsearch.costmodel``), stored in a SQL database
(``opsearch.db``), served as compiled kernels (``opsearch.runtime``) and run from PyTorch
(``opsearch.torch_bridge``; public names ``opsearch.functional``, ``opsearch.nn``,
``opsearch.optimize``, ``opsearch.load``). Submodules load on first use, so ``import opsearch``
stays cheap.
"""

from __future__ import annotations

import importlib
import os

from .targets import host_cores as _host_cores

__version__ = "0.2.0"


# TVM's CPU thread pool defaults to half the hardware threads on x86 (it assumes SMT pairs), so
# on a 2-vCPU machine every TVM kernel, and every tuning measurement, ran on one thread. Use
# the cores this process may use unless the user chose (set before TVM's pool first starts;
# worker processes inherit it).
os.environ.setdefault("TVM_NUM_THREADS", str(_host_cores()))

# Packages and modules reachable as attributes, imported on first use.
_LAZY = {
    "ops", "targets", "errors", "settings", "db", "search", "costmodel",
    "runtime", "torch_bridge", "bench", "functional", "nn",
}
# Functions of the public API and the module that defines each.
_FUNCTIONS = {"load": ".torch_bridge.optimize", "optimize": ".torch_bridge.optimize", "tune": ".search"}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name], __name__), name)
    raise AttributeError(f"module 'opsearch' has no attribute {name!r}")
