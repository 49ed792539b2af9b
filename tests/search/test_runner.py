"""The local build-and-time runner: a batch compiled in parallel workers and timed one at a time
gives the same outcome per candidate as one worker (times for good schedules, ``build:`` errors
for bad modules), in the candidates' order."""

from __future__ import annotations

import pytest


def _inputs(tmp_path):
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from opsearch import ops
    from opsearch.kernels import ir_module

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


@pytest.mark.parametrize("workers", [1, 2])
def test_parallel_compile_then_serial_timing(tmp_path, workers):
    from opsearch.search.runner import BUILD_PREFIX, LocalBuildRunner
    from opsearch.targets import resolve

    runner = LocalBuildRunner(resolve("cpu").config, build_workers=workers)
    try:
        results = [f.result() for f in runner.run(_inputs(tmp_path))]
    finally:
        runner.shutdown()
    assert len(runner.pools) == workers
    assert [r.error_msg is None for r in results] == [True, False, True, True]
    assert results[1].error_msg.startswith(BUILD_PREFIX), results[1].error_msg
    for r in (results[0], results[2], results[3]):
        assert len(r.run_secs) == 5 and all(0 < float(s) < 1.0 for s in r.run_secs)


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
