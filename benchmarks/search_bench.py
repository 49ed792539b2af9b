"""Tuning speed and quality: opsearch's tuner vs stock ``tune_tir`` on the same workload.

Each side runs in its own process, alternating (A B A B) for ``--rounds`` rounds, with the same
trial budget; round i runs both sides with seed ``--seed`` + i, and every figure is the median over
the rounds (one run per side moves a workload by 10-25% on small shared VMs). The sides (``--sides``): ``opsearch`` (what ``tune`` does), ``opsearch-norefine``
(the same without the refinement of the last trials, ``refine=0``: see ``opsearch.search.refine``), ``opsearch-nostall``
(the same without refinement batches while the evolution stalls, ``strategy.STALL_TRIALS = 0``: refinement only at the end), ``opsearch-wide``
(the same with half of refinement's pool one larger tile move away: ``refine.WIDE_SHARE = 0.5``), ``opsearch-swap``
(the same with a quarter of it register tiles reshaped between two loops: ``refine.SWAP_SHARE = 0.25``), ``opsearch-unrollbest``
(the same with each refinement batch also measuring the best kernel with 512-step unrolling: ``refine.EXTRA_UNROLL = 512``), ``opsearch-full`` (the
same with every candidate timed fully, ``--full-timing``: no screening), ``opsearch-unroll512``
(the same with MetaSchedule's unrolling choices, 512 steps included, multi-stage spaces too: see
``opsearch.search.space``), ``opsearch-pop512`` (the same with stock's evolutionary population
of 512 for every workload, instead of ``opsearch.search.space.population``'s), ``opsearch-pop128`` (the same with the
configured population of 128 for workloads of two tiled stages too, as before commit ``0c01b9a``), ``opsearch-pinned`` (the same with the runner's workers
pinning TVM's pool threads to cores, ``TVM_BIND_THREADS=1``, as before 2026-12-07: see
``opsearch.search.runner``) and ``stock``. Reported: wall time, trials per minute, and the best latency after each checkpoint
(``--checkpoints``, trial counts): each side's own measurement of its best candidate within the
first N trials, and the same candidates (every round's) re-timed side by side in one process for
fairness. Each opsearch side's search runs with ``confirm=0`` (``tune``'s default); the tuner's
optional confirmation (``opsearch.search.confirm``: its 4 fastest timed again side by side in fresh
processes) then runs on its database, and its pick is reported as the side ``<side>+confirm`` at
the last checkpoint: what ``tune(..., confirm=4)`` would return.

Stock ``tune_tir`` gets a ``LocalBuilder(timeout_sec=--stock-build-timeout)``: its default 30 s
timeout fails every batch on 2 cores (each worker imports every tensor intrinsic, 22-26 s), which
would compare against nothing. ``--store-db URL --store-at N`` writes stock's re-timed best after
N trials as the ``stock-metaschedule`` baseline of the workload, which ``opsearch bench`` shows.
``--json PATH`` also writes every figure of the table, and each side's best latency so far after
every trial (its own measurements, last round) and every round's picked traces, to PATH (``benchmarks/run_all.py`` plots those).

``--keep-db DIR`` keeps the opsearch sides' databases (``costmodel_bench.py --rounds`` replays
their rounds). ``--summary JSON...`` prints one table over several workloads' ``--json`` files:
stock's best over each opsearch side's (re-timed, above 1: opsearch faster), opsearch's best after
a third of the trials against stock's after all of them, the trials each side needed to match
stock's best, and geometric means; ``--plot PNG`` draws quality against trials over them.
``--fresh JSON`` times a ``--json`` file's last picks (each side, each seed) side by side in
``--processes`` fresh processes, one after another, beside the operator's default schedule, and
keeps the median of each pick's per-process medians: on small VMs a kernel's speed also depends on the process it runs in, so one
re-timing process is a noisy judge.

    .venv/bin/python benchmarks/search_bench.py --trials 256 --checkpoints 64,256 --batch 32
    .venv/bin/python benchmarks/search_bench.py --summary /tmp/sq/*.json --plot benchmarks/search_quality.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

from opsearch.bench.report import first_reaching, running_min

WORKLOAD = ("dilated_conv2d", "context_d4")  # (operator, example), overridable with --example OP:NAME
SIDES = ("opsearch", "opsearch-nostall", "opsearch-norefine", "opsearch-wide", "opsearch-swap", "opsearch-unrollbest", "opsearch-full", "opsearch-unroll512", "opsearch-pop512", "opsearch-pop128", "opsearch-pinned", "stock")
CONFIRM = 4  # finalists the "+confirm" sides time again (``TuneConfig.confirm``, off in ``tune``)
KEEP_DB = None  # --keep-db DIR: opsearch sides write their database to DIR/<side>-<op>-<example>.db


def _workload():
    from opsearch import ops

    return ops.get(WORKLOAD[0]).example(WORKLOAD[1])


def _ours(trials: int, batch: int, checkpoints: list[int], build_timeout: float, population: int = 0,
          side: str = "opsearch", seed: int = 0) -> dict:
    from opsearch import db as dbmod
    from opsearch import targets
    from opsearch.search import space, tune
    from opsearch.search.confirm import confirm_finalists
    from opsearch.search.runner import MeasureConfig

    full_timing, unroll512 = side == "opsearch-full", side == "opsearch-unroll512"
    if side == "opsearch-pop512":
        population = 512
        space.TWO_STAGE_POPULATION_SCALE = 1  # 512 for every workload, as stock
    if side == "opsearch-nostall":
        from opsearch.search import strategy

        strategy.STALL_TRIALS = 0  # refinement only in the last trials, as before 2026-12-08
    if side == "opsearch-pop128":
        space.TWO_STAGE_POPULATION_SCALE = 1  # the configured 128 for two-stage workloads too, as before 0c01b9a
    if unroll512:
        space.LLVM_UNROLL_STEPS = (0, 16, 64, 512)
    if side == "opsearch-wide":
        from opsearch.search import refine

        refine.WIDE_SHARE = 0.5
    if side == "opsearch-swap":
        from opsearch.search import refine

        refine.SWAP_SHARE = 0.25
    if side == "opsearch-unrollbest":
        from opsearch.search import refine

        refine.EXTRA_UNROLL = 512
    if side == "opsearch-pinned":
        from opsearch.search.runner import BIND_ENV

        os.environ[BIND_ENV] = "1"  # kept by the runner, inherited by its workers (this side's process only)

    wl = _workload()
    with tempfile.TemporaryDirectory() as d:
        suffix = f"-s{seed}" if seed else ""
        path = f"{KEEP_DB}/{side}-{WORKLOAD[0]}-{WORKLOAD[1]}{suffix}.db" if KEEP_DB else f"{d}/bench.db"
        if KEEP_DB:
            os.makedirs(KEEP_DB, exist_ok=True)
            if os.path.exists(path):
                os.remove(path)
        db = dbmod.connect(f"sqlite:///{path}")
        t0 = time.time()
        extra = {"population": population} if population else {}
        if full_timing:
            extra["measure_config"] = MeasureConfig(screen_ratio=None)
        if side == "opsearch-norefine":
            extra["refine"] = 0.0
        # cold like stock: no shipped record as a first trial (it would start from a tuned schedule)
        # the search alone (confirm=0), so that its own pick is kept; then the tuner's confirmation
        (r,) = tune(wl, "cpu", db, trials=trials, batch=batch, verify=False, include_shipped=False, confirm=0,
                    seed=seed, **extra)
        wall = time.time() - t0
        hist = db.history(wl, "cpu")
        lat = [rec.mean_us if rec.status == "ok" else None for rec in hist]
        traces = {n: _best_within(lat, [rec.trace for rec in hist], n) for n in checkpoints}
        t1 = time.time()
        confirmed = confirm_finalists(db, wl, targets.resolve("cpu"), k=CONFIRM)
        confirm_s = time.time() - t1
        best = db.top_k(wl, "cpu", 1)
    return {"side": side, "seed": seed, "wall_s": wall, "trials": r.trials_run, "curve": list(running_min(lat)),
            "traces": traces, "confirmed_trace": best[0].trace if confirmed and best else None, "confirm_s": confirm_s,
            "confirmed_own_us": best[0].mean_us if confirmed and best else None}


def _stock(trials: int, batch: int, checkpoints: list[int], build_timeout: float, population: int = 0,
           seed: int = 0) -> dict:
    from tvm.s_tir import meta_schedule as ms

    from opsearch import targets
    from opsearch.ops import tir
    from opsearch.db.replay import trace_json

    mod = tir.ir_module(_workload())
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        db = ms.tune_tir(mod, targets.resolve("cpu").tvm(), d, max_trials_global=trials, num_trials_per_iter=batch,
                         database="memory", builder=ms.builder.LocalBuilder(timeout_sec=build_timeout), seed=seed)
        wall = time.time() - t0
        recs = db.get_all_tuning_records()  # in commit (= measurement) order
        secs = [float(statistics.fmean([float(s) for s in r.run_secs])) * 1e6 if r.run_secs else None for r in recs]
        lat = [s if s is not None and s < 1e9 else None for s in secs]
        trs = [trace_json(r.as_measure_candidate().sch) for r in recs]
        traces = {n: _best_within(lat, trs, n) for n in checkpoints}
    return {"side": "stock", "seed": seed, "wall_s": wall, "trials": len(recs), "curve": list(running_min(lat)), "traces": traces}


def _best_within(lat: list, traces: list, n: int):
    """Trace of the fastest valid candidate among the first ``n`` measured (None if none)."""
    valid = [(v, i) for i, v in enumerate(lat[:n]) if v is not None]
    return traces[min(valid)[1]] if valid else None


def _retime(traces: dict) -> dict:
    """The schedules timed side by side in this one process, alternating."""
    from opsearch.bench.suite import time_schedules

    return time_schedules(_workload(), traces)


def fresh_retime(path: str, processes: int) -> str:
    """Every side's pick after the last checkpoint of a ``--json`` file (each seed), timed side by
    side in ``processes`` fresh processes one after another (``confirm.time_in_fresh_processes``),
    beside the operator's default schedule (``default``);
    each pick's figure is the median of its per-process medians (a kernel's speed also depends on
    the process it runs in). Stores them in the file under ``fresh``; returns a table."""
    from opsearch import ops
    from opsearch.db.replay import trace_json
    from opsearch.ops.tir import default_schedule
    from opsearch.search.confirm import time_in_fresh_processes
    from opsearch.targets import resolve

    r = json.loads(open(path).read())
    op, name = r["workload"].split(":", 1)
    last = str(r["checkpoints"][-1])
    traces = {f"{side}#{i}": tr for side, d in r["sides"].items()
              for i, tr in enumerate(d["traces_per_seed"].get(last, [])) if tr}
    wl = ops.get(op).example(name)
    traces["default"] = trace_json(default_schedule(wl, "cpu"))  # the operator's own schedule, for scale
    medians, errors = time_in_fresh_processes(wl, resolve("cpu"), traces, processes)
    fresh = {k: {"median_us": statistics.median(v), "per_process_us": v} for k, v in medians.items()}
    r["fresh"] = {"processes": processes, "checkpoint": int(last), "picks": fresh, "errors": errors}
    with open(path, "w") as f:
        json.dump(r, f, indent=1)
    stock = [v["median_us"] for k, v in fresh.items() if k.startswith("stock#")]
    lines = [f"{r['workload']}: picks after {last} trials, each timed in {processes} fresh processes",
             f"{'pick':24s} {'median us':>10s} {'per process us':>40s} {'stock/pick':>10s}"]
    for k, v in fresh.items():
        ratio = f"{statistics.median(stock) / v['median_us']:10.3f}" if stock else f"{'':>10s}"
        lines.append(f"{k:24s} {v['median_us']:10.1f} {' '.join(f'{x:.1f}' for x in v['per_process_us']):>40s} {ratio}")
    lines += [f"{k}: does not build: {e}" for k, e in errors.items()]
    return "\n".join(lines)


def fresh_ratio(r: dict, side: str) -> float | None:
    """Stock's pick over ``side``'s in a ``--fresh`` re-timing of run ``r`` (medians over seeds)."""
    picks = r.get("fresh", {}).get("picks", {})

    def med(s):
        v = [p["median_us"] for k, p in picks.items() if k.rsplit("#", 1)[0] == s]
        return statistics.median(v) if v else None

    st, o = med("stock"), med(side)
    return st / o if st and o else None


def summary(paths: list[str]) -> str:
    """One row per workload from ``--json`` files of runs with a ``stock`` side: stock's best
    latency over each opsearch side's, re-timed side by side (above 1: opsearch faster; also as
    timed in fresh processes when the files have ``--fresh`` figures), and the
    trials each opsearch side needed to match stock's best at the last checkpoint (own measurements,
    each side in its own process), with geometric means."""
    reps = [json.load(open(p)) for p in paths]
    reps = [r for r in reps if "stock" in r["sides"]]
    if not reps:
        return "no run with a stock side"
    ours = list(dict.fromkeys(s for r in reps for s in r["sides"] if s != "stock"))
    n = reps[0]["checkpoints"][-1]
    early = [c for c in reps[0]["checkpoints"] if c <= n / 3 + 1]
    third = max(early) if early else None
    head = ["workload"] + [f"stock@{n} / {s}@{n}" for s in ours]
    fresh_n = max((r["fresh"]["processes"] for r in reps if "fresh" in r), default=0)
    if fresh_n:  # --fresh figures: the same picks, each the median of its medians in N fresh processes
        head += [f"stock@{n} / {s}@{n}, {fresh_n} fresh processes" for s in ours]
    if third:
        head += [f"stock@{n} / {ours[0]}@{third}"]
    searches = [s for s in ours if not s.endswith("+confirm")]  # a "+confirm" side's curve is its search's
    head += [f"{s}: trials to stock's best@{n}" for s in searches] + [f"{s} trials/min / stock's" for s in searches]
    rows, logs = [], {h: [] for h in head[1:]}
    for r in reps:
        st = r["sides"]["stock"]
        st_last = st["best_retimed_us"].get(str(n))

        def ratio(side, at, st_last=st_last, r=r):
            o = r["sides"].get(side, {}).get("best_retimed_us", {}).get(str(at))
            return st_last / o if st_last and o else None

        cells = [r["workload"]] + [ratio(s, n) for s in ours]
        if fresh_n:
            cells += [fresh_ratio(r, s) for s in ours]
        if third:
            cells.append(ratio(ours[0], third))
        for s in searches:
            cells.append(first_reaching(r["sides"][s]["curve_us"], st["best_own_us"].get(str(n))) if s in r["sides"] else "-")
        cells += [r["vs_stock"].get(s, {}).get("trials_per_min_ratio") for s in searches]
        rows.append(cells)
        for h, c in zip(head[1:], cells[1:]):
            if c is not None and "trials to" not in h:
                logs[h].append(math.log(c))

    def fmt(h, c):
        if c == "-":
            return c
        if c is None:
            return f"not within {n}" if "trials to" in h else "-"
        return str(c) if "trials to" in h else f"{c:.2f}"

    geo = ["geo-mean"] + [f"{math.exp(statistics.fmean(logs[h])):.2f}" if logs[h] and "trials to" not in h else
                          (f"median {statistics.median([c or n + 1 for c in col if c != '-']):g}" if "trials to" in h else "-")
                          for h, col in zip(head[1:], zip(*[r[1:] for r in rows]))]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    lines += ["| " + " | ".join([r[0]] + [fmt(h, c) for h, c in zip(head[1:], r[1:])]) + " |" for r in rows]
    lines.append("| **" + geo[0] + "** | " + " | ".join(geo[1:]) + " |")
    for s in searches:  # the geo-mean over workloads of stock's best@n / this side's best so far, per trial
        has = [r for r in reps if s in r["sides"]]
        t = _geo_reach([r["sides"][s]["curve_us"] for r in has], [r["sides"]["stock"]["best_own_us"].get(str(n)) for r in has])
        lines.append(f"\n{s}: the geo-mean over its {len(has)} workloads of stock's best after {n} trials over {s}'s best so "
                     f"far (own measurements) reaches 1.0 after " + (f"{t} trials" if t else f"more than {n} trials"))
    return "\n".join(lines)


def _geo_reach(curves: list[list], targets: list) -> int | None:
    """Smallest trial count t at which the geometric mean over workloads of target / best-after-t is >= 1."""
    pairs = [(c, t) for c, t in zip(curves, targets) if t and c]
    for i in range(max(len(c) for c, _ in pairs) if pairs else 0):
        logs = []
        for c, t in pairs:
            v = c[min(i, len(c) - 1)]
            if v is None:
                break
            logs.append(math.log(t / v))
        if len(logs) == len(pairs) and statistics.fmean(logs) >= 0:
            return i + 1
    return None


def plot_summary(paths: list[str], out: str) -> None:
    """Quality against trials over workloads: stock's best after the last checkpoint over each
    side's best so far (own measurements; above 1: better than stock's final kernel), one thin
    line per workload and side, the geometric mean over workloads bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = [r for r in (json.load(open(p)) for p in paths) if "stock" in r["sides"]]
    n = reps[0]["checkpoints"][-1]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    colors = {}
    for side in dict.fromkeys(s for r in reps for s in r["sides"] if not s.endswith("+confirm")):
        series = []
        for r in (r for r in reps if side in r["sides"]):
            target = r["sides"]["stock"]["best_own_us"].get(str(n))
            c = r["sides"][side]["curve_us"]
            if not target or not c:
                continue
            c = c[:n] + [c[-1]] * (n - len(c[:n]))  # a run that ran out of candidates keeps its best
            ys = [target / v if v else float("nan") for v in c]
            line, = ax.step(range(1, n + 1), ys, where="post", linewidth=0.6, alpha=0.35, color=colors.get(side))
            colors.setdefault(side, line.get_color())
            series.append(ys)
        geo = [math.exp(statistics.fmean(math.log(v) for v in col)) if all(v == v for v in col) else float("nan")
               for col in zip(*series)]
        ax.step(range(1, n + 1), geo, where="post", linewidth=2.2, color=colors[side],
                label=f"{'stock MetaSchedule' if side == 'stock' else side}: geo-mean over {len(series)} workloads")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axvline(n / 3, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("trials")
    ax.set_ylabel(f"stock's best after {n} / best so far")
    ax.set_title(f"search quality against trials ({len(reps)} workloads, each side's own measurements)", fontsize=10)
    ax.set_ylim(0, 1.6)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    global WORKLOAD, KEEP_DB
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default=":".join(WORKLOAD), help="OP:EXAMPLE (default %(default)s)")
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--checkpoints", default="", help="comma-separated trial counts (default: --trials)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1, help="runs per side, round i with seed --seed + i")
    ap.add_argument("--seed", type=int, default=0, help="the first round's seed (both sides)")
    ap.add_argument("--stock-build-timeout", type=float, default=120.0)
    ap.add_argument("--store-db", help="database URL to store stock's re-timed best as a baseline")
    ap.add_argument("--store-at", type=int, help="checkpoint whose stock best is stored (default: last)")
    ap.add_argument("--population", type=int, default=0,
                    help="opsearch's evolutionary population (default: TuneConfig's; stock keeps its 512)")
    ap.add_argument("--sides", default="opsearch,stock", help="comma-separated, in run order (default %(default)s)")
    ap.add_argument("--stock-batch", type=int, help="stock's candidates per iteration (default: --batch)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures and the tuning curves to PATH as JSON")
    ap.add_argument("--keep-db", metavar="DIR", help="keep the opsearch sides' databases in DIR (for costmodel_bench)")
    ap.add_argument("--summary", nargs="+", metavar="JSON",
                    help="print one markdown table over earlier runs' --json files (each with a stock side) and exit")
    ap.add_argument("--plot", metavar="PNG", help="with --summary: also plot quality against trials to PNG")
    ap.add_argument("--fresh", metavar="JSON",
                    help="time a --json file's picks (last checkpoint, each side and seed) in --processes fresh "
                         "processes, store the figures in the file under 'fresh', print a table and exit")
    ap.add_argument("--processes", type=int, default=5, help="with --fresh (default %(default)s)")
    ap.add_argument("--side", choices=list(SIDES))
    ap.add_argument("--retime")
    a = ap.parse_args()
    if a.summary:
        print(summary(a.summary))
        if a.plot:
            plot_summary(a.summary, a.plot)
        return
    if a.fresh:
        print(fresh_retime(a.fresh, a.processes))
        return
    WORKLOAD = tuple(a.example.split(":", 1))
    KEEP_DB = a.keep_db
    cps = sorted({int(c) for c in a.checkpoints.split(",") if c} | {a.trials})
    if a.side:
        if a.side == "stock":
            out = _stock(a.trials, a.stock_batch or a.batch, cps, a.stock_build_timeout, seed=a.seed)
        else:
            out = _ours(a.trials, a.batch, cps, a.stock_build_timeout, a.population, a.side, seed=a.seed)
        print(json.dumps(out))
        return
    if a.retime:
        print(json.dumps(_retime(json.loads(open(a.retime).read()))))
        return
    sides = [x for x in a.sides.split(",") if x]
    if not sides or any(x not in SIDES for x in sides):
        sys.exit(f"--sides: choose from {', '.join(SIDES)}")
    runs = {side: [] for side in sides}
    for rnd in range(a.rounds):
        for side in runs:
            t0 = time.strftime("%H:%M:%S", time.gmtime())
            p = subprocess.run([sys.executable, __file__, "--side", side, "--example", a.example, "--trials", str(a.trials),
                                "--checkpoints", ",".join(map(str, cps)), "--batch", str(a.batch),
                                "--stock-build-timeout", str(a.stock_build_timeout),
                                "--stock-batch", str(a.stock_batch or a.batch), "--seed", str(a.seed + rnd),
                                "--population", str(a.population)] + (["--keep-db", a.keep_db] if a.keep_db else []),
                               capture_output=True, text=True)
            if p.returncode:
                sys.exit(f"{side} failed: {p.stderr[-2000:]}")
            runs[side].append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(f"{side} seed {a.seed + rnd}: {t0}-{time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)
    # every round's picks re-timed side by side in one process; "+confirm" is the tuner's own
    # result: its search's fastest few timed again side by side (opsearch.search.confirm)
    last = cps[-1]
    for side in [s for s in sides if s != "stock"]:
        runs[side + "+confirm"] = [{**r, "traces": {str(last): r["confirmed_trace"] or r["traces"][str(last)]},
                                    "checkpoints": [last]} for r in runs[side]]
    traces = {f"{s}@{n}#{i}": r["traces"][str(n)] for s, rs in runs.items() for i, r in enumerate(rs)
              for n in r.get("checkpoints", cps)}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(traces, f)
    p = subprocess.run([sys.executable, __file__, "--example", a.example, "--retime", f.name], capture_output=True, text=True)
    retimed_each = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {}
    if p.returncode:
        print(f"re-timing failed: {p.stderr[-1000:]}")
    # each side's figure is the median over its rounds (seeds)
    retimed = {}
    for s, rs in runs.items():
        for n in cps:
            vals = [retimed_each[k] for i in range(len(rs)) if (k := f"{s}@{n}#{i}") in retimed_each]
            if vals:
                retimed[f"{s}@{n}"] = statistics.median(vals)
    print(f"workload: {a.example}; trials {a.trials}, batch {a.batch} (stock {a.stock_batch or a.batch}), rounds {a.rounds} "
          f"(seeds {a.seed}-{a.seed + a.rounds - 1}), stock LocalBuilder timeout {a.stock_build_timeout:.0f} s, "
          f"opsearch population {a.population or 'default'}; figures are medians over the rounds")
    print(f"{'side':18s} {'wall s':>8s} {'trials/min':>11s} {'valid':>6s}"
          + "".join(f" {'best@' + str(n) + ' own us':>16s} {'retimed us':>11s}" for n in cps))
    tpm = {}
    report = {"workload": a.example, "trials": a.trials, "batch": a.batch, "stock_batch": a.stock_batch or a.batch,
              "rounds": a.rounds, "seeds": [a.seed + i for i in range(a.rounds)], "checkpoints": cps,
              "population": a.population or None, "sides": {}, "vs_stock": {}}
    for side, rs in runs.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        tpm[side] = statistics.median(r["trials"] / r["wall_s"] * 60 for r in rs)
        valid = statistics.median(sum(1 for a_, b in zip(r["curve"], [None] + r["curve"]) if a_ is not None) for r in rs)
        cells = ""
        own_at, retimed_at, per_round = {}, {}, {}
        for n in cps:
            own = [r["curve"][min(n, len(r["curve"])) - 1] for r in rs if r["curve"]]
            own = [v for v in own if v]
            cells += f" {statistics.median(own):16.1f}" if own else f" {'none valid':>16s}"
            cells += f" {retimed.get(f'{side}@{n}', float('nan')):11.1f}"
            own_at[str(n)] = statistics.median(own) if own else None
            retimed_at[str(n)] = retimed.get(f"{side}@{n}")
            per_round[str(n)] = [retimed_each.get(f"{side}@{n}#{i}") for i in range(len(rs))]
        print(f"{side:18s} {wall:8.1f} {tpm[side]:11.1f} {valid:6.0f}{cells}")
        report["sides"][side] = {"wall_s": wall, "trials_per_min": tpm[side], "valid": valid, "best_own_us": own_at,
                                 "best_retimed_us": retimed_at, "retimed_per_seed_us": per_round,
                                 "curve_us": rs[-1]["curve"],
                                 "traces_per_seed": {str(n): [r["traces"].get(str(n)) for r in rs] for n in cps}}
        if side.endswith("+confirm"):  # its curve is the search's; the confirmation's own figures:
            own = [r["confirmed_own_us"] for r in rs if r["confirmed_own_us"]]
            report["sides"][side].update(confirm_s=statistics.median(r["confirm_s"] for r in rs),
                                         confirmed_own_us=statistics.median(own) if own else None)
    for ours in (x for x in runs if x != "stock"):
        if "stock" not in tpm:
            break
        print(f"trials/min ratio {ours}/stock: {tpm[ours] / tpm['stock']:.2f}x")
        vs = report["vs_stock"][ours] = {"trials_per_min_ratio": tpm[ours] / tpm["stock"], "retimed_latency_ratio": {}}
        for n in cps:
            o, st = retimed.get(f"{ours}@{n}"), retimed.get(f"stock@{n}")
            if o and st:
                print(f"best after {n} trials (re-timed, median over seeds): {ours}/stock latency ratio {o / st:.3f} "
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
