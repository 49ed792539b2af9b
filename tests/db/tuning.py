"""Helpers for the real MetaSchedule test: a quick in-process builder and a failure-injecting runner.

MetaSchedule's ``TuneContext`` imports ``tvm.s_tir.tensor_intrin`` (22-26 s, mostly CUDA
intrinsics) and ``LocalBuilder`` repeats that in every worker; the test registers only the x86
intrinsics with ``opsearch.targets.register_intrinsics``, and :class:`InProcessBuilder` compiles in this
process.
"""

from __future__ import annotations

import os
import tempfile


def make_builder():
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.support.tar import tar

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        """Compiles candidates in this process (0.05-0.1 s each instead of a pool per batch)."""

        def build(self, build_inputs):
            out = []
            for bi in build_inputs:
                try:
                    rt = tvm.tirx.build(bi.mod, target=bi.target)
                    path = os.path.join(tempfile.mkdtemp(prefix="opsearch-ms-"), "mod." + tar.output_format)
                    rt.export_library(path, fcompile=tar)
                    out.append(ms.builder.BuilderResult(path, None))
                except Exception as e:  # noqa: BLE001 - report as a build error
                    out.append(ms.builder.BuilderResult(None, f"{type(e).__name__}: {e}"))
            return out

    return InProcessBuilder()


def make_runner(fail_first: int = 1):
    """A LocalRunner whose first ``fail_first`` candidates report an injected failure."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture

    @derived_object
    class FailingRunner(ms.runner.PyRunner):
        def __init__(self):
            super().__init__()
            self.inner = ms.runner.LocalRunner()
            self.failed = 0

        def run(self, runner_inputs):
            futures = list(self.inner.run(runner_inputs))
            for i in range(len(futures)):
                if self.failed < fail_first:
                    self.failed += 1
                    futures[i] = LocalRunnerFuture(res=None, error_message="injected failure: device lost")
            return futures

    return FailingRunner()
