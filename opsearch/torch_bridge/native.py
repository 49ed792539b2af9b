"""Build and load the native (C++) dispatcher kernels of ``torch.ops.opsearch.*``.

``native.cpp`` holds two boxed kernels per operator — CPU (a per-shape plan, then one
``TVMFFIFunctionCall`` with DLTensor views of the tensors) and Autograd (straight below autograd
when no input needs a gradient) — so a call through the PyTorch dispatcher runs no Python once
its shapes have been seen. The Python kernels of :mod:`opsearch.torch_bridge.library` stay the slow path
(first call per shape, recording, anything unusual) and the whole path when the native library
cannot be built.

The library is compiled once per (source, torch, tvm-ffi, compiler) with the machine's C++
compiler against the installed torch and tvm-ffi headers, and cached by a content hash in
``$OPSEARCH_NATIVE_DIR`` if set, else the kernel cache directory's ``native/`` (``opsearch cache
clear`` leaves it; ``rm -r <cache>/native`` removes it). Nothing is downloaded. ``OPSEARCH_NATIVE=0`` turns the
native kernels off; a failed build logs its reason once and falls back to the Python kernels.

The library also runs the parallel loops of kernels used from PyTorch on PyTorch's own thread
pool (:func:`route_parallel_loops`; ``OPSEARCH_PARALLEL=tvm`` keeps TVM's pool): with two pools,
PyTorch's threads spin after each PyTorch op of a model while TVM's wait for a core (in the
demo's TCN, opsearch layers took 1.8x their isolated time).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native.cpp")
_state: dict = {}


def enabled() -> bool:
    """Whether the native kernels are wanted (``OPSEARCH_NATIVE`` not set to 0/false/no/off)."""
    from ..settings import env_flag

    return env_flag("OPSEARCH_NATIVE")


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _build_flags() -> tuple[list[str], list[str]]:
    import torch
    import tvm_ffi

    tdir = Path(torch.__file__).parent
    fdir = Path(tvm_ffi.__file__).parent
    cflags = [
        "-O2", "-std=c++17", "-fPIC", "-shared", "-w", "-fopenmp",  # at::parallel_for is OpenMP in the header
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        f"-I{tdir / 'include'}", f"-I{tdir / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
        f"-I{fdir / 'include'}",
    ]
    ldflags = [
        f"-L{tdir / 'lib'}", "-lc10", "-ltorch_cpu", "-ltorch",
        f"-L{fdir / 'lib'}", "-ltvm_ffi",
        f"-Wl,-rpath,{tdir / 'lib'}", f"-Wl,-rpath,{fdir / 'lib'}",
    ]
    return cflags, ldflags


def library_path() -> Path:
    """Where the built library for this source, torch, tvm-ffi and compiler lives."""
    import torch
    import tvm_ffi

    from ..runtime.cache import cache_dir

    cxx = _compiler() or "none"
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), tvm_ffi.__version__.encode(),
                 cxx.encode(), " ".join(_build_flags()[0]).encode()):
        h.update(part)
        h.update(b"\0")
    root = Path(os.environ["OPSEARCH_NATIVE_DIR"]) if os.environ.get("OPSEARCH_NATIVE_DIR") else cache_dir() / "native"
    return root / f"torch_native-{h.hexdigest()[:20]}.so"


def build(path: Path) -> None:
    """Compile the library to ``path`` (atomically, under a file lock shared with other processes)."""
    import fcntl

    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return
        cflags, ldflags = _build_flags()
        with tempfile.TemporaryDirectory(dir=path.parent) as d:
            tmp = Path(d) / path.name
            print("opsearch: building the native torch kernels once (about a minute) ...", file=sys.stderr, flush=True)
            p = subprocess.run([cxx, *cflags, str(SOURCE), "-o", str(tmp), *ldflags], capture_output=True, text=True)
            if p.returncode:
                raise RuntimeError(f"{cxx} failed: {(p.stderr or p.stdout).strip()[-2000:]}")
            os.replace(tmp, path)


def load() -> bool:
    """Build (if needed) and load the native library; True if its kernels can be used. Once per
    process; never raises (a failure is logged and the Python kernels are used)."""
    if "ok" in _state:
        return _state["ok"]
    ok = False
    if enabled():
        try:
            import torch

            path = library_path()
            if not path.exists():
                build(path)
            torch.ops.load_library(str(path))
            ok = True
        except Exception as e:  # noqa: BLE001 - any failure means: use the Python kernels
            log.warning("opsearch: native torch kernels unavailable, using the Python ones: %s", str(e).splitlines()[0])
            _state["error"] = str(e)
    _state["ok"] = ok
    return ok


def stats() -> dict:
    """Calls served natively, calls that took the slow path, plans held (all operators)."""
    import torch

    if not _state.get("ok"):
        return {"native": False}
    native, slow, plans, launches = torch.ops.opsearch._native_stats()
    return {"native": True, "native_calls": native, "slow_calls": slow, "plans": plans,
            "parallel_launches": launches}


def torch_pool_wanted() -> bool:
    """Whether kernels used from PyTorch run their parallel loops on PyTorch's thread pool
    (``OPSEARCH_PARALLEL`` unset or ``torch``; ``tvm`` keeps TVM's own pool)."""
    return os.environ.get("OPSEARCH_PARALLEL", "torch").strip().lower() != "tvm"


def route_parallel_loops(library: str) -> bool:
    """Point the parallel-launch hook of a kernel library that TVM has loaded at PyTorch's
    intra-op pool (see ``parallel_launch`` in native.cpp). Returns whether it did: not
    for a library without parallel loops, nor one whose loops synchronise with barriers (TVM's
    pool provides those; PyTorch's does not), nor when the native library is unavailable."""
    import ctypes

    import torch

    if not _state.get("ok"):
        return False
    if "launch" not in _state:
        _state["launch"] = int(torch.ops.opsearch._native_parallel_launch())
    lib = ctypes.CDLL(library, mode=os.RTLD_NOLOAD | os.RTLD_NOW)  # the copy TVM loaded, not a new one
    symbols = {}
    for name in ("__TVMBackendParallelLaunch", "__TVMBackendParallelBarrier"):
        try:
            symbols[name] = ctypes.c_void_p.in_dll(lib, name)
        except ValueError:
            pass
    if "__TVMBackendParallelLaunch" not in symbols or "__TVMBackendParallelBarrier" in symbols:
        return False
    symbols["__TVMBackendParallelLaunch"].value = _state["launch"]
    return True
