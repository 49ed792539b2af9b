"""``opsearch db`` commands, human and --json output, on every backend."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import opsearch.db
import opsearch.db.engine
from opsearch.cli.main import cli

LLVM, CUDA = "llvm:znver3", "cuda:sm_90"
ARGS = json.dumps({"x": [1, 8, 32], "weight": [8, 8, 3]})
TRACE = [[["GetSBlock", [], ["conv", "main"], ["b0"]]], []]


@pytest.fixture
def filled(db, wl, wl2):
    for i, t in enumerate([9.0, 4.0, 6.0]):
        db.add_record(wl, LLVM, module_hash=f"l{i}", run_us=[t], trace=TRACE)
    db.add_record(wl, CUDA, module_hash="c0", run_us=[1.0], trace=TRACE)
    db.add_record(wl2, LLVM, module_hash="x0", status="build_error", error="no", trace=TRACE)
    return db


def run(*args, code=0):
    res = CliRunner().invoke(cli, ["db", *args])
    assert res.exit_code == code, res.output
    return res


def test_info_and_list(filled, db_url):
    info = json.loads(run("info", "--db", db_url, "--json").stdout)
    assert info["counts"]["records"] == 5 and info["records_by_status"] == {"ok": 4, "build_error": 1}
    assert "records" in run("info", "--db", db_url).stdout
    wls = json.loads(run("list", "--db", db_url, "--json").stdout)
    assert [(w["op"], w["n_records"]) for w in wls] == [("dilated_conv1d", 4), ("dilated_conv2d", 1)]
    assert len(json.loads(run("list", "--db", db_url, "--json", "--family", "dilated", "--target", CUDA).stdout)) == 1
    recs = json.loads(run("list", "--records", "--status", "ok", "--target", LLVM, "--db", db_url, "--json").stdout)
    assert [r["module_hash"] for r in recs] == ["l0", "l1", "l2"]
    assert "dilated_conv2d" in run("list", "--records", "--db", db_url).stdout


def test_best_show_history(filled, db_url):
    best = json.loads(run("best", "dilated_conv1d", "--args", ARGS, "--target", LLVM, "--db", db_url, "--json").stdout)
    assert best["mean_us"] == 4.0 and best["target"] == LLVM and best["args"]["x"] == [1, 8, 32]
    assert json.loads(run("best", "dilated_conv1d", "--args", ARGS, "--target", CUDA, "--db", db_url,
                          "--json").stdout)["module_hash"] == "c0"
    none = run("best", "dilated_conv1d", "--args", ARGS, "--target", "cuda:sm_80", "--db", db_url, "--json")
    assert json.loads(none.stdout) is None
    assert "4.00" in run("best", "dilated_conv1d", "--args", ARGS, "--target", LLVM, "--db", db_url).stdout
    shown = json.loads(run("show", str(best["id"]), "--db", db_url, "--json").stdout)
    assert shown == best and shown["trace"] == TRACE
    hist = json.loads(run("history", "dilated_conv1d", "--args", ARGS, "--target", LLVM, "--db", db_url, "--json").stdout)
    assert hist["workload"]["op"] == "dilated_conv1d" and [r["mean_us"] for r in hist["records"]] == [9.0, 4.0, 6.0]


def test_compare_export_import_upgrade(filled, db_url, tmp_path):
    cmp = json.loads(run("compare", LLVM, CUDA, "--db", db_url, "--json").stdout)
    assert len(cmp) == 1 and cmp[0]["ratio"] == 0.25
    out = tmp_path / "cuda.jsonl"
    assert "exported 1 records" in run("export", str(out), "--target", CUDA, "--db", db_url).stdout
    assert json.loads(out.read_text())["target"] == CUDA
    everything = run("export", "-", "--db", db_url).stdout.splitlines()
    assert len(everything) == 5
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    (tmp_path / "all.jsonl").write_text("\n".join(everything) + "\n")
    rep = json.loads(run("import", str(tmp_path / "all.jsonl"), "--no-replay", "--db", fresh, "--json").stdout)
    assert (rep["imported"], rep["duplicates"], rep["rejected"]) == (5, 0, 0)
    head = opsearch.db.engine.HEAD_REVISION
    assert f"schema {head} -> {head}" in run("upgrade", "--db", db_url).stdout
    new = f"sqlite:///{tmp_path / 'new.db'}"
    assert json.loads(run("upgrade", "--db", new, "--json").stdout) == {"url": new, "from": None, "to": head}


def test_user_errors_exit_2(filled, db_url):
    for args, msg in [
        (["show", "424242"], "no record with id 424242"),
        (["best", "nope", "--args", ARGS], "unknown operator 'nope'"),
        (["best", "dilated_conv1d", "--args", "{bad", "--target", LLVM], "--args is not valid JSON"),
        (["best", "dilated_conv1d", "--args", "[1]", "--target", LLVM], "--args must be a JSON object"),
        (["best", "dilated_conv1d", "--args", '{"x": [1, 8]}', "--target", LLVM], "dilated_conv1d"),
        (["best", "dilated_conv1d", "--args", ARGS, "--target", "tpu:v5"], "unknown target"),
        (["list", "--records", "--status", "great"], "unknown status 'great'"),
    ]:
        res = run(*args, "--db", db_url, code=2)
        assert msg in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)


def test_db_uses_env_var(filled, db_url, monkeypatch):
    monkeypatch.setenv("OPSEARCH_DB", db_url)
    assert json.loads(run("info", "--json").stdout)["counts"]["records"] == 5
