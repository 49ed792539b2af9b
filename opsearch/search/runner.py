"""Measuring candidates on this CPU: compile in parallel, then time one at a time, in
persistent worker processes.

Exporting a shared library costs a linker run per candidate, and a new process pool per batch
costs seconds. Here the builder only hands the scheduled module over (as TVM JSON in a temp file,
no pickles), and long-lived workers (one per core, at most ``build_workers``) each compile their
share of the batch in memory, in parallel; then every candidate is timed with TVM's time
evaluator by the worker that holds it, one after another, while the other workers wait, so
compilation never runs beside a timing. Failures come back with their message, prefixed
``build:`` or ``run:`` so the recorder can tell them apart; a worker that crashes or hangs is
replaced (the candidates it held are compiled again when their turn to be timed comes) and the
candidate recorded as failed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerInput
from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture
from tvm.support.popen_pool import PopenPoolExecutor

BUILD_PREFIX = "build: "
RUN_PREFIX = "run: "


@dataclass(frozen=True)
class MeasureConfig:
    """How each candidate is timed: ``repeat`` samples of ``number`` runs, each sample at least
    ``min_repeat_ms`` long, after ``warmup`` samples that are timed the same way and dropped (a
    freshly loaded kernel's first sample ran up to 2.5x slow: the first candidates of a run on
    znver1, benchmarks/RESULTS.md). Sized so a candidate costs ~0.1-0.3 s on small kernels."""

    number: int = 1
    repeat: int = 5
    min_repeat_ms: int = 20
    warmup: int = 1
    timeout_sec: float = 60.0


@derived_object
class ModuleHandoff(PyBuilder):
    """'Builds' by writing the scheduled module as TVM JSON; the runner compiles it."""

    def __init__(self):
        super().__init__()
        self.out_dir = tempfile.mkdtemp(prefix="opsearch-cand-")

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        import tvm

        results = []
        for b in build_inputs:
            d = tempfile.mkdtemp(dir=self.out_dir)  # RemoveBuildArtifact removes the parent dir
            path = os.path.join(d, "module.json")
            with open(path, "w") as f:
                f.write(tvm.ir.save_json(b.mod))
            results.append(BuilderResult(path, None))
        return results

    def shutdown(self) -> None:
        shutil.rmtree(self.out_dir, ignore_errors=True)


def _worker_init() -> None:
    from .intrin import prepare_build_worker

    prepare_build_worker()


_COMPILED: dict = {}  # worker side: module path -> compiled library, until it is timed


def compile_candidate(module_path: str, target_config: dict) -> bool:
    """Worker side: compile the module in memory and keep it for :func:`time_candidate`."""
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    try:
        with open(module_path) as f:
            mod = tvm.ir.load_json(f.read())
        mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
        _COMPILED[module_path] = tvm.driver.build(mod, target=tvm.target.Target(target_config))
    except Exception as e:  # noqa: BLE001 - every build failure is a result
        raise RuntimeError(BUILD_PREFIX + _last_lines(e)) from None
    return True


def time_candidate(module_path: str, target_config: dict, args_info: list, cfg: MeasureConfig) -> list[float]:
    """Worker side: run the compiled module (compiling it first if this worker does not hold it)
    on random inputs; return seconds."""
    import numpy as np
    import tvm

    if module_path not in _COMPILED:
        compile_candidate(module_path, target_config)
    lib = _COMPILED.pop(module_path)
    try:
        dev = tvm.cpu()
        rng = np.random.default_rng(0)
        args = []
        for kind, dtype, shape in args_info:
            assert kind == "TENSOR"
            if dtype.startswith("float"):
                arr = rng.uniform(-1, 1, shape).astype(dtype)
            else:
                arr = rng.integers(-2, 3, shape).astype(dtype)
            args.append(tvm.runtime.tensor(arr, dev))
        ev = lib.time_evaluator(lib.entry_name, dev, number=cfg.number, repeat=cfg.warmup + cfg.repeat,
                                min_repeat_ms=cfg.min_repeat_ms)
        return [float(x) for x in ev(*args).results[cfg.warmup:]]
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(RUN_PREFIX + _last_lines(e)) from None


def _last_lines(e: BaseException, n: int = 3) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return "\n".join(lines[-n:])[:2000] if lines else repr(e)


def _error_text(e: BaseException, timeout: float, what: str) -> str:
    if isinstance(e, TimeoutError):
        return f"{RUN_PREFIX if what == 'run' else BUILD_PREFIX}timeout: killed after {timeout:.0f} s"
    msg = str(e)
    if BUILD_PREFIX not in msg and RUN_PREFIX not in msg:
        return RUN_PREFIX + "worker crashed: " + _last_lines(e, 2)
    return msg[msg.find(BUILD_PREFIX) if BUILD_PREFIX in msg else msg.find(RUN_PREFIX):]


@derived_object
class LocalBuildRunner(PyRunner):
    """Compiles a batch in parallel in ``build_workers`` persistent worker processes (default:
    the usable cores), then times its candidates one at a time."""

    def __init__(self, target_config: dict, config: MeasureConfig | None = None, build_workers: int | None = None):
        from ..targets import host_cores

        super().__init__()
        self.target_config = target_config
        self.config = config or MeasureConfig()
        n = max(1, build_workers if build_workers is not None else host_cores())
        self.pools = [PopenPoolExecutor(max_workers=1, timeout=self.config.timeout_sec, initializer=_worker_init)
                      for _ in range(n)]

    def run(self, runner_inputs: list[RunnerInput]) -> list[LocalRunnerFuture]:
        paths = [str(r.artifact_path) for r in runner_inputs]
        owner = [i % len(self.pools) for i in range(len(paths))]
        errors: list[str | None] = [None] * len(paths)
        if len(self.pools) > 1:  # with one worker, time_candidate compiles just before timing
            compiles = [self.pools[w].submit(compile_candidate, p, self.target_config) for p, w in zip(paths, owner)]
            for i, fut in enumerate(compiles):
                try:
                    fut.result()
                except Exception as e:  # noqa: BLE001 - recorded as the candidate's failure
                    errors[i] = _error_text(e, self.config.timeout_sec, "build")
        futures = []
        for i, r in enumerate(runner_inputs):
            if errors[i] is not None:
                futures.append(LocalRunnerFuture(res=None, error_message=errors[i]))
                continue
            args_info = [tuple(a.as_json()) for a in r.args_info]
            fut = self.pools[owner[i]].submit(time_candidate, paths[i], self.target_config, args_info, self.config)
            try:
                res, err = fut.result(), None
            except Exception as e:  # noqa: BLE001
                res, err = None, _error_text(e, self.config.timeout_sec, "run")
            futures.append(LocalRunnerFuture(res=res, error_message=err))
        return futures

    def shutdown(self) -> None:
        for pool in self.pools:
            pool.shutdown()
