"""The end of a search: one-step neighbours of the best records (``opsearch.search.refine``)."""

from __future__ import annotations

import math

import pytest

from opsearch import db as dbmod
from opsearch.errors import OpsearchError
from opsearch.search import refine as refine_mod
from opsearch.search import tune

from .conftest import family_workload


@pytest.mark.parametrize("decision,limit", [([2, 3, 1, 4], 0), ([1, 12, 5, 1], 0), ([6, 1, 1, 64], 64), ([7], 0)])
def test_tile_neighbours_move_one_prime_factor_and_keep_the_product(decision, limit):
    out = refine_mod.tile_neighbours(decision, limit)
    assert len({tuple(t) for t in out}) == len(out) and decision not in out
    for t in out:
        assert math.prod(t) == math.prod(decision) and all(f >= 1 for f in t)
        changed = [i for i, (a, b) in enumerate(zip(t, decision)) if a != b]
        assert len(changed) == 2
        i, j = changed  # one level lost a prime factor p, another gained it
        p = max(t[i], decision[i]) // min(t[i], decision[i])
        assert refine_mod._primes(p) == [p]
        assert (t[i] * p == decision[i] and t[j] == decision[j] * p) or (t[j] * p == decision[j] and t[i] == decision[i] * p)
        if limit:
            assert t[-1] <= limit
    # the count: for every level's distinct prime factors, every other level
    expect = sum(len(refine_mod._primes(f)) * (len(decision) - 1) for f in decision)
    if not limit:
        assert len(out) == expect
    else:  # [6, 1, 1, 64] at most 64 innermost: nothing may move into the last level
        assert all(t[-1] <= 64 for t in out) and len(out) < expect


def test_primes():
    assert refine_mod._primes(1) == [] and refine_mod._primes(12) == [2, 3] and refine_mod._primes(97) == [97]
    assert refine_mod._primes(2 * 3 * 5 * 7 * 49) == [2, 3, 5, 7]


def _design_trace(wl, seed=3):
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from opsearch.ops.tir import ir_module
    from opsearch.search.space import design_space
    from opsearch.targets import resolve

    target = resolve("cpu")
    space, _ = design_space(wl, target)
    ctx = ms.TuneContext(mod=ir_module(wl), target=target.tvm(), space_generator=space, task_name="t",
                         rand_state=seed, num_threads=1)
    (sch, *_) = ctx.generate_design_space()
    return ctx, sch, tvm


def _decisions(trace) -> dict:
    return {i: trace.get_decision(inst) for i, inst in enumerate(trace.insts) if trace.get_decision(inst) is not None}


def test_neighbour_traces_change_exactly_one_decision_and_build():
    from opsearch.db.replay import module_hash

    wl = family_workload("dilated")
    ctx, sch, _ = _design_trace(wl)
    base = _decisions(sch.trace)
    neighbours = refine_mod.neighbour_traces(sch.trace)
    assert len(neighbours) >= 5  # tiles of several loops, unrolling and compute locations
    built, hashes = 0, set()
    postprocs = list(ctx.space_generator.postprocs)
    for tr in neighbours:
        new = _decisions(tr)
        assert new.keys() == base.keys()
        assert sum(str(new[i]) != str(base[i]) for i in base) == 1
        s = refine_mod.build(ctx.mod, tr, postprocs, seed=1)
        if s is not None:  # the built schedule made exactly the decisions asked for
            built += 1
            hashes.add(module_hash(s.mod))
            got = _decisions(s.trace)
            assert got.keys() == new.keys() and all(str(got[i]) == str(new[i]) for i in new)
    assert built >= len(neighbours) // 2 and len(hashes) >= 2  # most replay, and they are different kernels


def test_a_trace_that_does_not_replay_builds_nothing():
    wl = family_workload("dilated")
    ctx, sch, _ = _design_trace(wl)
    other = family_workload("shift-add")  # another operator's IR: its blocks are not there
    from opsearch.ops.tir import ir_module

    tr = refine_mod.neighbour_traces(sch.trace)[0]
    assert refine_mod.build(ir_module(other), tr, list(ctx.space_generator.postprocs), seed=1) is None


def test_refine_must_be_a_share(tmp_path):
    wl = family_workload("dilated")
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(OpsearchError, match="refine must be a share"):
            tune(wl, "cpu", f"sqlite:///{tmp_path / 'x.db'}", trials=4, refine=bad)


def test_the_last_trials_of_a_run_are_neighbours_of_earlier_records(tmp_path, monkeypatch, caplog):
    """A run keeps the end of its budget for refinement: each of those candidates is one decision
    away from a record measured before it, and none was measured twice."""
    import logging
    import re

    from tvm.s_tir import Schedule, Trace

    from opsearch.ops.tir import ir_module

    monkeypatch.setattr(refine_mod, "MIN_BUDGET", 8)
    caplog.set_level(logging.INFO, logger="opsearch.search.tuner")
    db = dbmod.connect(f"sqlite:///{tmp_path / 'r.db'}")
    wl = family_workload("dilated")
    # 12 trials: the default schedule, two evolution batches of 4, then int(11 * 0.5) = 5 >= 3 left
    tune(wl, "cpu", db, trials=12, batch=4, include_shipped=False, verify=False, refine=0.5)
    (n,) = re.findall(r"(\d+) of its candidates came from refinement", caplog.text)
    assert 3 <= int(n) <= 5
    hist = db.history(wl, "cpu")
    assert len(hist) == 12 and len({r.module_hash for r in hist}) == 12
    mod = ir_module(wl)

    def decisions(rec):
        sch = Schedule(mod)
        Trace.apply_json_to_schedule(rec.trace, sch)
        return _decisions(sch.trace)

    searched = [r for r in hist if r.trace and decisions(r)]  # the default schedule has no decisions
    refined = searched[-3:]
    for rec in refined:
        d = decisions(rec)
        earlier = [decisions(r) for r in searched[: searched.index(rec)] if r.status == "ok"]
        one_step = any(e.keys() == d.keys() and sum(str(e[i]) != str(d[i]) for i in d) == 1 for e in earlier)
        # or an earlier record's decisions, in order, carried into another sketch
        transplant = any(list(map(str, e.values())) == list(map(str, d.values())) for e in earlier)
        assert one_step or transplant, f"record {rec.id} {d} is not one decision away from an earlier one: {earlier}"


def test_a_stalled_search_refines_before_its_last_trials(tmp_path, monkeypatch, caplog):
    """With every batch counted as no faster (STALL_GAIN 1), the evolution stalls after
    STALL_TRIALS proposals and refinement takes the next batch, well before the run's last
    trials; the run still measures its budget exactly, each candidate once."""
    import logging
    import re

    from opsearch.search import strategy as strategy_mod

    monkeypatch.setattr(refine_mod, "MIN_BUDGET", 8)
    monkeypatch.setattr(strategy_mod, "STALL_TRIALS", 4)
    monkeypatch.setattr(strategy_mod, "STALL_GAIN", 1.0)
    caplog.set_level(logging.INFO, logger="opsearch.search.tuner")
    db = dbmod.connect(f"sqlite:///{tmp_path / 's.db'}")
    wl = family_workload("dilated")
    # 17 trials: the default, then batches of 4; int(16 * 0.125) = 2 kept for the end
    tune(wl, "cpu", db, trials=17, batch=4, include_shipped=False, verify=False, refine=0.125)
    ((refined, stalled),) = re.findall(r"(\d+) of its candidates came from refinement.*?(\d+) of them while the evolution stalled",
                                        caplog.text)
    assert int(stalled) >= 4, caplog.text
    assert int(refined) >= int(stalled)
    hist = db.history(wl, "cpu")
    assert len(hist) == 17 and len({r.module_hash for r in hist}) == 17


def test_refinement_is_off_below_its_minimum_budget(tmp_path):
    """Under MIN_BUDGET trials (the test suite's tiny runs) the evolution proposes everything."""
    from opsearch.search.tuner import Tuner

    db = dbmod.connect(f"sqlite:///{tmp_path / 'o.db'}")
    wl = family_workload("dilated")
    t = Tuner([wl], "cpu", db)
    assert t._refiner(wl, None, refine_mod.MIN_BUDGET - 1, lambda: None) == (0, None)
    trials, refiner = t._refiner(wl, None, 256, lambda: None)
    assert trials == 64 and refiner is not None


@pytest.mark.parametrize("decision,limit", [([48, 1, 1, 16], 0), ([24, 8], 0), ([6, 1, 1, 64], 64), ([7], 0), ([2, 2], 0)])
def test_wide_tile_neighbours_keep_the_product_and_add_only_larger_moves(decision, limit):
    out = refine_mod.wide_tile_neighbours(decision, limit)
    near = {tuple(t) for t in refine_mod.tile_neighbours(decision, 0)}
    assert len({tuple(t) for t in out}) == len(out) and decision not in out
    for t in out:
        assert math.prod(t) == math.prod(decision) and all(f >= 1 for f in t)
        assert tuple(t) not in near  # more than one prime move away
        changed = [i for i, (a, b) in enumerate(zip(t, decision)) if a != b]
        assert len(changed) == 2  # still only two levels change
        if limit:
            assert t[-1] <= limit
    # the moves that were missing on vit_mlp_fc1 (refine.py's docstring)
    if decision == [48, 1, 1, 16]:
        assert [1, 48, 1, 16] in out and [1, 1, 1, 768] in out
    if decision == [24, 8]:
        assert [16, 12] in out
    if decision in ([7], [2, 2]):  # one level, or nothing larger than a prime move to make
        assert out == []


def _changed_tilings(base: dict, traces) -> list:
    """(trace, its decisions, the indices of those that differ from ``base``) of each trace; only
    tilings may differ."""
    out = []
    for tr in traces:
        new = _decisions(tr)
        diff = [i for i in base if str(new[i]) != str(base[i])]
        assert all(tr.insts[i].kind.name == "SamplePerfectTile" for i in diff)
        out.append((tr, new, diff))
    return out


def _built(ctx, traces) -> int:
    """How many of ``traces`` replay and pass the space's postprocessors."""
    postprocs = list(ctx.space_generator.postprocs)
    return sum(refine_mod.build(ctx.mod, tr, postprocs, seed=1) is not None for tr in traces)


def test_wide_neighbour_traces_change_one_tiling_and_build():
    wl = family_workload("dilated")
    ctx, sch, _ = _design_trace(wl)
    base = _decisions(sch.trace)
    wide = refine_mod.neighbour_traces(sch.trace, wide=True)
    near = {str(_decisions(t)) for t in refine_mod.neighbour_traces(sch.trace)}
    assert wide, "a design trace of dilated_conv2d has tiles with more than one prime factor"
    for _, new, diff in _changed_tilings(base, wide):
        assert len(diff) == 1
        assert str(new) not in near
    assert _built(ctx, wide) >= 1


@pytest.mark.parametrize("knob,share", [("WIDE_SHARE", 0.0), ("WIDE_SHARE", 0.5), ("WIDE_SHARE", 1.0),
                                        ("SWAP_SHARE", 0.25), ("SWAP_SHARE", 0.5)])
def test_a_centres_pool_mixes_larger_moves_in_at_their_share(monkeypatch, knob, share):
    monkeypatch.setattr(refine_mod, knob, share)
    r = refine_mod.Refiner(top=lambda k: [], seen=set, seed=5)
    near, other = [f"n{i}" for i in range(200)], [f"o{i}" for i in range(200)]
    given = list(other) if share else []
    out = r._mixed(list(near), list(given), []) if knob == "WIDE_SHARE" else r._mixed(list(near), [], list(given))
    assert sorted(out) == sorted(near + given)  # nothing lost or repeated
    head = out[:100]  # while both lists last, about the knob's share of the picks are from its list
    got = sum(x.startswith("o") for x in head) / len(head)
    assert abs(got - share) <= 0.15


@pytest.mark.parametrize("a,b,limit", [([1, 2, 4, 16], [2, 1, 1, 14], 0), ([3, 1, 2, 6], [4, 5, 1, 1], 0),
                                       ([1, 1, 8, 4], [2, 3, 1, 64], 64), ([5, 1, 1, 1], [2, 2, 2, 2], 0), ([2, 3, 5], [7, 1, 1], 0)])
def test_inner_swaps_move_one_loops_innermost_factor_out_and_a_prime_of_another_in(a, b, limit):
    out = refine_mod.inner_swaps(a, b, limit)
    assert len({(tuple(x), tuple(y)) for x, y in out}) == len(out)
    for x, y in out:
        assert math.prod(x) == math.prod(a) and math.prod(y) == math.prod(b)
        assert x[-1] == 1 and sum(u != v for u, v in zip(x, a)) == 2  # a's innermost went wholly to one level
        p = y[-1] // b[-1]
        assert y[-1] == b[-1] * p and refine_mod._primes(p) == [p]  # b's innermost gained one prime
        assert sum(u != v for u, v in zip(y, b)) == 2
        if limit:
            assert y[-1] <= limit
    moves_in = sum(len(refine_mod._primes(f)) for f in b[:-1])
    if a[-1] == 1 or moves_in == 0:
        assert out == []
    elif not limit:
        assert len(out) == (len(a) - 1) * moves_in
    else:  # b's innermost is at its limit already: nothing may move in
        assert out == []
    if (a, b) == ([1, 2, 4, 16], [2, 1, 1, 14]):  # our resnet50_s2 tiles -> stock's shape (refine.py)
        assert ([1, 2, 64, 1], [1, 1, 1, 28]) in out


def test_inner_swap_traces_change_two_tilings_and_build():
    wl = family_workload("dilated")
    ctx, sch, _ = _design_trace(wl)
    base = _decisions(sch.trace)
    swaps = refine_mod.inner_swap_traces(sch.trace)
    assert swaps, "a design trace of dilated_conv2d has spatial tiles to reshape"
    for _, new, diff in _changed_tilings(base, swaps):
        assert len(diff) == 2
        assert all(len(new[i]) >= 3 for i in diff)  # spatial tiles only
        assert any(int(new[i][-1]) == 1 != int(base[i][-1]) for i in diff)
    assert _built(ctx, swaps) >= 1


def _cache_writes(trace) -> int:
    return sum(inst.kind.name == "CacheWrite" for inst in trace.insts)


def test_sketch_transplants_carry_every_decision_into_the_other_design_spaces():
    """MetaSchedule's multi-level tiling offers write-cache variants of one tiling (sketches);
    a transplant is the same decisions in another sketch, and it builds to a different kernel."""
    from opsearch.db.replay import module_hash

    wl = family_workload("shift-add")
    ctx, sch, _ = _design_trace(wl, seed=7)
    sketches = [s.trace for s in ctx.generate_design_space()]
    assert len({_cache_writes(t) for t in sketches}) >= 2, "the space has sketches with and without a write cache"
    own = [str(d) for d in _decisions(sch.trace).values()]
    out = refine_mod.sketch_transplants(sch.trace, sketches)
    assert 2 <= len(out) <= len(sketches)
    postprocs = list(ctx.space_generator.postprocs)
    built = {}
    for tr in out:
        assert [str(d) for d in _decisions(tr).values()] == own
        s = refine_mod.build(ctx.mod, tr, postprocs, seed=1)
        if s is not None:
            built[module_hash(s.mod)] = _cache_writes(s.trace)
    assert len(built) >= 2 and len(set(built.values())) >= 2  # other kernels, with and without the cache
    # a matmul's sketches sample fewer tiles: nothing carries over to or from them
    from opsearch import ops

    ctx2, sch2, _ = _design_trace(ops.get("shift_linear").workload(x=[5, 24], sign=[40, 24], shift=[40, 24]))
    assert refine_mod.sketch_transplants(sch2.trace, sketches) == []
    assert refine_mod.sketch_transplants(sch.trace, [s.trace for s in ctx2.generate_design_space()]) == []


def test_refinement_measures_the_best_in_its_other_sketches_first():
    from opsearch.db.replay import module_hash

    wl = family_workload("shift-add")
    ctx, sch, _ = _design_trace(wl, seed=7)
    postprocs = list(ctx.space_generator.postprocs)
    best = refine_mod.build(ctx.mod, sch.trace, postprocs, seed=1)
    assert best is not None

    class Rec:
        trace = best.trace

    r = refine_mod.Refiner(top=lambda k: [Rec()], seen=lambda: {module_hash(best.mod)}, seed=2)
    batch = r.candidates(ctx, None, 6)
    assert 1 <= r.transplanted < len(batch) <= 6
    own = [str(d) for d in _decisions(best.trace).values()]
    for c in batch[: r.transplanted]:  # same decisions, another kernel
        assert [str(d) for d in _decisions(c.sch.trace).values()] == own
        assert module_hash(c.sch.mod) != module_hash(best.mod)
    first = r.transplanted
    again = r.candidates(ctx, None, 6)  # nothing is proposed twice
    assert r.transplanted == first
    assert {module_hash(c.sch.mod) for c in again}.isdisjoint(module_hash(c.sch.mod) for c in batch)


def _unroll_limits(sch) -> list[int]:
    """The ``pragma_auto_unroll_max_step`` values a post-processed schedule's trace sets."""
    return [int(inst.inputs[1]) for inst in sch.trace.insts
            if inst.kind.name == "Annotate" and str(inst.attrs[0]) == "pragma_auto_unroll_max_step"]


def test_unrolled_trace_offers_more_unrolling_and_takes_it():
    from tvm.s_tir import Schedule

    from opsearch.search.space import LLVM_UNROLL_STEPS

    wl = family_workload("dilated")
    ctx, sch, _ = _design_trace(wl)
    base = _decisions(sch.trace)
    tr = refine_mod.unrolled_trace(sch.trace, 512)
    choice = refine_mod._unroll_choice(tr)
    assert [int(v) for v in choice.attrs[0]] == [*LLVM_UNROLL_STEPS, 512]
    assert math.isclose(sum(float(p) for p in choice.attrs[1]), 1.0)
    new = _decisions(tr)
    assert new.keys() == base.keys()
    (changed,) = [i for i in base if str(new[i]) != str(base[i])]  # the unrolling choice alone
    assert int(new[changed]) == len(LLVM_UNROLL_STEPS)
    built = refine_mod.build(ctx.mod, tr, list(ctx.space_generator.postprocs), seed=1)
    assert built is not None and _unroll_limits(built) and set(_unroll_limits(built)) == {512}
    assert refine_mod.unrolled_trace(built.trace, 512) is None  # it already offers 512
    assert refine_mod.unrolled_trace(Schedule(ctx.mod).trace, 512) is None  # no unrolling choice at all


def test_refinement_also_measures_the_best_with_more_unrolling(monkeypatch):
    from opsearch.db.replay import module_hash

    monkeypatch.setattr(refine_mod, "EXTRA_UNROLL", 512)
    wl = family_workload("dilated")
    ctx, sch, _ = _design_trace(wl)
    best = refine_mod.build(ctx.mod, sch.trace, list(ctx.space_generator.postprocs), seed=1)

    class Rec:
        trace = best.trace

    r = refine_mod.Refiner(top=lambda k: [Rec()], seen=lambda: {module_hash(best.mod)}, seed=2)
    batch = r.candidates(ctx, None, 6)
    assert r.unrolled == 1
    lead = batch[r.transplanted]  # after the transplants, before the one-step neighbours
    assert set(_unroll_limits(lead.sch)) == {refine_mod.EXTRA_UNROLL}
    assert r.candidates(ctx, None, 6) and r.unrolled == 1  # not proposed twice
    monkeypatch.setattr(refine_mod, "EXTRA_UNROLL", 0)
    off = refine_mod.Refiner(top=lambda k: [Rec()], seen=lambda: {module_hash(best.mod)}, seed=2)
    off.candidates(ctx, None, 6)
    assert off.unrolled == 0
