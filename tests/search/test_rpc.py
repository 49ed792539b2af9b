"""The RPC path end to end: a real TVM RPC tracker and CPU server on 127.0.0.1 measure the
candidates; an unreachable tracker, a missing key or a server without the target's device
gives a one-line error."""

from __future__ import annotations

import pytest

from opsearch import ops
from opsearch.errors import OpsearchError
from opsearch.search import tune

KEY = "opsearch-test-cpu"


@pytest.fixture(scope="module")
def rpc_tracker():
    from tvm import rpc
    from tvm.rpc import server as rpc_server
    from tvm.rpc import tracker as rpc_tracker_mod

    tracker = rpc_tracker_mod.Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    server = rpc_server.Server(host="127.0.0.1", port=9300, port_end=9400, key=KEY,
                               tracker_addr=("127.0.0.1", tracker.port), silent=True)
    import time

    deadline = time.time() + 30
    while time.time() < deadline:  # wait until the server has registered
        if KEY in {str(k) for k in rpc.connect_tracker("127.0.0.1", tracker.port).summary()["queue_info"]}:
            break
        time.sleep(0.5)
    yield tracker
    server.terminate()
    tracker.terminate()


def test_tune_through_rpc(rpc_tracker, tmp_path):
    from opsearch import db as dbmod

    db = dbmod.connect(f"sqlite:///{tmp_path / 'rpc.db'}")
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 64], weight=[8, 8, 3], dilation=2)
    (r,) = tune(wl, "cpu", db, trials=4, batch=4, rpc=f"127.0.0.1:{rpc_tracker.port}:{KEY}")
    history = db.history(wl, "cpu")
    assert len(history) == 4 and r.trials_run == 4
    assert sum(rec.status == "ok" for rec in history) >= 1, [(rec.status, rec.error) for rec in history]
    assert r.best is not None and r.verified is True and r.best.mean_us > 0


def test_unreachable_tracker_is_one_line(tmp_path):
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 64], weight=[8, 8, 3])
    with pytest.raises(OpsearchError, match=r"cannot reach RPC tracker 127.0.0.1:1: ") as info:
        tune(wl, "cpu", f"sqlite:///{tmp_path / 'x.db'}", trials=4, rpc="127.0.0.1:1:nokey")
    assert "\n" not in str(info.value)


def test_tracker_without_the_key(rpc_tracker, tmp_path):
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 64], weight=[8, 8, 3])
    with pytest.raises(OpsearchError, match=r"has no server with key 'gpu-a100'"):
        tune(wl, "cpu", f"sqlite:///{tmp_path / 'x.db'}", trials=4, rpc=f"127.0.0.1:{rpc_tracker.port}:gpu-a100")


def test_cuda_through_a_cpu_server_is_one_line(rpc_tracker, tmp_path):
    """CUDA measured over RPC needs a server with a GPU: a CPU server under the key is found
    before any candidate is built, and nothing is recorded."""
    from opsearch import db as dbmod

    db = dbmod.connect(f"sqlite:///{tmp_path / 'cuda.db'}")
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 64], weight=[8, 8, 3])
    with pytest.raises(OpsearchError, match=rf"RPC server with key '{KEY}' at 127.0.0.1:\d+ has no cuda device") as info:
        tune(wl, "cuda:sm_90", db, trials=4, batch=4, rpc=f"127.0.0.1:{rpc_tracker.port}:{KEY}")
    assert "\n" not in str(info.value)
    assert db.history(wl, "cuda:sm_90") == []
    # the server is free again afterwards: a CPU tune through it still works
    (r,) = tune(wl, "cpu", db, trials=2, batch=2, rpc=f"127.0.0.1:{rpc_tracker.port}:{KEY}")
    assert r.trials_run == 2 and r.best is not None


@pytest.mark.parametrize("bad", ["localhost", "host:port:key", ":9190:key", "h:1:"])
def test_malformed_rpc(bad, tmp_path):
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 64], weight=[8, 8, 3])
    with pytest.raises(OpsearchError, match=r"--rpc must be HOST:PORT:KEY"):
        tune(wl, "cpu", f"sqlite:///{tmp_path / 'x.db'}", trials=4, rpc=bad)
