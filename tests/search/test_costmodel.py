"""Our XGBoost ranking model: trained on real tuning records, it ranks held-out candidates
better than chance, and it round-trips through the database in XGBoost's own format."""

from __future__ import annotations

import numpy as np

from opsearch.costmodel import XGBCostModel, rank_metrics
from opsearch.costmodel.dataset import load_groups


def _split(groups):
    train, held = {}, {}
    for key, (x, secs) in groups.items():
        idx = np.arange(len(secs))
        tr, te = idx[::2], idx[1::2]  # interleaved halves: both span the search's progress
        train[key] = (x[tr], [secs[i] for i in tr])
        held[key] = (x[te], [secs[i] for i in te])
    return train, held


def test_pairwise_accuracy_beats_random(tuned_db):
    db, _ = tuned_db
    groups = load_groups(db, "llvm")
    assert len(groups) == 4 and all(len(s) == 12 for _, s in groups.values())
    train, held = _split(groups)
    model = XGBCostModel()
    for key, (x, secs) in train.items():
        model.add(key, x, secs)
    model.fit()
    ours = rank_metrics(held, model.score)
    rng = np.random.default_rng(0)
    chance = np.mean([rank_metrics(held, lambda x: rng.random(len(x)))["pairwise_accuracy"] for _ in range(20)])
    assert ours["pairs"] > 40
    assert ours["pairwise_accuracy"] > chance + 0.05, (ours, chance)


def test_save_load_round_trip_through_the_database(tuned_db):
    db, _ = tuned_db
    groups = load_groups(db, "llvm")
    model = XGBCostModel()
    for key, (x, secs) in groups.items():
        model.add(key, x, secs)
    model.fit()
    data = model.to_bytes()
    assert data.lstrip().startswith(b"{")  # XGBoost JSON, not a pickle
    db.save_cost_model("llvm", data, format="xgboost-json", n_samples=model.size, metrics=model.metadata())
    fmt, raw, n, meta = db.load_cost_model("llvm")
    assert fmt == "xgboost-json" and n == model.size and meta["feature_version"] >= 1
    other = XGBCostModel()
    other.from_bytes(raw)
    x = np.concatenate([x for x, _ in groups.values()])
    np.testing.assert_allclose(other.score(x), model.score(x), rtol=1e-6)
