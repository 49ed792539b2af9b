"""``opsearch db``: inspect, query, export/import, check and upgrade the schedule database."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import DatabaseError, OpsearchError
from .common import parse_args_json

db_option = click.option("--db", "url", metavar="URL", default=None,
                         help="Database URL (default: $OPSEARCH_DB, else the user's SQLite file).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output only.")


def _connect(url: str | None):
    from .. import db as dblib

    return dblib.connect(url)


_args = parse_args_json


def _workload(op: str, args: str):
    from .. import ops

    return ops.get(op).workload(**_args(args))


def _emit(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def _console():
    from rich.console import Console

    return Console()


def _fmt_us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def _records_table(records, title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ("id", "op", "workload", "target", "status", "mean µs", "runs", "module hash", "created"):
        table.add_column(col, overflow="fold", no_wrap=col not in ("workload", "module hash", "created"),
                         justify="right" if col in ("id", "mean µs", "runs") else "left")
    for r in records:
        table.add_row(str(r.id or "-"), r.op, r.workload.short(), r.target, r.status, _fmt_us(r.mean_us),
                      str(len(r.run_us)), r.module_hash[:12],
                      r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "-")
    return table


def _show_record(r) -> None:
    c = _console()
    c.print(f"[bold]record {r.id if r.id is not None else '(' + r.source + ')'}[/bold]: {r.op} {r.workload.short()}")
    for k, v in (("target", r.target), ("status", r.status), ("mean µs", _fmt_us(r.mean_us)),
                 ("run µs", ", ".join(f"{t:.2f}" for t in r.run_us) or "-"), ("module hash", r.module_hash),
                 ("run", r.run_id), ("created", r.created_at), ("source", r.source), ("error", r.error),
                 ("trace", f"{len(r.trace[0])} instructions" if isinstance(r.trace, list) and r.trace else "-")):
        c.print(f"  {k:12} {v if v is not None else '-'}")


@click.group("db")
def db() -> None:
    """The schedule database: tuned records per workload and target."""


@db.command("info")
@db_option
@json_option
def info(url, as_json) -> None:
    """Where the database is, its schema revision and row counts."""
    store = _connect(url)
    i, targets = store.info(), [t.name for t in store.targets()]
    if as_json:
        return _emit({**i.to_json(), "targets": targets})
    c = _console()
    c.print(f"[bold]{i.url}[/bold] ({i.backend}, schema {i.revision})")
    c.print(f"  targets: {', '.join(targets) or '-'}")
    for k, v in i.counts.items():
        c.print(f"  {k:12} {v:>10,}")
    for k, v in sorted(i.records_by_status.items()):
        c.print(f"    {k:10} {v:>10,}")


@db.command("list")
@click.option("--op", default=None, help="Only this operator.")
@click.option("--family", default=None, help="Only this operator family.")
@click.option("--target", default=None, help="Only workloads/records on this target.")
@click.option("--status", default=None, help="Only records with this status (with --records).")
@click.option("--since", default=None, help="Only records created since this ISO time (with --records).")
@click.option("--limit", type=int, default=None, help="At most the newest N records (with --records).")
@click.option("--records", "show_records", is_flag=True, help="List records instead of workloads.")
@db_option
@json_option
def list_(op, family, target, status, since, limit, show_records, url, as_json) -> None:
    """List stored workloads (or records, with --records)."""
    store = _connect(url)
    if show_records:
        recs = store.records(op=op, family=family, target=target, status=status, since=since, limit=limit)
        if as_json:
            return _emit([r.to_json() for r in recs])
        return _console().print(_records_table(recs, f"{len(recs)} records"))
    wls = store.workloads(op=op, family=family, target=target)
    if as_json:
        return _emit([w.to_json() for w in wls])
    from rich.table import Table

    table = Table(title=f"{len(wls)} workloads")
    for col in ("id", "op", "family", "workload", "records", "ok", "best µs", "targets"):
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "op", "records", "ok", "best µs"))
    for w in wls:
        table.add_row(str(w.id), w.op, w.family, w.workload.short(), str(w.n_records), str(w.n_ok),
                      _fmt_us(w.best_us), ", ".join(w.targets))
    _console().print(table)


@db.command("best")
@click.argument("op")
@click.option("--args", "args", required=True, metavar="JSON", help="Workload arguments as a JSON object.")
@click.option("--target", default="cpu", show_default=True)
@click.option("--no-shipped", is_flag=True, help="Ignore the schedules shipped with opsearch.")
@db_option
@json_option
def best(op, args, target, no_shipped, url, as_json) -> None:
    """The fastest record of a workload on a target (null if none)."""
    wl = _workload(op, args)
    rec = _connect(url).best(wl, target, shipped=not no_shipped)
    if as_json:
        return _emit(rec.to_json() if rec else None)
    if rec is None:
        return click.echo(f"no tuned schedule for {op} {wl.short()} on {target}")
    _show_record(rec)


@db.command("show")
@click.argument("record_id", type=int)
@db_option
@json_option
def show(record_id, url, as_json) -> None:
    """One record by id, with its trace."""
    rec = _connect(url).get(record_id)
    if as_json:
        return _emit(rec.to_json())
    _show_record(rec)


@db.command("history")
@click.argument("op")
@click.option("--args", "args", required=True, metavar="JSON", help="Workload arguments as a JSON object.")
@click.option("--target", default="cpu", show_default=True)
@db_option
@json_option
def history(op, args, target, url, as_json) -> None:
    """Every record of a workload on a target, in measurement order."""
    from .. import ops

    wl = _workload(op, args)
    recs = _connect(url).history(wl, target)
    if as_json:
        return _emit({"workload": {"op": wl.op, "family": ops.get(wl.op).family, "args": wl.json_args(),
                                   "key": wl.key()},
                      "records": [r.to_json() for r in recs]})
    _console().print(_records_table(recs, f"{op} {wl.short()}: {len(recs)} records"))


@db.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--target", default=None, help="Only records on this target.")
@click.option("--best", type=int, default=None, help="Only the K fastest ok records of each workload (shipped-schedule form).")
@db_option
@json_option
def export(file, target, best, url, as_json) -> None:
    """Write records as JSON lines to FILE ('-' for stdout)."""
    if best is not None and best < 1:
        raise OpsearchError(f"--best must be at least 1, got {best}")
    store = _connect(url)
    if file == "-":
        n = store.export(sys.stdout, target, best=best)
    else:
        with open(file, "w") as fp:
            n = store.export(fp, target, best=best)
    if as_json and file != "-":
        _emit({"exported": n, "file": file})
    elif file != "-":
        click.echo(f"exported {n} records to {file}")
    else:
        click.echo(f"exported {n} records", err=True)


@db.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--no-replay", is_flag=True, help="Skip replaying each trace on its workload (faster, no TVM).")
@db_option
@json_option
def import_(file, no_replay, url, as_json) -> None:
    """Import JSON lines from FILE; bad lines are reported by number and skipped (exit 1)."""
    store = _connect(url)
    with click.open_file(file) as fp:
        report = store.import_(fp, replay=not no_replay)
    if as_json:
        _emit(report.to_json())
    else:
        for n, msg in report.errors:
            click.echo(f"{file}:{n}: {msg}", err=True)
        click.echo(f"read {report.lines} lines: imported {report.imported}, "
                   f"already present {report.duplicates}, rejected {len(report.errors)}")
    if report.errors:
        sys.exit(1)


@db.command("import-measurements")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@db_option
@json_option
def import_measurements_cmd(file, url, as_json) -> None:
    """Store the measurements FILE of ``python -m opsearch.gpu_runner`` (all or nothing)."""
    from ..db.measurements import import_measurements

    report = import_measurements(_connect(url), file)
    if as_json:
        return _emit(report.to_json())
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(report.by_status.items()))
    click.echo(f"{report.target} on {report.device}: {statuses}; {report.filled} unmeasured candidates measured, "
               f"{report.added} added, {report.kept} already measured (kept)")


@db.command("compare")
@click.argument("target_a")
@click.argument("target_b")
@db_option
@json_option
def compare(target_a, target_b, url, as_json) -> None:
    """Best latencies of workloads tuned on both targets (ratio = B / A)."""
    rows = _connect(url).compare(target_a, target_b)
    if as_json:
        return _emit([c.to_json() for c in rows])
    from rich.table import Table

    table = Table(title=f"{target_a} vs {target_b}: {len(rows)} workloads")
    for col in ("op", "workload", f"{target_a} µs", f"{target_b} µs", "B / A"):
        table.add_column(col, overflow="fold", no_wrap=col != "workload")
    for c in rows:
        table.add_row(c.workload.op, c.workload.short(), _fmt_us(c.a.mean_us), _fmt_us(c.b.mean_us), f"{c.ratio:.3f}")
    _console().print(table)


@db.command("check")
@click.option("--target", default=None, help="Only records on this target.")
@db_option
@json_option
def check(target, url, as_json) -> None:
    """Replay every stored trace on its workload's current IR; exit 1 if any no longer applies."""
    from ..db.replay import replay

    store = _connect(url)
    bad, n = [], 0
    for rec in store.iter_records(target):
        if rec.trace is None:
            continue
        n += 1
        try:
            replay(rec.trace, rec.workload)
        except ValueError as e:
            bad.append({"id": rec.id, "op": rec.op, "target": rec.target, "error": str(e)})
        except Exception as e:  # noqa: BLE001 - the operator itself no longer builds this workload
            bad.append({"id": rec.id, "op": rec.op, "target": rec.target, "error": f"{type(e).__name__}: {e}"})
    if as_json:
        _emit({"checked": n, "failed": bad})
    else:
        for b in bad:
            click.echo(f"record {b['id']} ({b['op']} on {b['target']}): {b['error']}", err=True)
        click.echo(f"checked {n} traces: {n - len(bad)} replay, {len(bad)} no longer apply")
    if bad:
        sys.exit(1)


@db.command("upgrade")
@db_option
@json_option
def upgrade(url, as_json) -> None:
    """Migrate the database schema to this opsearch's revision (creates a new database)."""
    from ..db import engine as eng
    from ..db.models import VERSION_TABLE

    engine = eng.create_engine(eng.resolve_url(url))
    try:
        with engine.connect() as conn:
            before = eng.current_revision(conn)
    except Exception as e:  # noqa: BLE001 - mapped to one line
        raise eng.connect_error(engine, e) from None
    if before is None:
        import sqlalchemy as sa

        with engine.connect() as conn:
            if set(sa.inspect(conn).get_table_names()) - {VERSION_TABLE}:
                raise DatabaseError(f"{eng.safe_url(engine)} is not an opsearch database")
    after = eng.upgrade(engine)
    if as_json:
        return _emit({"url": eng.safe_url(engine), "from": before, "to": after})
    click.echo(f"{eng.safe_url(engine)}: schema {before or '(new)'} -> {after}")
