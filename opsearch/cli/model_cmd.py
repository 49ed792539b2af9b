"""``opsearch model train|eval``: the XGBoost ranking cost model from the database's records;
``opsearch model bench``: a whole PyTorch model end to end, eager vs opsearch vs torch.compile."""

from __future__ import annotations

import json

import click

from ..errors import OpsearchError


def _groups(db, kind):
    from ..costmodel.dataset import load_groups

    groups = load_groups(db, kind)
    if not groups:
        raise OpsearchError(f"no measured records for {kind} targets in the database: tune something first")
    return groups


@click.group("model")
def model() -> None:
    """The cost model (train, eval on the database's records) and whole-model benchmarks (bench)."""


@model.command("train")
@click.option("--target-kind", type=click.Choice(["llvm", "cuda"]), default="llvm", show_default=True)
@click.option("--db", "db_url", help="Database URL.")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True),
              help="Write the model to this file (XGBoost JSON, e.g. schedules/costmodel-llvm.json, the model the "
                   "tuner starts from on an empty database) instead of storing it in the database.")
@click.option("--json", "as_json", is_flag=True)
def train(target_kind, db_url, out, as_json):
    """Train on every measured record of a target kind and store the model in the database (or
    write it to --out)."""
    from .. import db as dbmod
    from ..costmodel import XGBCostModel

    db = dbmod.connect(db_url)
    m = XGBCostModel()
    for key, (x, secs) in _groups(db, target_kind).items():
        m.add(key, x, secs)
    m.fit()
    if m.booster is None:
        raise OpsearchError("not enough distinct measurements to train on (need two different latencies per workload)")
    summary = {"target_kind": target_kind, "samples": m.size, "workloads": len(m.groups)}
    if out:
        from ..costmodel.shipped import write_model

        targets = sorted({key.partition("@")[2] for key in m.groups})
        try:
            write_model(m.booster, out, records=m.size, workloads=len(m.groups), targets=",".join(targets))
        except OSError as e:
            raise OpsearchError(f"cannot write the model to {out}: {e.strerror or e}") from None
        summary["out"] = str(out)
        where = f"written to {out}"
    else:
        summary["model_id"] = db.save_cost_model(target_kind, m.to_bytes(), format="xgboost-json", n_samples=m.size,
                                                 metrics=m.metadata())
        where = f"stored as model {summary['model_id']}"
    click.echo(json.dumps(summary) if as_json else f"trained on {m.size} records of {len(m.groups)} workloads; {where}")


@model.command("eval")
@click.option("--target-kind", type=click.Choice(["llvm", "cuda"]), default="llvm", show_default=True)
@click.option("--db", "db_url", help="Database URL.")
@click.option("--json", "as_json", is_flag=True)
def evaluate(target_kind, db_url, as_json):
    """Leave-one-workload-out: pairwise accuracy and top-1/top-5 recall on held-out workloads,
    next to a random ranking."""
    from .. import db as dbmod
    from ..costmodel import leave_one_workload_out

    db = dbmod.connect(db_url)
    groups = _groups(db, target_kind)
    if len(groups) < 2:
        raise OpsearchError("evaluation holds out whole workloads: need records of at least two workloads")
    out = {"target_kind": target_kind, **leave_one_workload_out(groups)}
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    for name in ("opsearch_xgb", "random"):
        r = out[name]
        click.echo(f"{name:13s} pairwise accuracy {r['pairwise_accuracy']:.3f}  top-1 recall {r['top1_recall']:.2f}  "
                   f"top-5 recall {r['top5_recall']:.2f}  ({r['groups']} held-out workloads, {r['pairs']} pairs)")


@model.command("bench")
@click.argument("builder", metavar="MODULE:FN")
@click.option("--batch", "batches", multiple=True, type=click.IntRange(min=1),
              help="Batch size passed to FN(batch=N) (repeatable; default: FN's own).")
@click.option("--tune", "trials", default=0, show_default=True, type=click.IntRange(min=0),
              help="Tune each swapped workload without a tuned record this many trials first (0: no tuning).")
@click.option("--db", "db_url", help="Database URL (default: $OPSEARCH_DB or the user's SQLite file).")
@click.option("--rounds", default=7, show_default=True, type=click.IntRange(min=1), help="Alternating timing rounds.")
@click.option("--no-compile", is_flag=True, help="Leave torch.compile out.")
@click.option("--layers/--no-layers", default=True, show_default=True, help="Print the per-layer table.")
@click.option("--json", "as_json", is_flag=True)
def bench(builder, batches, trials, db_url, rounds, no_compile, layers, as_json):
    """Time a whole model: PyTorch eager, opsearch.optimize and torch.compile, end to end and per layer.

    MODULE:FN is a file (examples/tcn.py:build) or an importable module (pkg.models:build) and a
    function returning (model, example_inputs); with --batch it is called as FN(batch=N)."""
    from ..bench.models import bench_model, load_builder

    build = load_builder(builder)
    out = []
    for batch in batches or (None,):
        say = None if as_json else (lambda m: click.echo(f"  {m}", err=True))
        r = bench_model(build, name=builder, batch=batch, db=db_url, tune=trials or False, rounds=rounds,
                        compiled=not no_compile, progress=say)
        out.append(r)
        if not as_json:
            _print_model_bench(r, layers)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in out], indent=2))


def _print_model_bench(r, layers: bool) -> None:
    batch = f", batch {r.batch}" if r.batch is not None else ""
    click.echo(f"\n{r.name}{batch}: median of {r.rounds} alternating rounds")
    click.echo(r.optimize_report)
    if layers:
        click.echo(f"  {'layer':24s} {'PyTorch':14s} {'opsearch':14s} {'eager us':>9s} {'opsearch us':>11s} {'ratio':>6s}")
        for t in r.layers:
            ours = "" if t.opsearch_us is None else f"{t.opsearch_us:11.1f}"
            ratio = "" if not t.opsearch_us else f"{t.eager_us / t.opsearch_us:5.2f}x"
            click.echo(f"  {t.name:24s} {t.eager:14s} {t.opsearch:14s} {t.eager_us:9.1f} {ours:>11s} {ratio:>6s}")
        click.echo(f"  {'sum of the layers':54s} {r.eager_leaves_ms * 1e3:9.1f} {r.opsearch_leaves_ms * 1e3:11.1f}")
    compiled = "" if r.compiled_ms is None else (
        f", torch.compile {r.compiled_ms:.3f} ms (compiled in {r.compile_s:.0f} s, error {r.compiled_error:.1e})")
    click.echo(f"end to end: PyTorch eager {r.eager_ms:.3f} ms, opsearch {r.opsearch_ms:.3f} ms "
               f"(error {r.opsearch_error:.1e}){compiled}")
    vs = f"{r.vs_eager:.2f}x eager" + ("" if r.vs_compiled is None else f", {r.vs_compiled:.2f}x torch.compile")
    click.echo(f"opsearch speedup: {vs}")
