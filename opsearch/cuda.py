"""Compile emitted CUDA source with nvcc, for real: without a GPU, TVM returns source only.

``compile_cuda(source, arch)`` returns the cubin bytes or raises
:class:`~opsearch.errors.CudaCompileError` carrying nvcc's own message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from .errors import CudaCompileError


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
