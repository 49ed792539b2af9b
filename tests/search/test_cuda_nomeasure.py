"""CUDA without a GPU: candidates are compiled for real with nvcc and stored as unmeasured;
a candidate that does not compile is recorded with nvcc's message."""

from __future__ import annotations

import pytest

from opsearch import ops
from opsearch.runtime import cuda
from opsearch.errors import OpsearchError
from opsearch.search import tune

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(cuda.nvcc_path() is None, reason="nvcc is not installed")]


def test_no_measure_compiles_and_stores_unmeasured(tmp_path):
    from opsearch import db as dbmod

    db = dbmod.connect(f"sqlite:///{tmp_path / 'cuda.db'}")
    wl = ops.get("dilated_conv1d").workload(x=[1, 16, 64], weight=[16, 16, 3], dilation=2)
    (r,) = tune(wl, "cuda:sm_90", db, trials=6, batch=6, measure=False)
    history = db.history(wl, "cuda:sm_90")
    assert len(history) == 6 and r.trials_run == 6
    assert {rec.status for rec in history} <= {"unmeasured", "build_error"}
    assert any(rec.status == "unmeasured" for rec in history)
    assert all(rec.run_us == () and rec.mean_us is None for rec in history)
    assert db.best(wl, "cuda:sm_90", shipped=False) is None  # never served as measured
    assert db.count(wl, "cpu") == 0 if hasattr(db, "count") else True


def test_nvcc_failure_is_recorded_with_its_message():
    """A schedule whose static shared memory exceeds the 48 KiB limit: ptxas rejects it."""
    import tvm
    from tvm import te
    from tvm.s_tir.meta_schedule.builder import BuilderInput

    from opsearch.search.builder import PoolBuilder

    a = te.placeholder((16384,), "float32", "a")
    k = te.reduce_axis((0, 16384), "k")
    b = te.compute((1024,), lambda i: te.sum(a[k] * i.astype("float32"), axis=k), name="b")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b]))
    blk = sch.get_sblock("b")
    cached = sch.cache_read(blk, 0, "shared")
    i, _ = sch.get_loops(blk)
    bx, tx = sch.split(i, [None, 256])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    sch.compute_at(cached, bx)  # every block stages all of a (64 KiB) in shared memory
    (ci,) = sch.get_loops(cached)[-1:]
    cio, cii = sch.split(ci, [None, 256])
    sch.bind(cii, "threadIdx.x")
    target = tvm.target.Target({"kind": "cuda", "arch": "sm_90", "max_threads_per_block": 1024,
                                "max_shared_memory_per_block": 49152, "thread_warp_size": 32,
                                "registers_per_block": 65536})
    builder = PoolBuilder(max_workers=1, check_cuda=True)
    try:
        (res,) = builder.build([BuilderInput(sch.mod, target)])
    finally:
        builder.shutdown()
    assert res.artifact_path is None
    assert res.error_msg.startswith("nvcc failed for sm_90:"), res.error_msg
    assert "shared" in res.error_msg


def test_cuda_needs_rpc_or_no_measure(tmp_path):
    wl = ops.get("dilated_conv1d").workload(x=[1, 16, 64], weight=[16, 16, 3])
    with pytest.raises(OpsearchError, match=r"no GPU here to measure cuda:sm_90: pass --rpc"):
        tune(wl, "cuda:sm_90", f"sqlite:///{tmp_path / 'x.db'}", trials=4)
