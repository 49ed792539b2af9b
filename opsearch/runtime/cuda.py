"""CUDA kernels without a GPU: TVM's emitted source, compiled with nvcc for real.

Without a GPU, TVM returns source only. ``cuda_source(wl, target)`` is the CUDA C of a
workload's default schedule; ``compile_cuda(source, arch)`` returns the cubin bytes or raises
:class:`~opsearch.errors.CudaCompileError` carrying nvcc's own message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from ..errors import CudaCompileError, TargetError
from ..ops.spec import Workload
from ..ops.tir import default_schedule
from ..targets import resolve


def cuda_source(wl: Workload, target: str = "cuda:sm_90") -> str:
    """CUDA C source of the default schedule (TVM emits it without calling nvcc here)."""
    import tvm

    spec = resolve(target)
    if spec.kind != "cuda":
        raise TargetError(f"cuda_source needs a cuda target, got '{spec.name}'")
    ex = tvm.compile(default_schedule(wl, spec).mod, target=spec.tvm())
    return ex.mod.imports[0].inspect_source()


def nvcc_path() -> str | None:
    """The nvcc on PATH (or under $CUDA_PATH/bin), or None."""
    found = shutil.which("nvcc")
    if found:
        return found
    root = os.environ.get("CUDA_PATH") or os.environ.get("CUDA_HOME")
    cand = os.path.join(root, "bin", "nvcc") if root else ""
    return cand if cand and os.access(cand, os.X_OK) else None


def compile_cuda(source: str, arch: str, timeout: float = 120.0) -> bytes:
    """Compile CUDA C ``source`` to a cubin for ``arch`` (e.g. ``"sm_90"``)."""
    nvcc = nvcc_path()
    if nvcc is None:
        raise CudaCompileError("nvcc not found: install the CUDA toolkit or set CUDA_PATH")
    with tempfile.TemporaryDirectory(prefix="opsearch-nvcc-") as tmp:
        src, out = os.path.join(tmp, "kernel.cu"), os.path.join(tmp, "kernel.cubin")
        with open(src, "w") as f:
            f.write(source)
        cmd = [nvcc, "--cubin", "-O3", f"-arch={arch}", "-o", out, src]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CudaCompileError(f"nvcc timed out after {timeout:.0f} s for {arch}") from None
        if proc.returncode != 0:
            out = (proc.stderr or proc.stdout).strip().replace(src, "kernel.cu").splitlines()
            errors = [line.strip() for line in out if "error" in line.lower()]
            msg = " | ".join(errors or [line.strip() for line in out if line.strip()][-3:])
            raise CudaCompileError(f"nvcc failed for {arch}: {msg}")
        with open(out, "rb") as f:
            return f.read()
