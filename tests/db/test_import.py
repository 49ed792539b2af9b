"""Import validates every line (JSON, schema, workload, trace replay), reports bad lines by number."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import opsearch.db
from opsearch.cli.main import cli
from opsearch.db import RECORD_SCHEMA

LLVM = "llvm:znver3"


@pytest.fixture(scope="module")
def scheduled(request):
    """A real (hand-written) schedule trace of the test workload and its module hash."""
    import tvm

    from opsearch import ops
    from opsearch.ops import tir
    from opsearch.db.replay import module_hash, trace_json

    wl = ops.get("dilated_conv1d").workload(x=[1, 8, 32], weight=[8, 8, 3])
    sch = tvm.s_tir.Schedule(tir.ir_module(wl))
    loops = sch.get_loops(sch.get_sblock("conv"))
    sch.split(loops[2], [None, 8])
    return wl, trace_json(sch), module_hash(sch.mod)


def _line(wl, trace, h, **kw):
    d = {"schema": RECORD_SCHEMA, "op": wl.op, "args": wl.json_args(), "target": LLVM, "status": "ok",
         "mean_us": 2.0, "run_us": [2.0], "module_hash": h, "error": None, "run_id": 7,
         "created_at": "2026-01-01T00:00:00+00:00", "trace": trace}
    d.update(kw)
    return json.dumps(d)


@pytest.fixture
def messy_file(tmp_path, scheduled):
    wl, trace, h = scheduled
    bad_trace = json.loads(json.dumps(trace).replace('"conv"', '"no_such_block"'))
    lines = [
        _line(wl, trace, h),                                                   # 1 ok
        '{"schema": 1, "op": ',                                                # 2 not JSON
        _line(wl, trace, "v2", schema=99),                                     # 3 wrong schema
        _line(wl, bad_trace, "stale"),                                         # 4 trace does not replay
        _line(wl, trace, h),                                                   # 5 duplicate of 1
        _line(wl, trace, "x", op="no_such_op"),                                # 6 unknown operator
        _line(wl, trace, "y", args={**wl.json_args(), "weight": [8, 8]}),      # 7 invalid workload
        _line(wl, trace, "failed", status="run_error", run_us=[], error="boom"),  # 8 ok (a failure)
        "",                                                                    # 9 blank: ignored
        "[1, 2]",                                                              # 10 not an object
        _line(wl, trace, "z", status="fantastic"),                             # 11 unknown status
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_reports_bad_lines(db, messy_file, scheduled):
    wl, _, h = scheduled
    db.add_record(wl, LLVM, module_hash="failed", status="timeout", error="already here")
    with messy_file.open() as fp:
        rep = db.import_(fp)
    assert (rep.lines, rep.imported, rep.duplicates) == (11, 1, 2)
    assert [n for n, _ in rep.errors] == [2, 3, 4, 6, 7, 10, 11]
    msgs = dict(rep.errors)
    assert "not JSON" in msgs[2] and "schema version 99" in msgs[3]
    assert "does not replay" in msgs[4] and "unknown operator 'no_such_op'" in msgs[6]
    assert "weight" in msgs[7] and "not a JSON object" in msgs[10] and "unknown status" in msgs[11]
    assert db.count() == 2
    assert db.best(wl, LLVM).module_hash == h and db.best(wl, LLVM).run_id is None  # runs are local
    assert db.records(status="timeout")[0].error == "already here"  # present records are untouched
    with messy_file.open() as fp:
        again = db.import_(fp)
    assert (again.imported, again.duplicates, len(again.errors)) == (0, 3, 7) and db.count() == 2


def test_cli_import_and_check(db_url, messy_file, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["db", "import", str(messy_file), "--db", db_url])
    assert res.exit_code == 1
    assert f"{messy_file}:4: trace does not replay" in res.stderr
    assert "read 11 lines: imported 2, already present 1, rejected 7" in res.stdout
    res = runner.invoke(cli, ["db", "import", str(messy_file), "--db", db_url, "--json"])
    assert json.loads(res.stdout)["imported"] == 0 and json.loads(res.stdout)["duplicates"] == 3
    res = runner.invoke(cli, ["db", "check", "--db", db_url])
    assert res.exit_code == 0 and "checked 2 traces: 2 replay, 0 no longer apply" in res.stdout

    # A trace that no longer applies (e.g. after an operator changed) makes `check` fail.
    db = opsearch.db.connect(db_url)
    wl = db.records()[0].workload
    db.add_record(wl, LLVM, module_hash="stale", run_us=[1.0], trace=[[["GetSBlock", [], ["gone", "main"], ["b0"]]], []])
    res = runner.invoke(cli, ["db", "check", "--db", db_url, "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["checked"] == 3 and [b["id"] for b in out["failed"]] == [db.records()[-1].id]
