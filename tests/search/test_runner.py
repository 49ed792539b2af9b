"""The local build-and-time runner: a batch compiled in parallel workers and timed one at a time
gives the same outcome per candidate as one worker (times for good schedules, ``build:`` errors
for bad modules), in the candidates' order; screening times fully only the candidates near the
best and records the others by their screening sample."""

from __future__ import annotations

import pytest


def _inputs(tmp_path):
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from opsearch import ops
    from opsearch.ops.tir import ir_module

    wl = ops.get("dilated_conv1d").workload(x=[1, 6, 37], weight=[5, 6, 3], dilation=2)
    mods = []
    for factor in (None, 4, 2):
        sch = tvm.s_tir.Schedule(ir_module(wl))
        if factor:
            loops = sch.get_loops(sch.get_output_blocks(sch.get_sblock("root"))[0])
            sch.split(loops[-1], [None, factor])
        mods.append(sch.mod)
    paths = []
    for i, mod in enumerate(mods):
        p = tmp_path / f"good{i}.json"
        p.write_text(tvm.ir.save_json(mod))
        paths.append(str(p))
    bad = tmp_path / "bad.json"
    bad.write_text('{"root": 1, "nodes": [{"type_key": "NoSuchNode"}]}')
    paths.insert(1, str(bad))
    args_info = [ms.arg_info.TensorInfo(tvm.runtime.DataType("float32"), s) for s in ([1, 6, 37], [5, 6, 3], [1, 5, 37])]
    return [ms.runner.RunnerInput(p, "cpu", args_info) for p in paths]


@pytest.mark.parametrize("workers,screen", [(1, None), (2, None), (2, 1.5)])
def test_parallel_compile_then_serial_timing(tmp_path, workers, screen):
    from opsearch.search.runner import BUILD_PREFIX, LocalBuildRunner, MeasureConfig
    from opsearch.targets import resolve

    runner = LocalBuildRunner(resolve("cpu").config, MeasureConfig(screen_ratio=screen), build_workers=workers)
    try:
        results = [f.result() for f in runner.run(_inputs(tmp_path))]
    finally:
        runner.shutdown()
    assert len(runner.pools) == workers
    assert [r.error_msg is None for r in results] == [True, False, True, True]
    assert results[1].error_msg.startswith(BUILD_PREFIX), results[1].error_msg
    good = (results[0], results[2], results[3])
    for r in good:
        assert all(0 < float(s) < 1.0 for s in r.run_secs)
    if screen is None:
        assert [len(r.run_secs) for r in good] == [5, 5, 5]
    else:  # the two fastest of a batch are always timed fully; the third by its screen if far off
        assert sorted(len(r.run_secs) for r in good) in ([5, 5, 5], [1, 5, 5])
        assert runner.timed_fully + runner.screened_out == 3


def _fast_and_slow(tmp_path):
    """Two candidates with the same arguments: a matmul, and the same product summed 16 times
    over (16x the work, the same result shape)."""
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    inputs = []
    for name, reps in (("fast", 1), ("slow", 16)):
        x, w = te.placeholder((64, 96), name="x"), te.placeholder((96, 80), name="w")
        k, r = te.reduce_axis((0, 96), name="k"), te.reduce_axis((0, reps), name="r")
        y = te.compute((64, 80), lambda i, j: te.sum(x[i, k] * w[k, j], axis=[r, k]), name="y")
        func = te.create_prim_func([x, w, y])
        p = tmp_path / f"{name}.json"
        p.write_text(tvm.ir.save_json(tvm.IRModule({"main": func})))
        inputs.append(ms.runner.RunnerInput(str(p), "cpu", ms.arg_info.ArgInfo.from_prim_func(func)))
    return inputs


def test_screening_times_only_candidates_near_the_best(tmp_path):
    from opsearch.search.runner import LocalBuildRunner, MeasureConfig
    from opsearch.targets import resolve

    cfg = MeasureConfig(screen_ratio=1.5, screen_keep=1)
    runner = LocalBuildRunner(resolve("cpu").config, cfg, build_workers=2)
    try:
        fast, slow = [f.result() for f in runner.run(_fast_and_slow(tmp_path))]
        # a later batch: the slow one alone is its batch's fastest, so it is timed fully
        (again,) = [f.result() for f in runner.run(_fast_and_slow(tmp_path)[1:])]
    finally:
        runner.shutdown()
    assert fast.error_msg is None and slow.error_msg is None
    assert len(fast.run_secs) == cfg.repeat and len(slow.run_secs) == 1
    fast_us = 1e6 * sum(map(float, fast.run_secs)) / cfg.repeat
    assert float(slow.run_secs[0]) * 1e6 > cfg.screen_ratio * fast_us, (slow.run_secs, fast_us)
    assert len(again.run_secs) == cfg.repeat
    assert (runner.timed_fully, runner.screened_out) == (2, 1)


def test_a_queued_candidate_is_measured_first_in_the_next_batch(tmp_path):
    """The tuner queues a workload's default schedule so it compiles beside the first batch: its
    result goes to its callback, not into the batch's results, and it is timed first (the batch
    is screened against it); ``flush`` measures what no batch took along."""
    from opsearch.search.runner import LocalBuildRunner, MeasureConfig
    from opsearch.targets import resolve

    cfg = MeasureConfig(screen_ratio=1.5, screen_keep=1)
    fast, slow = _fast_and_slow(tmp_path)
    got = []
    runner = LocalBuildRunner(resolve("cpu").config, cfg, build_workers=2)
    try:
        runner.add_to_next_batch(fast, lambda secs, err: got.append(("fast", secs, err)))
        (slow_res,) = [f.result() for f in runner.run([slow])]
        assert [g[0] for g in got] == ["fast"] and got[0][2] is None and len(got[0][1]) == cfg.repeat
        assert slow_res.error_msg is None and len(slow_res.run_secs) == 1  # screened against the queued one
        runner.add_to_next_batch(slow, lambda secs, err: got.append(("slow", secs, err)))
        runner.flush()
        runner.flush()  # nothing queued: nothing measured
    finally:
        runner.shutdown()
    assert [g[0] for g in got] == ["fast", "slow"] and got[1][2] is None and len(got[1][1]) >= 1
    assert runner.timed_fully + runner.screened_out == 3


def test_which_screened_candidates_are_timed_fully():
    from opsearch.search.runner import MeasureConfig, to_time_fully

    a = [("TENSOR", "float32", [1, 8, 9])]
    b = [("TENSOR", "float32", [1, 8, 10])]
    cfg = MeasureConfig(screen_ratio=1.5, screen_keep=1)
    # within 1.5x of the batch's fastest; failures (None) are never timed
    assert to_time_fully([a] * 5, [1.0, 1.4, 1.6, None, 3.0], {}, cfg) == [0, 1]
    # an earlier full timing of the same shapes raises the bar; other shapes keep their own
    best = {(("float32", (1, 8, 9)),): 0.5}
    assert to_time_fully([a, a, b, b], [1.0, 0.7, 2.0, 2.9], best, cfg) == [1, 2, 3]
    # the fastest `screen_keep` are timed even when all are far off the best so far
    assert to_time_fully([a, a], [2.0, 2.1], best, cfg) == [0]
    assert to_time_fully([a] * 3, [3.0, 1.0, 2.0], {}, MeasureConfig(screen_ratio=1.0, screen_keep=2)) == [1, 2]


def test_a_screen_ratio_below_one_is_refused():
    from opsearch.errors import OpsearchError
    from opsearch.search.runner import MeasureConfig

    with pytest.raises(OpsearchError, match="screen ratio must be at least 1.0"):
        MeasureConfig(screen_ratio=0.5).check()


def test_warmup_samples_are_timed_then_dropped(tmp_path, monkeypatch):
    import tvm

    from opsearch.search import runner as runner_mod
    from opsearch.targets import resolve

    inp = _inputs(tmp_path)[0]
    seen = []
    real = tvm.runtime.Module.time_evaluator

    def spy(self, name, dev, number=10, repeat=1, min_repeat_ms=0, **kw):
        seen.append(repeat)
        return real(self, name, dev, number=number, repeat=repeat, min_repeat_ms=min_repeat_ms, **kw)

    monkeypatch.setattr(tvm.runtime.Module, "time_evaluator", spy)
    info = [("TENSOR", str(a.dtype), list(a.shape)) for a in inp.args_info]
    cfg = runner_mod.MeasureConfig(repeat=3, warmup=2, min_repeat_ms=1)
    secs = runner_mod.time_candidate(inp.artifact_path, resolve("cpu").config, info, cfg)
    assert seen == [5] and len(secs) == 3 and all(0 < s < 1.0 for s in secs)


def _slow_to_compile(tmp_path):
    """A matmul with its column and reduction loops fully unrolled: 7680 statements, which LLVM
    takes seconds to compile (2.6 s on znver5), against ~0.1 s for the small modules."""
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    x, w = te.placeholder((64, 96), name="x"), te.placeholder((96, 80), name="w")
    k = te.reduce_axis((0, 96), name="k")
    y = te.compute((64, 80), lambda i, j: te.sum(x[i, k] * w[k, j], axis=[k]), name="y")
    func = te.create_prim_func([x, w, y])
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    _, j, kk = sch.get_loops(sch.get_sblock("y"))
    sch.unroll(j)
    sch.unroll(kk)
    p = tmp_path / "unrolled.json"
    p.write_text(tvm.ir.save_json(sch.mod))
    return ms.runner.RunnerInput(str(p), "cpu", ms.arg_info.ArgInfo.from_prim_func(func))


def test_a_compile_far_slower_than_the_runs_median_is_stopped(tmp_path):
    from opsearch.search.runner import BUILD_PREFIX, LocalBuildRunner, MeasureConfig
    from opsearch.targets import resolve

    good = [r for i, r in enumerate(_inputs(tmp_path)) if i != 1]  # three small modules
    cfg = MeasureConfig(screen_ratio=None, compile_limit_factor=2.0, compile_limit_min_s=0.5, compile_limit_after=3)
    runner = LocalBuildRunner(resolve("cpu").config, cfg, build_workers=2)
    try:
        # the slow one is handed out after at least three small ones were compiled
        results = [f.result() for f in runner.run([*good, good[0], _slow_to_compile(tmp_path)])]
    finally:
        runner.shutdown()
    *small, slow = results
    assert all(r.error_msg is None and len(r.run_secs) == cfg.repeat for r in small), [r.error_msg for r in small]
    assert slow.error_msg.startswith(BUILD_PREFIX + "compile stopped after 0.5 s"), slow.error_msg
    assert runner.compiles_stopped == 1
    # what the killed worker had compiled (at least its first module) was compiled again in the
    # parallel phase, not one by one at its timing
    assert 5 <= len(runner.compile_s) <= 7
    assert runner.compile_limit() == 0.5


def test_the_compile_limit_is_off_until_enough_compiles_and_never_above_the_timeout():
    from opsearch.search.runner import LocalBuildRunner, MeasureConfig
    from opsearch.targets import resolve

    runner = LocalBuildRunner(resolve("cpu").config, MeasureConfig(compile_limit_after=3, timeout_sec=30.0),
                              build_workers=1)
    try:
        runner.compile_s = [0.2, 0.3]
        assert runner.compile_limit() is None
        runner.compile_s.append(0.4)
        assert runner.compile_limit() == 10.0  # 20 x 0.3 s is below the 10 s floor
        runner.compile_s = [2.0, 2.0, 2.0]
        assert runner.compile_limit() == 30.0  # 20 x 2 s is above the timeout
        assert runner.compile_summary() == "3 compiles, median 2.00 s, 90th percentile 2.00 s, 0 stopped at the run's limit"
    finally:
        runner.shutdown()


def test_workers_start_with_a_short_unpinned_thread_pool(monkeypatch):
    """TVM's pool threads spin ~0.1-0.3 s after each call and are pinned to cores unless told
    otherwise; the runner's workers get a short spin (the one that timed last must not slow the
    next one's timing) and unpinned threads (pinned, a third to a half of the timings came out at
    twice the kernel's time). The variables live in this process's environment only while a
    runner does, and a user's own value is kept, each on its own."""
    import os

    from opsearch.search import runner as rmod

    assert rmod.WORKER_ENV == {rmod.SPIN_ENV: rmod.WORKER_SPIN_COUNT, rmod.BIND_ENV: "0"}
    for name in rmod.WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    r = rmod.LocalBuildRunner({"kind": "llvm"}, build_workers=2)
    r2 = rmod.LocalBuildRunner({"kind": "llvm"}, build_workers=1)  # two runners alive at once
    try:
        for pool in r.pools + r2.pools:
            assert {n: pool.submit(os.getenv, n).result() for n in rmod.WORKER_ENV} == rmod.WORKER_ENV
        assert {n: os.environ.get(n) for n in rmod.WORKER_ENV} == rmod.WORKER_ENV
    finally:
        r.shutdown()
    assert {n: os.environ.get(n) for n in rmod.WORKER_ENV} == rmod.WORKER_ENV  # r2 still lives
    r2.shutdown()
    assert not any(n in os.environ for n in rmod.WORKER_ENV)
    assert all(v == 0 for v in rmod._env_users.values())

    monkeypatch.setenv(rmod.SPIN_ENV, "77")
    r = rmod.LocalBuildRunner({"kind": "llvm"}, build_workers=1)
    try:
        assert r.pools[0].submit(os.getenv, rmod.SPIN_ENV).result() == "77"
        assert r.pools[0].submit(os.getenv, rmod.BIND_ENV).result() == "0"
    finally:
        r.shutdown()
    assert os.environ.get(rmod.SPIN_ENV) == "77" and rmod.BIND_ENV not in os.environ
