"""Tuning speed and quality: opsearch's tuner vs stock ``tune_tir`` on the same workload.

Each side runs in its own process, alternating (A B A B) for ``--rounds`` rounds, with the same
trial budget. Reported: wall time, trials per minute, and the best latency after N trials (each
side's own measurement of its best candidate, re-timed here in one process for fairness).

    .venv/bin/python benchmarks/search_bench.py --trials 64 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOAD = ("dilated_conv2d", dict(x=[1, 32, 32, 32], weight=[32, 32, 3, 3], padding=2, dilation=2))


def _ours(trials: int, batch: int) -> dict:
    from opsearch import db as dbmod
    from opsearch import ops
    from opsearch.search import tune

    wl = ops.get(WORKLOAD[0]).workload(**WORKLOAD[1])
    with tempfile.TemporaryDirectory() as d:
        db = dbmod.connect(f"sqlite:///{d}/bench.db")
        t0 = time.time()
        (r,) = tune(wl, "cpu", db, trials=trials, batch=batch, verify=False)
        wall = time.time() - t0
        curve = _curve([rec.mean_us if rec.status == "ok" else None for rec in db.history(wl, "cpu")])
        trace = r.best.trace if r.best else None
    return {"side": "opsearch", "wall_s": wall, "trials": r.trials_run, "curve": curve, "trace": trace}


def _stock(trials: int, batch: int) -> dict:
    from tvm.s_tir import meta_schedule as ms

    from opsearch import kernels, ops, targets
    from opsearch.db.replay import trace_json

    wl = ops.get(WORKLOAD[0]).workload(**WORKLOAD[1])
    mod = kernels.ir_module(wl)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        db = ms.tune_tir(mod, targets.resolve("cpu").tvm(), d, max_trials_global=trials, num_trials_per_iter=batch,
                         database="memory")
        wall = time.time() - t0
        recs = db.get_all_tuning_records()
        secs = [float(statistics.fmean([float(s) for s in r.run_secs])) * 1e6 if r.run_secs else None for r in recs]
        curve = _curve([s if s is not None and s < 1e9 else None for s in secs])
        best = db.get_top_k(db.commit_workload(mod), 1)
        trace = trace_json(best[0].as_measure_candidate().sch) if best else None
    return {"side": "stock", "wall_s": wall, "trials": len(recs), "curve": curve, "trace": trace}


def _curve(lat: list) -> list:
    best, out = None, []
    for v in lat:
        if v is not None and (best is None or v < best):
            best = v
        out.append(best)
    return out


def _retime(traces: dict) -> dict:
    """Both sides' best schedules timed in this one process, alternating."""
    import torch

    from opsearch import kernels, ops
    from opsearch.db.replay import replay

    wl = ops.get(WORKLOAD[0]).workload(**WORKLOAD[1])
    op = ops.get(wl.op)
    gen = torch.Generator().manual_seed(0)
    t = [op.sample(wl.args, p, wl.args[p.name], gen, torch.float32) for p in op.tensors if wl.args[p.name] is not None]
    ks = {name: kernels.build(replay(tr, wl), wl, "cpu") for name, tr in traces.items() if tr}
    samples = {name: [] for name in ks}
    for _ in range(5):
        for name, k in ks.items():
            samples[name].append(statistics.median(k.time_ms(*t, number=1, repeat=5, min_repeat_ms=20)) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--side", choices=["opsearch", "stock"])
    ap.add_argument("--retime")
    a = ap.parse_args()
    if a.side:
        print(json.dumps((_ours if a.side == "opsearch" else _stock)(a.trials, a.batch)))
        return
    if a.retime:
        print(json.dumps(_retime(json.loads(open(a.retime).read()))))
        return
    runs = {"opsearch": [], "stock": []}
    for _ in range(a.rounds):
        for side in runs:
            p = subprocess.run([sys.executable, __file__, "--side", side, "--trials", str(a.trials), "--batch", str(a.batch)],
                               capture_output=True, text=True)
            if p.returncode:
                sys.exit(f"{side} failed: {p.stderr[-2000:]}")
            runs[side].append(json.loads(p.stdout.strip().splitlines()[-1]))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({s: runs[s][-1]["trace"] for s in runs}, f)
    p = subprocess.run([sys.executable, __file__, "--retime", f.name], capture_output=True, text=True)
    retimed = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {}
    print(f"workload: {WORKLOAD[0]} {WORKLOAD[1]}; trials {a.trials}, batch {a.batch}, rounds {a.rounds}")
    print(f"{'side':10s} {'wall s':>8s} {'trials/min':>11s} {'valid':>6s} {'best us (own)':>14s} {'best us (retimed)':>18s}")
    tpm = {}
    for side, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        tpm[side] = statistics.median(r["trials"] / r["wall_s"] * 60 for r in rs)
        valid = statistics.median(sum(1 for a, b in zip(r["curve"], [None] + r["curve"]) if a is not None) for r in rs)
        finals = [r["curve"][-1] for r in rs if r["curve"] and r["curve"][-1]]
        own = f"{statistics.median(finals):14.1f}" if finals else f"{'none valid':>14s}"
        print(f"{side:10s} {wall:8.1f} {tpm[side]:11.1f} {valid:6.0f} {own} {retimed.get(side, float('nan')):18.1f}")
    print(f"trials/min ratio opsearch/stock: {tpm['opsearch'] / tpm['stock']:.2f}x")


if __name__ == "__main__":
    main()
