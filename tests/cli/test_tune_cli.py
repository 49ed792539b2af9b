"""``opsearch tune`` rejects bad input with one line on stderr and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

EXE = os.path.join(os.path.dirname(sys.executable), "opsearch")


@pytest.mark.parametrize(
    "args,message",
    [
        (["tune", "nosuch_op", "--example", "x"], "unknown operator 'nosuch_op'"),
        (["tune", "dilated_conv2d", "--args", "{bad json"], "--args is not valid JSON"),
        (["tune", "dilated_conv2d", "--args", "[1, 2]"], "--args must be a JSON object"),
        (["tune", "dilated_conv2d", "--args", '{"x": [1, 8, 8], "weight": [8, 8, 3, 3]}'], "'x' must have rank 4"),
        (["tune", "dilated_conv2d", "--example", "nope"], "unknown example 'nope'"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--target", "tpu"], "unknown target 'tpu'"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--trials", "-5"], "--trials must be positive, got -5"),
        (["tune", "dilated_conv2d"], "give exactly one of --example NAME and --args JSON"),
        (["tune"], "give an operator"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--tuner", "stock", "--rpc", "h:1:k"],
         "--tuner stock runs tune_tir as its users do; it does not take --rpc"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--tuner", "stock", "--full-timing"],
         "--tuner stock runs tune_tir as its users do; it does not take --full-timing"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--tuner", "stock", "--target", "cuda:sm_90"],
         "--tuner stock measures on this CPU only; got target cuda:sm_90"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--tuner", "nosuch"], "Invalid value for '--tuner'"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--confirm", "1"],
         "confirm must be 0 (off) or at least 2 finalists, got 1"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--confirm", "-1"], "Invalid value for '--confirm'"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--refine", "1"],
         "refine must be a share of the trials from 0 (off) to below 1, got 1.0"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--refine", "half"], "Invalid value for '--refine'"),
        (["tune", "dilated_conv2d", "--example", "context_d4", "--tuner", "stock", "--confirm", "4"],
         "--tuner stock runs tune_tir as its users do; it does not take --confirm"),
    ],
)
def test_bad_tune_input(args, message, tmp_path):
    p = subprocess.run([EXE, *args, "--db", f"sqlite:///{tmp_path / 'x.db'}"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr


@pytest.mark.parametrize("text, seconds", [("600", 600.0), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0)])
def test_time_budget_durations(text, seconds):
    from opsearch.cli.common import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["ten minutes", "-5m", "0", "5d"])
def test_bad_time_budget_is_one_line(bad, tmp_path):
    from click.testing import CliRunner

    from opsearch.cli.main import cli

    res = CliRunner().invoke(cli, ["tune", "dilated_conv1d", "--example", "tcn_d8", "--time", bad,
                                   "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert res.exit_code != 0 and "--time must be" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "x.db").exists()
