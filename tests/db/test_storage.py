"""The storage suite: every query and write, run against every backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

import opsearch.db
from opsearch.db import DatabaseError, Record
from opsearch.db import engine as eng

LLVM, CUDA = "llvm:znver3", "cuda:sm_90"
TRACE = [[["GetSBlock", [], ["conv", "main"], ["b0"]]], []]


def add(db, wl, target, h, times=(10.0,), **kw):
    return db.add_record(wl, target, module_hash=h, run_us=times, trace=TRACE, **kw)


def test_round_trip(db, wl):
    assert add(db, wl, LLVM, "h1", (10.0, 12.0), args_info=[["TENSOR", "float32", [1, 8, 32]]])
    [r] = db.records()
    assert (r.op, r.args, r.target, r.status) == ("dilated_conv1d", wl.json_args(), LLVM, "ok")
    assert r.run_us == (10.0, 12.0) and r.mean_us == 11.0 and r.module_hash == "h1"
    assert r.trace == TRACE and r.args_info == [["TENSOR", "float32", [1, 8, 32]]]
    assert r.error is None and r.run_id is None and r.source == "db"
    assert r.created_at.tzinfo is not None and abs(r.created_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert db.get(r.id) == r
    j = r.to_json()
    for k in ("op", "args", "target", "status", "mean_us", "run_us", "module_hash", "error", "run_id",
              "created_at", "trace", "schema"):
        assert k in j
    assert Record.from_json(json.loads(json.dumps(j))).to_json() == {**j, "id": None}


def test_commit_is_idempotent(db, wl):
    assert add(db, wl, LLVM, "h1")
    assert not add(db, wl, LLVM, "h1", (1.0,))  # same candidate: kept as first stored
    assert db.add_records([Record.new(wl, LLVM, "h1", run_us=[3.0]), Record.new(wl, LLVM, "h2", run_us=[3.0])]) == 1
    assert db.count() == 2 and db.best(wl, LLVM).mean_us == 3.0
    assert db.info().counts["workloads"] == 1 and db.info().counts["targets"] == 1


def test_best_ignores_failures_and_takes_fastest(db, wl):
    add(db, wl, LLVM, "slow", (30.0,))
    add(db, wl, LLVM, "fast", (10.0, 11.0))
    db.add_record(wl, LLVM, module_hash="broken", status="run_error", error="segfault", trace=TRACE)
    db.add_record(wl, LLVM, module_hash="never", trace=TRACE)  # unmeasured
    best = db.best(wl, LLVM)
    assert best.module_hash == "fast"
    assert db.best("dilated_conv1d", LLVM, x=[1, 8, 32], weight=[8, 8, 3]) == best  # by name + args
    assert db.best("dilated_conv1d", LLVM, x=[1, 8, 64], weight=[8, 8, 3]) is None
    assert [r.module_hash for r in db.top_k(wl, LLVM, 5)] == ["fast", "slow"]
    failed = db.records(status="run_error")
    assert len(failed) == 1 and failed[0].error == "segfault" and failed[0].mean_us is None
    assert db.records(status="unmeasured")[0].run_us == ()


def test_target_awareness(db, wl):
    add(db, wl, LLVM, "same", (50.0,))
    add(db, wl, CUDA, "same", (5.0,))  # same module hash, other target: a separate record
    add(db, wl, CUDA, "cuda-only", (7.0,))
    assert db.best(wl, LLVM).target == LLVM and db.best(wl, LLVM).mean_us == 50.0
    assert db.best(wl, CUDA).target == CUDA and db.best(wl, CUDA).mean_us == 5.0
    assert db.best(wl, "cuda:sm_80") is None
    assert {r.target for r in db.records(target=LLVM)} == {LLVM}
    assert len(db.records(target=CUDA)) == 2
    assert [r.mean_us for r in db.history(wl, CUDA)] == [5.0, 7.0]
    assert [w.n_records for w in db.workloads(target=LLVM)] == [1]
    assert [(t.name, t.kind, t.arch) for t in db.targets()] == [(CUDA, "cuda", "sm_90"), (LLVM, "llvm", "znver3")]
    assert db.workloads()[0].targets == (CUDA, LLVM)


def test_queries_and_filters(db, wl, wl2):
    add(db, wl, LLVM, "a", (10.0,))
    add(db, wl2, LLVM, "b", (20.0,))
    add(db, wl2, CUDA, "c", (2.0,))
    db.add_record(wl2, LLVM, module_hash="d", status="build_error", error="bad", trace=TRACE)
    assert [r.module_hash for r in db.records(op="dilated_conv2d")] == ["b", "c", "d"]
    assert len(db.records(family="dilated")) == 4 and db.records(family="shift") == []
    assert [r.module_hash for r in db.records(op="dilated_conv2d", target=LLVM, status="ok")] == ["b"]
    assert [r.module_hash for r in db.records(limit=2)] == ["c", "d"]  # the newest two, oldest first
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert db.records(since=future) == [] and len(db.records(since="2000-01-01T00:00:00+00:00")) == 4
    with pytest.raises(DatabaseError, match="unknown status 'great'"):
        db.records(status="great")
    infos = {w.op: w for w in db.workloads()}
    assert infos["dilated_conv2d"].n_records == 3 and infos["dilated_conv2d"].n_ok == 2
    assert infos["dilated_conv2d"].best_us == 2.0 and infos["dilated_conv2d"].family == "dilated"
    assert [w.op for w in db.workloads(op="dilated_conv1d")] == ["dilated_conv1d"]
    assert [w.op for w in db.workloads(target=CUDA)] == ["dilated_conv2d"]
    assert db.workloads(family="fft") == []
    with pytest.raises(DatabaseError, match="no record with id 999"):
        db.get(999)


def test_history_is_in_measurement_order(db, wl):
    for i, t in enumerate([5.0, 3.0, 9.0, 1.0]):
        add(db, wl, LLVM, f"h{i}", (t,))
    add(db, wl, CUDA, "other", (1.0,))
    assert [r.mean_us for r in db.history(wl, LLVM)] == [5.0, 3.0, 9.0, 1.0]


def test_compare(db, wl, wl2):
    add(db, wl, LLVM, "a1", (10.0,))
    add(db, wl, LLVM, "a2", (8.0,))
    add(db, wl, CUDA, "b1", (2.0,))
    add(db, wl2, LLVM, "only-llvm", (3.0,))
    [c] = db.compare(LLVM, CUDA)
    assert c.workload == wl and c.a.mean_us == 8.0 and c.b.mean_us == 2.0 and c.ratio == 0.25
    assert c.to_json()["ratio"] == 0.25


def test_info_counts(db, wl):
    add(db, wl, LLVM, "a")
    db.add_record(wl, CUDA, module_hash="t", status="timeout", error="timed out", trace=TRACE)
    run = db.start_run({"trials": 8})
    add(db, wl, LLVM, "b", run_id=run.id)
    db.finish_run(run.id)
    info = db.info()
    assert info.revision == eng.HEAD_REVISION and info.backend == db.backend
    assert info.counts == {"targets": 2, "workloads": 1, "runs": 1, "records": 3, "cost_models": 0, "baselines": 0,
                           "pending": 0}
    assert info.records_by_status == {"ok": 2, "timeout": 1}
    [r] = db.runs()
    assert r.status == "done" and r.settings == {"trials": 8} and r.finished_at is not None
    assert db.records(target=LLVM)[-1].run_id == run.id


def test_baselines_and_cost_models(db, wl):
    db.add_baseline(wl, LLVM, "torch-eager", 12.5)
    db.add_baseline(wl, LLVM, "torch-eager", 11.5)  # replaces
    assert db.baselines(wl, LLVM) == {"torch-eager": 11.5}
    assert db.load_cost_model("llvm") is None
    db.save_cost_model("llvm", b"{\"learner\": {}}", format="xgboost-json", n_samples=64, metrics={"rmse": 0.1})
    db.save_cost_model("llvm", b"UBJ\x00\x01", n_samples=128)
    assert db.load_cost_model("llvm") == ("xgboost-ubj", b"UBJ\x00\x01", 128, {})
    with pytest.raises(DatabaseError, match="xgboost-json"):
        db.save_cost_model("llvm", b"x", format="pickle")


def test_export_import_round_trip(db, wl, wl2, tmp_path):
    add(db, wl, LLVM, "a", (1.0, 2.0))
    add(db, wl2, CUDA, "b", (3.0,))
    db.add_record(wl2, CUDA, module_hash="c", status="wrong_result", error="mismatch 1e-2", trace=TRACE)
    buf = io.StringIO()
    assert db.export(buf) == 3
    assert db.export(io.StringIO(), target=CUDA) == 2
    other = opsearch.db.connect(f"sqlite:///{tmp_path / 'other.db'}")
    rep = other.import_(io.StringIO(buf.getvalue()), replay=False)
    assert (rep.lines, rep.imported, rep.duplicates, rep.errors) == (3, 3, 0, ())
    strip = lambda rs: [{k: v for k, v in r.to_json().items() if k not in ("id",)} for r in rs]  # noqa: E731
    assert strip(other.records()) == strip(db.records())
    rep = other.import_(io.StringIO(buf.getvalue()), replay=False)
    assert (rep.imported, rep.duplicates) == (0, 3) and other.count() == 3


def test_export_best_keeps_the_fastest_ok_records_per_workload(db, wl, wl2):
    import json

    import pytest

    for i, t in enumerate((5.0, 1.0, 3.0, 2.0)):
        add(db, wl, LLVM, f"w{i}", (t,))
    add(db, wl2, LLVM, "other", (9.0,))
    db.add_record(wl, LLVM, module_hash="fast-but-wrong", status="wrong_result", error="mismatch", trace=TRACE)
    buf = io.StringIO()
    assert db.export(buf, best=2) == 3
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    mine = [r for r in rows if r["args"] == wl.json_args()]
    assert [r["module_hash"] for r in mine] == ["w1", "w3"]  # the two fastest, fastest first
    assert all(r["status"] == "ok" for r in rows)
    with pytest.raises(opsearch.errors.OpsearchError, match="at least 1"):
        db.export(io.StringIO(), best=0)


def test_new_database_is_created_at_head(db_url):
    store = opsearch.db.connect(db_url)
    with store.engine.connect() as conn:
        assert eng.current_revision(conn) == eng.HEAD_REVISION
        assert {"targets", "workloads", "runs", "records", "cost_models", "baselines"} <= set(
            sa.inspect(conn).get_table_names())
    assert opsearch.db.connect(db_url).revision == eng.HEAD_REVISION  # reopening is fine


def test_migrations_match_models(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from opsearch.db.models import Base

    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": eng.VERSION_TABLE})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_schema_behind_names_upgrade_and_upgrade_keeps_data(db_url, wl):
    from click.testing import CliRunner

    from opsearch.cli.main import cli

    engine = eng.create_engine(eng.resolve_url(db_url))
    eng.upgrade(engine, "0001")  # a database written by an older opsearch
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO targets (name, config, kind, arch, created_at) "
                             "VALUES ('llvm:znver3', '{}', 'llvm', 'znver3', CURRENT_TIMESTAMP)"))
    with pytest.raises(DatabaseError, match=rf"has schema 0001, this opsearch needs {eng.HEAD_REVISION}: "
                                            r"run `opsearch db upgrade --db ") as e:
        opsearch.db.connect(db_url)
    assert "\n" not in str(e.value)
    res = CliRunner().invoke(cli, ["db", "upgrade", "--db", db_url])
    assert res.exit_code == 0 and f"schema 0001 -> {eng.HEAD_REVISION}" in res.stdout
    db = opsearch.db.connect(db_url)
    assert [t.name for t in db.targets()] == ["llvm:znver3"] and db.revision == eng.HEAD_REVISION
    db.note_pending(wl, "llvm:znver3")  # the table added by 0002 works
    assert [w for w, _ in db.pending("llvm:znver3")] == [wl]


def test_mark_and_pending(db, wl, wl2):
    add(db, wl, LLVM, "a", (2.0,))
    add(db, wl, LLVM, "b", (3.0,))
    db.mark(db.best(wl, LLVM), "wrong_result", "max error 0.3")
    r = db.records(status="wrong_result")[0]
    assert (r.module_hash, r.error, r.mean_us, r.run_us) == ("a", "max error 0.3", None, (2.0,))
    assert db.best(wl, LLVM).module_hash == "b"
    db.mark(r.id, "ok")
    assert db.best(wl, LLVM).module_hash == "a" and db.best(wl, LLVM).mean_us == 2.0
    with pytest.raises(DatabaseError, match="no record with id 999"):
        db.mark(999, "ok")
    db.note_pending(wl2, LLVM)
    db.note_pending(wl2, LLVM)  # noted once
    db.note_pending(wl, LLVM)  # already tuned: not pending
    db.note_pending(wl2, CUDA)
    assert [w for w, _ in db.pending(LLVM)] == [wl2] and [w for w, _ in db.pending(CUDA)] == [wl2]
    add(db, wl2, CUDA, "c")
    assert db.pending(CUDA) == [] and db.info().counts["pending"] == 3


def test_schema_newer_is_refused(db):
    with db._writer.begin() as conn:
        conn.execute(sa.text(f"UPDATE {eng.VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(DatabaseError, match="newer than this opsearch"):
        opsearch.db.connect(db.url if db.backend == "sqlite" else db.engine.url.render_as_string(hide_password=False))


def test_foreign_database_is_refused(db_url):
    engine = eng.create_engine(eng.resolve_url(db_url))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE something_else (id INTEGER)"))
    with pytest.raises(DatabaseError, match="is not an opsearch database"):
        opsearch.db.connect(db_url)


def test_store_measurements_fills_unmeasured_and_keeps_measured(db, wl):
    """Measurements taken elsewhere (a GPU machine): an unmeasured candidate gets its times, an
    absent one is added, one measured before keeps its first measurement."""
    from opsearch.db.records import Record

    t = "cuda:sm_90"
    db.add_records([Record.new(wl, t, "h1", trace=[[], []]), Record.new(wl, t, "h2", run_us=[5.0, 7.0], trace=[[], []])])
    filled, added, kept = db.store_measurements([
        Record.new(wl, t, "h1", run_us=[3.0, 3.5], trace=[[], []]),
        Record.new(wl, t, "h2", run_us=[1.0], trace=[[], []]),
        Record.new(wl, t, "h3", status="wrong_result", error="relative error 5e-02", trace=[[], []]),
    ])
    assert (filled, added, kept) == (1, 1, 1)
    by_hash = {r.module_hash: r for r in db.history(wl, t)}
    assert by_hash["h1"].status == "ok" and by_hash["h1"].run_us == (3.0, 3.5) and by_hash["h1"].mean_us == 3.25
    assert by_hash["h2"].run_us == (5.0, 7.0)  # never overwritten
    assert by_hash["h3"].status == "wrong_result" and by_hash["h3"].mean_us is None
    assert db.best(wl, t, shipped=False).module_hash == "h1"
