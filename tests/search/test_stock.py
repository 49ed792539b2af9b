"""Stock MetaSchedule as a baseline tuner (``opsearch tune --tuner stock``): a real ``tune_tir``
with its own builder, runner and cost model writes every candidate into an opsearch database,
the best replays and matches the reference, a second run of the same command adds nothing, and
stdout stays JSON with --json (tune_tir logs to stdout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from opsearch import ops, targets

EXE = os.path.join(os.path.dirname(sys.executable), "opsearch")
ARGS = {"x": [1, 8, 37], "weight": [8, 8, 3], "dilation": 2}
TRIALS = 4


def _tune(db_url: str) -> dict:
    p = subprocess.run([EXE, "tune", "dilated_conv1d", "--args", json.dumps(ARGS), "--tuner", "stock",
                        "--trials", str(TRIALS), "--batch", str(TRIALS), "--db", db_url, "--json"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)  # nothing but JSON on stdout


@pytest.mark.slow
def test_stock_tuner_stores_its_candidates(tmp_path):
    from opsearch import db as dbmod
    from opsearch.db.replay import replay
    from opsearch.search.verify import check_schedule

    url = f"sqlite:///{tmp_path / 'stock.db'}"
    first = _tune(url)
    (row,) = first["results"]
    assert row["tuner"] == "stock-metaschedule" and (row["trials_before"], row["trials_run"]) == (0, TRIALS)
    wl = ops.get("dilated_conv1d").workload(**ARGS)
    spec = targets.resolve("cpu")
    db = dbmod.connect(url)
    recs = db.history(wl, spec)
    assert len(recs) == TRIALS and len({r.module_hash for r in recs}) == TRIALS
    (run,) = db.runs()
    assert run.settings["tuner"] == "stock-metaschedule" and run.status == "done"
    assert {r.run_id for r in recs} == {run.id}
    best = db.best(wl, spec, shipped=False)
    assert best.status == "ok" and best.mean_us == pytest.approx(row["best_us"])
    assert check_schedule(replay(best.trace, wl), wl, spec) is None
    again = _tune(url)  # the budget is counted from the database: nothing left to do
    assert (again["results"][0]["trials_before"], again["results"][0]["trials_run"]) == (TRIALS, 0)
    assert db.count(wl, spec) == TRIALS
