"""CUDA kernels called with torch tensors: a compiled candidate (cubin and launch program) run on
CUDA tensors, zero-copy, on the current stream.

:class:`CudaKernel` runs the launch program that :mod:`opsearch.runtime.bundle` reads from TVM's
host code (kernels in order, each with its arguments, grid, block and dynamic shared memory) on
the tensors' own device memory: their device pointers go straight to ``cuLaunchKernel``, on
``torch.cuda.current_stream()``. Constants go to the device once per device; workspaces and the
output come from torch's caching allocator. It needs only torch and the CUDA driver
(``libcuda``, through ctypes: :class:`Driver`), never TVM, so the same class serves a kernel
built here and a bundle's candidate on a GPU machine without TVM (:func:`from_bundle`).

:func:`cuda_kernel_for` builds the kernel of a workload for a CUDA target: its best measured
record in the database (``opsearch db import-measurements`` stores them), else the operator's
default CUDA schedule. The trace is replayed and lowered with TVM and compiled with nvcc, and
the cubin and its launch program are cached on disk by content hash (``opsearch.runtime.cache``'s
directory and key; the cubin's sha256 is checked before it is loaded). Nothing executable comes
from the database.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from ..errors import InputError, OpsearchError, TargetError
from ..ops.spec import Workload

log = logging.getLogger(__name__)

_MAX_DYNAMIC_SHARED = 8  # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
_STATIC_SHARED_LIMIT = 48 << 10  # above this a kernel must opt in to dynamic shared memory


class CudaRuntimeError(OpsearchError, RuntimeError):
    """The CUDA driver is missing here or refused a module, function or launch."""


# ----------------------------------------------------------------------------- the driver
class Driver:
    """The few CUDA driver calls a launch needs, through ctypes on ``libcuda.so.1``."""

    def __init__(self, path: str = "libcuda.so.1"):
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as e:
            raise CudaRuntimeError(f"no CUDA driver here ({path}: {e}): CUDA kernels need an NVIDIA GPU and its driver") from None
        self._check(self.lib.cuInit(0), "cuInit")
        self._contexts: dict[int, ctypes.c_void_p] = {}

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            text = ctypes.c_char_p()
            self.lib.cuGetErrorString(rc, ctypes.byref(text))
            raise CudaRuntimeError(f"{what} failed: CUDA error {rc} ({(text.value or b'unknown').decode()})")

    def use_device(self, index: int) -> None:
        """Make device ``index``'s primary context (the one PyTorch uses) current on this thread."""
        ctx = self._contexts.get(index)
        if ctx is None:
            dev, ctx = ctypes.c_int(), ctypes.c_void_p()
            self._check(self.lib.cuDeviceGet(ctypes.byref(dev), index), "cuDeviceGet")
            self._check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
            self._contexts[index] = ctx
        self._check(self.lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")

    def load_module(self, image: bytes):
        mod = ctypes.c_void_p()
        self._check(self.lib.cuModuleLoadData(ctypes.byref(mod), ctypes.c_char_p(image)), "cuModuleLoadData")
        return mod

    def function(self, module, name: str, shared_bytes: int = 0):
        fn = ctypes.c_void_p()
        self._check(self.lib.cuModuleGetFunction(ctypes.byref(fn), module, name.encode()), f"cuModuleGetFunction({name})")
        if shared_bytes > _STATIC_SHARED_LIMIT:
            self._check(self.lib.cuFuncSetAttribute(fn, _MAX_DYNAMIC_SHARED, ctypes.c_int(shared_bytes)),
                        f"cuFuncSetAttribute({name}, {shared_bytes} bytes of shared memory)")
        return fn

    def launch(self, fn, grid, block, shared_bytes: int, stream: int, args: list) -> None:
        """Launch ``fn``; ``args`` are ctypes values (``c_void_p`` device pointers, ``c_int32``)."""
        params = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        self._check(self.lib.cuLaunchKernel(fn, *(ctypes.c_uint(int(v)) for v in (*grid, *block)),
                                            ctypes.c_uint(shared_bytes), ctypes.c_void_p(stream), params, None),
                    "cuLaunchKernel")


_driver: Driver | None = None
_driver_lock = threading.Lock()


def driver() -> Driver:
    """The process's :class:`Driver` (loaded on first use)."""
    global _driver
    with _driver_lock:
        if _driver is None:
            _driver = Driver()
        return _driver


# ----------------------------------------------------------------------------- the kernel
class CudaKernel:
    """One workload's compiled CUDA kernel: ``k(*tensors, out=None)`` with CUDA tensors (inputs
    in signature order, absent optional ones omitted) returns the output on the same device.

    ``program`` is a launch program (``params``, ``workspaces``, ``launches``: see
    :func:`opsearch.runtime.bundle.launch_program`), ``cubin`` the machine code of its kernels.
    ``drv`` replaces the CUDA driver (tests record the launches with a fake one)."""

    def __init__(self, wl: Workload, program: dict, cubin: bytes, source: str = "default schedule", drv=None):
        from .. import ops

        op, a = ops.get(wl.op), wl.args
        self.workload, self.program, self.cubin, self.source = wl, program, cubin, source
        self.inputs = [(p.name, tuple(a[p.name]), p.dtype or a["dtype"]) for p in op.tensors if a[p.name] is not None]
        self._constants_np = list(op.constants(a).values())
        self.out_shape, self.out_dtype = tuple(op.output_shape(a)), op.output_dtype(a)
        n = len(self.inputs) + len(self._constants_np) + 1
        if len(program["params"]) != n:
            raise OpsearchError(f"{wl.op}: the CUDA kernel takes {len(program['params'])} arguments, expected {n} "
                                "(tensors, constants, output)")
        self._drv = drv
        self._per_device: dict[int, tuple[list, list]] = {}  # device -> (functions per launch, constants)
        self._lock = threading.Lock()

    @property
    def driver(self):
        return self._drv if self._drv is not None else driver()

    def _prepared(self, device) -> tuple[list, list]:
        import torch

        index = _index(device)
        got = self._per_device.get(index)
        if got is None:
            with self._lock:
                drv = self.driver
                drv.use_device(index)
                module = drv.load_module(self.cubin)
                fns = [drv.function(module, ln["kernel"], ln["shared_bytes"]) for ln in self.program["launches"]]
                consts = [torch.from_numpy(v).to(device).contiguous() for v in self._constants_np]
                got = self._per_device[index] = (fns, consts)
        return got

    def check(self, tensors) -> list:
        """The tensors as the kernel takes them: CUDA, one device, the workload's shapes and dtypes,
        contiguous (a non-contiguous one is copied); anything else is an :class:`InputError`."""
        import torch

        if len(tensors) != len(self.inputs):
            names = ", ".join(n for n, _, _ in self.inputs)
            raise InputError(f"{self.workload.op}: expected {len(self.inputs)} tensors ({names}), got {len(tensors)}")
        out, device = [], None
        for (name, shape, dtype), t in zip(self.inputs, tensors):
            if not isinstance(t, torch.Tensor) or (t.device.type != "cuda" and self._drv is None):
                got = f"a tensor on {t.device}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise InputError(f"{self.workload.op}: '{name}' must be a CUDA tensor for this CUDA kernel, got {got}")
            if tuple(t.shape) != shape or str(t.dtype).replace("torch.", "") != dtype:
                raise InputError(f"{self.workload.op}: '{name}' must be {dtype} of shape {list(shape)}, "
                                 f"got {str(t.dtype).replace('torch.', '')} {list(t.shape)}")
            if device is not None and t.device != device:
                raise InputError(f"{self.workload.op}: all tensors must be on one device, got {device} and {t.device}")
            device = t.device
            out.append(t if t.is_contiguous() else t.contiguous())
        return out

    def __call__(self, *tensors, out=None):
        import torch

        ins = self.check(tensors)
        device = ins[0].device
        fns, consts = self._prepared(device)
        if out is None:
            out = torch.empty(self.out_shape, dtype=getattr(torch, self.out_dtype), device=device)
        elif tuple(out.shape) != self.out_shape or out.device != device or not out.is_contiguous():
            raise InputError(f"{self.workload.op}: out must be a contiguous tensor of shape {list(self.out_shape)} "
                             f"on {device}")
        spaces = [torch.empty(w["elems"], dtype=getattr(torch, w["dtype"]), device=device)
                  for w in self.program["workspaces"]]
        params = [*ins, *consts, out]
        stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
        drv = self.driver
        if device.type == "cuda":
            drv.use_device(_index(device))
        for fn, ln in zip(fns, self.program["launches"]):
            args = [ctypes.c_void_p(params[a["param"]].data_ptr()) if "param" in a
                    else ctypes.c_void_p(spaces[a["workspace"]].data_ptr()) if "workspace" in a
                    else ctypes.c_int32(a["int32"]) for a in ln["args"]]
            drv.launch(fn, ln["grid"], ln["block"], ln["shared_bytes"], stream, args)
        return out


def _index(device) -> int:
    """The CUDA device ordinal of a torch device (0 for a CPU device: tests' fake driver)."""
    import torch

    if device.type != "cuda":
        return 0
    return device.index if device.index is not None else torch.cuda.current_device()


def from_bundle(bundle: dict, candidate: dict, drv=None) -> CudaKernel:
    """The kernel of one candidate of a loaded bundle (``opsearch.runtime.bundle.load_bundle``)."""
    root = Path(bundle["_root"])
    return CudaKernel(candidate["_workload"], candidate, (root / candidate["cubin"]).read_bytes(),
                      f"bundle candidate {candidate['label']}", drv)


# ----------------------------------------------------------------------------- building (TVM, nvcc)
def _cached(wl: Workload, spec, trace_text, build, memo: str | None = None) -> tuple[dict, bytes]:
    """(launch program, cubin) from the kernel cache, else ``build()`` and stored. ``trace_text()``
    gives the schedule's trace as text for the hash; with ``memo`` (a schedule that depends only
    on the workload, the target and opsearch's code) a memo finds the entry without calling it."""
    from . import cache

    def read(digest: str):
        cubin_path, meta_path = root / f"{digest}.cubin", root / f"{digest}.json"
        try:
            side = json.loads(meta_path.read_text())
            cubin = cubin_path.read_bytes()
        except (OSError, ValueError):
            return None
        if side.get("hash") == digest and side.get("cubin_sha256") == hashlib.sha256(cubin).hexdigest() \
                and isinstance(side.get("program"), dict):
            return side["program"], cubin
        log.warning("opsearch cache: %s is corrupted or incomplete; rebuilding", cubin_path.name)
        return None

    root = cache.cache_dir()
    memo_path = cache.memo_path(memo, wl, spec) if memo else None
    memo_digest = cache.read_memo(memo_path, wl, spec) if memo_path is not None else None
    hit = read(memo_digest) if memo_digest is not None else None
    if hit is not None:
        cache.stats.hits += 1
        cache.stats.memo_hits += 1
        return hit
    inputs = cache.key_inputs(wl, spec, trace_text())
    digest = cache.content_hash(inputs)
    hit = read(digest) if digest != memo_digest else None  # the memo's entry was just found unusable
    if hit is not None:
        cache.stats.hits += 1
    else:
        cache.stats.compiles += 1
        program, cubin = build()
        cache.atomic_write_bytes(root / f"{digest}.cubin", cubin)
        cache.atomic_write_text(root / f"{digest}.json", json.dumps(
            {"hash": digest, "cubin_sha256": hashlib.sha256(cubin).hexdigest(), "program": program, **inputs},
            indent=1, sort_keys=True))
        hit = program, cubin
    if memo_path is not None:
        cache.write_memo(memo_path, digest)
    return hit


def cuda_kernel_for(wl: Workload, target: str, db: Any = None) -> CudaKernel:
    """The kernel for ``wl`` on a CUDA ``target``: its best measured record in ``db`` (None: the
    default database), else the default CUDA schedule; ``kernel.source`` says which."""
    from ..db.replay import replay, trace_json
    from ..ops.tir import default_schedule
    from ..targets import resolve
    from .bundle import lower_cuda
    from .cuda import compile_cuda
    from .loading import open_db

    spec = resolve(target)
    if spec.kind != "cuda":
        raise TargetError(f"cuda_kernel_for needs a CUDA target, got '{spec.name}'")
    store = open_db(db)
    rec = store.best(wl, spec.name) if store is not None else None
    sch, source = None, "default schedule"
    if rec is not None and rec.trace is not None:
        try:
            sch = replay(rec.trace, wl)
            source = f"tuned ({rec.source}, {rec.mean_us:.1f} us)"
        except ValueError as e:
            log.warning("best CUDA record of %s not used (its trace does not replay here, or is refused): %s", wl.op, e)
    # The default schedule is only built when the cache has no memo of it (TVM scheduling it
    # costs more than loading the cubin).
    schedule = (lambda: sch) if sch is not None else functools.lru_cache(maxsize=1)(lambda: default_schedule(wl, spec))

    def build():
        src, program = lower_cuda(schedule().mod, spec)
        return program, compile_cuda(src, str(spec.tvm().attrs["arch"]))

    program, cubin = _cached(wl, spec, lambda: json.dumps(trace_json(schedule()), sort_keys=True), build,
                             memo="default" if sch is None else None)
    return CudaKernel(wl, program, cubin, source)
