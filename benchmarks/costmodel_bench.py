"""Cost-model benchmark: our XGBoost ranking model vs stock MetaSchedule ``XGBModel``, side by side.

Takes every ``ok`` record of every workload on one target (replayed to schedules once; failed
records are left out of training and scoring for both models), then on the SAME splits trains
and scores:

* ``ours``        opsearch ``XGBCostModel`` (rank:pairwise, one query group per workload);
* ``stock``       ``tvm.s_tir.meta_schedule.cost_model.XGBModel`` (pack-sum squared error on the
                  same PerStoreFeature), with ``num_warmup_samples=0`` -- its default of 100 makes
                  it predict at random below 100 samples, which would be no comparison at all;
* ``random``      uniform random scores, averaged over RANDOM_DRAWS draws (the floor).

Splits:

1. held-out: leave one workload out (``--holdout workload``) or one operator family out
   (``--holdout family``): train on every other workload's (family's) records, rank the held-out
   workload's candidates -- a workload the model has never seen;
2. online: within each workload, train on the first half of its records in measurement order and
   rank the second half (what search does);
3. per round (``--rounds B``): replays a search round by round -- records in measurement order,
   in batches of B ok records (about the tuner's ``--batch``: failed candidates are left out); for every batch after the first, train on every
   record measured before it and rank the batch.  top-1 / top-5 here say how often the model,
   had it been asked to pick among what that round measured, would have put the round's fastest
   candidate first / in its first five; ``new best`` counts rounds that improved the workload's
   best so far (rounds where the model's pick matters most).  ``ours+pre`` and ``stock+others`` also get every
   other workload's records first (the tuner pretrains ours on the database -- there with the
   failures as label 0 and every target of the kind; a MetaSchedule session tuning several
   tasks shares one model the same way).

Metrics (``opsearch.costmodel.rank_metrics``): pairwise accuracy over candidate pairs with
different latency (ties excluded), top-1 / top-5 recall of the truly fastest candidate; tied
predictions are broken at random (averaged over TIE_DRAWS draws).  Each table row is one
held-out workload (n = candidates ranked); ``mean`` is the unweighted mean over workloads.

The stock model retrains on every ``update`` call (adaptive training then skips some); to give it
exactly the same training data as ours in one training, the benchmark feeds each workload as one
``update`` and defers its training to the last one.  Its train/predict seconds include its own
feature extraction (its API takes candidates); ours are on features extracted once up front
(reported separately as ``features``).

    python benchmarks/costmodel_bench.py --db sqlite:////tmp/ship.db --target cpu
    python benchmarks/costmodel_bench.py --db sqlite:////tmp/ship.db --holdout family --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections import defaultdict

import numpy as np

import opsearch.db
from opsearch import ops
from opsearch.costmodel import XGBCostModel, rank_metrics
from opsearch.costmodel.dataset import replay_records
from opsearch.costmodel.xgb import ROUNDS
from opsearch.errors import OpsearchError

# XGBoost threads of both models (--threads). The tuner's PARAMS use 2, but on a shared 2-core
# machine OpenMP's spinning makes nthread=2 cost ~10x the CPU of 1 on these small data sets,
# with identical models; train/predict seconds are only comparable at equal thread counts.
NTHREAD = 1
RANDOM_DRAWS = 200
TIE_DRAWS = 50
METRICS = ("pairwise_accuracy", "top1_recall", "top5_recall")


class Timer:
    """Wall and CPU (this process, all threads) seconds per (model, phase): the machine is
    shared, so CPU seconds are the steadier number."""

    def __init__(self):
        self.s = defaultdict(float)
        self.cpu = defaultdict(float)

    def __call__(self, key, fn, *args):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args)
        self.s[key] += time.perf_counter() - t0
        self.cpu[key] += time.process_time() - c0
        return out

    def summary(self) -> str:
        models = dict.fromkeys(k[0] for k in self.s)
        return "; ".join(f"{m} train {self.s[(m, 'train')]:.1f} s ({self.cpu[(m, 'train')]:.1f} CPU) / predict "
                         f"{self.s[(m, 'predict')]:.2f} s ({self.cpu[(m, 'predict')]:.2f} CPU)" for m in models)

    def to_json(self) -> dict:
        return {f"{m}/{p}": {"wall_s": v, "cpu_s": self.cpu[(m, p)]} for (m, p), v in self.s.items()}


# ----------------------------------------------------------------------------- data
def load(db, target: str, min_records: int):
    """Replayed groups of ``ok`` records per workload on ``target``, in measurement order."""
    by_wl = defaultdict(list)
    for rec in db.records(target=target, status="ok"):
        by_wl[rec.workload].append(rec)
    groups, skipped = [], []
    for wl, recs in by_wl.items():
        g = replay_records(recs)
        if len(g) < min_records or len(set(g.secs)) < 2:
            skipped.append((wl.key(), len(g)))
            continue
        groups.append(g)
    return groups, skipped


def label(g) -> str:
    """``op/example`` for an operator's example workload, else ``op`` and its compact shape."""
    op = ops.get(g.workload.op)
    for name in op.examples:
        if op.example(name) == g.workload:
            return f"{op.name}/{name}"
    return f"{op.name} {g.workload.short()}"


# ----------------------------------------------------------------------------- models
OURS_PARAMS: dict = {}  # --ours-params: overrides of opsearch.costmodel.xgb.PARAMS (ablations)


def train_ours(train_groups, seed=0, own=(), others_rows=None, base=None) -> XGBCostModel:
    """Our model trained on ``train_groups``; the workload keys in ``own`` are the ones being tuned
    (with ``others_rows`` N, the other groups together weigh as N own records; None: all alike)."""
    params = dict(OURS_PARAMS)
    m = XGBCostModel(seed=seed, rounds=params.pop("rounds", ROUNDS), params={"nthread": NTHREAD, **params},
                     own=own, others_rows=others_rows)
    if base is not None:
        m.set_base(base)
    for g in train_groups:
        m.add(g.key, g.x, g.secs)
    m.fit()
    return m


def _results(g):
    from tvm.s_tir.meta_schedule.runner import RunnerResult

    return [RunnerResult([t / 1e6 for t in r.run_us], None) for r in g.records]


def train_stock(train_groups):
    """Stock XGBModel fed one ``update`` per workload, trained once at the last one."""
    from tvm.s_tir.meta_schedule.cost_model import XGBModel

    m = XGBModel(num_warmup_samples=0, num_tuning_cores=NTHREAD)
    for i, g in enumerate(train_groups):
        last = i == len(train_groups) - 1
        m.adaptive_training = not last  # not last: skip training (the data grew < last_train_size/5)
        m.last_train_size = 0 if last else 10**12
        m.update(g.context, g.candidates, _results(g))
    assert m.booster is not None and m.last_train_size == m.data_size, "stock XGBModel did not train on all data"
    return m


def predict_stock(m, g) -> np.ndarray:
    pred = np.asarray(m.predict(g.context, g.candidates))
    if len(pred) != len(g):  # it drops candidates without per-store features
        raise RuntimeError(f"stock XGBModel scored {len(pred)} of {len(g)} candidates of {label(g)}")
    return pred


def metrics(g, pred, draws: int = TIE_DRAWS) -> dict:
    """rank_metrics of per-candidate predictions ``pred`` for group ``g``.

    Tied predictions (the stock model's pack-sum often gives several candidates the same
    score) are broken at random and the metrics averaged over ``draws`` tie-breaks, so a tie is
    worth half a correct pair and the top-k pick among tied candidates is not decided by
    measurement order.
    """
    pred = np.asarray(pred, dtype=np.float64)
    idx = np.arange(len(g))[:, None]  # rank_metrics takes feature rows; ours are row indices
    rng = np.random.default_rng(len(g))
    draws = draws if len(np.unique(pred)) < len(pred) else 1
    rows = []
    for _ in range(draws):
        rank = np.empty(len(pred))
        rank[np.lexsort((rng.random(len(pred)), pred))] = np.arange(len(pred))
        rows.append(rank_metrics({g.key: (idx, g.secs)}, lambda i, r=rank: r[i[:, 0]]))
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS} | {"pairs": rows[0]["pairs"]}


def random_floor(g, rng) -> dict:
    rows = [metrics(g, rng.random(len(g)), draws=1) for _ in range(RANDOM_DRAWS)]
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS} | {"pairs": rows[0]["pairs"]}


# ----------------------------------------------------------------------------- splits
def held_out(groups, holdout: str, timer: Timer, rng) -> tuple[list[str], list[dict]]:
    fam = {g.key: ops.get(g.workload.op).family for g in groups}
    rows, trained = [], {}  # leave-one-family-out trains once per family
    for g in groups:
        train = [h for h in groups if (fam[h.key] != fam[g.key] if holdout == "family" else h is not g)]
        if not train:
            continue
        tkey = tuple(h.key for h in train)
        if tkey not in trained:
            trained[tkey] = (timer(("ours", "train"), train_ours, train), timer(("stock", "train"), train_stock, train))
        ours, stock = trained[tkey]
        p_ours = timer(("ours", "predict"), ours.score, g.x)
        p_stock = timer(("stock", "predict"), predict_stock, stock, g)
        rows.append({"workload": label(g), "n": len(g), "train_records": sum(len(h) for h in train),
                     "ours": metrics(g, p_ours), "stock": metrics(g, p_stock), "random": random_floor(g, rng)})
    return ["ours", "stock", "random"], rows


def online(groups, timer: Timer, rng) -> tuple[list[str], list[dict]]:
    rows = []
    for g in groups:
        h = len(g) // 2
        first, second = g.subset(slice(0, h)), g.subset(slice(h, None))
        others = [o for o in groups if o is not g]
        row = {"workload": label(g), "n": len(second), "train_records": h}
        ours = timer(("ours", "train"), train_ours, [first])
        row["ours"] = metrics(second, timer(("ours", "predict"), ours.score, second.x))
        pre = timer(("ours+pre", "train"), train_ours, [*others, first])
        row["ours+pre"] = metrics(second, timer(("ours+pre", "predict"), pre.score, second.x))
        stock = timer(("stock", "train"), train_stock, [first])
        row["stock"] = metrics(second, timer(("stock", "predict"), predict_stock, stock, second))
        st_o = timer(("stock+others", "train"), train_stock, [*others, first])
        row["stock+others"] = metrics(second, timer(("stock+others", "predict"), predict_stock, st_o, second))
        row["random"] = random_floor(second, rng)
        rows.append(row)
    return ["ours", "ours+pre", "stock", "stock+others", "random"], rows


OTHERS_WEIGHTS = [8.0, 32.0, 128.0]  # --others-rows: the ours+pre-wN columns of the per-round replay


def pre_models() -> list[str]:
    return ["ours+pre", *(f"ours+pre-w{n:g}" for n in OTHERS_WEIGHTS), "ours+base"]


def per_round(groups, batch: int, timer: Timer, rng) -> tuple[list[str], list[dict]]:
    """Each workload's rounds replayed: train on what was measured before a round, rank the round.

    With other workloads present, ``ours+pre`` also trains on all of their records alike (what the
    tuner does) and ``ours+pre-wN`` weighs them as N own records in all (``XGBCostModel.others_rows``,
    N from ``--others-rows``); ``ours+base`` starts from a model of the other workloads alone and
    adds trees for the workload's own records (``XGBCostModel.set_base``: what the tuner does with
    the shipped model on an empty database); the first round, which only a model of other
    workloads can rank, is scored apart (``row["first"]``)."""
    rows = []
    for g in groups:
        others = [o for o in groups if o is not g]
        models = ["ours", *(pre_models() if others else []), "stock", "random"]
        per_model = {m: [] for m in models}
        n, improved = 0, 0
        own = [g.workload.key()]
        first = g.subset(slice(0, batch))
        row_first = None
        # one model of the other workloads alone: it ranks the first round and is ours+base's prior
        pre = timer(("ours+pre", "train"), train_ours, others) if others else None
        base = pre.booster if pre is not None else None
        if pre is not None and len(first) >= 2 and len(set(first.secs)) > 1:
            row_first = {"n": len(first), "ours+pre": metrics(first, pre.score(first.x)),
                         "random": random_floor(first, rng)}
        for start in range(batch, len(g), batch):
            before, now = g.subset(slice(0, start)), g.subset(slice(start, start + batch))
            if len(now) < 2 or len(set(now.secs)) < 2:
                continue
            n += len(now)
            improved += bool(min(now.secs) < min(before.secs))
            ours = timer(("ours", "train"), train_ours, [before])
            per_model["ours"].append(metrics(now, timer(("ours", "predict"), ours.score, now.x)))
            if others:
                for name, rows_w in zip(pre_models(), (None, *OTHERS_WEIGHTS)):
                    m = timer((name, "train"), train_ours, [*others, before], 0, own, rows_w)
                    per_model[name].append(metrics(now, timer((name, "predict"), m.score, now.x)))
                m = timer(("ours+base", "train"), train_ours, [before], 0, own, None, base)
                per_model["ours+base"].append(metrics(now, timer(("ours+base", "predict"), m.score, now.x)))
            stock = timer(("stock", "train"), train_stock, [before])
            per_model["stock"].append(metrics(now, timer(("stock", "predict"), predict_stock, stock, now)))
            per_model["random"].append(random_floor(now, rng))
        if not per_model["ours"]:
            continue
        row = {"workload": label(g), "n": n, "train_records": None, "rounds": len(per_model["ours"]),
               "new_best_rounds": improved, "first": row_first}
        for m, rs in per_model.items():
            row[m] = {k: float(np.mean([r[k] for r in rs])) for k in METRICS}
        rows.append(row)
    return ["ours", *(pre_models() if len(groups) > 1 else []), "stock", "random"], rows


# ----------------------------------------------------------------------------- report
def mean_row(models, rows) -> dict:
    out = {"workload": "mean", "n": sum(r["n"] for r in rows), "train_records": None}
    for m in models:
        out[m] = {k: float(np.nanmean([r[m][k] for r in rows])) for k in METRICS}
    return out


def table(title: str, models, rows) -> str:
    if not rows:
        return f"{title}\n(no workload has training data: a single workload or a single family)"
    w = max(8, *(len(r["workload"]) for r in rows))
    head = f"{'workload':{w}s} {'n':>4s} | " + " | ".join(f"{m:^17s}" for m in models)
    sub = f"{'':{w}s} {'':>4s} | " + " | ".join(f"{'pair':>5s} {'top1':>5s} {'top5':>5s}" for _ in models)
    lines = [title, head, sub, "-" * len(head)]
    for r in [*rows, mean_row(models, rows)]:
        if r["workload"] == "mean":
            lines.append("-" * len(head))
        cells = " | ".join(" ".join(f"{r[m][k]:5.3f}" if not math.isnan(r[m][k]) else "  -  " for k in METRICS)
                           for m in models)
        lines.append(f"{r['workload']:{w}s} {r['n']:4d} | {cells}")
    return "\n".join(lines)


def md_table(title: str, models, rows) -> str:
    """:func:`table` as a markdown table (``--markdown``): pairwise accuracy / top-1 / top-5 per model."""
    if not rows:
        return f"{title}: no workload has training data (a single workload or a single family)."
    lines = [f"**{title}**", "", "| workload | n | " + " | ".join(f"{m}: pair / top1 / top5" for m in models) + " |",
             "| --- | ---: |" + " ---: |" * len(models)]
    for r in [*rows, mean_row(models, rows)]:
        cells = " | ".join(" / ".join("—" if math.isnan(r[m][k]) else f"{r[m][k]:.3f}" for k in METRICS) for m in models)
        name = "**mean**" if r["workload"] == "mean" else r["workload"]
        lines.append(f"| {name} | {r['n']} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    global NTHREAD, OURS_PARAMS, OTHERS_WEIGHTS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, action="append",
                    help="database URL (read only); repeat it to pool the workloads of several databases")
    ap.add_argument("--target", default="cpu", help="target whose records are used (default: cpu)")
    ap.add_argument("--holdout", choices=("workload", "family"), default="workload")
    ap.add_argument("--min-records", type=int, default=8, help="skip workloads with fewer ok records")
    ap.add_argument("--threads", type=int, default=NTHREAD, help="XGBoost threads for both models (default: 1)")
    ap.add_argument("--rounds", type=int, metavar="B", help="also replay each workload's search in rounds of B "
                    "records (the tuner's batch) and rank each round with what came before it")
    ap.add_argument("--ours-params", type=json.loads, default={}, metavar="JSON",
                    help='overrides of our model\'s XGBoost parameters, e.g. \'{"objective": "reg:squarederror"}\'; "rounds" sets the boosting rounds')
    ap.add_argument("--others-rows", default=",".join(f"{n:g}" for n in OTHERS_WEIGHTS), metavar="N,...",
                    help="per-round replay: weights of other workloads' records, in own records (default %(default)s)")
    ap.add_argument("--json", help="also write every number to this file")
    ap.add_argument("--markdown", action="store_true", help="print the two tables as markdown")
    args = ap.parse_args(argv)
    NTHREAD = args.threads
    OURS_PARAMS = args.ours_params
    OTHERS_WEIGHTS = [float(v) for v in args.others_rows.split(",") if v.strip()]
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)

    from opsearch.db.records import target_name

    for url in args.db:
        if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///"):]):
            print(f"error: no database at {url[len('sqlite:///'):]} (the benchmark only reads one)", file=sys.stderr)
            return 2
    try:
        target = target_name(args.target)
        timer = Timer()
        groups, skipped = [], []
        for url in args.db:
            g, sk = timer(("features", "replay+extract"), load, opsearch.db.connect(url), target, args.min_records)
            groups += g
            skipped += sk
    except OpsearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(groups) < (1 if args.rounds else 2):
        print(f"error: need >= 2 workloads with >= {args.min_records} ok records on {target}, "
              f"found {len(groups)} (skipped: {skipped})", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    print(f"{' '.join(args.db)}  target {target}: {len(groups)} workloads, {sum(len(g) for g in groups)} ok records"
          + (f"; skipped {len(skipped)} with < {args.min_records}" if skipped else ""))
    t_ho = Timer()
    m_ho, r_ho = held_out(groups, args.holdout, t_ho, rng)
    t_on = Timer()
    m_on, r_on = online(groups, t_on, rng)
    render = md_table if args.markdown else table
    print()
    print(render(f"1. held-out (leave one {args.holdout} out): train on the others, rank the held-out one", m_ho, r_ho))
    print()
    print(render("2. online: train on the first half of a workload (measurement order), rank the second half",
                 m_on, r_on))
    print()
    t_ro, r_ro = Timer(), []
    if args.rounds:
        m_ro, r_ro = per_round(groups, args.rounds, t_ro, rng)
        print(render(f"3. per round: train on the records before each round of {args.rounds}, rank the round", m_ro, r_ro))
        for r in r_ro:
            print(f"   {r['workload']}: {r['rounds']} rounds ranked, {r['new_best_rounds']} of them found a new best")
        firsts = [r["first"] for r in r_ro if r["first"]]
        if firsts:
            print(f"   first round of {args.rounds}, ranked by a model of the other workloads only "
                  "(ours+pre / random), pair top1 top5:")
            for r in r_ro:
                if r["first"]:
                    f0 = r["first"]
                    print(f"   {r['workload']}: " + " / ".join(" ".join(f"{f0[m][k]:.3f}" for k in METRICS)
                                                          for m in ("ours+pre", "random")))
            print("   mean: " + " / ".join(" ".join(f"{np.mean([f0[m][k] for f0 in firsts]):.3f}" for k in METRICS)
                                         for m in ("ours+pre", "random")))
        print()
    f = ("features", "replay+extract")
    print(f"features (replay + extract, once, for ours): {timer.s[f]:.1f} s ({timer.cpu[f]:.1f} CPU)")
    print(f"held-out: {t_ho.summary()}")
    print(f"online:   {t_on.summary()}")
    if args.rounds:
        print(f"rounds:   {t_ro.summary()}")
    if args.json:
        out = {"db": args.db, "target": target, "holdout": args.holdout, "skipped": skipped,
               "held_out": {"rows": r_ho, "mean": mean_row(m_ho, r_ho) if r_ho else None},
               "online": {"rows": r_on, "mean": mean_row(m_on, r_on)},
               "rounds": {"batch": args.rounds, "rows": r_ro, "mean": mean_row(m_ro, r_ro) if r_ro else None},
               "seconds": {"features": timer.to_json(), "held_out": t_ho.to_json(), "online": t_on.to_json()}}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
