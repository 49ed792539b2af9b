"""Our XGBoost ranking model: trained on real tuning records, it ranks held-out candidates
better than chance, and it round-trips through the database in XGBoost's own format."""

from __future__ import annotations

import numpy as np
import pytest

from opsearch.costmodel import XGBCostModel, pooled, rank_metrics
from opsearch.costmodel.dataset import load_groups
from tests.search.conftest import family_workload


def _split(groups, rng):
    """A random half of each workload's candidates to train on, the other half held out."""
    train, held = {}, {}
    for key, (x, secs) in groups.items():
        idx = rng.permutation(len(secs))
        tr, te = idx[: len(secs) // 2], idx[len(secs) // 2:]
        train[key] = (x[tr], [secs[i] for i in tr])
        held[key] = (x[te], [secs[i] for i in te])
    return train, held


SPLITS = 16


def test_pairwise_accuracy_beats_random(tuned_db):
    """Sixteen random half/half splits pooled; only pairs more than 10% apart count (closer pairs
    are timing noise, a coin flip for any model: the FFT workload's candidates sit within 4%
    of each other). With 12 candidates per workload (now 16) one split leaves ~40 such pairs, and two
    fixed folds measured 0.55-0.62 against chance's 0.47-0.51 from run to run (one CI run failed
    at 0.553 vs 0.509 + 0.05); eight splits average that out (0.57 vs 0.50 on the same data as
    the 0.62); sixteen since one CI run measured 0.500 against 0.498."""
    db, _ = tuned_db
    groups = load_groups(db, "llvm")
    assert len(groups) == 4 and sum(len(s) for _, s in groups.values()) == db.count()  # every record replays
    rng = np.random.default_rng(0)
    ours, chance = [], []
    for _ in range(SPLITS):
        train, held = _split(groups, rng)
        model = XGBCostModel()
        for key, (x, secs) in train.items():
            model.add(key, x, secs)
        model.fit()
        ours.append(rank_metrics(held, model.score, margin=0.1))
        chance += [rank_metrics(held, lambda x: rng.random(len(x)), margin=0.1) for _ in range(25)]
    ours, chance = pooled(ours), pooled(chance)
    assert ours["pairs"] > 15 * SPLITS
    assert abs(chance["pairwise_accuracy"] - 0.5) < 0.02, chance  # the random scorer is chance
    assert ours["pairwise_accuracy"] > chance["pairwise_accuracy"] + 0.03, (ours, chance)


def test_rank_metrics_margin_drops_close_pairs():
    x = np.zeros((3, 1))
    secs = [1.0, 1.05, 2.0]  # pairs (0,1) within 10%; (0,2), (1,2) apart
    good = rank_metrics({"w": (x, secs)}, lambda _: np.array([3.0, 2.0, 1.0]), margin=0.1)
    assert good["pairs"] == 2 and good["pairwise_accuracy"] == 1.0
    swapped = rank_metrics({"w": (x, secs)}, lambda _: np.array([2.0, 3.0, 1.0]))
    assert swapped["pairs"] == 3 and abs(swapped["pairwise_accuracy"] - 2 / 3) < 1e-12
    with pytest.raises(ValueError, match="margin"):
        rank_metrics({"w": (x, secs)}, lambda _: np.zeros(3), margin=-1)


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


def _schedules(wl):
    """Three distinct real schedules of ``wl``: unscheduled, a split, a split + parallel."""
    import tvm

    from opsearch.ops.tir import ir_module

    out = []
    for factor, parallel in ((None, False), (4, False), (2, True)):
        sch = tvm.s_tir.Schedule(ir_module(wl))
        if factor:
            loops = sch.get_loops(sch.get_output_blocks(sch.get_sblock("root"))[0])
            sch.split(loops[-1], [None, factor])
            if parallel:
                sch.parallel(loops[0])
        out.append(sch)
    return out


def test_replay_records_keeps_order_and_agrees_with_load_groups(tmp_path):
    import pytest

    from opsearch import db as dbmod
    from opsearch import ops
    from opsearch.costmodel.dataset import replay_records
    from opsearch.costmodel.features import N_FEATURES
    from opsearch.db import Record
    from opsearch.db.replay import module_hash, trace_json

    target = "llvm:znver3"
    wl = ops.get("dilated_conv1d").workload(x=[1, 5, 29], weight=[5, 5, 3], dilation=2)
    scheds = _schedules(wl)
    lat = np.random.default_rng().uniform(5.0, 500.0, size=3)
    ok = [Record.new(wl, target, module_hash(s.mod), run_us=[t * 0.98, t * 1.02], trace=trace_json(s))
          for s, t in zip(scheds, lat)]
    failed = Record.new(wl, target, "failed", status="run_error", error="injected", trace=trace_json(scheds[1]))
    unmeasured = Record.new(wl, target, "unmeasured", trace=trace_json(scheds[2]))
    stale = Record.new(wl, target, "stale", run_us=[1.0], trace=[[["GetSBlock", [], ["no_such_block", "main"], ["b0"]]], []])
    recs = [ok[0], failed, unmeasured, stale, ok[1], ok[2]]

    g = replay_records(recs)
    assert [r.module_hash for r in g.records] == [ok[0].module_hash, "failed", ok[1].module_hash, ok[2].module_hash]
    np.testing.assert_allclose([s if s is None else s * 1e6 for s in g.secs][2:], lat[1:], rtol=1e-9)
    assert g.secs[1] is None and abs(g.secs[0] * 1e6 - lat[0]) < 1e-6 * lat[0]
    assert g.x.shape == (4, N_FEATURES) and len(g.candidates) == 4
    np.testing.assert_array_equal(g.x[1], g.x[2])  # the failure replays the same schedule as ok[1]
    assert not np.array_equal(g.x[0], g.x[2]) and not np.array_equal(g.x[2], g.x[3])
    tail = g.subset(slice(2, None))
    assert tail.secs == g.secs[2:] and np.array_equal(tail.x, g.x[2:]) and tail.key == g.key
    assert len(replay_records(recs, limit=2)) == 2

    other = ops.get("dilated_conv1d").workload(x=[1, 5, 31], weight=[5, 5, 3], dilation=2)
    with pytest.raises(ValueError, match="one workload on one target"):
        replay_records([ok[0], Record.new(other, target, "x", run_us=[1.0], trace=ok[0].trace)])

    db = dbmod.connect(f"sqlite:///{tmp_path / 'cm.db'}")
    db.add_records(recs)
    (key, (x, secs)), = load_groups(db, "llvm").items()
    assert key == g.key and np.array_equal(x, g.x)
    np.testing.assert_allclose([s or 0.0 for s in secs], [s or 0.0 for s in g.secs], rtol=1e-9)


def test_params_override_reaches_xgboost():
    import json

    from opsearch.costmodel.features import N_FEATURES

    rng = np.random.default_rng()
    m = XGBCostModel(params={"nthread": 1, "max_depth": 2})
    m.add("g", rng.random((23, N_FEATURES)), list(rng.uniform(1e-5, 1e-3, 23)))
    m.fit()
    assert json.loads(m.booster.save_config())["learner"]["generic_param"]["nthread"] == "1"
    trees = json.loads(m.booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    assert len(trees) == m.rounds and max(len(t["left_children"]) for t in trees) <= 7  # depth <= 2


@pytest.mark.parametrize("pretrain", [True, False])
def test_tuner_pretrains_the_model_only_when_asked(tuned_db, pretrain):
    """``TuneConfig.pretrain`` alone decides whether the search starts from the database's records
    (seeding is the separate ``transfer``), so the two can be measured apart."""
    from opsearch.search import TuneConfig, Tuner

    db, results = tuned_db
    wl = next(iter(results))
    model = Tuner([wl], "cpu", db, TuneConfig(pretrain=pretrain))._cost_model(lambda key: wl)
    if pretrain:  # every measured record of the database's llvm workloads (failures excluded)
        loaded = sum(len(secs) for _, secs in load_groups(db, "llvm").values())
        assert model.n_pretrained == loaded > 12 and model.booster is not None
    else:
        assert model.n_pretrained == 0 and model.size == 0 and model.booster is None


def test_feature_cache_gives_the_rows_extraction_gives(tuned_db, monkeypatch):
    """Rows served from the cache equal freshly extracted ones, in the candidates' order; a
    schedule scored again is not lowered again; distinct schedules get distinct rows."""
    from opsearch.costmodel import features
    from opsearch.costmodel.dataset import replay_records, tune_context

    db, results = tuned_db
    wl = family_workload("dilated")
    g = replay_records(db.history(wl, "cpu"))
    ctx, cands = tune_context(wl, g.target), g.candidates
    cache = features.FeatureCache()
    first = features.candidate_features(ctx, cands[:6], wl, cache)
    lowered = []
    real = features._per_store
    monkeypatch.setattr(features, "_per_store", lambda c, cs: lowered.append(len(cs)) or real(c, cs))
    mixed = cands[3:] + cands[:3]  # six cached rows (three first, three last), the rest new
    got = features.candidate_features(ctx, mixed, wl, cache)
    assert lowered == [len(cands) - 6]
    np.testing.assert_array_equal(got, features.candidate_features(ctx, mixed, wl))
    np.testing.assert_array_equal(got[-3:], first[:3])
    np.testing.assert_array_equal(got[:3], first[3:])
    assert cache.hits == 6 and cache.misses == len(cands)
    assert len({r.tobytes() for r in got}) > len(cands) // 2  # the key tells schedules apart


def test_an_untrained_model_ranks_at_random_without_extracting_features(tuned_db, monkeypatch):
    """Before any data (no pretraining, first batch) the ranking is random whatever the features,
    so predict must not pay for them; scores stay in (0, 1] for the evolutionary search."""
    from opsearch.costmodel import xgb
    from opsearch.costmodel.dataset import replay_records, tune_context

    db, _ = tuned_db
    wl = family_workload("dilated")
    g = replay_records(db.history(wl, "cpu"))
    ctx, cands = tune_context(wl, g.target), g.candidates
    monkeypatch.setattr(xgb, "candidate_features", lambda *a: pytest.fail("features extracted"))
    model = XGBCostModel(workload_of=lambda ctx: pytest.fail("workload looked up"))
    scores = model.predict(ctx, cands)
    assert scores.shape == (len(cands),) and np.all((scores > 0) & (scores <= 1)) and np.ptp(scores) > 0.3
    assert not np.array_equal(scores, model.predict(ctx, cands))  # fresh draws each call


def _conflicting(rng, n: int, sign: float):
    """``n`` candidates whose latency rises (sign +1) or falls (sign -1) with feature 0, with
    noise; the other features are noise. No feature tells the two kinds apart."""
    x = rng.random((n, 4)).astype(np.float32)
    secs = list(1.5 + sign * x[:, 0] + 0.05 * rng.random(n))
    return x, secs


def test_weighing_other_workloads_lets_own_measurements_decide():
    """Two thousand records of other workloads say 'small feature 0 is fast'; the tuned workload's
    own 64 say the opposite, and no feature tells the two apart. With the others weighed as two
    own records in all (``others_rows=2``) the own records decide the ranking of fresh own
    candidates; counted alike (the default) the two sides pull against each other."""
    acc = {}
    for others_rows in (2, None):
        rng = np.random.default_rng(7)
        model = XGBCostModel(own=["own"], others_rows=others_rows)
        for i in range(8):
            model.add(f"other{i}@llvm:x", *_conflicting(rng, 250, +1.0))
        model.add("own@llvm:x", *_conflicting(rng, 64, -1.0))
        model.fit()
        held = _conflicting(rng, 200, -1.0)
        acc[others_rows] = rank_metrics({"own": held}, model.score, margin=0.1)["pairwise_accuracy"]
    assert acc[2] > 0.85 and acc[None] < acc[2] - 0.2, acc


def test_group_weights():
    m = XGBCostModel(own=["a"], others_rows=32)
    # own groups 1; the others together weigh 32 own records, split by their sizes alike
    np.testing.assert_allclose(m.group_weights(["a@llvm:x", "b@llvm:x", "c"], [10, 100, 60]), [1, 0.2, 0.2])
    # before the tuned workload has records, and when the others are few, all count alike
    np.testing.assert_allclose(m.group_weights(["b", "c"], [100, 60]), [1, 1])
    np.testing.assert_allclose(m.group_weights(["a", "b"], [10, 20]), [1, 1])
    assert XGBCostModel(own=["a"], others_rows=None).group_weights(["a", "b"], [10, 100]).tolist() == [1, 1]
    # update() makes a workload its own: the tuner also names them up front
    assert not XGBCostModel().is_own("a@llvm:x")


def test_pretraining_features_are_stored_and_reused(tuned_db, monkeypatch, tmp_path):
    """The second load of the same records reads their features from the store instead of
    replaying them; the rows are the ones extraction gives. A damaged store file is ignored and
    rewritten, and a record added later is the only one replayed."""
    from opsearch.costmodel import dataset, feature_store

    monkeypatch.setenv("OPSEARCH_CACHE_DIR", str(tmp_path))
    db, _ = tuned_db
    first = load_groups(db, "llvm")
    files = sorted(feature_store.store_dir().glob("*.npz"))
    assert len(files) == len(first) == 4

    def no_replay(records, limit=None):
        pytest.fail(f"replayed {len(list(records))} records that the store holds")

    with monkeypatch.context() as m:
        m.setattr(dataset, "replay_records", no_replay)
        again = load_groups(db, "llvm")
    assert again.keys() == first.keys()
    for key, (x, secs) in first.items():
        np.testing.assert_array_equal(again[key][0], x)
        assert again[key][1] == secs

    files[0].write_bytes(b"not an npz")  # damaged: ignored, replayed and rewritten
    third = load_groups(db, "llvm")
    assert all(np.array_equal(third[k][0], first[k][0]) for k in first)
    assert feature_store.load(files[0])  # rewritten whole

    # One record dropped from a group's file: only that record is replayed.
    rows = feature_store.load(files[1])
    dropped = next(iter(rows))
    del rows[dropped]
    feature_store.save(files[1], rows)
    seen = []
    real = dataset.replay_records
    with monkeypatch.context() as m:
        m.setattr(dataset, "replay_records", lambda recs, limit=None: seen.append(len(recs)) or real(recs, limit))
        load_groups(db, "llvm")
    assert seen == [1]


def test_a_base_model_ranks_until_data_and_stays_under_later_fits():
    """set_base: the prior model ranks before any fit; a fit on the workload's own records adds
    trees on top of it (the prior itself is not changed), so with conflicting own records the
    ranking moves towards them but the prior still counts."""
    rng = np.random.default_rng(3)
    prior = XGBCostModel()
    for i in range(4):
        prior.add(f"other{i}", *_conflicting(rng, 200, +1.0))
    prior.fit()
    rounds = prior.booster.num_boosted_rounds()
    held = _conflicting(rng, 200, -1.0)

    def acc(m):
        return rank_metrics({"own": held}, m.score, margin=0.1)["pairwise_accuracy"]

    m = XGBCostModel()
    m.set_base(prior.booster)
    assert m.booster is prior.booster and acc(m) < 0.3  # the prior's order: wrong for this workload
    m.add("own", *_conflicting(rng, 64, -1.0))
    m.fit()
    assert prior.booster.num_boosted_rounds() == rounds  # continuation copies the prior
    assert m.booster.num_boosted_rounds() == rounds + m.rounds
    assert acc(m) > acc(prior) + 0.3, (acc(m), acc(prior))


def test_model_train_out_writes_a_model_the_tuner_can_start_from(tuned_db, tmp_path, caplog):
    """``opsearch model train --out FILE`` writes XGBoost JSON with the feature version and what it
    was trained on; read_model reads it back. A stale feature version or a file XGBoost cannot
    read is skipped with a warning, and an unwritable path is a one-line exit 2."""
    import os
    import subprocess
    import sys

    from opsearch.costmodel.features import FEATURE_VERSION, N_FEATURES
    from opsearch.costmodel.shipped import read_model, write_model

    db, _ = tuned_db
    exe = [os.path.join(os.path.dirname(sys.executable), "opsearch")]
    out = tmp_path / "costmodel-llvm.json"
    p = subprocess.run([*exe, "model", "train", "--db", db.url, "--out", str(out), "--json"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes().lstrip().startswith(b"{")  # XGBoost JSON, not a pickle
    booster = read_model(out)
    assert booster is not None and booster.num_features() == N_FEATURES
    attrs = booster.attributes()
    assert attrs["feature_version"] == str(FEATURE_VERSION) and int(attrs["records"]) == db.count()
    assert attrs["workloads"] == "4" and attrs["targets"].startswith("llvm:")

    write_model(booster, tmp_path / "stale.json", feature_version=FEATURE_VERSION + 1)
    (tmp_path / "garbage.json").write_text("{not a model")
    with caplog.at_level("WARNING"):
        assert read_model(tmp_path / "stale.json") is None and read_model(tmp_path / "garbage.json") is None
    assert "trained on features of version" in caplog.text and "cannot read" in caplog.text

    p = subprocess.run([*exe, "model", "train", "--db", db.url, "--out", str(tmp_path / "no" / "such" / "m.json")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "cannot write the model" in p.stderr


def test_the_tuner_starts_from_the_shipped_model_only_with_nothing_to_pretrain_on(tuned_db, tmp_path):
    from opsearch import db as dbmod
    from opsearch.costmodel.features import N_FEATURES
    from opsearch.costmodel.shipped import shipped_model
    from opsearch.search.config import TuneConfig
    from opsearch.search.tuner import Tuner

    shipped = shipped_model("llvm")
    assert shipped is not None and shipped.num_features() == N_FEATURES  # the file in schedules/ is usable
    wl = family_workload("dilated")
    empty = dbmod.connect(f"sqlite:///{tmp_path / 'empty.db'}")
    model = Tuner([wl], "cpu", empty, TuneConfig())._cost_model(lambda ctx: wl)
    assert model.base is shipped and model.booster is shipped
    model = Tuner([wl], "cpu", empty, TuneConfig(include_shipped=False))._cost_model(lambda ctx: wl)
    assert model.base is None and model.booster is None
    db, _ = tuned_db  # records to pretrain on: the database's own, no shipped prior
    model = Tuner([wl], "cpu", db, TuneConfig())._cost_model(lambda ctx: wl)
    assert model.base is None and model.booster is not None and model.n_pretrained > 0
