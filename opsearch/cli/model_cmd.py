"""``opsearch model train|eval``: the XGBoost ranking cost model from the database's records."""

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
    """Train and evaluate the cost model on the database's records."""


@model.command("train")
@click.option("--target-kind", type=click.Choice(["llvm", "cuda"]), default="llvm", show_default=True)
@click.option("--db", "db_url", help="Database URL.")
@click.option("--json", "as_json", is_flag=True)
def train(target_kind, db_url, as_json):
    """Train on every measured record of a target kind and store the model in the database."""
    from .. import db as dbmod
    from ..costmodel import XGBCostModel

    db = dbmod.connect(db_url)
    m = XGBCostModel()
    for key, (x, secs) in _groups(db, target_kind).items():
        m.add(key, x, secs)
    m.fit()
    if m.booster is None:
        raise OpsearchError("not enough distinct measurements to train on (need two different latencies per workload)")
    model_id = db.save_cost_model(target_kind, m.to_bytes(), format="xgboost-json", n_samples=m.size, metrics=m.metadata())
    out = {"model_id": model_id, "target_kind": target_kind, "samples": m.size, "workloads": len(m.groups)}
    click.echo(json.dumps(out) if as_json else f"trained on {m.size} records of {len(m.groups)} workloads; stored as model {model_id}")


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
