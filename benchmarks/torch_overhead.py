"""Overhead of opsearch's torch entry points over calling the compiled TVM function directly,
and first-call latency from the disk kernel cache in a fresh process.

    python benchmarks/torch_overhead.py [--calls 400] [--batches 30] [--compare REV] [--rounds 3]

Per-call overhead: a tiny workload (dilated_conv2d, x 1x4x8x8, 4x4x3x3); each variant runs in
batches of ``--calls`` calls, the variants interleaved batch by batch, and the minimum batch
mean per variant is reported (robust to other load on the machine); overhead = variant - direct.

First call: a fresh process whose kernel is already in the disk cache and whose schedule
database (a temporary SQLite file, ``OPSEARCH_DB``) already knows the workload (an earlier
process compiled the kernel and noted the workload as pending). Timed inside that process:
``import torch``, ``import tvm`` and ``import opsearch.functional`` are before the timer and
reported separately; the timer covers the first ``opsearch.functional.dilated_conv2d`` call
(kernel selection, schedule, cache check, library load, the call).

``--compare REV``: the same measurements for the code at git revision REV (extracted with
``git archive`` to a temporary directory and put first on ``PYTHONPATH``) side by side with the
working tree, each in its own processes, alternating for ``--rounds`` rounds (minimum per row).

``--markdown``: the same figures as two markdown tables (per call; first call) instead of the
text report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

FIRST_CALL = r"""
import json, sys, time
import opsearch
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import tvm
t2 = time.perf_counter()
import opsearch.functional as F
from opsearch.runtime import cache
t3 = time.perf_counter()
x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
c, t = time.process_time(), time.perf_counter()
F.dilated_conv2d(x, w, padding=1)
first_ms = (time.perf_counter() - t) * 1e3
first_cpu_ms = (time.process_time() - c) * 1e3
t = time.perf_counter()
F.dilated_conv2d(x, w, padding=1)
second_ms = (time.perf_counter() - t) * 1e3
print(json.dumps(dict(first_ms=first_ms, first_cpu_ms=first_cpu_ms, second_ms=second_ms, import_torch_ms=(t1 - t0) * 1e3,
                      import_tvm_ms=(t2 - t1) * 1e3, import_opsearch_ms=(t3 - t2) * 1e3,
                      sqlalchemy_imported="sqlalchemy" in sys.modules, opsearch=opsearch.__file__,
                      **vars(cache.stats))))
"""


def per_call(calls: int, batches: int) -> dict[str, float]:
    import torch

    import opsearch.functional as F
    from opsearch import ops
    from opsearch.torch_bridge import library

    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    wl = ops.get("dilated_conv2d").workload(x=[1, 4, 8, 8], weight=[4, 4, 3, 3], padding=1)
    kern = library.kernel_for(wl)
    out = torch.empty(kern.out_shape)
    op = torch.ops.opsearch.dilated_conv2d
    attrs = ([1, 1], [1, 1], [1, 1], 1)
    xg = x.clone().requires_grad_()
    variants = {
        "direct TVM function (preallocated output)": lambda: kern.func(x, w, out),
        "direct TVM function + torch.empty output": lambda: kern.func(x, w, torch.empty(kern.out_shape)),
        "opsearch.functional (eager, no grad needed)": lambda: F.dilated_conv2d(x, w, padding=1),
        "torch.ops.opsearch (dispatcher, no grad needed)": lambda: op(x, w, None, *attrs),
        "torch.ops.opsearch under torch.inference_mode": None,
        "opsearch.functional, input requires grad": lambda: F.dilated_conv2d(xg, w, padding=1),
    }
    best = {k: float("inf") for k in variants}
    for _ in range(batches):
        for name, fn in variants.items():
            if fn is None:
                with torch.inference_mode():
                    t = time.perf_counter()
                    for _ in range(calls):
                        op(x, w, None, *attrs)
            else:
                t = time.perf_counter()
                for _ in range(calls):
                    fn()
            best[name] = min(best[name], (time.perf_counter() - t) / calls * 1e6)
    return best


def _fresh(env: dict) -> dict:
    # cwd: a directory without an opsearch package (python -c puts the cwd first on sys.path)
    p = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True,
                       cwd=tempfile.gettempdir())
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.splitlines()[-1])


def first_call(tmp: str, env: dict, warm_runs: int = 3, cold: bool = True) -> dict:
    """A cold process (compiles, notes the workload in a new database), then warm ones."""
    env = dict(env, OPSEARCH_CACHE_DIR=os.path.join(tmp, "kernels"), OPSEARCH_DB=f"sqlite:///{tmp}/opsearch.db")
    cold = _fresh(env) if cold else {"first_ms": float("nan")}
    warm = [_fresh(env) for _ in range(warm_runs)]
    assert all(r["compiles"] == 0 and r["hits"] == 1 for r in warm), warm
    return {"compile_ms": cold["first_ms"], "warm": warm}


def _child(calls: int, batches: int) -> None:
    import opsearch

    print(json.dumps({"opsearch": opsearch.__file__, **per_call(calls, batches)}))


def _run_child(env: dict, calls: int, batches: int) -> dict:
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--calls", str(calls),
                        "--batches", str(batches)], env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.splitlines()[-1])


def _report(label: str, best: dict, fc: dict) -> None:
    base = best["direct TVM function (preallocated output)"]
    print(f"[{label}] per-call latency, tiny dilated_conv2d (min batch mean):")
    for name, us in best.items():
        print(f"  {name:52s} {us:8.2f} us   overhead {us - base:+8.2f} us")
    warm = fc["warm"]
    ms = lambda key: ", ".join(f"{r[key]:.0f}" for r in warm)
    firsts = ", ".join(f"{v:.1f}" for v in sorted(r["first_ms"] for r in warm))
    cpu = ", ".join(f"{v:.1f}" for v in sorted(r["first_cpu_ms"] for r in warm))
    print(f"[{label}] first call in a fresh process: compile {fc['compile_ms']:.1f} ms; from disk cache "
          f"{firsts} ms wall (CPU time of the process: {cpu} ms) "
          f"({len(warm)} processes; SQLAlchemy imported: {sorted({r['sqlalchemy_imported'] for r in warm})})")
    print(f"[{label}]   opsearch from {sorted({r['opsearch'] for r in warm})}")
    print(f"[{label}]   before the timer: import torch {ms('import_torch_ms')} ms; import tvm "
          f"{ms('import_tvm_ms')} ms; import opsearch.functional {ms('import_opsearch_ms')} ms")


def _markdown(results: dict[str, tuple[dict, dict]]) -> None:
    """The figures of :func:`_report` as markdown tables, one column per code version (label ->
    (per-call minima, first-call figures))."""
    labels = list(results)
    print("| variant (tiny dilated_conv2d, min batch mean) | " + " | ".join(f"{k}: µs (overhead)" for k in labels) + " |")
    print("| --- |" + " ---: |" * len(labels))
    for name in results[labels[0]][0]:
        cells = []
        for k in labels:
            best = results[k][0]
            us, base = best.get(name, float("nan")), best["direct TVM function (preallocated output)"]
            cells.append(f"{us:.2f} ({us - base:+.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()

    def span(vals):
        vals = sorted(vals)
        return f"{vals[0]:.1f}" if vals[0] == vals[-1] else f"{vals[0]:.1f}–{vals[-1]:.1f}"

    rows = {
        "compile, first call of a cold process (ms)": lambda fc: f"{fc['compile_ms']:.1f}",
        "first call from the disk cache, wall (ms)": lambda fc: span(r["first_ms"] for r in fc["warm"]),
        "first call from the disk cache, process CPU (ms)": lambda fc: span(r["first_cpu_ms"] for r in fc["warm"]),
        "fresh processes timed": lambda fc: str(len(fc["warm"])),
        "before the timer: import torch (ms)": lambda fc: span(r["import_torch_ms"] for r in fc["warm"]),
        "before the timer: import tvm (ms)": lambda fc: span(r["import_tvm_ms"] for r in fc["warm"]),
        "before the timer: import opsearch.functional (ms)": lambda fc: span(r["import_opsearch_ms"] for r in fc["warm"]),
        "SQLAlchemy imported": lambda fc: ", ".join(str(v) for v in sorted({r["sqlalchemy_imported"] for r in fc["warm"]})),
    }
    print("| first call in a fresh process | " + " | ".join(labels) + " |")
    print("| --- |" + " ---: |" * len(labels))
    for name, cell in rows.items():
        print(f"| {name} | " + " | ".join(cell(results[k][1]) for k in labels) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--compare", metavar="REV", help="also measure the code at this git revision")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds with --compare")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables instead of the text report")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(args.calls, args.batches)
    if not args.compare:
        best = per_call(args.calls, args.batches)
        with tempfile.TemporaryDirectory() as tmp:
            fc = first_call(tmp, dict(os.environ))
        if args.markdown:
            return _markdown({"working tree": (best, fc)})
        return _report("working tree", best, fc)
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        old = os.path.join(tmp, "old")
        os.mkdir(old)
        archive = subprocess.run(["git", "archive", args.compare, "opsearch", "schedules", "database"],
                                 cwd=root, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        envs = {args.compare: dict(os.environ, PYTHONPATH=os.pathsep.join([old, os.environ.get("PYTHONPATH", "")])),
                "working tree": dict(os.environ)}
        best: dict[str, dict] = {k: {} for k in envs}
        fcs: dict[str, dict] = {}
        for r in range(args.rounds):
            for label, env in envs.items():
                got = _run_child(env, args.calls, args.batches)
                print(f"[{label}] round {r + 1}: opsearch from {got.pop('opsearch')}", flush=True,
                      file=sys.stderr if args.markdown else sys.stdout)
                best[label] = {k: min(v, best[label].get(k, float("inf"))) for k, v in got.items()}
                d = os.path.join(tmp, f"fc-{label.replace(' ', '-')}")
                if r == 0:
                    os.mkdir(d)
                    fcs[label] = first_call(d, env, warm_runs=1)
                else:
                    fcs[label]["warm"] += first_call(d, env, warm_runs=1, cold=False)["warm"]
        if args.markdown:
            return _markdown({label: (best[label], fcs[label]) for label in envs})
        for label in envs:
            _report(label, best[label], fcs[label])


if __name__ == "__main__":
    main()
