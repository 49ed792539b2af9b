"""Target names users type ("cpu", "llvm:<mcpu>", "cuda:sm_XX") and their TVM targets.

A :class:`TargetSpec` is a frozen value with a canonical name (``llvm:znver3`` or
``cuda:sm_90``) used as the key everywhere (database, caches); :meth:`TargetSpec.tvm` builds
the ``tvm.target.Target`` lazily so callers that only need the name never import TVM.

Tensor intrinsics are registered per target kind, not all at once: MetaSchedule's
``TuneContext`` and its default build function ``import tvm.s_tir.tensor_intrin``, which parses
every intrinsic of every backend (22-26 s, 16+ s of it CUDA), while a CPU search needs only the
x86 ones (0.3 s). :func:`register_intrinsics` installs that package as an empty shell (so the
import is free) and imports the backend submodules a target kind needs, once per process;
:func:`skip_intrinsics` installs only the shell (build workers and feature extraction never
need intrinsics).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import sys
import types
from dataclasses import dataclass, field

from .errors import TargetError

# Per-architecture CUDA limits. Shared memory is the default per-block limit (without opt-in).
_CUDA_ARCHS = {
    "sm_70": 49152, "sm_72": 49152, "sm_75": 49152,
    "sm_80": 49152, "sm_86": 49152, "sm_87": 49152, "sm_89": 49152,
    "sm_90": 49152, "sm_100": 49152, "sm_120": 49152,
}


@dataclass(frozen=True)
class TargetSpec:
    """A resolved target: ``name`` is canonical; ``config`` is the TVM target dict."""

    name: str
    kind: str  # "llvm" or "cuda"
    arch: str  # mcpu for llvm, sm_XX for cuda
    config_json: str = field(repr=False)

    @property
    def config(self) -> dict:
        return json.loads(self.config_json)

    @property
    def num_cores(self) -> int:
        return int(self.config.get("num-cores", 1))

    def tvm(self):
        """The ``tvm.target.Target`` (imports TVM)."""
        import tvm

        return tvm.target.Target(self.config)


def host_cores() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@functools.lru_cache(maxsize=1)
def host_cpu_model() -> str:
    """The host CPU's marketing name (``/proc/cpuinfo`` "model name"), or "" where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        return ""


@functools.lru_cache(maxsize=None)
def host_cpu() -> str:
    """LLVM's name for this host's CPU (e.g. ``znver3``); imports TVM."""
    import tvm

    return str(tvm.target.codegen.llvm_get_system_cpu())


def _llvm(mcpu: str, cores: int) -> TargetSpec:
    if not re.fullmatch(r"[a-z][a-z0-9_.-]*", mcpu):
        raise TargetError(f"malformed target 'llvm:{mcpu}': expected llvm:<cpu name>, e.g. llvm:znver3")
    import tvm

    if mcpu != "generic" and not tvm.target.codegen.llvm_is_valid_cpu(mcpu, "x86_64-linux-gnu"):
        raise TargetError(f"unknown LLVM CPU '{mcpu}' in target 'llvm:{mcpu}'")
    config = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, "num-cores": cores}
    return TargetSpec(f"llvm:{mcpu}", "llvm", mcpu, json.dumps(config, sort_keys=True))


def _cuda(arch: str) -> TargetSpec:
    if arch not in _CUDA_ARCHS:
        known = ", ".join(_CUDA_ARCHS)
        raise TargetError(f"unknown CUDA architecture '{arch}': expected one of {known}")
    config = {
        "kind": "cuda",
        "arch": arch,
        "max_threads_per_block": 1024,
        "max_shared_memory_per_block": _CUDA_ARCHS[arch],
        "thread_warp_size": 32,
        "registers_per_block": 65536,
    }
    return TargetSpec(f"cuda:{arch}", "cuda", arch, json.dumps(config, sort_keys=True))


@functools.lru_cache(maxsize=64)
def resolve(target: str | TargetSpec = "cpu") -> TargetSpec:
    """Resolve a user's target string.

    ``"cpu"`` is this host (LLVM, detected CPU, usable cores); ``"llvm:<mcpu>"`` another CPU;
    ``"cuda:sm_XX"`` a CUDA GPU. Raises :class:`TargetError` for anything else.

    >>> resolve("cuda:sm_90").name
    'cuda:sm_90'
    """
    if isinstance(target, TargetSpec):
        return target
    if not isinstance(target, str) or not target.strip():
        raise TargetError(f"target must be a non-empty string, got {target!r}")
    t = target.strip().lower()
    if t in ("cpu", "llvm:native", "host"):
        return _llvm(host_cpu(), host_cores())
    if t == "llvm":
        raise TargetError("target 'llvm' is ambiguous (it means no SIMD): use 'cpu' or 'llvm:<mcpu>'")
    if t.startswith("llvm:"):
        return _llvm(t[5:], host_cores())
    if t.startswith("cuda:"):
        return _cuda(t[5:])
    if t == "cuda":
        raise TargetError("target 'cuda' needs an architecture: use 'cuda:sm_80', 'cuda:sm_90', ...")
    raise TargetError(f"unknown target '{target}': expected 'cpu', 'llvm:<mcpu>' or 'cuda:sm_XX'")


# ----------------------------------------------------------------------------- intrinsics
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
    shell.__doc__ = "opsearch: intrinsics are registered per target kind (opsearch.targets.register_intrinsics)"
    sys.modules[_PKG] = shell


def register_intrinsics(kind: str) -> None:
    """Make ``import tvm.s_tir.tensor_intrin`` free and register ``kind``'s intrinsics."""
    _install_shell()
    for name in _BACKENDS.get(kind, ()):
        if name not in _loaded:
            importlib.import_module(f"{_PKG}.{name}")
            _loaded.add(name)


def skip_intrinsics() -> None:
    """Initializer of build workers: building never needs intrinsics registered."""
    _install_shell()
