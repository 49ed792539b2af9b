"""``opsearch bench``: every operator's example workloads as the best pure-PyTorch implementation,
TVM's default schedule, opsearch's tuned record and stock MetaSchedule, side by side, with the
machine's fp32 GEMM peak measured in the same run; each timed side in its own process."""

from __future__ import annotations

import json

import click

from ..errors import OpsearchError, WorkloadError

IMPLS = ("pytorch", "tvm-default", "opsearch-tuned", "stock-metaschedule")


def _select(names: tuple[str, ...], examples: tuple[str, ...]):
    from .. import ops
    from ..bench import suite as bench

    specs = [ops.get(n) for n in names]  # unknown names fail before any work
    workloads = bench.example_workloads(list(names) or None)
    if examples:
        known = {e for op in (specs or ops.all_ops()) for e in op.examples}
        for ex in examples:
            if ex not in known:
                where = f"of {', '.join(names)}" if names else "of any operator"
                raise WorkloadError(f"unknown example '{ex}' {where} (see 'opsearch ops')")
        workloads = [(name, wl) for name, wl in workloads if name in examples]
    return workloads


def _target(target: str):
    from .. import targets

    spec = targets.resolve(target)
    if spec.kind != "llvm":
        raise OpsearchError(f"bench times kernels on this machine's CPU: target '{spec.name}' cannot run here (use cpu)")
    host = targets.host_cpu()
    if spec.arch != host:
        raise OpsearchError(f"bench times kernels on this machine (llvm:{host}): cannot time target '{spec.name}'")
    return spec


@click.command("bench")
@click.argument("names", nargs=-1, metavar="[OP ...]")
@click.option("--target", default="cpu", show_default=True, help="cpu (or llvm:<this machine's mcpu>).")
@click.option("--db", "db_url", help="Database URL (default: $OPSEARCH_DB or the user's SQLite file).")
@click.option("--example", "examples", multiple=True, help="Only this example workload (repeatable).")
@click.option("--rounds", default=1, show_default=True, type=int, help="Rounds; each side runs once per round in a new process, medians reported.")
@click.option("--stock-db", "stock_db_url", help="Database of stock MetaSchedule's records ('opsearch tune --tuner "
              "stock'); its best of each workload is timed as a fourth side.")
@click.option("--no-store", is_flag=True, help="Do not write the latencies to the database's baselines table.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output only.")
def bench(names, target, db_url, examples, rounds, stock_db_url, no_store, as_json):
    """Benchmark OPs' example workloads (all operators by default): PyTorch vs TVM default vs tuned."""
    from ..bench import suite as benchmod
    from .. import db as dbmod

    if rounds < 1:
        raise OpsearchError(f"--rounds must be at least 1, got {rounds}")
    workloads = _select(names, examples)
    db = dbmod.connect(db_url)
    stock_db = dbmod.connect(stock_db_url) if stock_db_url else None
    spec = _target(target)
    threads = spec.num_cores

    def say(msg):
        if not as_json:
            click.echo(msg, err=True)

    say(f"benchmarking {len(workloads)} workloads on {spec.name} with {threads} threads ({db.url})")
    suite = benchmod.run_suite(workloads, spec.name, db, rounds=rounds, threads=threads, db_url=db_url,
                               store=not no_store, progress=say, stock_db=stock_db, stock_db_url=stock_db_url)
    if as_json:
        click.echo(json.dumps(_as_json(suite), indent=2))
    else:
        _print(suite)
    wrong = [(r, i) for r in suite.rows for i, m in r.results.items() if m.note.startswith("WRONG")]
    if wrong:
        raise SystemExit(1)


def _cells(suite, row, impl):
    m = row.results[impl]
    if not m.ok:
        return None
    gf = suite.gflops(row, impl)
    return {"median_us": m.us, "gflops": gf, "pct_peak": 100 * gf / suite.peak_gflops if suite.peak_gflops else None,
            "speedup_vs_pytorch": suite.speedup(row, impl), "rel_error": m.rel_error}


def _as_json(suite) -> dict:
    from ..bench.suite import PEAK_METHOD, geomean_ratio

    gm, n = suite.geomean_speedup()
    return {
        "target": suite.target, "threads": suite.threads, "rounds": suite.rounds, "load_average": list(suite.load),
        "peak_gflops": suite.peak_gflops, "peak_method": PEAK_METHOD,
        "workloads": [
            {"op": r.workload.op, "example": r.example, "args": r.workload.json_args(), "flops": r.flops,
             "headline": suite.headline(r),
             "results": {i: {**(_cells(suite, r, i) or {}), "ok": r.results[i].ok, "note": r.results[i].note}
                         for i in IMPLS}}
            for r in suite.rows
        ],
        "summary": {"geomean_speedup_vs_pytorch": gm, "workloads": n,
                    "tuned": sum(r.results["opsearch-tuned"].ok for r in suite.rows),
                    "geomean_default_vs_pytorch": suite.geomean_speedup("tvm-default")[0],
                    "geomean_tuned_vs_stock": geomean_ratio(suite, "stock-metaschedule", "opsearch-tuned")[0],
                    "workloads_tuned_and_stock": geomean_ratio(suite, "stock-metaschedule", "opsearch-tuned")[1]},
    }


def _print(suite) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    peak = f"{suite.peak_gflops:.1f}" if suite.peak_gflops else "?"
    table = Table(title=f"opsearch bench on {suite.target}, {suite.threads} threads, median of {suite.rounds} round(s); "
                        f"peak = fastest of torch.mm 2048³ and a 3x3 conv (oneDNN), best of 5 = {peak} GFLOP/s")
    for col, just in [("operator / example", "left"), ("implementation", "left"), ("median µs", "right"),
                      ("GFLOP/s", "right"), ("% peak", "right"), ("vs PyTorch", "right"), ("note", "left")]:
        table.add_column(col, justify=just, overflow="fold")
    for r in suite.rows:
        for k, impl in enumerate(IMPLS):
            c = _cells(suite, r, impl)
            m = r.results[impl]
            label = f"{r.workload.op}\n{r.example}" if k == 0 else ""
            if c is None:
                table.add_row(label, impl, "", "", "", "", escape(m.note), end_section=k == len(IMPLS) - 1)
                continue
            pct = f"{c['pct_peak']:.1f}" if c["pct_peak"] is not None else ""
            sp = f"{c['speedup_vs_pytorch']:.2f}x" if c["speedup_vs_pytorch"] else ""
            style = "bold" if impl == suite.headline(r) else None
            table.add_row(label, impl, f"{c['median_us']:.1f}", f"{c['gflops']:.1f}", pct, sp, escape(m.note),
                          style=style, end_section=k == len(IMPLS) - 1)
    Console(width=150).print(table)
    gm, n = suite.geomean_speedup()
    tuned = sum(r.results["opsearch-tuned"].ok for r in suite.rows)
    line = f"geometric-mean speedup over PyTorch, tuned where tuned ({tuned}) else default: "
    line += f"{gm:.2f}x over {n} workloads" if gm else "n/a"
    dg = suite.geomean_speedup("tvm-default")[0]
    if dg:
        line += f"; default schedules alone: {dg:.2f}x"
    Console(width=150).print(line)
    from ..bench.suite import geomean_ratio

    vs, m = geomean_ratio(suite, "stock-metaschedule", "opsearch-tuned")
    if vs:
        Console(width=150).print(f"opsearch tuned vs stock MetaSchedule (stock latency / ours, geometric mean over {m} "
                                 f"workloads both tuned): {vs:.2f}x")
    Console(width=150).print(f"1-minute load average: {suite.load[0]:.1f} at the start, {suite.load[1]:.1f} at the end "
                             f"({suite.threads} threads per side; a load above the core count makes every figure noisy)")
    wrong = [f"{r.workload.op} {r.example} {i}" for r in suite.rows for i, m in r.results.items() if m.note.startswith("WRONG")]
    if wrong:
        Console(width=150, stderr=True).print(f"[red]output does not match the reference: {', '.join(wrong)}")
