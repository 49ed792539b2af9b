"""Serving kernels from the database: the exact workload's best record, else the nearest tuned
workload's trace replayed on this shape, else the default schedule with the workload noted as
pending (``opsearch tune --pending`` then tunes it)."""

from __future__ import annotations

import torch

from opsearch import ops
from opsearch.loading import kernel_for
from tests.conftest import random_inputs, relative_error
from tests.search.conftest import family_workload


def test_exact_nearest_and_pending(tuned_db, gen):
    db, results = tuned_db
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
    assert kernel_for(wl, "cpu", db).source.startswith("tuned")


def test_optimize_tunes_missing_workloads(tmp_path):
    import opsearch
    from opsearch import db as dbmod

    db = dbmod.connect(f"sqlite:///{tmp_path / 'o.db'}")
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2), torch.nn.ReLU())
    x = torch.randn(1, 4, 12, 12)
    expected = model(x)
    model, report = opsearch.optimize(model, (x,), target="cpu", db=db, tune=4)
    assert [m.name for m in report.modules] == ["0"]
    assert report.modules[0].schedule.startswith("tuned"), report.modules[0]
    wl = ops.get("dilated_conv2d").workload(x=[1, 4, 12, 12], weight=[4, 4, 3, 3], bias=[4], padding=2, dilation=2)
    assert db.count(wl, "cpu") == 4
    assert relative_error(model(x).detach(), expected.detach().double()) <= 1e-5
