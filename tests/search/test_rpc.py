"""The RPC path end to end: a real TVM RPC tracker and CPU server on 127.0.0.1 measure the
candidates; an unreachable tracker, a missing key or a server without the target's device
gives a one-line error; a server killed mid-run ends the tune on the others or in one line."""

from __future__ import annotations

import threading
import time

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


def _server(tracker, key):
    """A CPU server registered under ``key`` (its own process), once the tracker lists it."""
    from tvm.rpc import server as rpc_server

    from opsearch.search.rpc import count_servers

    before = count_servers("127.0.0.1", tracker.port, key)
    server = rpc_server.Server(host="127.0.0.1", port=9300, port_end=9400, key=key,
                               tracker_addr=("127.0.0.1", tracker.port), silent=True)
    deadline = time.time() + 30
    while count_servers("127.0.0.1", tracker.port, key) <= before and time.time() < deadline:
        time.sleep(0.3)
    return server


def _no_threads_left(before: set, within: float = 20.0) -> None:
    """Every thread started since ``before`` ends (Python's exit joins the runner's pool threads)."""
    deadline = time.monotonic() + within
    for t in set(threading.enumerate()) - before:
        t.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == [], f"threads still running after the tune: {left}"


def _kill_on_run(monkeypatch, server, nth):
    """Kill ``server`` right after the runner has sent out its ``nth`` batch (mid-batch)."""
    from opsearch.search.rpc import WatchedRPCRunner

    original, calls = WatchedRPCRunner.run, []

    def run(self, inputs):
        futures = original(self, inputs)
        calls.append(len(inputs))
        if len(calls) == nth:
            server.terminate()
        return futures

    monkeypatch.setattr(WatchedRPCRunner, "run", run)
    return calls


def test_last_server_killed_mid_batch_stops_in_one_line(rpc_tracker, tmp_path, monkeypatch):
    """The only server under the key dies while the second batch is out: the tune stops within
    seconds with one line, the first batch stays stored, nothing of the second is stored."""
    from opsearch import db as dbmod
    from opsearch.search.rpc import RPCServerLost

    key = "opsearch-test-lost"
    server = _server(rpc_tracker, key)
    calls = _kill_on_run(monkeypatch, server, 2)
    db = dbmod.connect(f"sqlite:///{tmp_path / 'lost.db'}")
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 64], weight=[8, 8, 3], dilation=2)
    t0 = time.monotonic()
    threads = set(threading.enumerate())
    try:
        with pytest.raises(RPCServerLost, match=rf"RPC server with key '{key}' left tracker 127.0.0.1:\d+ mid-run") as info:
            tune(wl, "cpu", db, trials=12, batch=4, rpc=f"127.0.0.1:{rpc_tracker.port}:{key}")
    finally:
        server.terminate()
    assert time.monotonic() - t0 < 120
    _no_threads_left(threads)  # an abandoned candidate's thread would block interpreter exit
    assert "\n" not in str(info.value) and "rerun" in str(info.value)
    assert len(calls) == 2
    history = db.history(wl, "cpu")
    assert len(history) == 4, [(r.status, r.error) for r in history]  # the first batch, none of the second
    assert sum(r.status == "ok" for r in history) >= 1
    # a rerun with a server back resumes: 4 stored + 4 trials (a repeat is answered from the DB)
    server = _server(rpc_tracker, key)
    try:
        (r,) = tune(wl, "cpu", db, trials=8, batch=4, rpc=f"127.0.0.1:{rpc_tracker.port}:{key}")
    finally:
        server.terminate()
    assert r.trials_before == 4 and r.trials_run == 4 and len(db.history(wl, "cpu")) == 8 - r.cached


def test_no_server_left_before_a_batch(rpc_tracker, tmp_path):
    """The server dies between batches (killed from the progress callback): the next batch is not
    sent; one line, the first batch stays."""
    from opsearch import db as dbmod
    from opsearch.search.rpc import RPCServerLost

    key = "opsearch-test-gone"
    server = _server(rpc_tracker, key)
    db = dbmod.connect(f"sqlite:///{tmp_path / 'gone.db'}")
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 48], weight=[8, 8, 3], dilation=3)

    def progress(event):
        if event["event"] == "batch":
            server.terminate()
            time.sleep(1.0)  # the tracker drops the registration once the socket closes

    try:
        with pytest.raises(RPCServerLost, match=r"0 candidates of the batch in flight done, 4 not measured"):
            tune(wl, "cpu", db, trials=12, batch=4, rpc=f"127.0.0.1:{rpc_tracker.port}:{key}", progress=progress)
    finally:
        server.terminate()
    assert len(db.history(wl, "cpu")) == 4


def test_one_of_two_servers_killed_the_tune_finishes(rpc_tracker, tmp_path, monkeypatch):
    """Two servers under the key, one killed mid-batch: the tune finishes on the other, every
    trial is stored, and no candidate was stored as failed because its session broke."""
    from opsearch import db as dbmod

    key = "opsearch-test-two"
    first = _server(rpc_tracker, key)
    second = _server(rpc_tracker, key)
    _kill_on_run(monkeypatch, first, 2)
    db = dbmod.connect(f"sqlite:///{tmp_path / 'two.db'}")
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 80], weight=[8, 8, 3], dilation=2)
    try:
        (r,) = tune(wl, "cpu", db, trials=12, batch=4, rpc=f"127.0.0.1:{rpc_tracker.port}:{key}")
    finally:
        first.terminate()
        second.terminate()
    history = db.history(wl, "cpu")
    assert r.trials_run == 12 and len(history) == 12
    broken = [rec.error for rec in history if rec.status != "ok" and "onnection" in (rec.error or "")]
    assert broken == []
