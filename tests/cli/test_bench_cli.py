"""``opsearch bench``: one tiny suite run end to end (PyTorch, TVM default, a tuned record from
the database, a stock baseline, the GEMM peak, latencies written back), the rich table, and bad
input rejected with one line and exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from opsearch import ops

EXE = os.path.join(os.path.dirname(sys.executable), "opsearch")
OP, EXAMPLE = "adder_conv2d", "resnet20_c16"  # the suite's smallest example workload


def _run(*args, timeout=600):
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "args,message",
    [
        (["nosuch_op"], "unknown operator 'nosuch_op'"),
        ([OP, "--example", "nope"], "unknown example 'nope' of adder_conv2d"),
        (["--example", "nope"], "unknown example 'nope' of any operator"),
        ([OP, "--target", "tpu"], "unknown target 'tpu'"),
        ([OP, "--target", "cuda:sm_90"], "target 'cuda:sm_90' cannot run here"),
        ([OP, "--target", "llvm:generic"], "cannot time target 'llvm:generic'"),
        ([OP, "--rounds", "0"], "--rounds must be at least 1, got 0"),
        ([OP, "--db", "nosuch://x"], ""),
    ],
)
def test_bad_bench_input(args, message, tmp_path):
    p = _run("bench", *args, *([] if "--db" in args else ["--db", f"sqlite:///{tmp_path / 'x.db'}"]), timeout=120)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr


def _hand_made(path, split: int):
    """A database with one hand-made record (a real, replayable schedule) of the example workload."""
    import tvm

    from opsearch import db as dbmod
    from opsearch import targets
    from opsearch.db.replay import module_hash, trace_json
    from opsearch.ops.tir import ir_module

    wl = ops.get(OP).example(EXAMPLE)
    target = targets.resolve("cpu")
    sch = tvm.s_tir.Schedule(ir_module(wl))
    loops = sch.get_loops(sch.get_output_blocks(sch.get_sblock("root"))[0])
    sch.parallel(loops[0])
    sch.split(loops[-1], [None, split])
    db = dbmod.connect(f"sqlite:///{path}")
    db.add_record(wl, target, module_hash=module_hash(sch.mod), run_us=[123.0], trace=trace_json(sch))
    return db, wl, target


def test_bench_one_workload(tmp_path):
    """All four sides timed: the 'tuned' record from --db, stock MetaSchedule's from --stock-db."""
    db, wl, target = _hand_made(tmp_path / "bench.db", 8)
    _hand_made(tmp_path / "stock.db", 4)
    p = _run("bench", OP, "--example", EXAMPLE, "--db", f"sqlite:///{tmp_path / 'bench.db'}",
             "--stock-db", f"sqlite:///{tmp_path / 'stock.db'}", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)  # --json: nothing but JSON on stdout
    assert out["target"] == target.name and out["threads"] == target.num_cores
    assert out["peak_gflops"] > 0
    assert len(out["load_average"]) == 2 and min(out["load_average"]) >= 0
    (row,) = out["workloads"]
    assert (row["op"], row["example"]) == (OP, EXAMPLE)
    assert row["flops"] == ops.get(OP).flops(wl)
    res = row["results"]
    for impl in ("pytorch", "tvm-default", "opsearch-tuned", "stock-metaschedule"):
        r = res[impl]
        assert r["ok"], (impl, r)
        assert r["median_us"] > 0 and r["rel_error"] <= ops.get(OP).tolerance
        assert r["gflops"] == pytest.approx(row["flops"] / r["median_us"] / 1e3)
        assert r["pct_peak"] == pytest.approx(100 * r["gflops"] / out["peak_gflops"])
        assert r["speedup_vs_pytorch"] == pytest.approx(res["pytorch"]["median_us"] / r["median_us"])
    assert "cdist" in res["pytorch"]["note"]
    # one record is a short search's: it is timed against the default first, which may serve
    # ("default schedule, ... (record 1 (db))"); stock's column is its record, unchecked
    assert "record 1 (db)" in res["opsearch-tuned"]["note"] and res["stock-metaschedule"]["note"].startswith("record 1")
    assert out["summary"]["geomean_tuned_vs_stock"] == pytest.approx(
        res["stock-metaschedule"]["median_us"] / res["opsearch-tuned"]["median_us"])
    assert row["headline"] == "opsearch-tuned"
    assert out["summary"]["tuned"] == 1
    assert out["summary"]["geomean_speedup_vs_pytorch"] == pytest.approx(res["opsearch-tuned"]["speedup_vs_pytorch"])
    # Every verified latency is stored for `opsearch report`, plus the peak as a latency.
    stored = db.baselines(wl, target)
    for impl in ("pytorch", "tvm-default", "opsearch-tuned", "stock-metaschedule"):
        assert stored[impl] == pytest.approx(res[impl]["median_us"])
    assert stored["sgemm-peak"] == pytest.approx(row["flops"] / out["peak_gflops"] / 1e3)


def test_stock_column_never_uses_shipped_schedules(tmp_path):
    """Without records of its own, stock's column is empty even where opsearch ships schedules,
    and without --stock-db it shows a stored stock baseline."""
    from opsearch import targets
    from opsearch.bench import suite as bench
    from opsearch import db as dbmod

    wl = ops.get(OP).example(EXAMPLE)
    target = targets.resolve("cpu").name
    db = dbmod.connect(f"sqlite:///{tmp_path / 'main.db'}")
    stock = dbmod.connect(f"sqlite:///{tmp_path / 'stock.db'}")
    db.add_baseline(wl, target, "stock-metaschedule", 456.0)
    no_sides = dict.fromkeys(bench.SUITE_SIDES, [])
    orig = bench.run_suite_worker
    bench.run_suite_worker = lambda side, keys, opts: no_sides[side] or {}  # time nothing
    try:
        with_stock = bench.run_suite([(EXAMPLE, wl)], target, db, stock_db=stock, store=False)
        without = bench.run_suite([(EXAMPLE, wl)], target, db, store=False)
    finally:
        bench.run_suite_worker = orig
    assert with_stock.rows[0].results["stock-metaschedule"].note == "untuned"
    assert without.rows[0].results["stock-metaschedule"].us == 456.0


def test_table_output():
    """The rich table and summary from a made-up suite (no processes): untuned and failed cells
    stay empty with their note, the headline is the tuned one where tuned."""
    from opsearch.bench.suite import Measurement, Suite, SuiteRow
    from opsearch.cli import bench_cmd

    wl = ops.get(OP).example(EXAMPLE)
    flops = ops.get(OP).flops(wl)
    rows = [
        SuiteRow(EXAMPLE, wl, flops, {"pytorch": Measurement(400.0, 1e-7, True, "[x, x>>k] @ W"),
                                      "tvm-default": Measurement(200.0, 1e-7, True),
                                      "opsearch-tuned": Measurement(100.0, 1e-7, True, "record 1 (db)"),
                                      "stock-metaschedule": Measurement()}),
        SuiteRow("other", wl, flops, {"pytorch": Measurement(300.0, 1e-7, True, "cdist"),
                                      "tvm-default": Measurement(100.0, 1e-7, True),
                                      "opsearch-tuned": Measurement(note="untuned"),
                                      "stock-metaschedule": Measurement(50.0, None, True, "from the database")}),
    ]
    suite = Suite("llvm:x", 2, 1, 100.0, rows, (0.5, 1.25))
    assert suite.headline(rows[0]) == "opsearch-tuned" and suite.headline(rows[1]) == "tvm-default"
    gm, n = suite.geomean_speedup()
    assert n == 2 and gm == pytest.approx((4.0 * 3.0) ** 0.5)
    assert suite.geomean_speedup("tvm-default")[0] == pytest.approx((2.0 * 3.0) ** 0.5)
    assert suite.speedup(rows[1], "stock-metaschedule") == pytest.approx(6.0)
    import io

    from rich.console import Console

    buf = io.StringIO()
    orig = Console.__init__

    def capture(self, *a, **k):
        k.pop("stderr", None)
        orig(self, *a, **{**k, "file": buf})

    Console.__init__ = capture
    try:
        bench_cmd._print(suite)
    finally:
        Console.__init__ = orig
    text = buf.getvalue()
    assert "untuned" in text and "4.00x" in text and "[x, x>>k] @ W" in text  # notes are not rich markup and "geometric-mean speedup" in text
    assert "load average: 0.5 at the start, 1.2 at the end" in text
    assert "3.46x over 2 workloads" in text and "default schedules alone: 2.45x" in text
    assert "vs stock MetaSchedule" not in text  # no workload has both
    doc = bench_cmd._as_json(suite)
    assert doc["summary"]["workloads"] == 2 and doc["workloads"][1]["results"]["opsearch-tuned"] == {"ok": False, "note": "untuned"}
