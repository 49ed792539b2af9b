"""XGBCostModel: a MetaSchedule cost model that learns to *rank* candidates of a workload.

Stock MetaSchedule's XGBModel regresses per-store scores (squared error on pack-sums), predicts
at random until 100 samples exist, and pickles itself. This model:
- uses candidate-level features (``features.py``) that include the workload, so records of other
  workloads and operators teach it before the first measurement of a new one;
- trains XGBoost with ``rank:pairwise`` where each (workload, target) is one query group and the
  label is throughput relative to the group's best: only the order within a workload matters;
- is pretrained from every measured record of the same target kind in the database, updated
  online after each measured batch, and saved in XGBoost's own JSON format (never pickled);
- can weigh the records of other workloads below those of the workloads being tuned once these
  have measurements of their own (``others_rows``: together the others count as that many own
  records; XGBoost ranking weights are per query group). Off by default (``OTHERS_ROWS`` None):
  on an emeraldrapids VM (2026-12-06) other operators' records counted alike ranked the rounds of
  a search better than weighed at 8, 32 or 128 rows (``benchmarks/costmodel_bench.py --rounds``),
  and the tuner found faster kernels within 64 trials with them (``benchmarks/transfer_bench.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.cost_model import PyCostModel

from ..ops.spec import Workload
from .features import FEATURE_VERSION, N_FEATURES, FeatureCache, candidate_features

log = logging.getLogger(__name__)

PARAMS = {
    "objective": "rank:pairwise",
    "eta": 0.2,
    "max_depth": 6,
    "min_child_weight": 0.5,
    "gamma": 0.0,
    "subsample": 1.0,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "nthread": 1,  # fits are on hundreds to a few thousand rows: a second thread only adds spin (measured 10x CPU under load)
    "verbosity": 0,
    "tree_method": "hist",
}
ROUNDS = 80
FAIL_LABEL = 0.0
OTHERS_ROWS = None  # the weight of all other workloads' records together, in own records (None: alike)


@dataclass
class _Group:
    x: list = field(default_factory=list)  # feature rows
    secs: list = field(default_factory=list)  # mean latency, or None for a failure


def labels(secs: list[float | None]) -> np.ndarray:
    """Throughput relative to the group's best, in (0, 1]; failures get 0."""
    ok = [s for s in secs if s is not None]
    best = min(ok) if ok else 1.0
    return np.array([best / s if s is not None else FAIL_LABEL for s in secs], dtype=np.float32)


@derived_object
class XGBCostModel(PyCostModel):
    """See the module docstring. ``workload_of(context) -> Workload`` maps a tuning context to
    its opsearch workload (the tuner knows it from the task)."""

    def __init__(self, workload_of=None, rounds: int = ROUNDS, seed: int = 0, params: dict | None = None,
                 own=(), others_rows: int | None = OTHERS_ROWS):
        super().__init__()
        self.workload_of = workload_of
        # keys of the workloads being tuned (Workload.key()); update() adds the ones it sees
        self.own: set[str] = set(own)
        self.others_rows = others_rows
        self.rounds = rounds
        self.seed = seed
        self.params = dict(params or {})  # overrides of PARAMS, e.g. {"nthread": 1}
        self.groups: dict[str, _Group] = {}
        self.booster = None
        self.n_pretrained = 0
        self._rng = np.random.default_rng(seed)  # scores while untrained
        self.features = FeatureCache()  # this run's candidates, scored repeatedly by the search
        self.base = None  # a prior booster every fit continues from (set_base)

    # ------------------------------------------------------------------ data
    def add(self, group: str, x: np.ndarray, secs: list[float | None]) -> None:
        g = self.groups.setdefault(group, _Group())
        g.x.extend(np.asarray(x, dtype=np.float32))
        g.secs.extend(secs)

    @property
    def size(self) -> int:
        return sum(len(g.secs) for g in self.groups.values())

    def is_own(self, group: str) -> bool:
        """Whether ``group`` (``Workload.key()``, or ``key@target`` as pretraining names it) holds
        records of a workload being tuned."""
        return group.partition("@")[0] in self.own

    def group_weights(self, groups: list[str], sizes: list[int]) -> np.ndarray:
        """Per-group training weights: 1 for own groups; for the others ``others_rows`` divided by
        their records in all, when the own groups have records and the others more than that."""
        own = [self.is_own(g) for g in groups]
        n_own = sum(n for n, o in zip(sizes, own) if o)
        n_others = sum(n for n, o in zip(sizes, own) if not o)
        w = 1.0
        if self.others_rows is not None and n_own and n_others > self.others_rows:
            w = self.others_rows / n_others
        return np.array([1.0 if o else w for o in own], dtype=np.float32)

    def set_base(self, booster) -> None:
        """Start from ``booster`` (the shipped model, :func:`shipped_model`): it ranks candidates
        until there is data to fit, and every fit adds this model's trees on top of it (XGBoost's
        training continuation), so the prior stays in the ranking as measurements come in."""
        self.base = booster
        if self.booster is None:
            self.booster = booster

    def fit(self) -> None:
        """(Re)train on every group with at least two distinct labels (continuing from the base
        model, if one is set)."""
        import xgboost as xgb

        xs, ys, qs, keys = [], [], [], []
        for key, g in self.groups.items():
            y = labels(g.secs)
            if len(y) < 2 or np.ptp(y) == 0:
                continue
            xs.append(np.asarray(g.x))
            ys.append(y)
            qs.append(len(y))
            keys.append(key)
        if not xs:
            return
        d = xgb.DMatrix(np.concatenate(xs), label=np.concatenate(ys))
        d.set_group(qs)
        d.set_weight(self.group_weights(keys, qs))
        self.booster = xgb.train({**PARAMS, "seed": self.seed, **self.params}, d, num_boost_round=self.rounds,
                                 xgb_model=self.base)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Raw ranking scores (higher is better); random before any training."""
        import xgboost as xgb

        if self.booster is None:
            return self._rng.random(len(x))
        return self.booster.predict(xgb.DMatrix(np.asarray(x, dtype=np.float32)))

    # ------------------------------------------------------------------ MetaSchedule interface
    def _wl(self, context) -> Workload:
        return self.workload_of(context)

    def update(self, context, candidates, results) -> None:
        wl = self._wl(context)
        self.own.add(wl.key())
        x = candidate_features(context, candidates, wl, self.features)
        secs = []
        for r in results:
            rs = [float(s) for s in r.run_secs] if r.run_secs is not None else []
            secs.append(float(np.mean(rs)) if rs and r.error_msg is None and max(rs) < 1e9 else None)
        self.add(wl.key(), x, secs)
        self.fit()

    def predict(self, context, candidates) -> np.ndarray:
        if not candidates:
            return np.zeros(0)
        if self.booster is None:
            # Nothing learnt yet (no pretraining data, first batch): the ranking would be random
            # whatever the features, so none are extracted (stock XGBModel does the same).
            return self.score(np.zeros((len(candidates), 0), np.float32)) * 0.99 + 0.01
        s = self.score(candidate_features(context, candidates, self._wl(context), self.features))
        # EvolutionarySearch samples parents proportionally to scores: map to (0, 1].
        lo, hi = float(np.min(s)), float(np.max(s))
        return ((s - lo) / (hi - lo) if hi > lo else np.ones_like(s)) * 0.99 + 0.01

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    def load(self, path: str) -> None:
        with open(path, "rb") as f:
            self.from_bytes(f.read())

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """The booster in XGBoost's own JSON format (empty bytes when untrained)."""
        return bytes(self.booster.save_raw("json")) if self.booster is not None else b""

    def from_bytes(self, data: bytes) -> None:
        import xgboost as xgb

        if not data:
            self.booster = None
            return
        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        if booster.num_features() != N_FEATURES:
            raise ValueError(f"stored cost model has {booster.num_features()} features, expected {N_FEATURES}")
        self.booster = booster

    def metadata(self) -> dict:
        return {"feature_version": FEATURE_VERSION, "groups": len(self.groups), "rounds": self.rounds,
                "others_rows": self.others_rows}


def rank_metrics(groups: dict[str, tuple[np.ndarray, list[float | None]]], score_fn,
                 margin: float = 0.0) -> dict:
    """Pairwise accuracy and top-1/top-5 recall of ``score_fn`` over held-out groups.

    Pairwise accuracy: over all pairs of measured candidates with different latencies, the
    fraction ordered correctly. With ``margin`` > 0 only pairs whose slower latency exceeds the
    faster by more than that fraction count: pairs closer than timing noise are coin flips for
    any model. Top-k recall: the fraction of groups whose true best candidate is among the k best
    predicted.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    correct = total = top1 = top5 = n = 0
    for x, secs in groups.values():
        ok = [i for i, s in enumerate(secs) if s is not None]
        if len(ok) < 2:
            continue
        pred = np.asarray(score_fn(np.asarray(x)[ok]))
        lat = np.array([secs[i] for i in ok])
        diff_lat = lat[:, None] * (1.0 + margin) < lat[None, :]  # i faster than j (by the margin)
        diff_pred = pred[:, None] > pred[None, :]
        correct += int((diff_lat & diff_pred).sum())
        total += int(diff_lat.sum())
        order = np.argsort(-pred)
        best = int(np.argmin(lat))
        top1 += int(order[0] == best)
        top5 += int(best in order[:5])
        n += 1
    return {
        "pairwise_accuracy": correct / total if total else float("nan"),
        "top1_recall": top1 / n if n else float("nan"),
        "top5_recall": top5 / n if n else float("nan"),
        "groups": n,
        "pairs": total,
    }


def evaluate(model: XGBCostModel, held_out: dict) -> dict:
    """Metrics of a trained model on held-out groups (see :func:`rank_metrics`)."""
    return rank_metrics(held_out, model.score)


def pooled(rows: list[dict]) -> dict:
    """Per-group :func:`rank_metrics` results pooled: accuracy weighted by pairs, recall by groups."""
    pairs = sum(r["pairs"] for r in rows)
    n = sum(r["groups"] for r in rows)

    def mean(name, weight):
        w = sum(r[weight] for r in rows if r[weight])
        return sum(r[name] * r[weight] for r in rows if r[weight]) / w if w else float("nan")

    return {"pairwise_accuracy": mean("pairwise_accuracy", "pairs"), "top1_recall": mean("top1_recall", "groups"),
            "top5_recall": mean("top5_recall", "groups"), "groups": n, "pairs": pairs}


def leave_one_workload_out(groups: dict, seed: int = 0) -> dict:
    """Train on all groups but one, score the held-out one, for every group; pooled metrics of
    our model (``opsearch_xgb``) next to a random ranking (``random``)."""
    ours, rand = [], []
    rng = np.random.default_rng(seed)
    for held in groups:
        m = XGBCostModel()
        for key, (x, secs) in groups.items():
            if key != held:
                m.add(key, x, secs)
        m.fit()
        ours.append(rank_metrics({held: groups[held]}, m.score))
        rand.append(rank_metrics({held: groups[held]}, lambda x: rng.random(len(x))))
    return {"opsearch_xgb": pooled(ours), "random": pooled(rand)}
