"""Confirming the finalists: the fastest records, timed again side by side in fresh processes,
replace their timings, and the database's best is a confirmed one."""

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
    for c in finalists:  # each finalist's timings are now its median in each fresh process
        rec = db.get(c.record_id)
        assert len(rec.run_us) == confirm_mod.PROCESSES and rec.mean_us == pytest.approx(c.after_us)
    # the best served is the fastest confirmed one, and it was verified against the reference
    assert r.best.id == finalists[0].record_id and r.verified is True
    # a run under MIN_TRIALS (here: answered from the database) confirms nothing
    events.clear()
    tune(wl, "cpu", db, trials=12, batch=2, include_shipped=False, confirm=3, progress=events.append)
    assert not [e for e in events if e["event"] == "confirm"]


def test_by_default_only_runs_of_many_trials_confirm_their_finalists(tmp_path, monkeypatch):
    """TuneConfig.confirm None: AUTO_FINALISTS finalists of each workload this run measured at
    least AUTO_MIN_TRIALS times; shorter runs (the demo's, the tests') keep the search's pick,
    and 0 turns it off."""
    from opsearch.search.config import TuneConfig

    assert TuneConfig().confirm is None
    calls = []
    monkeypatch.setattr(confirm_mod, "confirm_finalists", lambda db, wl, target, k: calls.append(k) or [])
    monkeypatch.setattr(confirm_mod, "AUTO_MIN_TRIALS", 8)
    wl = family_workload("dilated")
    tune(wl, "cpu", f"sqlite:///{tmp_path / 'a.db'}", trials=6, batch=3, include_shipped=False, verify=False)
    assert calls == []
    tune(wl, "cpu", f"sqlite:///{tmp_path / 'b.db'}", trials=10, batch=5, include_shipped=False, verify=False)
    assert calls == [confirm_mod.AUTO_FINALISTS]
    tune(wl, "cpu", f"sqlite:///{tmp_path / 'c.db'}", trials=10, batch=5, include_shipped=False, verify=False,
         confirm=0)
    assert calls == [confirm_mod.AUTO_FINALISTS]
    # nor does it run past a time limit that stopped the search (--time)
    monkeypatch.setattr(confirm_mod, "AUTO_MIN_TRIALS", 1)
    (r,) = tune(wl, "cpu", f"sqlite:///{tmp_path / 'd.db'}", trials=10, batch=5, include_shipped=False,
                verify=False, time_limit_s=1e-3)
    assert r.stopped == "time limit" and calls == [confirm_mod.AUTO_FINALISTS]


def test_the_cli_help_names_the_default_confirmation_as_it_is():
    """tune_cmd spells the default out (it does not import the search package to keep --help fast)."""
    from opsearch.cli.tune_cmd import tune as tune_cmd

    (opt,) = [p for p in tune_cmd.params if p.name == "confirm"]
    assert opt.default is None
    assert opt.show_default == f"{confirm_mod.AUTO_FINALISTS} for workloads of {confirm_mod.AUTO_MIN_TRIALS}+ trials"


def test_fresh_processes_time_each_schedule_and_name_those_that_do_not_build(tmp_path):
    from opsearch.targets import resolve

    db = dbmod.connect(f"sqlite:///{tmp_path / 'f.db'}")
    wl = family_workload("dilated")
    tune(wl, "cpu", db, trials=4, batch=4, include_shipped=False, verify=False, confirm=0)
    a, b = db.top_k(wl, "cpu", 2)
    medians, errors = confirm_mod.time_in_fresh_processes(
        wl, resolve("cpu"), {"a": a.trace, "b": b.trace, "bad": '{"not": "a trace"}'}, processes=2, rounds=2)
    assert set(medians) == {"a", "b"} and set(errors) == {"bad"} and errors["bad"]
    # one median per process, each a real time near the search's own measurement of it
    for name, rec in (("a", a), ("b", b)):
        assert len(medians[name]) == 2
        assert all(rec.mean_us / 20 < v < rec.mean_us * 20 for v in medians[name])


def _fake_records(db, wl, own: dict[str, float]) -> dict[str, int]:
    for name, us in own.items():
        db.add_record(wl, "llvm:znver4", module_hash=name * 64, run_us=[us], trace=name)
    return {rec.trace: rec.id for rec in db.history(wl, "llvm:znver4")}


def test_confirmation_goes_on_until_no_unconfirmed_record_is_faster_than_its_winner(tmp_path, monkeypatch):
    """Own measurements are lucky: if the finalists re-time slower than records that were not
    finalists, those are confirmed against the winner, so the best served is a confirmed one."""
    from opsearch.targets import resolve

    db = dbmod.connect(f"sqlite:///{tmp_path / 'p.db'}")
    wl = family_workload("dilated")
    ids = _fake_records(db, wl, {"a": 10.0, "b": 11.0, "c": 12.0, "d": 13.0, "e": 30.0})
    true_us = {"a": 20.0, "b": 22.0, "c": 9.0, "d": 25.0, "e": 1.0}  # e is never a finalist
    groups = []

    def fake(w, target, traces, processes, rounds):
        groups.append(sorted(traces.values()))
        return {rid: [true_us[tr]] * processes for rid, tr in traces.items()}, {}

    monkeypatch.setattr(confirm_mod, "time_in_fresh_processes", fake)
    out = confirm_mod.confirm_finalists(db, wl, resolve("llvm:znver4"), k=2)
    # pass 1: a and b; c and d (12, 13) beat a's 20, so c (k - 1 of them) meets a; then d (13)
    # beats c's 9 no more, and the search stops there
    assert groups == [["a", "b"], ["a", "c"]]
    assert [c.record_id for c in out] == [ids["c"], ids["a"], ids["b"]]
    assert out[0].before_us == 12.0 and out[0].after_us == 9.0 and out[1].before_us == 10.0
    assert db.best(wl, "llvm:znver4").id == ids["c"]
    assert db.get(ids["d"]).mean_us == 13.0 and db.get(ids["e"]).mean_us == 30.0  # not timed again


def test_the_winner_can_lose_its_place_to_a_finalist_of_an_earlier_pass(tmp_path, monkeypatch):
    from opsearch.targets import resolve

    db = dbmod.connect(f"sqlite:///{tmp_path / 'w.db'}")
    wl = family_workload("dilated")
    ids = _fake_records(db, wl, {"a": 10.0, "b": 11.0, "c": 12.0, "d": 13.0})
    timings = iter([{"a": 20.0, "b": 22.0}, {"a": 30.0, "c": 25.0}, {"d": 24.0, "b": 22.0}])
    groups = []

    def fake(w, target, traces, processes, rounds):  # a re-times slower in the second pass
        groups.append(sorted(traces.values()))
        t = next(timings)
        return {rid: [t[tr]] * processes for rid, tr in traces.items()}, {}

    monkeypatch.setattr(confirm_mod, "time_in_fresh_processes", fake)
    out = confirm_mod.confirm_finalists(db, wl, resolve("llvm:znver4"), k=2)
    # after pass 2, b (22, pass 1) is the winner: d (13) meets b in pass 3
    assert groups == [["a", "b"], ["a", "c"], ["b", "d"]]
    assert [c.record_id for c in out] == [ids["b"], ids["d"], ids["c"], ids["a"]]
    assert db.best(wl, "llvm:znver4").id == ids["b"]


def test_confirmation_stops_after_its_passes_and_skips_what_does_not_build(tmp_path, monkeypatch):
    from opsearch.targets import resolve

    db = dbmod.connect(f"sqlite:///{tmp_path / 'q.db'}")
    wl = family_workload("dilated")
    ids = _fake_records(db, wl, {"a": 10.0, "b": 11.0, "c": 12.0, "d": 13.0, "e": 14.0, "f": 15.0})
    groups = []

    def fake(w, target, traces, processes, rounds):  # a does not build; every other re-times at 50
        groups.append(sorted(traces.values()))
        return ({rid: [50.0] * processes for rid, tr in traces.items() if tr != "a"},
                {rid: "damaged trace" for rid, tr in traces.items() if tr == "a"})

    monkeypatch.setattr(confirm_mod, "time_in_fresh_processes", fake)
    out = confirm_mod.confirm_finalists(db, wl, resolve("llvm:znver4"), k=3, passes=2)
    assert groups == [["a", "b", "c"], ["b", "d", "e"]]  # a is not offered again
    assert {c.record_id for c in out} == {ids["b"], ids["c"], ids["d"], ids["e"]}
    assert db.get(ids["a"]).mean_us == 10.0  # untouched: the tuner's verification marks it
    assert db.get(ids["f"]).mean_us == 15.0  # left for want of passes


def test_a_finalist_alone_is_not_confirmed(tmp_path, monkeypatch):
    from opsearch.targets import resolve

    db = dbmod.connect(f"sqlite:///{tmp_path / 'o.db'}")
    wl = family_workload("dilated")
    ids = _fake_records(db, wl, {"a": 10.0, "b": 11.0})
    monkeypatch.setattr(confirm_mod, "time_in_fresh_processes",
                        lambda w, t, traces, p, r: ({rid: [5.0] for rid, tr in traces.items() if tr == "a"},
                                                    {rid: "boom" for rid, tr in traces.items() if tr != "a"}))
    assert confirm_mod.confirm_finalists(db, wl, resolve("llvm:znver4"), k=2) == []
    assert db.get(ids["a"]).mean_us == 10.0


def test_confirm_must_compare_at_least_two():
    with pytest.raises(OpsearchError, match="at least 2 finalists"):
        tune(family_workload("dilated"), "cpu", "sqlite://", trials=1, confirm=1)
