"""Side-by-side timing of opsearch kernels and PyTorch, each side in its own process.

TVM's thread pool keeps spinning after a call and disturbs timings taken right after it in the
same process, so :func:`compare` runs one worker process per side (``python -m opsearch.bench
WORKER``), alternating sides over rounds, and reports medians. Workers read workload keys on
stdin and print one JSON object per workload.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from . import ops
from .ops.spec import Workload


@dataclass(frozen=True)
class Row:
    workload: Workload
    example: str
    opsearch_ms: float
    torch_ms: float
    rel_error: float

    @property
    def gflops(self) -> float:
        return ops.get(self.workload.op).flops(self.workload) / self.opsearch_ms / 1e6

    @property
    def speedup(self) -> float:
        return self.torch_ms / self.opsearch_ms


def _inputs(wl: Workload, seed: int = 0):
    import torch

    op = ops.get(wl.op)
    gen = torch.Generator().manual_seed(seed)
    a = wl.args
    return {p.name: op.sample(a, p, a[p.name], gen, torch.float32) for p in op.tensors if a[p.name] is not None}


def time_torch_ms(fn, *args, min_ms: float = 50.0, repeat: int = 5) -> float:
    """Median per-call latency of ``fn(*args)`` over ``repeat`` batches of at least ``min_ms``."""
    fn(*args)
    t0 = time.perf_counter()
    fn(*args)
    once = max(time.perf_counter() - t0, 1e-6)
    number = max(1, int(min_ms / 1e3 / once))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*args)
        samples.append((time.perf_counter() - t0) / number * 1e3)
    return statistics.median(samples)


def _worker(side: str, keys: list[str]) -> None:
    import torch

    from .targets import host_cores

    torch.set_num_threads(host_cores())
    for key in keys:
        d = json.loads(key)
        op = ops.get(d["op"])
        wl = op.workload(**d["args"])
        t = _inputs(wl)
        out = {"key": key}
        if side == "opsearch":
            from . import kernels

            k = kernels.default_kernel(wl, "cpu")
            y = k(*t.values())
            ref = op.reference(wl.args, **{n: v.double() if v.is_floating_point() else v for n, v in t.items()})
            out["rel_error"] = float((y.double() - ref.double()).norm() / ref.double().norm())
            out["ms"] = statistics.median(k.time_ms(*t.values(), number=1, repeat=7, min_repeat_ms=50))
        else:
            baseline = op.baseline
            with torch.no_grad():
                out["ms"] = time_torch_ms(lambda: baseline(wl.args, **t))
        print(json.dumps(out), flush=True)


def _run_worker(side: str, keys: list[str]) -> dict[str, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "opsearch.bench", side], input="\n".join(keys), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{side} benchmark worker failed: {proc.stderr.strip().splitlines()[-1:]}")
    return {r["key"]: r for r in map(json.loads, proc.stdout.splitlines())}


def compare(workloads: list[tuple[str, Workload]], rounds: int = 1) -> list[Row]:
    """Time each ``(example name, workload)`` with the default kernel and with PyTorch, each side
    in a fresh process, alternating sides for ``rounds`` rounds; medians per side."""
    keys = [wl.key() for _, wl in workloads]
    runs = {"opsearch": [], "torch": []}
    for _ in range(rounds):
        for side in runs:
            runs[side].append(_run_worker(side, keys))
    rows = []
    for (name, wl), key in zip(workloads, keys):
        ours = statistics.median(r[key]["ms"] for r in runs["opsearch"])
        theirs = statistics.median(r[key]["ms"] for r in runs["torch"])
        err = max(r[key]["rel_error"] for r in runs["opsearch"])
        rows.append(Row(wl, name, ours, theirs, err))
    return rows


def example_workloads(names: list[str] | None = None) -> list[tuple[str, Workload]]:
    """Every example workload of the named operators (all operators by default)."""
    specs = [ops.get(n) for n in names] if names else ops.all_ops()
    return [(ex, op.example(ex)) for op in specs for ex in op.examples]


if __name__ == "__main__":
    _worker(sys.argv[1], [line for line in sys.stdin.read().splitlines() if line.strip()])
