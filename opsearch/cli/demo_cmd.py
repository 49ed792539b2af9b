"""``opsearch demo``: the main job on this CPU, end to end, in a few minutes on 2 cores.

1. tunes a few seed workloads with a small budget into the database (the default SQLite file
   unless ``--db``; trials already there count, so a second run is quick);
2. benchmarks every operator's example workloads — the best pure-PyTorch implementation, TVM's
   default schedule and the tuned record (the database's, else the schedules shipped with
   opsearch) — each side in its own process, every output checked against the reference;
3. plugs tuned kernels into a small model (a TCN of dilated causal convolutions) with
   :func:`opsearch.optimize`, tuning its layers briefly, checks it against PyTorch and times it
   against PyTorch eager and ``torch.compile`` (:mod:`opsearch.bench.models`);
4. writes the HTML report (tuning curves, the table, cost-model accuracy) to ``--out``.
"""

from __future__ import annotations

import time

import click

from ..errors import OpsearchError

SEEDS = ("dilated_conv2d:context_d4", "dilated_conv1d:tcn_d8", "involution2d:rednet_c64", "shift_conv2d:scnet_b4")


def _seed_workloads(seeds):
    from .. import ops

    out = []
    for s in seeds:
        op_name, sep, example = s.partition(":")
        if not sep:
            raise OpsearchError(f"--seed must be OP:EXAMPLE, got '{s}'")
        op = ops.get(op_name)
        if example not in op.examples:
            raise OpsearchError(f"unknown example '{example}' of {op_name} (known: {', '.join(op.examples)})")
        out.append(op.example(example))
    return out


def tcn(channels: int = 32, dilations=(1, 2, 4, 8)):
    """A small temporal convolutional network in plain PyTorch: residual blocks of two causal
    dilated Conv1d layers (left padding + Conv1d), as people write them."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, d: int, k: int = 3):
            super().__init__()
            pad = (k - 1) * d
            self.net = nn.Sequential(nn.ConstantPad1d((pad, 0), 0.0), nn.Conv1d(channels, channels, k, dilation=d), nn.ReLU(),
                                     nn.ConstantPad1d((pad, 0), 0.0), nn.Conv1d(channels, channels, k, dilation=d))

        def forward(self, x):
            return torch.relu(x + self.net(x))

    return nn.Sequential(*[Block(d) for d in dilations])


def tcn_model(batch: int = 4):
    """The demo's TCN and an input of 1024 steps: ``opsearch model bench opsearch.cli.demo_cmd:tcn_model``."""
    import torch

    torch.manual_seed(0)
    return tcn().eval(), (torch.randn(batch, 32, 1024),)


@click.command("demo")
@click.option("--seed", "seeds", multiple=True, metavar="OP:EXAMPLE",
              help=f"Workload to tune (repeatable; default: {', '.join(SEEDS)}).")
@click.option("--trials", default=16, show_default=True, type=int, help="Trials per seed workload.")
@click.option("--model-trials", default=8, show_default=True, type=int, help="Trials per workload of the demo model (0: no tuning).")
@click.option("--bench", "bench_ops", multiple=True, metavar="OP", help="Operators in the table (repeatable; default: all).")
@click.option("--rounds", default=1, show_default=True, type=int, help="Benchmark rounds (each side in a new process per round).")
@click.option("--db", "db_url", help="Database URL (default: $OPSEARCH_DB or the user's SQLite file).")
@click.option("--out", "out_dir", default="opsearch-report", show_default=True, help="Where the HTML report goes.")
def demo(seeds, trials, model_trials, bench_ops, rounds, db_url, out_dir):
    """Tune seed operators on this CPU, compare every operator with PyTorch, run a model with the
    tuned kernels plugged in, and write the report."""
    from .. import ops, targets
    from ..bench import report
    from ..bench import suite as bench
    from .. import db as dbmod
    from ..search import tune
    from .bench_cmd import _print
    from .tune_cmd import _progress

    if trials < 1 or model_trials < 0 or rounds < 1:
        raise OpsearchError("--trials and --rounds must be positive, --model-trials zero or positive")
    for n in bench_ops:
        ops.get(n)  # unknown names fail before any work
    seed_wls = _seed_workloads(seeds or SEEDS)
    spec = targets.resolve("cpu")
    report.prepare_dir(out_dir)
    db = dbmod.connect(db_url)
    t0 = time.monotonic()

    def step(n, msg):
        click.secho(f"\n[{n}/4] {msg} ({time.monotonic() - t0:.0f} s so far)", bold=True)

    step(1, f"tuning {len(seed_wls)} seed workloads on {spec.name} ({spec.num_cores} cores), {trials} trials each, into {db.url}")
    with _progress(False) as progress:
        results = tune(seed_wls, spec.name, db, progress=progress, trials=trials * len(seed_wls), trials_per_workload=trials)
    for r in results:
        best = f"{r.best.mean_us:.1f} us" if r.best else "none"
        click.echo(f"  {r.workload.op} {r.workload.short()}: best {best} after {r.trials_before + r.trials_run} trials ({r.stopped})")

    step(2, "benchmarking every operator's example workloads: PyTorch vs TVM default vs tuned, each in its own process")
    suite = bench.run_suite(bench.example_workloads(list(bench_ops) or None), spec.name, db, rounds=rounds,
                            threads=spec.num_cores, db_url=db.url, progress=lambda m: click.echo("  " + m))
    _print(suite)

    step(3, "a TCN (dilated causal Conv1d blocks) with tuned kernels plugged in by opsearch.optimize, "
            "against PyTorch eager and torch.compile")
    from ..bench.models import bench_model
    from .model_cmd import _print_model_bench

    mb = bench_model(tcn_model, name="the demo's TCN", db=db, tune=model_trials or False,
                     progress=lambda m: click.echo("  " + m))
    _print_model_bench(mb, layers=False)
    err = mb.opsearch_error

    step(4, f"writing the report to {out_dir}")
    page = report.write_report(db, spec.name, out_dir)
    click.echo(f"report: {page}")
    click.echo(f"demo finished in {time.monotonic() - t0:.0f} s")
    wrong = [r for r in suite.rows for m in r.results.values() if m.note.startswith("WRONG")]
    if wrong or not err <= 1e-4:
        raise SystemExit(1)
