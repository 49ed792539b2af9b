"""The installed ``opsearch`` console script: ``ops --json`` and one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from opsearch import ops

EXE = os.path.join(os.path.dirname(sys.executable), "opsearch")


def run(*args):
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


def test_ops_json_lists_all_ten():
    p = run("ops", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert sorted(r["name"] for r in rows) == ops.names() and len(rows) == len(ops.names()) >= 11
    dc = next(r for r in rows if r["name"] == "dilated_conv2d")
    assert dc["family"] == "dilated" and dc["examples"]["context_d4"]["dilation"] == [4, 4]
    assert [t["name"] for t in dc["tensors"]] == ["x", "weight", "bias"]


def test_ops_table_and_unknown_operator():
    p = run("ops", "fft_conv1d")
    assert p.returncode == 0 and "fft_conv1d" in p.stdout
    p = run("ops", "nope")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert "unknown operator 'nope'" in p.stderr
