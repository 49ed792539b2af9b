"""Whole models through opsearch (``opsearch.bench.models``, ``opsearch model bench``): the three
sides compute the PyTorch model's output, the layer table names what ran where, builders are
found by file or module, bad ones get one-line errors; and an optimized model trains like the
PyTorch one (gradients)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import opsearch
import opsearch.nn as onn
from opsearch.bench.models import bench_model, load_builder
from opsearch.errors import OpsearchError

EXE = os.path.join(os.path.dirname(sys.executable), "opsearch")


def _tcn(channels=6, dilations=(1, 2)):
    from opsearch.cli.demo_cmd import tcn

    return tcn(channels, dilations)


def build(batch: int = 2):
    torch.manual_seed(0)
    return _tcn().eval(), (torch.randn(batch, 6, 37),)


@pytest.mark.parametrize("compiled", [False, True])
def test_bench_model_three_sides_agree(compiled):
    r = bench_model(build, name="tiny", batch=3, rounds=1, budget_s=0.05, compiled=compiled)
    assert r.batch == 3 and r.eager_ms > 0 and r.opsearch_ms > 0 and r.vs_eager > 0
    assert r.opsearch_error < 1e-5
    if compiled:
        assert r.compiled_ms > 0 and r.compiled_error < 1e-5 and r.compile_s > 0 and r.vs_compiled > 0
    else:
        assert r.compiled_ms is None and r.vs_compiled is None
    rows = {t.name: t for t in r.layers}
    assert rows["0.net.1"].eager == "Conv1d" and rows["0.net.1"].opsearch in ("DilatedConv1d", "Conv1d")
    assert rows["0.net.0"].eager == "ConstantPad1d" and all(t.eager_us > 0 for t in r.layers)
    assert "0.net.1: DilatedConv1d (was Conv1d)" in r.optimize_report
    assert json.loads(json.dumps(r.to_dict()))["vs_eager"] == r.vs_eager


def test_load_builder_by_file_and_module(tmp_path):
    f = tmp_path / "my_model.py"
    f.write_text("def build(batch=1):\n    return 'model', batch\n")
    assert load_builder(f"{f}:build")() == ("model", 1)
    assert load_builder("tests.torch.test_model_bench:build") is build
    for spec, msg in [("nocolon", "MODULE:FUNCTION"), (f"{tmp_path}/none.py:build", "no such file"),
                      (f"{f}:nothing", "has no function nothing"), ("no_such_pkg_xyz:build", "cannot import")]:
        with pytest.raises(OpsearchError, match=msg):
            load_builder(spec)


def test_model_bench_cli(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def build(batch=2):
            torch.manual_seed(0)
            return nn.Sequential(nn.Conv1d(4, 4, 3, padding=2, dilation=2), nn.ReLU()).eval(), torch.randn(batch, 4, 17)

        def nobatch():
            return build()
    """))
    env = dict(os.environ, OPSEARCH_DB=f"sqlite:///{tmp_path / 'db.sqlite'}")
    p = subprocess.run([EXE, "model", "bench", f"{f}:build", "--batch", "1", "--batch", "3", "--no-compile",
                        "--rounds", "1", "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(p.stdout)
    assert [r["batch"] for r in rows] == [1, 3] and all(r["opsearch_error"] < 1e-5 for r in rows)
    assert bench_model(build, rounds=1, budget_s=0.02, compiled=False).batch == 2  # the builder's own
    p = subprocess.run([EXE, "model", "bench", f"{f}:build", "--no-compile", "--rounds", "1"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0 and "opsearch speedup:" in p.stdout and "sum of the layers" in p.stdout, p.stderr[-2000:]
    for args, msg in [([f"{f}:nobatch", "--batch", "2"], "takes no batch= argument"),
                      ([f"{f}:missing"], "has no function missing"), (["nope"], "MODULE:FUNCTION")]:
        p = subprocess.run([EXE, "model", "bench", *args, "--no-compile"], capture_output=True, text=True,
                           timeout=300, env=env)
        assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_an_optimized_model_trains_like_pytorch(gen):
    """Gradients through swapped causal layers (dilation 1 and 2, the demo's TCN blocks) equal PyTorch's."""
    torch.manual_seed(0)
    ref = _tcn(channels=5, dilations=(1, 2))
    ours, _ = opsearch.optimize(_tcn(channels=5, dilations=(1, 2)), torch.randn(2, 5, 23, generator=gen),
                                keep_slower=True)
    ours.load_state_dict(ref.state_dict())
    assert sum(isinstance(m, onn.DilatedConv1d) for m in ours.modules()) == 4  # two causal layers a block
    x = torch.randn(3, 5, 23, generator=gen, dtype=torch.float64).float()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref.train()(x1).square().sum().backward()
    ours.train()(x2).square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-5)
    for (n, p), (_, q) in zip(ref.named_parameters(), ours.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=n)


def test_eager_side_runs_the_best_pytorch_implementation(gen):
    """Inside the model benchmark an opsearch module's PyTorch path is the suite's baseline, and
    it still computes the operator; outside it is the operator's own formulation again."""
    from opsearch.bench import baselines
    from opsearch.bench.models import best_pytorch_paths
    from opsearch.torch_bridge import nn as bridge_nn

    m = onn.DynamicConv1d(16, 3, 4, use_opsearch=False).eval()
    x = torch.randn(2, 16, 11, generator=gen)
    with torch.no_grad():
        want = m(x)
        with best_pytorch_paths():
            assert bridge_nn.PYTORCH_PATHS["dynamic_conv1d"] is baselines.get("dynamic_conv1d")
            got = m(x)
    assert bridge_nn.PYTORCH_PATHS == {}
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
