"""``opsearch demo``: the main job on this CPU. Builds every operator's example workloads with the
default schedule, checks them against the reference and times them next to PyTorch eager (each
side in its own process)."""

from __future__ import annotations

import json

import click


@click.command("demo")
@click.argument("names", nargs=-1)
@click.option("--rounds", default=1, show_default=True, help="Alternating rounds per side (medians are reported).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output only.")
def demo(names: tuple[str, ...], rounds: int, as_json: bool) -> None:
    """Run every operator's example workloads (or those of NAMES) on this CPU."""
    from .. import bench, ops, targets

    for n in names:
        ops.get(n)  # unknown names fail before any work
    target = targets.resolve("cpu")
    workloads = bench.example_workloads(list(names) or None)
    if not as_json:
        click.echo(f"Building and timing {len(workloads)} workloads on {target.name} ({target.num_cores} cores)...")
    rows = bench.compare(workloads, rounds=rounds)
    if as_json:
        click.echo(json.dumps([
            {"op": r.workload.op, "example": r.example, "args": r.workload.json_args(), "opsearch_ms": r.opsearch_ms,
             "torch_ms": r.torch_ms, "gflops": r.gflops, "speedup_vs_torch": r.speedup, "rel_error": r.rel_error}
            for r in rows
        ], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"default (untuned) schedules on {target.name} vs PyTorch eager, median of separate processes")
    for col, just in [("operator", "left"), ("example", "left"), ("workload", "left"), ("opsearch ms", "right"),
                      ("GFLOP/s", "right"), ("torch ms", "right"), ("speedup", "right"), ("rel. error", "right")]:
        table.add_column(col, justify=just, overflow="fold")
    for r in rows:
        table.add_row(r.workload.op, r.example, r.workload.short(), f"{r.opsearch_ms:.3f}", f"{r.gflops:.1f}",
                      f"{r.torch_ms:.3f}", f"{r.speedup:.2f}x", f"{r.rel_error:.1e}")
    Console(width=160).print(table)
    worst = max(rows, key=lambda r: r.rel_error / ops.get(r.workload.op).tolerance)
    ok = worst.rel_error <= ops.get(worst.workload.op).tolerance
    click.echo(f"all {len(rows)} outputs match their references" if ok else f"MISMATCH: {worst.workload.op} {worst.example}")
    if not ok:
        raise SystemExit(1)
