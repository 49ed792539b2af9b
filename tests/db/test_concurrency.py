"""Several processes committing at once lose and duplicate nothing; a SIGKILL leaves no half record."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa

import opsearch.db

from . import workers

N_PROCS, N_COMMITS = 4, 200


def test_concurrent_commits(db_url):
    opsearch.db.connect(db_url).close()  # create the schema once, as `opsearch db upgrade` would
    ctx = mp.get_context("spawn")
    with ctx.Pool(N_PROCS) as pool:
        start = time.time() + 3.0  # all children start committing together
        added = pool.starmap(workers.commit_many, [(db_url, w, N_COMMITS, start) for w in range(N_PROCS)])
        assert added == [N_COMMITS] * N_PROCS
        # Every process commits the same 50 candidates: each is stored exactly once.
        start = time.time() + 1.0
        shared = pool.starmap(workers.commit_many, [(db_url, w, 50, start, "") for w in range(N_PROCS)])
    assert sum(shared) == 50
    db = opsearch.db.connect(db_url)
    info = db.info()
    assert info.counts["records"] == N_PROCS * N_COMMITS + 50
    assert info.counts["workloads"] == len(workers.WORKLOADS) and info.counts["targets"] == len(workers.TARGETS)
    hashes = [r.module_hash for r in db.records()]
    assert len(set(hashes)) == len(hashes)


def test_sigkill_mid_commit_leaves_no_half_record(db_url):
    batch = 25
    opsearch.db.connect(db_url).close()
    code = f"from tests.db.workers import commit_forever; commit_forever({db_url!r}, {batch})"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        for _ in range(8):  # let it commit a few batches, then kill it while it writes the next
            assert child.stdout.readline(), "the committing child died"
        time.sleep(0.013)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    db = opsearch.db.connect(db_url)
    n = db.count()
    assert n >= 8 * batch and n % batch == 0, f"{n} records: a transaction was half written"
    if db.backend == "sqlite":
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
    assert db.add_record(db.records(limit=1)[0].workload, "llvm:znver3", module_hash="after", run_us=[1.0])
    assert db.count() == n + 1
