"""A MetaSchedule builder that keeps its worker processes alive between batches.

Stock ``LocalBuilder`` starts a new process pool per batch and each worker re-imports every
tensor intrinsic (22 s), so on 2 cores whole batches time out. Here workers start once, skip
the intrinsics, build with ``tvm.driver.build``, export a shared library and, for CUDA, compile
the emitted source with nvcc so a candidate that does not compile is caught with nvcc's message.
Workers are recycled every ``recycle_after`` batches (the pool leaks memory over long runs).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

from ..targets import host_cores


def build_candidate(mod, target, check_cuda: bool, out_dir: str) -> str:
    """Worker side: build one scheduled module and export it; returns the artifact path."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    rt_mod = tvm_build(mod, target=target)
    # One directory per artifact: MetaSchedule's RemoveBuildArtifact deletes the parent dir.
    path = os.path.join(tempfile.mkdtemp(dir=out_dir), "kernel.so")
    if str(target.kind) == "cuda":
        if check_cuda:
            from ..runtime.cuda import compile_cuda

            compile_cuda(rt_mod.imports[0].inspect_source(), str(target.attrs["arch"]))
        # Without a GPU the CUDA module is source only: keep the source as the artifact.
        with open(path, "w") as f:
            f.write(rt_mod.imports[0].inspect_source())
        return path
    rt_mod.export_library(path)
    return path


@derived_object
class PoolBuilder(PyBuilder):
    """Builds candidates in a persistent pool of worker processes."""

    def __init__(self, max_workers: int | None = None, timeout_sec: float | None = None,
                 check_cuda: bool = True, recycle_after: int = 25):
        super().__init__()
        self.max_workers = max_workers or host_cores()
        # One candidate builds in 0.1-1 s (plus ~1 s of nvcc for CUDA); a minute means stuck.
        self.timeout_sec = timeout_sec or 60.0
        self.check_cuda = check_cuda
        self.recycle_after = recycle_after
        self.out_dir = tempfile.mkdtemp(prefix="opsearch-build-")
        self._pool = None
        self._batches = 0

    def _get_pool(self) -> PopenPoolExecutor:
        if self._pool is None or self._batches >= self.recycle_after:
            if self._pool is not None:
                self._pool.shutdown()
            from ..targets import skip_intrinsics

            self._pool = PopenPoolExecutor(max_workers=self.max_workers, timeout=self.timeout_sec,
                                           initializer=skip_intrinsics)
            self._batches = 0
        self._batches += 1
        return self._pool

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        pool = self._get_pool()
        args = [(b.mod, b.target, self.check_cuda, self.out_dir) for b in build_inputs]
        results = []
        for r in pool.map_with_error_catching(lambda a: build_candidate(*a), args):
            if r.status == StatusKind.COMPLETE:
                results.append(BuilderResult(r.value, None))
            elif r.status == StatusKind.TIMEOUT:
                results.append(BuilderResult(None, f"build timed out after {self.timeout_sec:.0f} s"))
            else:
                results.append(BuilderResult(None, _one_error(r.value)))
        return results

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        shutil.rmtree(self.out_dir, ignore_errors=True)


def _one_error(exc) -> str:
    """The useful part of a worker exception: the last lines, not the Python traceback."""
    text = str(exc).strip()
    if "nvcc failed for sm_" in text:
        return text[text.rindex("nvcc failed for sm_"):]
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-3:])[:2000] if lines else repr(exc)
