"""Transfer: does a new shape tune faster with what other shapes taught?

Tunes one workload that is not in the database twice, each in its own process:
- **cold**: an empty database (no pretraining, nothing to seed the search with), ``--cold-trials``
  trials (512 by default); its best after all of them is the reference;
- **warm**: a copy of ``--pretrain-db`` holding other shapes' records (the tuner pretrains the cost
  model on every record of the target kind and seeds the search with the nearest tuned shapes'
  best schedules), ``--warm-trials`` trials.
With ``--ablation`` two more warm sides separate the two kinds of transfer: **seeds only** (the
search seeded from the nearest shapes, the cost model cold) and **pretrain only** (the cost model
pretrained on the other shapes' records, no seeds). ``--weighted N`` adds **warm-wN**: warm with the
other workloads' records weighed as N of the new one's own in all (``XGBCostModel.others_rows``)
instead of the tuner's default. ``--seed`` sets every side's search seed.
Reported: the trials each side needed to get within 5 % of the cold reference, and both sides'
bests re-timed side by side in one process. Goal (issue #4): warm needs at most a third of the
trials cold needs. Run from the repo root:

    .venv/bin/python benchmarks/transfer_bench.py --pretrain-db /tmp/ship.db [--ablation]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time

NEW = ("dilated_conv2d", dict(x=[1, 64, 48, 48], weight=[64, 64, 3, 3], padding=3, dilation=3))


def _workload(spec: str | None):
    from opsearch import ops

    if not spec:
        return ops.get(NEW[0]).workload(**NEW[1])
    op, rest = spec.split(":", 1)
    return ops.get(op).workload(**json.loads(rest)) if rest.lstrip().startswith("{") else ops.get(op).example(rest)


def _side(db_path: str, trials: int, batch: int, transfer: int, pretrain: bool, spec: str | None, seed: int = 0,
          others_rows: float | None = None) -> dict:
    from opsearch import db as dbmod
    from opsearch.costmodel import xgb
    from opsearch.search import tune

    if others_rows is not None:
        xgb.OTHERS_ROWS = others_rows
    wl = _workload(spec)
    db = dbmod.connect(f"sqlite:///{db_path}")
    assert db.count(wl, "cpu") == 0, "the new workload must not be in the database"
    t0 = time.time()
    tune(wl, "cpu", db, trials=trials, batch=batch, transfer=transfer, pretrain=pretrain, include_shipped=False,
         verify=False, confirm=0, seed=seed)
    wall = time.time() - t0
    hist = db.history(wl, "cpu")
    return {"wall_s": wall, "lat": [r.mean_us if r.status == "ok" else None for r in hist],
            "traces": [r.trace for r in hist]}


def _within(lat: list, ref: float, tol: float) -> int | None:
    """Trials until the best so far is within ``tol`` of ``ref`` (None: never)."""
    best = None
    for i, v in enumerate(lat, 1):
        if v is not None and (best is None or v < best):
            best = v
        if best is not None and best <= ref * (1 + tol):
            return i
    return None


def _best(lat: list, traces: list, n: int):
    valid = [(v, i) for i, v in enumerate(lat[:n]) if v is not None]
    return traces[min(valid)[1]] if valid else None


def _retime(traces: dict, spec: str | None) -> dict:
    """The schedules timed side by side in this one process, alternating."""
    from opsearch.bench.suite import time_schedules

    return time_schedules(_workload(spec), traces)


def _sub(*args: str) -> dict:
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{' '.join(args[:2])} failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrain-db", help="SQLite file with other shapes' records (copied, not changed)")
    ap.add_argument("--workload", help="OP:JSON_ARGS of the new shape, or OP:EXAMPLE (default: %s)" % json.dumps(NEW))
    ap.add_argument("--cold-trials", type=int, default=512)
    ap.add_argument("--warm-trials", type=int, default=171)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tol", type=float, default=0.05)
    ap.add_argument("--ablation", action="store_true", help="also run seeds-only and pretrain-only warm sides")
    ap.add_argument("--weighted", type=float, metavar="N",
                    help="also run warm with the other workloads' records weighed as N own records in all")
    ap.add_argument("--seed", type=int, default=0, help="search seed of every side (default 0)")
    ap.add_argument("--json", help="also write every side's latencies and the re-timing to this file")
    ap.add_argument("--markdown", action="store_true", help="print the sides as a markdown table")
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--retime", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        db_path, trials, transfer, pretrain, weighted = a.side.split(",")
        print(json.dumps(_side(db_path, int(trials), a.batch, int(transfer), pretrain == "1", a.workload, a.seed,
                               float(weighted) if weighted else None)))
        return
    if a.retime:
        print(json.dumps(_retime(json.load(open(a.retime)), a.workload)))
        return
    if not a.pretrain_db:
        ap.error("--pretrain-db is required")
    wl_args = ["--workload", a.workload] if a.workload else []
    with tempfile.TemporaryDirectory() as d:
        t = time.strftime("%H:%M", time.gmtime())
        # name -> (database copy of the pretraining db or empty, trials, seeds from N shapes, pretrain,
        # weight of the other workloads' records or "" for the tuner's default)
        plan = {"cold": (False, a.cold_trials, 0, False, ""), "warm": (True, a.warm_trials, 3, True, "")}
        if a.weighted is not None:
            plan[f"warm-w{a.weighted:g}"] = (True, a.warm_trials, 3, True, str(a.weighted))
        if a.ablation:
            plan["seeds"] = (True, a.warm_trials, 3, False, "")
            plan["pretrain"] = (True, a.warm_trials, 0, True, "")
        sides = {}
        for name, (copy, trials, transfer, pretrain, weighted) in plan.items():
            if copy:
                shutil.copy(a.pretrain_db, f"{d}/{name}.db")
            sides[name] = _sub("--side", f"{d}/{name}.db,{trials},{transfer},{int(pretrain)},{weighted}",
                               "--batch", str(a.batch), "--seed", str(a.seed), *wl_args)
        cold = sides["cold"]
        t += "-" + time.strftime("%H:%M UTC", time.gmtime())
    valid = [v for v in cold["lat"] if v is not None]
    if not valid:
        sys.exit("the cold run measured no valid candidate")
    ref = min(valid)
    needed = {name: _within(side["lat"], ref, a.tol) for name, side in sides.items()}
    n_cold, n_warm = needed["cold"], needed["warm"]
    traces = {"cold@%d" % a.cold_trials: _best(cold["lat"], cold["traces"], a.cold_trials)}
    for name, side in sides.items():
        if name != "cold":
            n = needed[name] or len(side["lat"])
            traces[f"{name}@{n}"] = _best(side["lat"], side["traces"], n)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(traces, f)
    retimed = _sub("--retime", f.name, *wl_args)
    print(f"new workload: {a.workload or json.dumps(NEW)}; {t}; pretrain db {a.pretrain_db}")
    print(f"cold reference (best of {len(cold['lat'])} trials, own measurement): {ref:.1f} us")
    within = "trials to within %d%%" % round(a.tol * 100)
    if a.markdown:
        print(f"\n| side | trials run | wall s | {within} of the cold best | best (own) µs |")
        print("| --- | ---: | ---: | ---: | ---: |")
    else:
        print(f"{'side':8s} {'trials run':>10s} {'wall s':>8s} {within:>22s} {'best (own) us':>14s}")
    for name, side in sides.items():
        n = needed[name]
        own = min((v for v in side["lat"] if v is not None), default=float("nan"))
        if a.markdown:
            print(f"| {name} | {len(side['lat'])} | {side['wall_s']:.1f} | {n or 'never'} | {own:,.1f} |")
        else:
            print(f"{name:8s} {len(side['lat']):10d} {side['wall_s']:8.1f} {str(n) if n else 'never':>22s} {own:14.1f}")
    if a.markdown:
        print()
    print("re-timed side by side: " + ", ".join(f"{k} {v:.1f} us" for k, v in retimed.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"workload": a.workload or json.dumps(NEW), "when": t, "seed": a.seed, "cold_best_us": ref,
                       "sides": {name: {"lat": side["lat"], "wall_s": side["wall_s"], "within": needed[name]}
                                 for name, side in sides.items()}, "retimed_us": retimed}, f)
    if n_cold and n_warm:
        print(f"warm needs {n_warm / n_cold:.2f} of the cold trials (goal <= 0.33): "
              f"{'met' if n_warm * 3 <= n_cold else 'missed'}")


if __name__ == "__main__":
    main()
