"""Overhead of opsearch's torch entry points over calling the compiled TVM function directly,
and first-call latency from the disk kernel cache in a fresh process.

    python benchmarks/torch_overhead.py [--calls 400] [--batches 30]

Per-call overhead: a tiny workload (dilated_conv2d, x 1x4x8x8, 4x4x3x3); each variant runs in
batches of ``--calls`` calls, the variants interleaved batch by batch, and the minimum batch
mean per variant is reported (robust to other load on the machine); overhead = variant - direct.
First call: a fresh process (``import tvm, opsearch`` excluded) runs one call whose kernel is
already in the disk cache; timed inside that process.
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
import json, time, torch, tvm
import opsearch.functional as F
from opsearch import cache
x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
t = time.perf_counter()
F.dilated_conv2d(x, w, padding=1)
first_ms = (time.perf_counter() - t) * 1e3
t = time.perf_counter()
F.dilated_conv2d(x, w, padding=1)
second_ms = (time.perf_counter() - t) * 1e3
print(json.dumps(dict(first_ms=first_ms, second_ms=second_ms, **vars(cache.stats))))
"""


def per_call(calls: int, batches: int) -> dict[str, float]:
    import torch

    import opsearch.functional as F
    from opsearch import ops, torch_ops

    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    wl = ops.get("dilated_conv2d").workload(x=[1, 4, 8, 8], weight=[4, 4, 3, 3], padding=1)
    kern = torch_ops.kernel_for(wl)
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


def first_call(cache_dir: str) -> dict:
    env = dict(os.environ, OPSEARCH_CACHE_DIR=cache_dir)
    run = lambda: json.loads(subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, check=True,
                                            capture_output=True, text=True).stdout.splitlines()[-1])
    cold = run()  # compiles and fills the cache
    warm = [run() for _ in range(3)]
    assert all(r["compiles"] == 0 and r["hits"] == 1 for r in warm)
    return {"compile_ms": cold["first_ms"], "from_cache_ms": sorted(r["first_ms"] for r in warm)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--batches", type=int, default=30)
    args = ap.parse_args()
    best = per_call(args.calls, args.batches)
    base = best["direct TVM function (preallocated output)"]
    print(f"per-call latency, tiny dilated_conv2d (min of {args.batches} batches x {args.calls} calls):")
    for name, us in best.items():
        print(f"  {name:52s} {us:8.2f} us   overhead {us - base:+8.2f} us")
    with tempfile.TemporaryDirectory() as tmp:
        fc = first_call(tmp)
    print(f"first call in a fresh process: compile {fc['compile_ms']:.1f} ms; from disk cache "
          f"{', '.join(f'{v:.1f}' for v in fc['from_cache_ms'])} ms (3 processes)")


if __name__ == "__main__":
    main()
