"""Measuring candidates on this CPU: compile in parallel, then time one at a time, in
persistent worker processes.

Exporting a shared library costs a linker run per candidate, and a new process pool per batch
costs seconds. Here the builder only hands the scheduled module over (as TVM JSON in a temp file,
no pickles), and long-lived workers (one per core, at most ``build_workers``, started with the
runner) compile the batch in memory, in parallel, each taking the next candidate when it is free;
then every candidate is timed with TVM's time
evaluator by the worker that holds it, one after another, while the other workers wait, so
compilation never runs beside a timing.

Timing is two-stage (``MeasureConfig.screen_ratio``): every candidate first gets one short
screening sample; only those within ``screen_ratio`` of the fastest screened or fully timed so far
(for arguments of the same shapes) get the full timing (warm-up plus ``repeat`` samples), the rest
are recorded with their screening sample alone. Most candidates of a search are several times
slower than its best and need no precise time to be ranked, and the full timing is what cost most
of a trial (benchmarks/RESULTS.md, session 8). Failures come back with their message, prefixed
``build:`` or ``run:`` so the recorder can tell them apart; a worker that crashes or hangs is
replaced and the candidate recorded as failed; the candidates it held are compiled again, all at
once on the free workers if it died while compiling, else each when its turn to be timed comes.

A compile gets at most ``MeasureConfig.compile_limit_factor`` times the run's median compile time
(at least ``compile_limit_min_s``) once the run has compiled a few candidates: the search samples
a few schedules that unroll into so much code that LLVM takes 10-40 s on them (effnet_3x3_e8:
38 s for a 5.7 ms kernel, against 0.1-0.4 s and 1.1 ms for most), and waiting for them was most of
such a run's time. No shipped best record takes more than 1.6 s to compile. Those schedules
unrolled 512 steps, which the CPU space no longer offers (``opsearch.search.space``); the limit
stays for traces that still carry it (older records, transfer seeds) and for other large code.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerInput
from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture
from tvm.support.popen_pool import PopenPoolExecutor

log = logging.getLogger(__name__)

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
    # A compile's limit once ``compile_limit_after`` candidates were compiled: this factor times
    # their median compile time, at least compile_limit_min_s, at most timeout_sec (None: off).
    compile_limit_factor: float | None = 20.0
    compile_limit_min_s: float = 10.0
    compile_limit_after: int = 8
    # Screening (see the module docstring and screen_candidate): one sample of at least
    # ``screen_ms`` after one untimed run; full timing only within ``screen_ratio`` of the best.
    # None: time every candidate fully.
    screen_ratio: float | None = 1.5
    screen_ms: int = 5
    screen_keep: int = 2  # the fastest this many of every batch are always timed fully
    screen_cutoff: float | None = 10.0  # a first run this many times the best so far is the screen

    def check(self) -> None:
        from ..errors import OpsearchError

        if self.repeat <= 0 or self.number <= 0 or self.warmup < 0 or self.min_repeat_ms < 0:
            raise OpsearchError(f"bad measure config: {self}")
        if self.compile_limit_factor is not None and (self.compile_limit_factor < 1.0 or self.compile_limit_min_s <= 0):
            raise OpsearchError(f"compile limit must be at least 1x the median and positive, got {self}")
        if self.screen_ratio is not None and self.screen_ratio < 1.0:
            raise OpsearchError(f"screen ratio must be at least 1.0 (or None to time every candidate fully), got {self.screen_ratio}")
        if self.screen_cutoff is not None and self.screen_ratio is not None and self.screen_cutoff < self.screen_ratio:
            raise OpsearchError(f"screen cutoff ({self.screen_cutoff}) must not be below the screen ratio ({self.screen_ratio})")


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
    from ..targets import skip_intrinsics

    skip_intrinsics()


_COMPILED: dict = {}  # worker side: module path -> compiled library, until it is timed
_INPUTS: dict = {}  # worker side: module path -> its random input tensors, while it is timed


def compile_candidate(module_path: str, target_config: dict, args_info: list | None = None) -> float:
    """Worker side: compile the module in memory, down to machine code, and keep it (with random
    inputs, given ``args_info``) for :func:`screen_candidate` and :func:`time_candidate`. LLVM
    modules are JIT-compiled on the first lookup of a function (30-40 ms for a conv2d here):
    done now, in the parallel phase, not at the candidate's first timed call."""
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    t0 = time.perf_counter()
    try:
        with open(module_path) as f:
            mod = tvm.ir.load_json(f.read())
        mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
        lib = tvm.driver.build(mod, target=tvm.target.Target(target_config))
        lib[lib.entry_name]  # noqa: B018 - the lookup triggers the JIT
    except Exception as e:  # noqa: BLE001 - every build failure is a result
        raise RuntimeError(BUILD_PREFIX + _last_lines(e)) from None
    _COMPILED[module_path] = lib
    elapsed = time.perf_counter() - t0
    if args_info is not None:
        _prepared(module_path, target_config, args_info)
    return elapsed


def _prepared(module_path: str, target_config: dict, args_info: list):
    """Worker side: the compiled module (compiling it now if this worker does not hold it) and
    random inputs for it, both kept until the candidate's timing is done."""
    import numpy as np
    import tvm

    if module_path not in _COMPILED:
        compile_candidate(module_path, target_config)
    if module_path not in _INPUTS:
        try:
            rng = np.random.default_rng(0)
            args = []
            for kind, dtype, shape in args_info:
                assert kind == "TENSOR"
                if dtype.startswith("float"):
                    arr = rng.uniform(-1, 1, shape).astype(dtype)
                else:
                    arr = rng.integers(-2, 3, shape).astype(dtype)
                args.append(tvm.runtime.tensor(arr, tvm.cpu()))
        except Exception as e:  # noqa: BLE001
            release_candidates([module_path])
            raise RuntimeError(RUN_PREFIX + _last_lines(e)) from None
        _INPUTS[module_path] = args
    return _COMPILED[module_path], _INPUTS[module_path]


def screen_candidate(module_path: str, target_config: dict, args_info: list, cfg: MeasureConfig,
                     cutoff_s: float | None = None) -> float:
    """Worker side: seconds per run from one short sample, after one untimed run; the candidate
    stays prepared for :func:`time_candidate` or :func:`release_candidates`. Slow kernels are
    timed by the clock around single calls (TVM's evaluator adds an untimed run of its own): a
    first run longer than ``cutoff_s`` (many times the best so far) is taken as the screen, so a
    hopeless candidate costs one run; a first run of at least ``screen_ms`` is followed by one
    timed run; faster kernels get an evaluator sample of at least ``screen_ms``."""
    import time as _time

    import tvm

    lib, args = _prepared(module_path, target_config, args_info)
    try:
        dev, func = tvm.cpu(), lib[lib.entry_name]

        def once() -> float:
            t0 = _time.perf_counter()
            func(*args)
            dev.sync()
            return _time.perf_counter() - t0

        first = once()
        if cutoff_s is not None and first > cutoff_s:
            return first
        if first * 1e3 >= cfg.screen_ms:
            return once()
        ev = lib.time_evaluator(lib.entry_name, dev, number=1, repeat=1, min_repeat_ms=cfg.screen_ms)
        return float(ev(*args).results[-1])
    except Exception as e:  # noqa: BLE001
        release_candidates([module_path])
        raise RuntimeError(RUN_PREFIX + _last_lines(e)) from None


def time_candidate(module_path: str, target_config: dict, args_info: list, cfg: MeasureConfig,
                   per_run_s: float | None = None) -> list[float]:
    """Worker side: run the compiled module (compiling it first if this worker does not hold it)
    on random inputs; return seconds. Given ``per_run_s`` (its screening sample), each sample runs
    a fixed number of times sized to ``min_repeat_ms`` instead of TVM's ramp-up to it."""
    import math

    import tvm

    lib, args = _prepared(module_path, target_config, args_info)
    release_candidates([module_path])  # the references above keep them for this call
    try:
        number, min_ms = cfg.number, cfg.min_repeat_ms
        if per_run_s and per_run_s > 0:
            number, min_ms = max(cfg.number, math.ceil(cfg.min_repeat_ms / (per_run_s * 1e3))), 0
        ev = lib.time_evaluator(lib.entry_name, tvm.cpu(), number=number, repeat=cfg.warmup + cfg.repeat,
                                min_repeat_ms=min_ms)
        return [float(x) for x in ev(*args).results[cfg.warmup:]]
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(RUN_PREFIX + _last_lines(e)) from None


def release_candidates(module_paths: list[str]) -> None:
    """Worker side: drop candidates that will not be timed further."""
    for path in module_paths:
        _COMPILED.pop(path, None)
        _INPUTS.pop(path, None)


def to_time_fully(infos: list, screens: list[float | None], best: dict, cfg: MeasureConfig) -> list[int]:
    """Indices of the screened candidates (``screens[i]`` not None) to time fully: those within
    ``cfg.screen_ratio`` of the fastest screened in this batch or timed so far (``best``) for the
    same argument shapes, plus the ``cfg.screen_keep`` fastest of the batch. (Workloads whose
    arguments have the same shapes share one best: a stricter bar only for the slower of them,
    which still gets its batch's fastest timed fully.)"""
    ok = sorted((s, i) for i, s in enumerate(screens) if s is not None)
    full = {i for _, i in ok[:cfg.screen_keep]}
    batch_best: dict[tuple, float] = {}
    for s, i in ok:
        batch_best.setdefault(_shape_key(infos[i]), s)
    for s, i in ok:
        key = _shape_key(infos[i])
        if s <= cfg.screen_ratio * min(best.get(key, float("inf")), batch_best[key]):
            full.add(i)
    return sorted(full)


def _shape_key(args_info: list) -> tuple:
    return tuple((dtype, tuple(shape)) for _, dtype, shape in args_info)


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


# The workers' environment for TVM's thread pool, set in this process's environment while a
# runner lives (the pool starts, and restarts, its workers from its own threads, and a value set
# from a worker's initializer came too late); a value already there is kept (exported by the
# user, or the spin of 0 that importing opsearch.torch_bridge sets: workers then time as the
# bridge runs kernels).
# - Spin: TVM's pool threads spin (sched_yield in a loop) 300,000 times after each parallel call
#   before they sleep: 0.1-0.3 s on these VMs. The runner times a candidate on the worker that
#   compiled it, so the worker that timed the one before kept both cores busy during the next
#   one's samples: on a 2-core znver4 VM, 7 and 3 of 27 re-measurements of tcn_d8 picks ran at
#   1.8-2.1 ms against 1.0-1.2 ms (1 and 0 with this count; benchmarks/RESULTS.md). 1,000 spins
#   (~1 ms) still bridge the back-to-back calls of a timing loop.
# - Binding: TVM pins each pool thread but the calling one to a core. In the workers that made
#   timings twice the kernel's time at random on a 2-core znver4 VM (2026-12-07: eight
#   lightweight_conv1d decoder_k15_causal kernels timed 270-300 us in fresh processes; timed
#   again and again by a runner, 30 of 64 timings with two workers and 6 of 24 with one came out
#   at 510-600 us), as if the caller and the pinned thread shared one core. Unpinned, none of 32
#   did: all but one within 8% of the fresh processes' (benchmarks/RESULTS.md). A search ranks
#   its candidates on these timings, so a good kernel timed at twice its time was passed over.
SPIN_ENV = "TVM_THREAD_POOL_SPIN_COUNT"
WORKER_SPIN_COUNT = "1000"
BIND_ENV = "TVM_BIND_THREADS"
WORKER_ENV = {SPIN_ENV: WORKER_SPIN_COUNT, BIND_ENV: "0"}
_env_users: dict[str, int] = {}  # variable -> runners alive that set it


def _set_worker_env() -> list[str]:
    """Set WORKER_ENV's variables for worker processes started from now on, each unless it was
    set already (not by a runner); returns the names set."""
    names = []
    for name, value in WORKER_ENV.items():
        if _env_users.get(name, 0) == 0 and name in os.environ:
            continue
        os.environ[name] = value
        _env_users[name] = _env_users.get(name, 0) + 1
        names.append(name)
    return names


def _unset_worker_env(names: list[str]) -> None:
    for name in names:
        _env_users[name] -= 1
        if _env_users[name] == 0:
            os.environ.pop(name, None)


class _Worker(PopenPoolExecutor):
    """One worker process (a pool of one) whose tasks can each get their own time limit."""

    def submit_within(self, timeout_s: float, fn, *args):
        # The pool reads its timeout when a task starts; this pool runs one task at a time and
        # the runner submits the next only after the last one's result, so each task gets its own.
        self._timeout = timeout_s
        return self.submit(fn, *args)


@derived_object
class LocalBuildRunner(PyRunner):
    """Compiles a batch in parallel in ``build_workers`` persistent worker processes (default:
    the usable cores), then times its candidates one at a time."""

    def __init__(self, target_config: dict, config: MeasureConfig | None = None, build_workers: int | None = None):
        from ..targets import host_cores

        super().__init__()
        self.target_config = target_config
        self.config = config or MeasureConfig()
        self.config.check()
        self._best: dict[tuple, float] = {}  # argument shapes -> fastest full timing (seconds)
        self.screened_out = 0  # candidates recorded with their screening sample alone
        self.timed_fully = 0
        self.phase_s: dict[str, float] = {}  # wall seconds per phase, over the runner's life
        n = max(1, build_workers if build_workers is not None else host_cores())
        self._env_set = _set_worker_env()
        self.pools = [_Worker(max_workers=1, timeout=self.config.timeout_sec, initializer=_worker_init)
                      for _ in range(n)]
        self.compile_s: list[float] = []  # every compile's seconds, for the adaptive limit
        self.compiles_stopped = 0
        self._queued: list = []  # (RunnerInput, callback) measured with the next batch
        # Start the workers now (each imports TVM and its intrinsics, ~2 s) instead of at their
        # first candidate, so their start overlaps the tuner's own set-up.
        self._starting = [pool.submit(os.getpid) for pool in self.pools]

    def add_to_next_batch(self, runner_input: RunnerInput, done) -> None:
        """Measure ``runner_input`` with the next batch (first, so the batch is screened against
        it) instead of on its own: a lone candidate leaves every worker but one idle while it
        compiles (the default schedule of context_d4 takes 3-4 s), and the first one also waits
        for the workers to start. ``done(run_secs or None, error or None)`` gets its result;
        ``flush()`` measures what is still waiting."""
        self._queued.append((runner_input, done))

    def flush(self) -> None:
        if self._queued:
            self.run([])

    def run(self, runner_inputs: list[RunnerInput]) -> list[LocalRunnerFuture]:
        queued, self._queued = self._queued, []
        out = self._run([q[0] for q in queued] + list(runner_inputs))
        for (_, done), fut in zip(queued, out):
            done(fut.res, fut.error_message)
        return out[len(queued):]

    def _run(self, runner_inputs: list[RunnerInput]) -> list[LocalRunnerFuture]:
        cfg = self.config
        paths = [str(r.artifact_path) for r in runner_inputs]
        owner = [0] * len(paths)
        errors: list[str | None] = [None] * len(paths)
        infos = [[tuple(a.as_json()) for a in r.args_info] for r in runner_inputs]
        t0 = time.monotonic()
        if len(self.pools) > 1:  # with one worker, candidates are compiled just before timing
            owner = self._compile(paths, infos, errors)
        # No timing while a worker is still starting: its import would share the cores.
        for fut in self._starting:
            self._wait(fut, "run")
        self._starting = []
        t1 = time.monotonic()
        screens: list[float | None] = [None] * len(paths)
        full = [i for i in range(len(paths)) if errors[i] is None]
        if cfg.screen_ratio is not None:
            batch_best: dict[tuple, float] = {}  # argument shapes -> fastest screen so far in this batch
            for i in full:
                key = _shape_key(infos[i])
                best = min(self._best.get(key, float("inf")), batch_best.get(key, float("inf")))
                cutoff = cfg.screen_cutoff * best if cfg.screen_cutoff and best < float("inf") else None
                screens[i], errors[i] = self._wait(self.pools[owner[i]].submit_within(
                    cfg.timeout_sec, screen_candidate, paths[i], self.target_config, infos[i], cfg, cutoff), "run")
                if screens[i] is not None:
                    batch_best[key] = min(batch_best.get(key, float("inf")), screens[i])
            full = to_time_fully(infos, screens, self._best, cfg)
        t2 = time.monotonic()
        results: list[list[float] | None] = [[s] if s is not None else None for s in screens]
        for i in full:
            results[i], errors[i] = self._wait(self.pools[owner[i]].submit_within(
                cfg.timeout_sec, time_candidate, paths[i], self.target_config, infos[i], cfg, screens[i]), "run")
            if results[i]:
                if screens[i] is not None:
                    log.debug("screened %.1f us, timed %.1f us", screens[i] * 1e6, 1e6 * sum(results[i]) / len(results[i]))
                key = _shape_key(infos[i])
                self._best[key] = min(self._best.get(key, float("inf")), sum(results[i]) / len(results[i]))
        t3 = time.monotonic()
        for phase, secs in (("compile", t1 - t0), ("screen", t2 - t1), ("full timing", t3 - t2)):
            self.phase_s[phase] = self.phase_s.get(phase, 0.0) + secs
        timed = set(full)
        dropped = [i for i in range(len(paths)) if screens[i] is not None and i not in timed]
        self.screened_out += len(dropped)
        self.timed_fully += sum(1 for i in full if results[i])
        for w, pool in enumerate(self.pools):
            mine = [paths[i] for i in dropped if owner[i] == w]
            if mine:
                self._wait(pool.submit_within(cfg.timeout_sec, release_candidates, mine), "run")
        return [LocalRunnerFuture(res=None, error_message=errors[i]) if errors[i] is not None
                else LocalRunnerFuture(res=results[i], error_message=None) for i in range(len(paths))]

    def _compile(self, paths: list[str], infos: list, errors: list) -> list[int]:
        """Compile the batch on the workers, each candidate going to the next worker that is free
        (one candidate's compile time can be 20x another's, so a fixed share leaves a worker
        idle); failures go to ``errors``. Returns the worker that holds each candidate."""
        from collections import deque

        owner = [0] * len(paths)
        queue = deque(range(len(paths)))
        held: dict[int, list[int]] = {w: [] for w in range(len(self.pools))}  # compiled this batch, per worker
        pending: dict = {}  # future -> (candidate, worker, its time limit or None)
        free = list(range(len(self.pools)))
        while queue or pending:
            while free and queue:
                w, i = free.pop(0), queue.popleft()
                limit = self.compile_limit()
                fut = self.pools[w].submit_within(limit or self.config.timeout_sec, compile_candidate, paths[i],
                                                  self.target_config, infos[i])
                pending[fut], owner[i] = (i, w, limit), w
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                i, w, limit = pending.pop(fut)
                secs, errors[i] = self._wait(fut, "build")
                if secs is not None:
                    self.compile_s.append(secs)
                    held[w].append(i)
                elif errors[i] and ("timeout" in errors[i] or "worker crashed" in errors[i]):
                    # The worker was killed with what it had compiled: compile that again now, in
                    # parallel, rather than one by one when each candidate's timing comes.
                    queue.extend(held[w])
                    held[w] = []
                    if limit is not None:
                        self.compiles_stopped += 1
                        errors[i] = (f"{BUILD_PREFIX}compile stopped after {limit:.1f} s: the limit is "
                                     f"{self.config.compile_limit_factor:g}x this run's median compile time "
                                     f"({self._median_compile():.2f} s), at least {self.config.compile_limit_min_s:g} s")
                free.append(w)
        return owner

    def _median_compile(self) -> float:
        import statistics

        return statistics.median(self.compile_s)

    def compile_summary(self) -> str:
        """The run's compiles in one phrase, for the tuner's log."""
        cs = sorted(self.compile_s)
        if not cs:
            return "no compiles"
        return (f"{len(cs)} compiles, median {self._median_compile():.2f} s, 90th percentile "
                f"{cs[int(0.9 * len(cs))]:.2f} s, {self.compiles_stopped} stopped at the run's limit")

    def compile_limit(self) -> float | None:
        """Seconds a compile may take now (None: only the timeout): see the module docstring."""
        cfg = self.config
        if cfg.compile_limit_factor is None or len(self.compile_s) < cfg.compile_limit_after:
            return None
        return min(cfg.timeout_sec, max(cfg.compile_limit_min_s, cfg.compile_limit_factor * self._median_compile()))

    def _wait(self, fut, what: str):
        """(result, None) or (None, the error text recorded for the candidate)."""
        try:
            return fut.result(), None
        except Exception as e:  # noqa: BLE001 - recorded as the candidate's failure
            return None, _error_text(e, self.config.timeout_sec, what)

    def shutdown(self) -> None:
        # A worker still starting has no pipe yet, and TVM's pool fails to kill it (AttributeError
        # '_writer'); the pool is then never shut down, and when the garbage collector later runs
        # its __del__ it can deadlock the process (seen in CI, after a run that had nothing to tune
        # shut its runner down at once). So wait for the starts, and shut every pool down.
        for fut in self._starting:
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - a worker that failed to start is killed below
                pass
        self._starting = []
        for pool in self.pools:
            try:
                pool.shutdown()
            except Exception as e:  # noqa: BLE001
                log.warning("a runner worker did not shut down cleanly: %s", e)
                pool._shutdown = True  # its __del__ must not try again
        names, self._env_set = self._env_set, []
        _unset_worker_env(names)
