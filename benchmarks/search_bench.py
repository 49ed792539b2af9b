"""Tuning speed and quality: opsearch's tuner vs stock ``tune_tir`` on the same workload.

Each side runs in its own process, alternating (A B A B) for ``--rounds`` rounds, with the same
trial budget. The sides (``--sides``): ``opsearch`` (what ``tune`` does), ``opsearch-full`` (the
same with every candidate timed fully, ``--full-timing``: no screening), ``opsearch-unroll512``
(the same with MetaSchedule's unrolling choices, 512 steps included, multi-stage spaces too: see
``opsearch.search.space``) and ``stock``. Reported: wall time, trials per minute, and the best latency after each checkpoint
(``--checkpoints``, trial counts): each side's own measurement of its best candidate within the
first N trials, and the same candidates re-timed side by side in one process for fairness.

Stock ``tune_tir`` gets a ``LocalBuilder(timeout_sec=--stock-build-timeout)``: its default 30 s
timeout fails every batch on 2 cores (each worker imports every tensor intrinsic, 22-26 s), which
would compare against nothing. ``--store-db URL --store-at N`` writes stock's re-timed best after
N trials as the ``stock-metaschedule`` baseline of the workload, which ``opsearch bench`` shows.
``--json PATH`` also writes every figure of the table, and each side's best latency so far after
every trial (its own measurements, last round), to PATH (``benchmarks/run_all.py`` plots those).

    .venv/bin/python benchmarks/search_bench.py --trials 256 --checkpoints 64,256 --batch 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

WORKLOAD = ("dilated_conv2d", "context_d4")  # (operator, example), overridable with --example OP:NAME
SIDES = ("opsearch", "opsearch-full", "opsearch-unroll512", "stock")


def _workload():
    from opsearch import ops

    return ops.get(WORKLOAD[0]).example(WORKLOAD[1])


def _ours(trials: int, batch: int, checkpoints: list[int], build_timeout: float, population: int = 0,
          full_timing: bool = False, unroll512: bool = False) -> dict:
    from opsearch import db as dbmod
    from opsearch.search import space, tune
    from opsearch.search.runner import MeasureConfig

    if unroll512:
        space.LLVM_UNROLL_STEPS = (0, 16, 64, 512)

    wl = _workload()
    with tempfile.TemporaryDirectory() as d:
        db = dbmod.connect(f"sqlite:///{d}/bench.db")
        t0 = time.time()
        extra = {"population": population} if population else {}
        if full_timing:
            extra["measure_config"] = MeasureConfig(screen_ratio=None)
        # cold like stock: no shipped record as a first trial (it would start from a tuned schedule)
        (r,) = tune(wl, "cpu", db, trials=trials, batch=batch, verify=False, include_shipped=False, **extra)
        wall = time.time() - t0
        hist = db.history(wl, "cpu")
        lat = [rec.mean_us if rec.status == "ok" else None for rec in hist]
        traces = {n: _best_within(lat, [rec.trace for rec in hist], n) for n in checkpoints}
    side = "opsearch-full" if full_timing else "opsearch-unroll512" if unroll512 else "opsearch"
    return {"side": side, "wall_s": wall, "trials": r.trials_run, "curve": _curve(lat), "traces": traces}


def _stock(trials: int, batch: int, checkpoints: list[int], build_timeout: float, population: int = 0) -> dict:
    from tvm.s_tir import meta_schedule as ms

    from opsearch import targets
    from opsearch.ops import tir
    from opsearch.db.replay import trace_json

    mod = tir.ir_module(_workload())
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        db = ms.tune_tir(mod, targets.resolve("cpu").tvm(), d, max_trials_global=trials, num_trials_per_iter=batch,
                         database="memory", builder=ms.builder.LocalBuilder(timeout_sec=build_timeout))
        wall = time.time() - t0
        recs = db.get_all_tuning_records()  # in commit (= measurement) order
        secs = [float(statistics.fmean([float(s) for s in r.run_secs])) * 1e6 if r.run_secs else None for r in recs]
        lat = [s if s is not None and s < 1e9 else None for s in secs]
        trs = [trace_json(r.as_measure_candidate().sch) for r in recs]
        traces = {n: _best_within(lat, trs, n) for n in checkpoints}
    return {"side": "stock", "wall_s": wall, "trials": len(recs), "curve": _curve(lat), "traces": traces}


def _best_within(lat: list, traces: list, n: int):
    """Trace of the fastest valid candidate among the first ``n`` measured (None if none)."""
    valid = [(v, i) for i, v in enumerate(lat[:n]) if v is not None]
    return traces[min(valid)[1]] if valid else None


def _curve(lat: list) -> list:
    best, out = None, []
    for v in lat:
        if v is not None and (best is None or v < best):
            best = v
        out.append(best)
    return out


def _retime(traces: dict) -> dict:
    """The schedules timed side by side in this one process, alternating."""
    from opsearch.bench.suite import time_schedules

    return time_schedules(_workload(), traces)


def main() -> None:
    global WORKLOAD
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default=":".join(WORKLOAD), help="OP:EXAMPLE (default %(default)s)")
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--checkpoints", default="", help="comma-separated trial counts (default: --trials)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--stock-build-timeout", type=float, default=120.0)
    ap.add_argument("--store-db", help="database URL to store stock's re-timed best as a baseline")
    ap.add_argument("--store-at", type=int, help="checkpoint whose stock best is stored (default: last)")
    ap.add_argument("--population", type=int, default=0,
                    help="opsearch's evolutionary population (default: TuneConfig's; stock keeps its 512)")
    ap.add_argument("--sides", default="opsearch,stock", help="comma-separated, in run order (default %(default)s)")
    ap.add_argument("--stock-batch", type=int, help="stock's candidates per iteration (default: --batch)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures and the tuning curves to PATH as JSON")
    ap.add_argument("--side", choices=list(SIDES))
    ap.add_argument("--retime")
    a = ap.parse_args()
    WORKLOAD = tuple(a.example.split(":", 1))
    cps = sorted({int(c) for c in a.checkpoints.split(",") if c} | {a.trials})
    if a.side:
        if a.side == "stock":
            out = _stock(a.trials, a.stock_batch or a.batch, cps, a.stock_build_timeout)
        else:
            out = _ours(a.trials, a.batch, cps, a.stock_build_timeout, a.population, a.side == "opsearch-full",
                        a.side == "opsearch-unroll512")
        print(json.dumps(out))
        return
    if a.retime:
        print(json.dumps(_retime(json.loads(open(a.retime).read()))))
        return
    sides = [x for x in a.sides.split(",") if x]
    if not sides or any(x not in SIDES for x in sides):
        sys.exit(f"--sides: choose from {', '.join(SIDES)}")
    runs = {side: [] for side in sides}
    for _ in range(a.rounds):
        for side in runs:
            t0 = time.strftime("%H:%M:%S", time.gmtime())
            p = subprocess.run([sys.executable, __file__, "--side", side, "--example", a.example, "--trials", str(a.trials),
                                "--checkpoints", ",".join(map(str, cps)), "--batch", str(a.batch),
                                "--stock-build-timeout", str(a.stock_build_timeout),
                                "--stock-batch", str(a.stock_batch or a.batch),
                                "--population", str(a.population)], capture_output=True, text=True)
            if p.returncode:
                sys.exit(f"{side} failed: {p.stderr[-2000:]}")
            runs[side].append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(f"{side}: {t0}-{time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)
    traces = {f"{s}@{n}": runs[s][-1]["traces"][str(n)] for s in runs for n in cps}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(traces, f)
    p = subprocess.run([sys.executable, __file__, "--example", a.example, "--retime", f.name], capture_output=True, text=True)
    retimed = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {}
    if p.returncode:
        print(f"re-timing failed: {p.stderr[-1000:]}")
    print(f"workload: {a.example}; trials {a.trials}, batch {a.batch} (stock {a.stock_batch or a.batch}), rounds {a.rounds}, "
          f"stock LocalBuilder timeout {a.stock_build_timeout:.0f} s, opsearch population {a.population or 'default'}")
    print(f"{'side':10s} {'wall s':>8s} {'trials/min':>11s} {'valid':>6s}"
          + "".join(f" {'best@' + str(n) + ' own us':>16s} {'retimed us':>11s}" for n in cps))
    tpm = {}
    report = {"workload": a.example, "trials": a.trials, "batch": a.batch, "stock_batch": a.stock_batch or a.batch,
              "rounds": a.rounds, "checkpoints": cps, "population": a.population or None, "sides": {}, "vs_stock": {}}
    for side, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        tpm[side] = statistics.median(r["trials"] / r["wall_s"] * 60 for r in rs)
        valid = statistics.median(sum(1 for a_, b in zip(r["curve"], [None] + r["curve"]) if a_ is not None) for r in rs)
        cells = ""
        own_at, retimed_at = {}, {}
        for n in cps:
            own = [r["curve"][min(n, len(r["curve"])) - 1] for r in rs if r["curve"]]
            own = [v for v in own if v]
            cells += f" {statistics.median(own):16.1f}" if own else f" {'none valid':>16s}"
            cells += f" {retimed.get(f'{side}@{n}', float('nan')):11.1f}"
            own_at[str(n)] = statistics.median(own) if own else None
            retimed_at[str(n)] = retimed.get(f"{side}@{n}")
        print(f"{side:10s} {wall:8.1f} {tpm[side]:11.1f} {valid:6.0f}{cells}")
        report["sides"][side] = {"wall_s": wall, "trials_per_min": tpm[side], "valid": valid, "best_own_us": own_at,
                                 "best_retimed_us": retimed_at, "curve_us": rs[-1]["curve"]}
    for ours in (x for x in sides if x != "stock"):
        if "stock" not in tpm:
            break
        print(f"trials/min ratio {ours}/stock: {tpm[ours] / tpm['stock']:.2f}x")
        vs = report["vs_stock"][ours] = {"trials_per_min_ratio": tpm[ours] / tpm["stock"], "retimed_latency_ratio": {}}
        for n in cps:
            o, st = retimed.get(f"{ours}@{n}"), retimed.get(f"stock@{n}")
            if o and st:
                print(f"best after {n} trials (re-timed): {ours}/stock latency ratio {o / st:.3f} "
                      f"({'ours <= stock' if o <= st else 'stock faster'})")
                vs["retimed_latency_ratio"][str(n)] = o / st
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    if a.store_db:
        n = a.store_at or cps[-1]
        st = retimed.get(f"stock@{n}")
        if st:
            from opsearch import db as dbmod

            dbmod.connect(a.store_db).add_baseline(_workload(), "cpu", "stock-metaschedule", st)
            print(f"stored stock-metaschedule = {st:.1f} us (best after {n} trials) in {a.store_db}")


if __name__ == "__main__":
    main()
