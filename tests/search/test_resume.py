"""Resumption: a tuning process SIGKILLed part-way continues when the same command runs again;
the total budget is respected and no candidate is measured twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from opsearch import db as dbmod
from opsearch import ops

EXE = os.path.join(os.path.dirname(sys.executable), "opsearch")
ARGS = '{"x": [1, 8, 96], "weight": [8, 8, 3], "dilation": 3}'


def _wait_for_records(url, wl, n, proc, timeout=300.0):
    """Poll the child's database until it holds ``n`` records of ``wl`` (or the child exits)."""
    db = dbmod.connect(url)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if db.count(wl, "cpu") >= n:
                break
        except Exception:  # noqa: BLE001 - the child may still be creating the schema
            pass
        time.sleep(0.2)
    return db


def test_sigkill_then_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    cmd = [EXE, "tune", "dilated_conv1d", "--args", ARGS, "--trials", "16", "--batch", "4", "--db", url,
           "--json", "--out", str(tmp_path)]
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 96], weight=[8, 8, 3], dilation=3)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = _wait_for_records(url, wl, 4, proc)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = db.count(wl, "cpu")
    assert 4 <= done_before < 16

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    import json

    (row,) = json.loads(again.stdout)["results"]
    history = db.history(wl, "cpu")
    # The budget counts what the killed run measured; the resumed run used exactly the rest.
    assert row["trials_before"] == done_before and row["trials_run"] == 16 - done_before
    # Candidates the search proposed again were answered from the database, not re-measured.
    assert len(history) == 16 - row["cached"]
    assert len({r.module_hash for r in history}) == len(history)
    assert row["verified"] is True


def test_ctrl_c_stops_after_the_batch_in_flight(tmp_path):
    import json

    url = f"sqlite:///{tmp_path / 'int.db'}"
    cmd = [EXE, "tune", "dilated_conv1d", "--args", ARGS, "--trials", "64", "--batch", "4", "--db", url,
           "--json", "--out", str(tmp_path)]
    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 96], weight=[8, 8, 3], dilation=3)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = _wait_for_records(url, wl, 4, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    (row,) = json.loads(out)["results"]
    assert row["stopped"] == "interrupted"
    n = db.count(wl, "cpu")
    assert 4 <= n < 64 and row["trials_run"] == n
    assert row["verified"] is True  # the best so far is still checked and reported
