"""``opsearch demo`` end to end with a tiny budget: tunes a seed workload into the given
database, benchmarks, runs the TCN with opsearch kernels and writes the report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).with_name("opsearch"))


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    out = tmp_path / "report"
    p = subprocess.run([EXE, "demo", "--seed", "involution2d:rednet_c256_s2", "--trials", "2", "--model-trials", "0",
                        "--bench", "involution2d", "--db", url, "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert step in p.stdout
    assert "rednet_c256_s2" in p.stdout and "end to end: PyTorch eager" in p.stdout and "torch.compile" in p.stdout
    assert "opsearch speedup:" in p.stdout
    page = (out / "index.html").read_text()
    assert "involution2d" in page

    from opsearch import db as dbmod
    from opsearch import ops

    db = dbmod.connect(url)
    wl = ops.get("involution2d").example("rednet_c256_s2")
    assert db.count(wl, "cpu") == 2  # the seed's trials landed in the database
    assert "pytorch" in db.baselines(wl, "cpu")  # the benchmark stored its timings


@pytest.mark.parametrize("args, message", [
    (["--seed", "involution2d"], "--seed must be OP:EXAMPLE"),
    (["--seed", "involution2d:nope"], "unknown example 'nope'"),
    (["--seed", "nosuchop:x"], "unknown operator"),
    (["--bench", "nosuchop"], "unknown operator"),
    (["--trials", "0"], "must be positive"),
])
def test_demo_bad_input_exits_2(tmp_path, args, message):
    p = subprocess.run([EXE, "demo", *args, "--db", f"sqlite:///{tmp_path / 'x.db'}", "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
