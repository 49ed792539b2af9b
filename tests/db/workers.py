"""Child-process bodies for the concurrency tests (spawned; they never import TVM)."""

from __future__ import annotations

import sys
import time

WORKLOADS = [dict(x=[1, 8, 32], weight=[8, 8, 3]), dict(x=[1, 8, 64], weight=[8, 8, 3]),
             dict(x=[1, 16, 32], weight=[16, 16, 3], dilation=2)]
TARGETS = ["llvm:znver3", "cuda:sm_90"]


def _wait(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def commit_many(url: str, worker: int, n: int, start_at: float, prefix: str = "w") -> int:
    """Commit ``n`` records one transaction each; returns how many were new."""
    import opsearch.db
    import opsearch.ops

    op = opsearch.ops.get("dilated_conv1d")
    wls = [op.workload(**a) for a in WORKLOADS]
    db = opsearch.db.connect(url)
    _wait(start_at)
    added = 0
    for j in range(n):
        tag = f"{prefix}{worker}-{j}" if prefix else f"shared-{j}"
        added += db.add_record(wls[j % len(wls)], TARGETS[j % len(TARGETS)], module_hash=tag,
                               run_us=[1.0 + j, 2.0 + j], trace=[[["GetSBlock", [], ["conv", "main"], ["b0"]]], []])
    assert "tvm" not in sys.modules
    db.close()
    return added


def commit_forever(url: str, batch: int) -> None:
    """Commit batches of ``batch`` records (one transaction each) until killed."""
    import opsearch.db
    import opsearch.ops
    from opsearch.db import Record

    wl = opsearch.ops.get("dilated_conv1d").workload(**WORKLOADS[0])
    db = opsearch.db.connect(url)
    big_trace = [[["Annotate", ["b0", "x" * 2000], ["pad"], []]] * 20, []]
    i = 0
    while True:
        db.add_records([Record.new(wl, "llvm:znver3", f"k{i}-{j}", run_us=[float(j)], trace=big_trace)
                        for j in range(batch)])
        print(i, flush=True)
        i += 1
