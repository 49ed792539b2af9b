"""Measuring candidates on this CPU: build and time in one persistent worker process.

On a small machine the build is cheap in memory (0.05-0.1 s) but exporting a shared library
costs a linker run per candidate, and a new process pool per batch costs seconds. Here the
builder only hands the scheduled module over (as TVM JSON in a temp file, no pickles), and one
long-lived worker compiles it in memory and times it with TVM's time evaluator. Failures come
back with their message, prefixed ``build:`` or ``run:`` so the recorder can tell them apart;
a worker that crashes or hangs is replaced and the candidate recorded as failed.
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
    ``min_repeat_ms`` long. Sized so a candidate costs ~0.1-0.3 s on small kernels."""

    number: int = 1
    repeat: int = 5
    min_repeat_ms: int = 20
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


def build_and_time(module_path: str, target_config: dict, args_info: list, cfg: MeasureConfig) -> list[float]:
    """Worker side: compile the module in memory, run it on random inputs, return seconds."""
    import numpy as np
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    try:
        with open(module_path) as f:
            mod = tvm.ir.load_json(f.read())
        mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
        lib = tvm.driver.build(mod, target=tvm.target.Target(target_config))
    except Exception as e:  # noqa: BLE001 - every build failure is a result
        raise RuntimeError(BUILD_PREFIX + _last_lines(e)) from None
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
        ev = lib.time_evaluator(lib.entry_name, dev, number=cfg.number, repeat=cfg.repeat,
                                min_repeat_ms=cfg.min_repeat_ms)
        return [float(x) for x in ev(*args).results]
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(RUN_PREFIX + _last_lines(e)) from None


def _last_lines(e: BaseException, n: int = 3) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return "\n".join(lines[-n:])[:2000] if lines else repr(e)


@derived_object
class LocalBuildRunner(PyRunner):
    """Compiles and times candidates, one at a time, in a persistent worker process."""

    def __init__(self, target_config: dict, config: MeasureConfig | None = None):
        super().__init__()
        self.target_config = target_config
        self.config = config or MeasureConfig()
        self.pool = PopenPoolExecutor(max_workers=1, timeout=self.config.timeout_sec, initializer=_worker_init)

    def run(self, runner_inputs: list[RunnerInput]) -> list[LocalRunnerFuture]:
        futures = []
        for r in runner_inputs:
            args_info = [tuple(a.as_json()) for a in r.args_info]
            fut = self.pool.submit(build_and_time, str(r.artifact_path), self.target_config, args_info, self.config)
            try:
                res, err = fut.result(), None
            except TimeoutError:
                res, err = None, f"{RUN_PREFIX}timeout: killed after {self.config.timeout_sec:.0f} s"
            except Exception as e:  # noqa: BLE001
                msg = str(e)
                if BUILD_PREFIX not in msg and RUN_PREFIX not in msg:
                    msg = RUN_PREFIX + "worker crashed: " + _last_lines(e, 2)
                res, err = None, msg[msg.find(BUILD_PREFIX) if BUILD_PREFIX in msg else msg.find(RUN_PREFIX):]
            futures.append(LocalRunnerFuture(res=res, error_message=err))
        return futures

    def shutdown(self) -> None:
        self.pool.shutdown()
