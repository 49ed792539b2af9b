"""``opsearch report``: a static HTML page with PNG plots of what the database holds for a target."""

from __future__ import annotations

import click


def _default_target(db) -> str:
    """The only target with records, else this host ("cpu")."""
    with_records = [t.name for t in db.targets() if db.count(target=t.name)]
    return with_records[0] if len(with_records) == 1 else "cpu"


@click.command("report")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for index.html and its PNG plots (created if missing).")
@click.option("--target", default=None,
              help="cpu, llvm:<mcpu> or cuda:sm_XX [default: the database's only target, else cpu].")
@click.option("--db", "db_url", help="Database URL (default: $OPSEARCH_DB or the user's SQLite file).")
@click.option("--stock-db", "stock_db_url",
              help="Database of stock MetaSchedule's records ('opsearch tune --tuner stock'): its tuning curves are "
                   "drawn dashed beside ours, and the table says when our search reached stock's best.")
@click.option("--no-model-eval", is_flag=True,
              help="Skip the cost-model accuracy evaluation (it replays every stored trace).")
def report(out_dir, target, db_url, stock_db_url, no_model_eval) -> None:
    """Write DIR/index.html: tuning curves, opsearch vs PyTorch / TVM default / stock, cost-model accuracy."""
    from .. import db as dbmod
    from ..db.records import target_name
    from ..bench.report import prepare_dir, write_report

    prepare_dir(out_dir)  # fail on an unwritable directory before any database work
    with dbmod.connect(db_url) as db:
        stock_db = dbmod.connect(stock_db_url) if stock_db_url else None
        try:
            name = target_name(target or _default_target(db))
            page = write_report(db, name, out_dir, model_eval=not no_model_eval, stock_db=stock_db)
        finally:
            if stock_db is not None:
                stock_db.close()
    click.echo(f"wrote {page}")
