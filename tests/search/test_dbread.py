"""The standard-library read path of kernel selection (``opsearch.runtime.dbread``): it answers exactly as
the ORM does on random databases, sees records committed after an earlier lookup (also in a
fresh process, which then never imports SQLAlchemy), and hands anything it cannot read to the
ORM path (corrupt file, other schema revision, non-SQLite URL)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import warnings

import pytest

from opsearch import ops
from opsearch.runtime import dbread
from opsearch.db import connect, models, records, shipped

T1, T2 = "llvm:znver3", "llvm:skylake"


def _wl(op_name: str, rng: random.Random):
    if op_name == "dilated_conv1d":
        c = rng.randint(1, 9)
        return ops.get(op_name).workload(x=[1, c, rng.randint(5, 40)], weight=[rng.randint(1, 9), c, 3],
                                         dilation=rng.randint(1, 3))
    c = rng.randint(1, 9)
    return ops.get(op_name).workload(x=[1, c, rng.randint(5, 20), rng.randint(5, 20)],
                                     weight=[rng.randint(1, 9), c, 3, 3], padding=rng.randint(0, 2))


@pytest.fixture
def random_db(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    db = connect(url)
    wls = list({_wl(rng.choice(["dilated_conv1d", "dilated_conv2d"]), rng) for _ in range(12)})
    for i in range(60):
        wl = rng.choice(wls)
        status = rng.choice(["ok", "ok", "ok", "run_error", "timeout"])
        t = round(rng.uniform(1, 20), 1)  # ties on purpose: the lower id wins
        db.add_record(wl, rng.choice([T1, T2]), module_hash=f"h{i}", run_us=[t] if status == "ok" else [],
                      status=status, trace=[[f"i{i}"], []])
    noted = set(rng.sample(wls, 4))
    for wl in noted:
        db.note_pending(wl, T1)
    print(f"seed {seed}")
    return url, db, wls, noted


def test_reader_answers_like_the_orm(random_db):
    url, db, wls, noted = random_db
    reader = dbread.Reader.open(url)
    assert reader is not None
    assert {w for w, _ in db.pending(T1)} <= noted
    for wl in wls:
        for target in (T1, T2, "llvm:generic"):
            want, got = db.best(wl, target), reader.best(wl, target)
            if want is None:
                assert got is None
            else:
                assert (got.trace, got.mean_us, got.source) == (want.trace, want.mean_us, want.source)
        assert reader.is_pending(wl, T1) == (wl in noted) and not reader.is_pending(wl, T2)
    for op_name in ("dilated_conv1d", "dilated_conv2d", "adder_conv2d"):
        for target in (T1, T2, "llvm:generic"):
            want = [i.workload for i in db.workloads(op=op_name, target=target)]
            assert reader.tuned_workloads(op_name, target) == want


def test_record_committed_later_is_seen_by_the_next_lookup(random_db):
    url, db, _, _ = random_db
    reader = dbread.Reader.open(url)
    wl = ops.get("dilated_conv1d").workload(x=[1, 3, 17], weight=[2, 3, 3])
    assert reader.best(wl, T1) is None
    db.add_record(wl, T1, module_hash="late", run_us=[4.0, 6.0], trace=[["late"], []])
    got = reader.best(wl, T1)
    assert got is not None and got.trace == [["late"], []] and got.mean_us == 5.0
    db.add_record(wl, T1, module_hash="faster", run_us=[1.0], trace=[["faster"], []])
    assert reader.best(wl, T1).trace == [["faster"], []]
    (rec,) = [r for r in db.history(wl, T1) if r.module_hash == "faster"]
    db.mark(rec, "wrong_result")  # a record marked bad after the fact is no longer served
    assert reader.best(wl, T1).trace == [["late"], []]


def test_unreadable_databases_go_to_the_orm(tmp_path):
    assert dbread.SCHEMA_REVISION == models.HEAD_REVISION
    assert dbread.RECORD_SCHEMA == records.RECORD_SCHEMA
    assert dbread.Reader.open(f"sqlite:///{tmp_path / 'missing.db'}") is None
    assert not (tmp_path / "missing.db").exists()  # the reader never creates a database
    bad = tmp_path / "bad.db"
    bad.write_bytes(os.urandom(4096))
    assert dbread.Reader.open(f"sqlite:///{bad}") is None
    old = tmp_path / "old.db"
    connect(f"sqlite:///{old}").close()
    with sqlite3.connect(old) as conn:
        conn.execute("UPDATE opsearch_alembic_version SET version_num = '0001'")
    assert dbread.Reader.open(f"sqlite:///{old}") is None
    for url in ("sqlite:///:memory:", "postgresql://u@h/db", f"sqlite:///{old}?mode=ro"):
        assert dbread.sqlite_path(url) is None


def test_corrupt_database_degrades_to_default_kernel(tmp_path, monkeypatch):
    from opsearch.runtime import loading

    monkeypatch.setenv("OPSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 300)
    wl = ops.get("dilated_conv1d").workload(x=[1, 2, 9], weight=[3, 2, 3])
    with pytest.warns(UserWarning, match="schedule database unavailable"):
        k = loading.kernel_for(wl, "cpu", f"sqlite:///{bad}")
    assert k.source == "default schedule"


def test_shipped_records_read_like_opsearch_db_shipped(tmp_path, monkeypatch):
    rng = random.Random()
    wls = [_wl("dilated_conv2d", rng) for _ in range(3)]
    lines = []
    for i in range(12):
        wl = rng.choice(wls)
        run_us = [rng.uniform(1, 9) for _ in range(rng.randint(0, 3))]
        lines.append(json.dumps(records.Record.new(wl, rng.choice([T1, T2]), f"s{i}", run_us=run_us,
                                                   trace=[[i], []]).to_json()))
    lines[3] = "{broken"
    lines[5] = json.dumps({**json.loads(lines[6]), "schema": 99})
    d = tmp_path / "schedules"
    d.mkdir()
    (d / "llvm-znver3.jsonl").write_text("\n".join(lines) + "\n\n")
    (d / "llvm-skylake.jsonl").write_text("\n".join(lines[6:]) + "\n")
    monkeypatch.setattr(shipped, "schedules_dir", lambda: d)
    try:
        # T1 has its own file; llvm:icelake has none, so every llvm-*.jsonl file serves it
        for target in (T1, T2, "llvm:icelake", "cuda:sm_90"):
            shipped._best_by_key.cache_clear()
            with warnings.catch_warnings(record=True) as w_orm:
                warnings.simplefilter("always")
                want = {wl: shipped.shipped_best(wl, target) for wl in wls}
            shipped._best_by_key.cache_clear()  # the light path reads through the same module
            with warnings.catch_warnings(record=True) as w_light:
                warnings.simplefilter("always")
                got = {wl: dbread.shipped_best(wl, target) for wl in wls}
            assert [str(m.message) for m in w_orm] == [str(m.message) for m in w_light]
            for wl in wls:
                if want[wl] is None:
                    assert got[wl] is None
                else:
                    assert (got[wl].trace, got[wl].mean_us, got[wl].source) == (want[wl].trace, want[wl].mean_us,
                                                                                 "shipped")
    finally:
        shipped._best_by_key.cache_clear()


SELECT = r"""
import json, sys, time
from opsearch import ops
from opsearch.runtime.loading import kernel_for
wl = ops.get("dilated_conv1d").workload(x=[1, 3, 21], weight=[4, 3, 3], dilation=2)
k = kernel_for(wl, "cpu", sys.argv[1])
print(json.dumps({"source": k.source, "sqlalchemy": "sqlalchemy" in sys.modules}))
"""


def _select(url: str, cache: str) -> dict:
    # OPSEARCH_CHECK=0: the one record is the default schedule itself, timed against the default
    # it would win or lose by chance (that check: tests/search/test_loading.py)
    env = dict(os.environ, OPSEARCH_CACHE_DIR=cache, OPSEARCH_CHECK="0")
    p = subprocess.run([sys.executable, "-c", SELECT, url], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_fresh_processes_see_new_records_without_importing_sqlalchemy(tmp_path):
    from opsearch.ops import tir
    from opsearch.db.replay import trace_json

    url, cache = f"sqlite:///{tmp_path / 'p.db'}", str(tmp_path / "cache")
    db = connect(url)
    wl = ops.get("dilated_conv1d").workload(x=[1, 3, 21], weight=[4, 3, 3], dilation=2)
    first = _select(url, cache)  # notes the workload as pending: the one write, through the ORM
    assert first["source"] == "default schedule" and [w for w, _ in db.pending("cpu")] == [wl]
    again = _select(url, cache)
    assert again == {"source": "default schedule", "sqlalchemy": False}
    trace = trace_json(tir.default_schedule(wl, "cpu"))
    db.add_record(wl, "cpu", module_hash="m1", run_us=[3.25], trace=trace)
    tuned = _select(url, cache)
    assert tuned == {"source": "tuned (db, 3.2 us)", "sqlalchemy": False}


def test_light_path_serves_exact_nearest_and_pending(tmp_path, monkeypatch, gen):
    """Through a URL (the standard-library reader): the exact record, a nearby tuned workload's
    trace replayed on another shape (checked against F.conv2d), and a pending note."""
    import torch

    from opsearch.ops import tir
    from opsearch.runtime import loading
    from opsearch.db.replay import trace_json

    monkeypatch.setenv("OPSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    url = f"sqlite:///{tmp_path / 'n.db'}"
    db = connect(url)
    op = ops.get("dilated_conv2d")
    tuned = op.workload(x=[1, 4, 12, 12], weight=[4, 4, 3, 3], padding=2, dilation=2)
    db.add_record(tuned, "cpu", module_hash="t", run_us=[7.0], trace=trace_json(tir.default_schedule(tuned, "cpu")))
    # a one-record search's best and the nearest workload's record are timed against the default
    # first (tests/search/test_loading.py): they win
    monkeypatch.setattr(loading, "time_pair", lambda a, b, wl: (1.0, 2.0))
    assert loading.kernel_for(tuned, "cpu", url).source == "tuned (db, 7.0 us); 1.0 us here, default 2.0 us"
    close = op.workload(x=[1, 4, 12, 12], weight=[4, 4, 3, 3], padding=3, dilation=3)  # same loop extents
    k = loading.kernel_for(close, "cpu", url)
    assert k.source == f"nearest tuned workload ({tuned.short()}); 1.0 us here, default 2.0 us", k.source
    x, w = torch.randn(1, 4, 12, 12, generator=gen), torch.randn(4, 4, 3, 3, generator=gen)
    ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=3, dilation=3)
    assert float((k(x, w).double() - ref).abs().max() / ref.abs().max()) < 1e-5
    assert db.pending("cpu") == []
    other = ops.get("dilated_conv1d").workload(x=[1, 2, 15], weight=[2, 2, 3])
    assert loading.kernel_for(other, "cpu", url).source == "default schedule"
    assert [w for w, _ in db.pending("cpu")] == [other]
