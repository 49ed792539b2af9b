"""The CPU design space: MetaSchedule's default LLVM rules with unrolling capped at
``LLVM_UNROLL_STEPS``; records whose traces unroll 512 steps (tuned before the cap, or shipped)
still replay and compute the right result."""

from __future__ import annotations

import json

from opsearch import ops, targets

UNROLL_KEY = "meta_schedule.unroll_explicit"


def _spaces(space_generator, wl):
    from tvm.s_tir import meta_schedule as ms

    from opsearch.ops.tir import ir_module

    target = targets.resolve("cpu")
    ctx = ms.TuneContext(mod=ir_module(wl), target=target.tvm(), space_generator=space_generator, task_name="t",
                         rand_state=0, num_threads=1)
    return ctx.generate_design_space()


def _unroll_decisions(trace: list) -> list[tuple[list[int], int | None]]:
    """(the choices, the one taken or None) of each unrolling decision of a trace in its stored
    JSON form (``opsearch.db.replay.trace_json`` gives it for a live schedule)."""
    insts, decisions = trace[0], {d[0]: d[1] for d in trace[1]}
    out = []
    for i, inst in enumerate(insts):
        if inst[0] != "SampleCategorical":
            continue
        var = inst[3][0]
        if any(j[0] == "Annotate" and var in j[1] and UNROLL_KEY in json.dumps(j[2]) for j in insts[i + 1:]):
            choices = [int(c) for c in inst[2][0]]
            out.append((choices, choices[decisions[i]] if i in decisions else None))
    return out


def test_the_cpu_space_is_metaschedules_default_with_unrolling_capped():
    from tvm.s_tir import meta_schedule as ms

    from opsearch.search.space import LLVM_UNROLL_STEPS, design_space

    # odd sizes: 5 channels in, 7 out, a 13x11 input
    wl = ops.get("dilated_conv2d").workload(x=[1, 5, 13, 11], weight=[7, 5, 3, 3], padding=2, dilation=2)
    ours, multistage = design_space(wl, targets.resolve("cpu"))
    assert not multistage
    from opsearch.db.replay import trace_json

    mine, stock = _spaces(ours, wl), _spaces(ms.space_generator.PostOrderApply(), wl)
    assert len(mine) == len(stock) > 1, "the same design spaces as stock MetaSchedule"
    for a, b in zip(mine, stock):
        assert [i.kind.name for i in a.trace.insts] == [i.kind.name for i in b.trace.insts]
        assert [c for c, _ in _unroll_decisions(trace_json(b))] == [[0, 16, 64, 512]]
        assert [c for c, _ in _unroll_decisions(trace_json(a))] == [list(LLVM_UNROLL_STEPS)]
        assert 512 not in LLVM_UNROLL_STEPS


def test_a_shipped_record_unrolling_512_steps_still_replays_and_matches_the_reference():
    from opsearch.db import shipped
    from opsearch.db.records import Record
    from opsearch.db.replay import replay, trace_json
    from opsearch.search.verify import check_schedule

    found = []
    for path in sorted(shipped.schedules_dir().glob("llvm-*.jsonl")):
        for line in path.read_text().splitlines():
            rec = Record.from_json(json.loads(line), source="shipped")
            if any(taken == 512 for _, taken in _unroll_decisions(rec.trace)):
                found.append(rec)
    assert found, "the shipped files hold records tuned with 512-step unrolling"
    # the smallest workload's record: its kernel builds quickly
    rec = min(found, key=lambda r: ops.get(r.workload.op).flops(r.workload))
    sch = replay(rec.trace, rec.workload)
    assert [taken for _, taken in _unroll_decisions(trace_json(sch))] == [512], "the replayed schedule unrolls 512 steps"
    assert check_schedule(sch, rec.workload, targets.resolve("cpu")) is None


def test_the_population_grows_with_the_sketches_of_two_tiled_stages_and_shrinks_beyond():
    from opsearch.ops.tir import ir_module
    from opsearch.search.space import (MULTISTAGE_POPULATION, TWO_STAGE_POPULATION_SCALE, population,
                                       reduction_stages)

    one = ops.get("dilated_conv2d").workload(x=[1, 5, 13, 11], weight=[7, 5, 3, 3], padding=2, dilation=2)
    two = ops.get("condconv2d").example("mbv2_dw_e8")  # the experts' mix and the convolution
    many = ops.get("dct_channel_attention").example("fcanet50_s4")  # three reduction stages
    mods = {name: ir_module(wl) for name, wl in (("one", one), ("two", two), ("many", many))}
    assert reduction_stages(mods["one"]) == 1 and reduction_stages(mods["two"]) == 2 and reduction_stages(mods["many"]) > 2
    assert population(mods["one"], 100) == 100
    assert population(mods["two"], 100) == 100 * TWO_STAGE_POPULATION_SCALE > 100
    assert population(mods["many"], 100) == MULTISTAGE_POPULATION < 100
    assert population(mods["many"], 20) == 20, "a smaller configured population is kept"
