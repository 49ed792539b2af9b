"""Measuring through a TVM RPC tracker: the ``--rpc HOST:PORT:KEY`` checks and a runner that
notices when its servers go away.

MetaSchedule's ``RPCRunner`` asks the tracker for a session per candidate and waits without a
limit: once the last server under the key is gone (killed, rebooted, unplugged) the tracker
queues the request forever and a tune hangs with no output. :class:`WatchedRPCRunner` wraps it:
before each batch and every few seconds while a candidate is out, it asks the tracker how many
servers are registered under the key. A candidate whose session broke while servers remain is
sent again (once); with none left the batch is abandoned, its worker processes killed, and the
tune stops with one :class:`RPCServerLost` line. Nothing of an abandoned batch is stored, so a
rerun measures it again when a server is back; what earlier batches stored stays.
"""

from __future__ import annotations

import socket
import time

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerInput, RunnerResult

from ..errors import OpsearchError

# Words of the runner's error text when a session broke under the candidate (not the kernel's fault).
_LOST_SESSION = ("connection", "socket", "closed", "broken pipe", "reset by peer", "errno 104", "errno 32")


class RPCServerLost(OpsearchError):
    """Every RPC server under the key left the tracker while a tune was measuring."""


def parse_rpc(rpc: str) -> tuple[str, int, str]:
    """``HOST:PORT:KEY`` -> (host, port, key), or a one-line error."""
    parts = rpc.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[0] or not parts[2]:
        raise OpsearchError(f"--rpc must be HOST:PORT:KEY, got '{rpc}'")
    return parts[0], int(parts[1]), parts[2]


def _summary(host: str, port: int, timeout: float) -> dict:
    from tvm import rpc

    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise OpsearchError(f"cannot reach RPC tracker {host}:{port}: {e.strerror or e}") from None
    try:
        return rpc.connect_tracker(host, port).summary()
    except Exception as e:  # noqa: BLE001
        raise OpsearchError(f"RPC tracker {host}:{port} did not answer: {str(e).strip().splitlines()[-1]}") from None


def _servers_in(summary: dict, key: str) -> int:
    names = [str(s.get("key", "")) for s in summary.get("server_info", [])]
    return sum(n == f"server:{key}" or n.startswith(f"server:{key}:") for n in names)


def count_servers(host: str, port: int, key: str, timeout: float = 10.0) -> int:
    """How many servers are registered with the tracker under ``key`` now, free or busy.

    The tracker's ``queue_info`` keeps a key after its last server died; ``server_info`` lists the
    live registrations (``server:KEY``), so that is what is counted."""
    return _servers_in(_summary(host, port, timeout), key)


def check_tracker(host: str, port: int, key: str, timeout: float = 10.0) -> None:
    """Fail early, in one line, when the tracker is unreachable or has no server for ``key``."""
    summary = _summary(host, port, timeout)
    if _servers_in(summary, key) == 0:
        keys = {str(s.get("key", "")).removeprefix("server:").split(":")[0] for s in summary.get("server_info", [])}
        raise OpsearchError(f"RPC tracker {host}:{port} has no server with key '{key}' (keys: {', '.join(sorted(keys)) or 'none'})")


def check_remote_device(host: str, port: int, key: str, kind: str, timeout: float = 30.0) -> None:
    """Fail early, in one line, when the servers under ``key`` have no device of ``kind`` (a CPU
    server asked to time CUDA kernels): otherwise every candidate would fail at run time and the
    whole budget would be spent recording the same error."""
    from tvm import rpc

    try:
        session = rpc.connect_tracker(host, port).request(key, priority=1, session_timeout=int(timeout))
    except Exception as e:  # noqa: BLE001
        raise OpsearchError(f"RPC tracker {host}:{port} gave no session for key '{key}': {str(e).strip().splitlines()[-1]}") from None
    try:
        present = bool(session.device("cpu" if kind == "llvm" else kind, 0).exist)
    except Exception as e:  # noqa: BLE001 - a runtime built without this device kind raises
        present, why = False, str(e).strip().splitlines()[-1]
    else:
        why = "device 0 does not exist"
    del session  # frees the server now: a traceback would otherwise hold the session open
    if not present:
        raise OpsearchError(f"RPC server with key '{key}' at {host}:{port} has no {kind} device ({why}): "
                            f"it cannot measure {kind} kernels")


@derived_object
class WatchedRPCRunner(PyRunner):
    """MetaSchedule's ``RPCRunner`` with a liveness check on the tracker (see the module docstring).

    ``poll_s`` is how often a waiting candidate asks the tracker; ``lost`` holds the one-line
    reason once the servers are gone (the tuner raises it instead of MetaSchedule's error)."""

    def __init__(self, host: str, port: int, key: str, rpc_config, evaluator_config, poll_s: float = 2.0):
        super().__init__()
        self.host, self.port, self.key = host, port, key
        self.rpc_config, self.evaluator_config = rpc_config, evaluator_config
        self.poll_s = poll_s
        self.lost: str | None = None
        self.resent = 0
        self._inner = None

    def inner(self):
        if self._inner is None:
            self._inner = ms.runner.RPCRunner(rpc_config=self.rpc_config, evaluator_config=self.evaluator_config,
                                              max_workers=1)
        return self._inner

    def servers(self) -> int:
        try:
            return count_servers(self.host, self.port, self.key, timeout=self.poll_s * 2)
        except OpsearchError:
            return 0  # the tracker itself went away: no server can be handed out either

    def abandon(self, measured: int, left: int) -> None:
        """No server left: kill the workers waiting on the tracker and remember why."""
        if self.lost is None:
            self.lost = (f"RPC server with key '{self.key}' left tracker {self.host}:{self.port} mid-run "
                         f"({measured} candidates of the batch in flight done, {left} not measured and not stored; "
                         "earlier batches are kept — rerun the same command to resume once a server is back)")
        self.shutdown()
        raise RPCServerLost(self.lost)

    def shutdown(self) -> None:
        if self._inner is not None:
            pool, self._inner = self._inner.pool, None
            # A worker blocked in the tracker's request() holds its pipe's read lock, and TVM's
            # PopenPoolExecutor.shutdown closes that pipe under the pool's lock: it waits forever,
            # the lock stays taken, and every queued candidate's thread (then interpreter exit,
            # which joins them) waits on it. So: cancel the queued candidates, kill the worker
            # processes (the blocked read ends with EOF and its thread exits), and mark the pool
            # shut down so its destructor does not try again.
            pool._threadpool.shutdown(wait=False, cancel_futures=True)
            for worker in list(getattr(pool, "_worker_map", {}).values()):
                proc = getattr(worker, "_proc", None)
                if proc is not None:
                    try:
                        proc.kill()
                    except OSError:
                        pass
            pool._shutdown = True

    def run(self, runner_inputs: list[RunnerInput]):
        if self.lost is not None:
            raise RPCServerLost(self.lost)
        if self.servers() == 0:
            self.abandon(0, len(runner_inputs))
        batch = _Batch(self, list(runner_inputs))
        return [_WatchedFuture(batch, i) for i in range(len(runner_inputs))]


class _Batch:
    """One batch's inputs and inner futures; a broken candidate is resent once."""

    def __init__(self, runner: WatchedRPCRunner, inputs: list[RunnerInput]):
        self.runner = runner
        self.inputs = inputs
        self.futures = list(runner.inner().run(inputs))
        self.resent = [False] * len(inputs)
        self.results: list[RunnerResult | None] = [None] * len(inputs)
        self.last_poll = time.monotonic()

    def _alive(self) -> bool:
        self.last_poll = time.monotonic()
        return self.runner.servers() > 0

    def _give_up(self) -> None:
        done = sum(r is not None for r in self.results)
        self.runner.abandon(done, len(self.inputs) - done)

    def result(self, i: int) -> RunnerResult:
        if self.results[i] is not None:
            return self.results[i]
        while True:
            fut = self.futures[i]
            while not fut.done():
                if self.runner.lost is not None:
                    raise RPCServerLost(self.runner.lost)
                if time.monotonic() - self.last_poll >= self.runner.poll_s and not self._alive():
                    self._give_up()
                time.sleep(0.05)
            res = fut.result()
            err = str(res.error_msg or "")
            if err and any(w in err.lower() for w in _LOST_SESSION):
                if not self._alive():
                    self._give_up()
                if not self.resent[i]:  # the session broke, another server is there: once more
                    self.resent[i] = True
                    self.runner.resent += 1
                    self.futures[i] = self.runner.inner().run([self.inputs[i]])[0]
                    continue
            self.results[i] = res
            return res


@derived_object
class _WatchedFuture(PyRunnerFuture):
    def __init__(self, batch: _Batch, index: int):
        super().__init__()
        self.batch, self.index = batch, index

    def done(self) -> bool:
        b = self.batch
        return b.results[self.index] is not None or b.runner.lost is not None or b.futures[self.index].done()

    def result(self) -> RunnerResult:
        return self.batch.result(self.index)
