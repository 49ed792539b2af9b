"""Serving kernels from the database: the exact workload's best record, else the nearest tuned
workload's trace replayed on this shape, else the default schedule with the workload noted as
pending (``opsearch tune --pending`` then tunes it); a record never timed here for the workload
serves only if it runs faster than the default here."""

from __future__ import annotations

import pytest
import torch

from opsearch import ops
from opsearch.runtime.loading import kernel_for
from tests.conftest import random_inputs, relative_error
from tests.search.conftest import family_workload


def test_exact_nearest_and_pending(tuned_db, gen, monkeypatch):
    from opsearch.runtime import loading

    db, results = tuned_db
    # the nearest workload's record is timed against the default (not this test's subject): it wins
    monkeypatch.setattr(loading, "time_pair", lambda a, b, wl: (1.0, 2.0))
    wl = family_workload("dilated")  # x=[1,12,30,30] tuned in the fixture
    k = kernel_for(wl, "cpu", db)
    assert k.source.startswith("tuned (db,")

    op = ops.get(wl.op)
    # Not tuned: dilation 3 instead of 2, same loop extents, so the tuned trace replays.
    close = op.workload(**{**wl.json_args(), "dilation": 3, "padding": 3})
    k2 = kernel_for(close, "cpu", db)
    assert k2.source.startswith("nearest tuned workload"), k2.source
    t = random_inputs(op, close, gen)
    y = k2(*[v.float() for v in t.values()])
    assert relative_error(y, op.reference(close.args, **t)) <= op.tolerance
    assert close not in [w for w, _ in db.pending("cpu")]

    other = ops.get("dilated_conv1d").workload(x=[1, 4, 40], weight=[4, 4, 3])  # nothing tuned
    k3 = kernel_for(other, "cpu", db)
    assert k3.source == "default schedule"
    assert other in [w for w, _ in db.pending("cpu")]


def test_pending_cli_lists_nothing_to_tune_for_empty_db(tmp_path):
    import os
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "opsearch")
    p = subprocess.run([exe, "tune", "--pending", "--db", f"sqlite:///{tmp_path / 'e.db'}"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and "nothing pending" in (p.stdout + p.stderr)
    assert torch.__version__  # torch importable alongside


def test_pending_workloads_get_tuned(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from opsearch import db as dbmod

    url = f"sqlite:///{tmp_path / 'p.db'}"
    db = dbmod.connect(url)
    wl = ops.get("lightweight_conv1d").workload(x=[1, 8, 33], weight=[2, 5])
    assert kernel_for(wl, "cpu", db).source == "default schedule"
    assert [w for w, _ in db.pending("cpu")] == [wl]

    exe = os.path.join(os.path.dirname(sys.executable), "opsearch")
    p = subprocess.run([exe, "tune", "--pending", "--trials", "4", "--batch", "4", "--db", url, "--json",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (row,) = json.loads(p.stdout)["results"]
    assert row["op"] == "lightweight_conv1d" and row["trials_run"] == 4
    assert db.count(wl, "cpu") == 4 and db.pending("cpu") == []
    # The closing table's best is re-timed in a bench process, as its default and torch columns
    # are; the run's own measurement is kept beside it.
    assert row["run_best_us"] == db.best(wl, "cpu").mean_us
    assert row["best_us"] > 0 and row["best_us"] != row["run_best_us"]
    assert row["speedup_vs_default"] == row["default_us"] / row["best_us"]
    # four records are a short search: its best serves only if it ran faster than the default
    source = kernel_for(wl, "cpu", db).source
    assert source.startswith("tuned (db,") or "faster than this database's best of 4 records" in source, source


def test_optimize_tunes_missing_workloads(tmp_path):
    import opsearch
    from opsearch import db as dbmod

    db = dbmod.connect(f"sqlite:///{tmp_path / 'o.db'}")
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2), torch.nn.ReLU())
    x = torch.randn(1, 4, 12, 12)
    expected = model(x)
    model, report = opsearch.optimize(model, (x,), target="cpu", db=db, tune=4, keep_slower=True)
    assert [m.name for m in report.modules] == ["0"]
    # tuned: its 4-record search's best serves, or the default after it ran faster here
    source = report.modules[0].schedule
    assert source.startswith("tuned (db,") or "faster than this database's best of 4 records" in source, source
    wl = ops.get("dilated_conv2d").workload(x=[1, 4, 12, 12], weight=[4, 4, 3, 3], bias=[4], padding=2, dilation=2)
    assert db.count(wl, "cpu") == 4
    assert relative_error(model(x).detach(), expected.detach().double()) <= 1e-5


def _other_cpus_record(tmp_path, monkeypatch, wl, trace):
    """Ship one record of ``wl`` for a CPU other than this one (the only file there is)."""
    import json

    from opsearch.db import Record, shipped

    d = tmp_path / "schedules"
    d.mkdir()
    rec = Record.new(wl, "llvm:othercpu", "h1", run_us=[1.0], trace=trace)
    (d / "llvm-othercpu.jsonl").write_text(json.dumps(rec.to_json()) + "\n")
    monkeypatch.setattr(shipped, "schedules_dir", lambda: d)
    shipped._best_by_key.cache_clear()
    monkeypatch.setenv("OPSEARCH_CACHE_DIR", str(tmp_path / "kernels"))


def test_another_cpus_record_serves_only_if_faster_than_the_default_here(tmp_path, monkeypatch, gen):
    """The record is the unscheduled loop nest (an empty trace: scalar, one thread), several
    times slower than the default schedule here: the default serves, the workload is noted as
    pending, and the timing is kept, so a second lookup does not time again."""
    from opsearch import db as dbmod
    from opsearch.runtime import loading
    from opsearch.db import shipped

    wl = ops.get("dilated_conv2d").workload(x=[1, 16, 21, 21], weight=[16, 16, 3, 3], padding=2, dilation=2)
    _other_cpus_record(tmp_path, monkeypatch, wl, [[], []])
    try:
        db = dbmod.connect(f"sqlite:///{tmp_path / 'e.db'}")
        assert db.best(wl, "cpu").target == "llvm:othercpu"
        k = kernel_for(wl, "cpu", db)
        assert k.source.startswith("default schedule (") and "faster than llvm:othercpu's record" in k.source, k.source
        assert [w for w, _ in db.pending("cpu")] == [wl]
        assert len(list((tmp_path / "kernels").glob("*.choice"))) == 1

        def no_timing(*a, **kw):
            raise AssertionError("timed again")

        monkeypatch.setattr(loading, "time_pair", no_timing)
        assert kernel_for(wl, "cpu", db).source == k.source
        assert kernel_for(wl, "cpu", f"sqlite:///{tmp_path / 'e.db'}").source == k.source  # the light SQLite path
        monkeypatch.setenv("OPSEARCH_CHECK", "0")  # checks off: the record serves untimed
        assert kernel_for(wl, "cpu", db).source.startswith("tuned (shipped, 1.0 us)")
    finally:
        shipped._best_by_key.cache_clear()


def test_another_cpus_faster_record_serves_with_both_timings(tmp_path, monkeypatch, gen):
    from opsearch import db as dbmod
    from opsearch.runtime import loading
    from opsearch.db import shipped
    from tests.conftest import random_inputs, relative_error

    wl = ops.get("dilated_conv1d").workload(x=[1, 6, 45], weight=[6, 6, 3], dilation=3)
    _other_cpus_record(tmp_path, monkeypatch, wl, [[], []])
    monkeypatch.setattr(loading, "time_pair", lambda a, b, wl: (2.5, 7.5))
    try:
        db = dbmod.connect(f"sqlite:///{tmp_path / 'e.db'}")
        k = kernel_for(wl, "cpu", db)
        assert k.source == "tuned (shipped, 1.0 us); 2.5 us here, default 7.5 us", k.source
        assert db.pending("cpu") == []
        op = ops.get(wl.op)
        t = random_inputs(op, wl, gen)
        assert relative_error(k(*[v.float() for v in t.values()]), op.reference(wl.args, **t)) <= op.tolerance
    finally:
        shipped._best_by_key.cache_clear()


@pytest.mark.parametrize("timings,served", [((2.5, 7.5), "record"), ((7.5, 2.5), "default")])
def test_the_bench_tuned_column_serves_what_a_user_is_served(tmp_path, monkeypatch, timings, served):
    """``opsearch bench``'s tuned side checks another CPU's record against the default as the
    loader does, and says which one it timed."""
    from opsearch.bench import suite as bench
    from opsearch.runtime import loading
    from opsearch.db import shipped

    wl = ops.get("dilated_conv1d").workload(x=[1, 6, 45], weight=[6, 6, 3], dilation=3)
    _other_cpus_record(tmp_path, monkeypatch, wl, [[], []])
    monkeypatch.setattr(loading, "time_pair", lambda a, b, wl: timings)
    try:
        out = bench._suite_one("opsearch-tuned", wl.key(), {"target": "cpu", "db": f"sqlite:///{tmp_path / 'e.db'}",
                                                             "repeat": 1}, {})
    finally:
        shipped._best_by_key.cache_clear()
    assert out["rel_error"] <= ops.get(wl.op).tolerance and out["ms"] > 0
    assert ("default_kept" in out) == (served == "default"), out


def test_a_short_searchs_record_serves_only_if_faster_than_the_default_here(tmp_path, monkeypatch):
    """The database's own record of a workload searched fewer than CONFIRMED_FROM candidates
    here was never confirmed: it is timed against the default once per machine, like another
    CPU's. Here it is the unscheduled loop nest (an empty trace: scalar, one thread), stored as
    faster than anything: the default serves. From CONFIRMED_FROM records on, the tuner has
    confirmed its best, and it serves untimed."""
    from opsearch import db as dbmod
    from opsearch.runtime import loading

    monkeypatch.setenv("OPSEARCH_CACHE_DIR", str(tmp_path / "kernels"))
    wl = ops.get("dilated_conv2d").workload(x=[1, 16, 19, 23], weight=[16, 16, 3, 3], padding=2, dilation=2)
    url = f"sqlite:///{tmp_path / 's.db'}"
    db = dbmod.connect(url)
    db.add_record(wl, "cpu", module_hash="m1", run_us=[1.0], trace=[[], []])
    db.add_record(wl, "cpu", module_hash="m2", status="run_error", error="run: boom")
    for store in (db, url):  # the ORM and the light SQLite reader count alike
        k = kernel_for(wl, "cpu", store)
        assert k.source.startswith("default schedule (") and "faster than this database's best of 2 records" in k.source, k.source
    assert len(list((tmp_path / "kernels").glob("*.choice"))) == 1  # timed once, the answer kept
    # the bench's tuned column times what a user is served
    from opsearch.bench import suite as bench

    out = bench._suite_one("opsearch-tuned", wl.key(), {"target": "cpu", "db": url, "repeat": 1}, {})
    assert "faster than this database's best of 2 records" in out["default_kept"], out
    monkeypatch.setattr(loading, "CONFIRMED_FROM", 2)

    def no_timing(*a, **kw):
        raise AssertionError("a confirmed search's record is not timed against the default")

    monkeypatch.setattr(loading, "time_pair", no_timing)
    for store in (db, url):
        assert kernel_for(wl, "cpu", store).source == "tuned (db, 1.0 us)"


def test_confirmed_from_is_the_tuners_confirmation_threshold():
    from opsearch.runtime.loading import CONFIRMED_FROM
    from opsearch.search.confirm import AUTO_MIN_TRIALS

    assert CONFIRMED_FROM == AUTO_MIN_TRIALS
