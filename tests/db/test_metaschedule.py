"""A real MetaSchedule tune writes into the opsearch adapter; the best schedule builds and is right."""

from __future__ import annotations

import pytest

import opsearch.db
from opsearch import ops, targets
from opsearch.ops import tir
from opsearch.runtime import kernels

from .tuning import make_builder, make_runner

TRIALS = 8


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """Tune a small causal dilated conv1d for this CPU, one candidate failing on purpose."""
    from tvm.s_tir import meta_schedule as ms

    from opsearch.db.metaschedule import MetaScheduleDatabase
    from opsearch.targets import register_intrinsics

    register_intrinsics("llvm")  # the x86 intrinsics (VNNI on this CPU), whatever imported TVM before

    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 32], weight=[8, 8, 3])
    spec = targets.resolve("cpu")
    work = tmp_path_factory.mktemp("tune")
    db = opsearch.db.connect(f"sqlite:///{work / 'opsearch.db'}")
    run = db.start_run({"trials": TRIALS})
    adapter = MetaScheduleDatabase(db, spec, wl, run_id=run.id)
    ms.tune_tir(tir.ir_module(wl), spec.tvm(), str(work), max_trials_global=TRIALS,
                num_trials_per_iter=TRIALS, builder=make_builder(), runner=make_runner(fail_first=1),
                database=adapter, measure_callbacks=adapter.measure_callbacks(),
                num_tuning_cores=spec.num_cores, seed=7)
    db.finish_run(run.id)
    return db, adapter, wl, spec


def test_tune_writes_every_candidate(tuned):
    db, adapter, wl, spec = tuned
    recs = db.history(wl, spec)
    assert len(recs) == TRIALS == len(adapter) == len(adapter.get_all_tuning_records())
    assert {r.run_id for r in recs} == {db.runs()[0].id}
    failed = [r for r in recs if r.status != "ok"]
    assert [(r.status, r.error) for r in failed] == [("run_error", "injected failure: device lost")]
    assert all(r.run_us and r.mean_us > 0 and len(r.module_hash) > 8 for r in recs if r.status == "ok")
    assert len({r.module_hash for r in recs}) == TRIALS
    assert db.targets() == [spec]  # the full TVM target (with num-cores) is stored


def test_workload_ir_is_stored(tuned):
    import tvm
    import tvm_ffi

    db, _, wl, _ = tuned
    shash, ir_json = db.workload_ir(wl)
    mod = tir.ir_module(wl)
    assert shash == str(tvm_ffi.structural_hash(mod))
    assert tvm_ffi.structural_equal(tvm.ir.load_json(ir_json), mod)


def test_best_schedule_builds_and_matches_reference(tuned):
    import torch

    from opsearch.db.replay import module_hash, replay

    db, _, wl, spec = tuned
    best = db.best(wl, spec)
    assert best.mean_us == min(r.mean_us for r in db.records(status="ok"))
    sch = replay(best.trace, wl)
    assert module_hash(sch.mod) == best.module_hash
    kernel = kernels.build(sch, wl, spec)
    op = ops.get(wl.op)
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 8, 32, generator=g), torch.randn(8, 8, 3, generator=g)
    ref = op.reference(wl.args, x=x.double(), weight=w.double())
    err = float((kernel(x, w).double() - ref).norm() / ref.norm())
    assert err <= 1e-5


def test_queries_are_target_aware(tuned):
    db, adapter, wl, spec = tuned
    mod = tir.ir_module(wl)
    cuda = targets.resolve("cuda:sm_90")
    assert adapter.query_tuning_record(mod, cuda.tvm(), "main") is None  # stock MetaSchedule returns llvm's
    assert adapter.query_schedule(mod, cuda.tvm(), "main") is None
    best = db.best(wl, spec)
    db.add_record(wl, cuda, module_hash="cuda-fake", run_us=[0.5], trace=best.trace, args_info=best.args_info)
    got = adapter.query_tuning_record(mod, cuda.tvm(), "main")
    assert [float(t) for t in got.run_secs] == [0.5e-6]
    llvm = adapter.query_tuning_record(mod, spec.tvm(), "main")
    assert float(llvm.run_secs[0]) * 1e6 == pytest.approx(best.mean_us, rel=1e-4)
    assert adapter.query_ir_module(mod, spec.tvm(), "main") is not None
    top = adapter.get_top_k(adapter.commit_workload(mod), 100)
    assert len(top) == TRIALS - 1  # failures excluded, cuda record excluded
    secs = [float(r.run_secs[0]) for r in top]
    assert secs == sorted(secs)


def test_adapter_rejects_foreign_modules(tuned):
    from opsearch.db.metaschedule import MetaScheduleDatabase

    db, adapter, _, spec = tuned
    other = ops.get("dilated_conv1d").workload(x=[1, 8, 64], weight=[8, 8, 3])
    assert not adapter.has_workload(tir.ir_module(other))
    with pytest.raises(Exception, match="not a workload of this database adapter"):
        adapter.commit_workload(tir.ir_module(other))
    fresh = MetaScheduleDatabase(db, spec, [other])  # a resumed/second adapter sees stored records
    assert len(fresh) == 0 and len(MetaScheduleDatabase(db, spec, tuned[2])) == TRIALS
