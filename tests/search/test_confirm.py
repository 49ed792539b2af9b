"""Confirming the finalists: the fastest records timed again side by side replace their timings."""

from __future__ import annotations

import pytest

from opsearch import db as dbmod
from opsearch.errors import DatabaseError, OpsearchError
from opsearch.search import confirm as confirm_mod
from opsearch.search import tune

from .conftest import family_workload


def test_retime_replaces_an_ok_records_timings(tmp_path):
    db = dbmod.connect(f"sqlite:///{tmp_path / 'r.db'}")
    wl = family_workload("dilated")
    db.add_record(wl, "llvm:znver4", module_hash="a" * 64, status="ok", run_us=[10.0, 12.0])
    db.add_record(wl, "llvm:znver4", module_hash="b" * 64, status="run_error", error="boom")
    ok, failed = db.history(wl, "llvm:znver4")
    db.retime(ok, [20.0, 22.0, 30.0])
    again = db.get(ok.id)
    assert list(again.run_us) == [20.0, 22.0, 30.0] and again.mean_us == pytest.approx(24.0)
    with pytest.raises(DatabaseError, match="only ok records"):
        db.retime(failed, [1.0])
    for bad in ([], [float("nan")], [-1.0], [float("inf")]):
        with pytest.raises(DatabaseError, match="finite, non-negative times"):
            db.retime(ok, bad)
    with pytest.raises(DatabaseError, match="no record with id 999"):
        db.retime(999, [1.0])
    assert db.get(ok.id).mean_us == pytest.approx(24.0)  # the rejected ones changed nothing


def test_a_tuning_run_confirms_its_finalists(tmp_path, monkeypatch):
    monkeypatch.setattr(confirm_mod, "MIN_TRIALS", 8)
    db = dbmod.connect(f"sqlite:///{tmp_path / 't.db'}")
    wl = family_workload("dilated")
    events = []
    (r,) = tune(wl, "cpu", db, trials=10, batch=5, include_shipped=False, confirm=3, progress=events.append)
    (ev,) = [e for e in events if e["event"] == "confirm"]
    finalists = ev["finalists"]
    assert len(finalists) == 3 and [c.after_us for c in finalists] == sorted(c.after_us for c in finalists)
    for c in finalists:  # each finalist's timings are now the confirmation's five rounds
        rec = db.get(c.record_id)
        assert len(rec.run_us) == 5 and rec.mean_us == pytest.approx(c.after_us)
    # the best served is the fastest confirmed one, and it was verified against the reference
    assert r.best.id == finalists[0].record_id and r.verified is True
    # a run under MIN_TRIALS (here: answered from the database) confirms nothing
    events.clear()
    tune(wl, "cpu", db, trials=12, batch=2, include_shipped=False, confirm=3, progress=events.append)
    assert not [e for e in events if e["event"] == "confirm"]


def test_a_finalist_that_does_not_build_is_left_for_verification(tmp_path, monkeypatch):
    from opsearch.runtime import kernels
    from opsearch.targets import resolve

    db = dbmod.connect(f"sqlite:///{tmp_path / 'b.db'}")
    wl = family_workload("dilated")
    tune(wl, "cpu", db, trials=6, batch=3, include_shipped=False, verify=False, confirm=0)
    target = resolve("cpu")
    top = db.top_k(wl, target, 3)
    real_build, calls = kernels.build, []

    def build(sch, w, t):  # the fastest record's rebuild fails
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("damaged trace")
        return real_build(sch, w, t)

    monkeypatch.setattr(kernels, "build", build)
    out = confirm_mod.confirm_finalists(db, wl, target, k=3, rounds=2)
    assert len(out) == 2 and top[0].id not in {c.record_id for c in out}
    assert all(len(db.get(c.record_id).run_us) == 2 for c in out)
    assert list(db.get(top[0].id).run_us) == list(top[0].run_us)  # untouched


def test_confirm_must_compare_at_least_two():
    with pytest.raises(OpsearchError, match="at least 2 finalists"):
        tune(family_workload("dilated"), "cpu", "sqlite://", trials=1, confirm=1)
