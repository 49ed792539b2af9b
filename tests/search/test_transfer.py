"""Transfer between shapes: the search for a new workload is seeded with the best schedules of
the nearest tuned workloads of the same operator, replayed on the new shape."""

from __future__ import annotations

import math

from opsearch import ops
from tests.search.conftest import family_workload


def test_distance_orders_shapes_and_separates_operators():
    wl = family_workload("dilated")
    op = ops.get(wl.op)
    same = op.workload(**wl.json_args())
    near = op.workload(**{**wl.json_args(), "x": [1, 12, 31, 31]})
    far = op.workload(**{**wl.json_args(), "x": [1, 12, 90, 90]})
    assert wl.distance(same) == 0
    assert 0 < wl.distance(near) < wl.distance(far)
    assert wl.distance(family_workload("shift-add")) == math.inf
    # Sizes compare by log ratio (dilation 2 -> 3 in both dimensions).
    assert math.isclose(wl.distance(op.workload(**{**wl.json_args(), "dilation": 3})), 2 * math.log(4 / 3))


def _split_schedule(wl, factor: int):
    """A real schedule of ``wl``: the output block's innermost loop split by ``factor``, outer
    loop parallel."""
    import tvm

    from opsearch.ops.tir import ir_module

    sch = tvm.s_tir.Schedule(ir_module(wl))
    loops = sch.get_loops(sch.get_output_blocks(sch.get_sblock("root"))[0])
    sch.split(loops[-1], [None, factor])
    sch.parallel(loops[0])
    return sch


def test_new_shape_is_seeded_from_nearest_tuned_workload(tmp_path):
    from opsearch import db as dbmod
    from opsearch.db.metaschedule import MetaScheduleDatabase
    from opsearch.db.replay import module_hash, replay, trace_json
    from opsearch.ops.tir import ir_module
    from opsearch.search.verify import check_schedule
    from opsearch.targets import resolve

    db = dbmod.connect(f"sqlite:///{tmp_path / 't.db'}")
    op = ops.get("dilated_conv2d")
    tuned = op.workload(x=[1, 8, 20, 20], weight=[8, 8, 3, 3], padding=2, dilation=2)
    far = op.workload(x=[1, 8, 60, 60], weight=[8, 8, 3, 3], padding=2, dilation=2)
    for wl, factors in ((tuned, (2, 4, 5)), (far, (3,))):
        for i, f in enumerate(factors):
            sch = _split_schedule(wl, f)
            db.add_record(wl, "cpu", module_hash=module_hash(sch.mod), trace=trace_json(sch), run_us=[10.0 + i])
    # Same loop extents as `tuned` (dilation 3, padding 3), so its schedules replay; never tuned.
    new = op.workload(x=[1, 8, 20, 20], weight=[8, 8, 3, 3], padding=3, dilation=3)

    cold = MetaScheduleDatabase(db, "cpu", new, transfer=0)
    assert cold.get_top_k(cold.commit_workload(ir_module(new)), 4) == []

    warm = MetaScheduleDatabase(db, "cpu", new, transfer=1)  # the nearest one only: `tuned`
    seeds = warm.get_top_k(warm.commit_workload(ir_module(new)), 2)
    assert len(seeds) == 2  # capped at k, best first
    traces = [s.as_json()[0] for s in seeds]
    assert traces[0] == db.top_k(tuned, "cpu", 1)[0].trace
    for trace in traces:  # each seed is a schedule of the new shape that computes the right thing
        assert check_schedule(replay(trace, new), new, resolve("cpu")) is None
    assert db.count(new, "cpu") == 0  # seeds are never committed as the new shape's measurements

