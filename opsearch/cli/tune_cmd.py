"""``opsearch tune``: tune workloads for a target into the database, with a progress bar, a
closing table (best vs default schedule vs PyTorch eager) and a tuning-curve PNG."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import click

from ..errors import OpsearchError


def _workloads(op_name, example, args, pending, db, target):
    from .. import ops

    if pending:
        if op_name or example or args:
            raise OpsearchError("--pending tunes every pending workload: give no OP, --example or --args with it")
        return [wl for wl, _ in db.pending(target)]
    if not op_name:
        raise OpsearchError("give an operator (see 'opsearch ops'), or --pending")
    op = ops.get(op_name)
    if (example is None) == (args is None):
        raise OpsearchError("give exactly one of --example NAME and --args JSON")
    if example == "all":
        return [op.example(name) for name in op.examples]
    if example is not None:
        return [op.example(example)]
    from .common import parse_args_json

    return [op.workload(**parse_args_json(args))]


@click.command("tune")
@click.argument("op_name", required=False, metavar="OP")
@click.option("--example", help="Tune one of the operator's example workloads ('all' for every one).")
@click.option("--args", "args", help='Workload as JSON, e.g. \'{"x": [1,64,56,56], "weight": [64,64,3,3]}\'.')
@click.option("--pending", is_flag=True, help="Tune every workload noted as pending for the target.")
@click.option("--target", default="cpu", show_default=True, help="cpu, llvm:<mcpu> or cuda:sm_XX.")
@click.option("--trials", default=64, show_default=True, type=int, help="Total trial budget (trials already in the database count).")
@click.option("--trials-per-workload", type=int, help="Cap per workload.")
@click.option("--time", "--time-limit", "time_limit", metavar="DURATION",
              help="Stop after this long (600, 90s, 10m, 1h), after the batch in flight; rerun to resume.")
@click.option("--patience", type=int, help="Stop a workload after this many trials without improvement.")
@click.option("--batch", default=16, show_default=True, type=int, help="Candidates measured per search iteration.")
@click.option("--db", "db_url", help="Database URL (default: $OPSEARCH_DB or the user's SQLite file).")
@click.option("--rpc", help="HOST:PORT:KEY of a TVM RPC tracker whose servers measure the candidates.")
@click.option("--no-measure", is_flag=True, help="Compile and rank candidates without timing them (CUDA without a GPU).")
@click.option("--full-timing", is_flag=True,
              help="Time every candidate fully (default: a short screening sample first, full timing only "
                   "for candidates within 1.5x of the best).")
@click.option("--confirm", default=None, type=click.IntRange(min=0), show_default="4 for workloads of 128+ trials",
              help="After the search, time each workload's fastest N records again side by side in 3 fresh "
                   "processes and keep the fastest of them (CPU, local runner; 0: off).")
@click.option("--refine", default=0.25, show_default=True, type=float, metavar="SHARE",
              help="Share of each workload's trials (64 or more) kept for the end of its search, which then "
                   "measures one-step neighbours of its fastest records (0: off).")
@click.option("--out", "out_dir", default="opsearch-runs", show_default=True, help="Where the tuning-curve PNG goes.")
@click.option("--tuner", type=click.Choice(["opsearch", "stock"]), default="opsearch", show_default=True,
              help="'stock': stock MetaSchedule tune_tir as a baseline (keep its records in their own --db).")
@click.option("--export-candidates", "export_dir", type=click.Path(file_okay=False),
              help="With --no-measure on a CUDA target: write the candidates as a bundle for "
                   "`python -m opsearch.gpu_runner` (a GPU machine without TVM).")
@click.option("--export-limit", type=int, default=16, show_default=True,
              help="Candidates per workload in the bundle (the default schedule and the newest unmeasured).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output only.")
def tune(op_name, example, args, pending, target, trials, trials_per_workload, time_limit, patience, batch, db_url,
         rpc, no_measure, full_timing, confirm, refine, out_dir, tuner, export_dir, export_limit, as_json):
    """Tune OP's workload(s) for a target and store every candidate in the database."""
    from .. import db as dbmod
    from .. import targets
    from ..search.runner import MeasureConfig
    from ..search import TuneConfig, Tuner

    if trials <= 0:
        raise OpsearchError(f"--trials must be positive, got {trials}")
    if time_limit is not None:
        from .common import parse_duration

        time_limit = parse_duration(time_limit)
    spec = targets.resolve(target)
    if tuner == "stock":
        unsupported = [flag for flag, v in (("--rpc", rpc), ("--no-measure", no_measure), ("--patience", patience),
                                            ("--time", time_limit), ("--full-timing", full_timing),
                                            ("--confirm", confirm)) if v]
        if unsupported:
            raise OpsearchError(f"--tuner stock runs tune_tir as its users do; it does not take {', '.join(unsupported)}")
        if spec.kind != "llvm":
            raise OpsearchError(f"--tuner stock measures on this CPU only; got target {spec.name}")
    if export_dir and (spec.kind != "cuda" or not no_measure):
        raise OpsearchError("--export-candidates writes a CUDA bundle: it needs a cuda:sm_XX --target and --no-measure")
    if export_dir and export_limit < 1:
        raise OpsearchError(f"--export-limit must be positive, got {export_limit}")
    db = dbmod.connect(db_url)
    wls = _workloads(op_name, example, args, pending, db, spec.name)
    if not wls:
        click.echo("nothing pending for " + spec.name, err=as_json)
        return
    if tuner == "stock":
        _tune_stock(wls, spec, db, trials_per_workload or max(1, trials // len(wls)), batch, as_json)
        return
    cfg = TuneConfig(trials=trials, trials_per_workload=trials_per_workload, time_limit_s=time_limit,
                     patience=patience, batch=batch, measure=not no_measure, rpc=rpc, confirm=confirm, refine=refine,
                     measure_config=MeasureConfig(screen_ratio=None) if full_timing else MeasureConfig())
    with _progress(as_json) as progress:
        results = Tuner(wls, spec, db, cfg, progress).run()
    rows = _summarise(results, db, db_url, spec, measure=not no_measure)
    plot = None if no_measure else _plot(results, db, spec, out_dir)
    bundle = None
    if export_dir:
        from ..runtime.bundle import export_bundle

        m = export_bundle(db, wls, spec, export_dir, limit=export_limit)
        bundle = {"dir": str(export_dir), "candidates": len(m["candidates"]), "skipped": m["skipped"]}
    if as_json:
        click.echo(json.dumps({"target": spec.name, "results": rows, "plot": plot, "bundle": bundle}, indent=2))
        return
    _print_table(rows, spec.name, no_measure)
    if bundle:
        click.echo(f"bundle: {bundle['candidates']} candidates in {export_dir} "
                   f"({len(bundle['skipped'])} skipped{': ' + bundle['skipped'][0] if bundle['skipped'] else ''}); "
                   f"measure it with `python -m opsearch.gpu_runner {export_dir} OUT.json`")
    if plot:
        click.echo(f"tuning curve: {plot}")


@contextlib.contextmanager
def _stdout_to_stderr(active: bool):
    """Point file descriptor 1 at stderr for the duration (so --json's stdout stays JSON only)."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _tune_stock(wls, spec, db, per_workload: int, batch: int, as_json: bool) -> None:
    """Stock MetaSchedule, one ``tune_tir`` per workload, each to ``per_workload`` records."""
    from ..search.stock import TUNER, tune_stock

    rows = []
    for wl in wls:
        click.echo(f"stock MetaSchedule: {wl.op} {wl.short()} to {per_workload} trials on {spec.name}", err=True)
        with _stdout_to_stderr(as_json):  # tune_tir logs its task tables to stdout
            r = tune_stock(wl, spec, db, per_workload, batch=batch)
        rows.append({"op": wl.op, "args": wl.json_args(), "target": r.target, "tuner": TUNER,
                     "trials_before": r.trials_before, "trials_run": r.trials_run, "failed": r.failed,
                     "wall_s": r.wall_s, "trials_per_min": r.trials_run / r.wall_s * 60 if r.wall_s else None,
                     "best_us": r.best_us})
    if as_json:
        click.echo(json.dumps({"target": spec.name, "results": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"stock MetaSchedule on {spec.name}")
    for col in ("operator", "workload", "trials", "failed", "wall s", "trials/min", "best us"):
        t.add_column(col, overflow="fold")
    for r, wl in zip(rows, wls):
        t.add_row(r["op"], wl.short(), f"{r['trials_before']}+{r['trials_run']}", str(r["failed"]), f"{r['wall_s']:.0f}",
                  "-" if r["trials_per_min"] is None else f"{r['trials_per_min']:.1f}",
                  "-" if r["best_us"] is None else f"{r['best_us']:.1f}")
    Console(width=170).print(t)


class _progress:
    """A rich progress bar fed by the tuner's events (silent with --json)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __enter__(self):
        if self.quiet:
            return lambda event: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        self.bar.__enter__()
        self.task = None
        self.best: dict = {}

        def update(e):
            if e["event"] == "start":
                self.task = self.bar.add_task("tune", total=e["budget"], info="")
            elif e["event"] == "batch" and self.task is not None:
                from .. import ops

                wl = e["workload"]
                if e["best_us"]:
                    self.best[wl] = e["best_us"]
                gf = ops.get(wl.op).flops(wl) / e["best_us"] / 1e3 if e["best_us"] else 0.0
                info = f"{wl.op}: best {e['best_us'] or float('nan'):.1f} us ({gf:.1f} GFLOP/s), failed {e['failed']}"
                self.bar.update(self.task, completed=e["done"], info=info)
            elif e["event"] == "confirm":
                c = e["finalists"]
                self.bar.console.print(f"{e['workload'].op}: {len(c)} finalists timed again in fresh processes; best "
                                       f"{c[0].after_us:.1f} us (its own measurement {c[0].before_us:.1f} us)")
            elif e["event"] == "interrupt":
                self.bar.console.print("[yellow]Ctrl-C: stopping after the batch in flight (again to abort)")

        return update

    def __exit__(self, *exc):
        if not self.quiet:
            self.bar.__exit__(*exc)
        return False


def _summarise(results, db, db_url, spec, measure: bool) -> list[dict]:
    """Result rows. On a CPU the best record, the default schedule and PyTorch eager are each
    timed in their own process the same way (the run's runner measures its candidates in other
    conditions, ~5-15% apart here, so comparing its number with a bench process's could show the
    default as faster than a best that is the default itself); ``run_best_us`` is the run's own."""
    from .. import ops
    from ..bench import suite as bench
    from ..targets import host_cores

    baselines, retimed = {}, {}
    if measure and spec.kind == "llvm":
        keys = [r.workload.key() for r in results]
        opts = {"target": spec.name, "threads": host_cores(), "db": db_url, "repeat": 5}
        default = bench.run_suite_worker("tvm-default", keys, opts)
        best = bench.run_suite_worker("opsearch-tuned", [r.workload.key() for r in results if r.best], opts)
        torch_ = bench.run_eager_worker(keys)
        for r in results:
            k = r.workload.key()
            if "ms" in best.get(k, {}):
                retimed[k] = best[k]["ms"] * 1e3
            d_us = default[k]["ms"] * 1e3 if "ms" in default.get(k, {}) else None
            baselines[k] = (d_us, torch_[k]["ms"] * 1e3)
            if d_us is not None:
                db.add_baseline(r.workload, spec, "default-schedule", d_us)
            db.add_baseline(r.workload, spec, "torch-eager", baselines[k][1])
    rows = []
    for r in results:
        run_best_us = r.best.mean_us if r.best else None
        best_us = retimed.get(r.workload.key(), run_best_us)
        d_us, t_us = baselines.get(r.workload.key(), (None, None))
        flops = ops.get(r.workload.op).flops(r.workload)
        rows.append({
            "op": r.workload.op, "args": r.workload.json_args(), "target": r.target,
            "trials_before": r.trials_before, "trials_run": r.trials_run, "cached": r.cached, "failed": r.failed,
            "stopped": r.stopped, "verified": r.verified, "best_us": best_us, "run_best_us": run_best_us,
            "gflops": flops / best_us / 1e3 if best_us else None,
            "default_us": d_us, "torch_us": t_us,
            "speedup_vs_default": d_us / best_us if best_us and d_us else None,
            "speedup_vs_torch": t_us / best_us if best_us and t_us else None,
            "module_hash": r.best.module_hash if r.best else None,
        })
    return rows


def _print_table(rows, target: str, no_measure: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    t = Table(title=f"tuning results on {target}")
    for col in ("operator", "workload", "trials", "best us", "GFLOP/s", "default us", "torch us", "vs default",
                "vs torch", "verified", "stopped"):
        t.add_column(col, overflow="fold")
    from ..ops import get

    for r in rows:
        wl = get(r["op"]).workload(**r["args"])
        t.add_row(r["op"], wl.short(), f"{r['trials_before']}+{r['trials_run']}", f(r["best_us"], ".1f"),
                  f(r["gflops"], ".1f"), f(r["default_us"], ".1f"), f(r["torch_us"], ".1f"),
                  f(r["speedup_vs_default"], ".2f") + ("x" if r["speedup_vs_default"] else ""),
                  f(r["speedup_vs_torch"], ".2f") + ("x" if r["speedup_vs_torch"] else ""),
                  {True: "yes", False: "NO", None: "-"}[r["verified"]], r["stopped"])
    Console(width=170).print(t)
    if no_measure:
        Console().print("candidates compiled and stored as 'unmeasured' (no timings without a device)")


def _plot(results, db, spec, out_dir: str) -> str | None:
    """Best latency vs trials for each workload, from the database's measurement order."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    drew = False
    for r in results:
        best, ys = None, []
        for rec in db.history(r.workload, spec):
            if rec.status == "ok" and (best is None or rec.mean_us < best):
                best = rec.mean_us
            ys.append(best)
        pts = [(i + 1, y) for i, y in enumerate(ys) if y is not None]
        if pts:
            ax.plot(*zip(*pts), label=f"{r.workload.op} {r.workload.short()[:40]}")
            drew = True
    if not drew:
        plt.close(fig)
        return None
    ax.set_xlabel("trials")
    ax.set_ylabel("best latency (us)")
    ax.set_yscale("log")
    ax.set_title(f"tuning curve on {spec.name}")
    ax.legend(fontsize=7)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"tune-{spec.name.replace(':', '-')}-{results[0].workload.op}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
