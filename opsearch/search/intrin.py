"""Register only the tensor intrinsics a target needs, instead of all of them.

MetaSchedule's ``TuneContext`` and its default build function ``import tvm.s_tir.tensor_intrin``,
which parses every intrinsic of every backend: 22-26 s, 16+ s of it CUDA. A CPU search needs
only the x86 ones (0.3 s). :func:`prepare` installs the package as an empty shell (so that
import is free) and imports the backend submodules the target kind needs, once per process.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

_PKG = "tvm.s_tir.tensor_intrin"
_BACKENDS = {"llvm": ("x86",), "cuda": ("cuda",)}
_loaded: set[str] = set()


def _install_shell() -> None:
    if _PKG in sys.modules:
        return
    import tvm.s_tir

    shell = types.ModuleType(_PKG)
    shell.__path__ = [os.path.join(os.path.dirname(tvm.s_tir.__file__), "tensor_intrin")]
    shell.__package__ = _PKG
    shell.__doc__ = "opsearch: intrinsics are registered per target kind (opsearch.search.intrin)"
    sys.modules[_PKG] = shell


def prepare(kind: str) -> None:
    """Make ``import tvm.s_tir.tensor_intrin`` free and register ``kind``'s intrinsics."""
    _install_shell()
    for name in _BACKENDS.get(kind, ()):
        if name not in _loaded:
            importlib.import_module(f"{_PKG}.{name}")
            _loaded.add(name)


def prepare_build_worker() -> None:
    """Initializer of build workers: building never needs intrinsics registered."""
    _install_shell()
