"""Never measure a candidate twice on a target, across runs.

MetaSchedule's evolutionary search avoids repeats within one run only; a resumed run seeds from
the database and can propose candidates that were measured before. ``DedupBuilder`` recognises
them by the structural hash of the scheduled module and hands ``DedupRunner`` the stored result
instead of an artifact, so the runner returns it without building or running anything.
"""

from __future__ import annotations

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerInput
from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture

from ..db.replay import module_hash

KNOWN = "opsearch-known:"


@derived_object
class DedupBuilder(PyBuilder):
    """Wraps a builder; ``known`` maps module hash -> (run seconds or None, error or None)."""

    def __init__(self, inner, known: dict[str, tuple[list[float] | None, str | None]]):
        super().__init__()
        self.inner = inner
        self.known = known
        self.skipped = 0

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        hashes = [module_hash(b.mod) for b in build_inputs]
        fresh = [b for b, h in zip(build_inputs, hashes) if h not in self.known]
        built = iter(self.inner.build(fresh) if fresh else [])
        out = []
        for h in hashes:
            if h in self.known:
                self.skipped += 1
                out.append(BuilderResult(KNOWN + h, None))
            else:
                out.append(next(built))
        return out


@derived_object
class DedupRunner(PyRunner):
    """Wraps a runner; answers known candidates from ``known`` without running them."""

    def __init__(self, inner, known: dict[str, tuple[list[float] | None, str | None]]):
        super().__init__()
        self.inner = inner
        self.known = known

    def run(self, runner_inputs: list[RunnerInput]):
        fresh = [r for r in runner_inputs if not str(r.artifact_path).startswith(KNOWN)]
        ran = iter(self.inner.run(fresh) if fresh else [])
        out = []
        for r in runner_inputs:
            path = str(r.artifact_path)
            if path.startswith(KNOWN):
                secs, err = self.known[path[len(KNOWN):]]
                out.append(LocalRunnerFuture(res=secs, error_message=err))
            else:
                out.append(next(ran))
        return out
