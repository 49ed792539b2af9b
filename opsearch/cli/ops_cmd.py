"""``opsearch ops``: list the operators with family, signature and example workloads."""

from __future__ import annotations

import json

import click

from .. import ops as oplib


def describe(op) -> dict:
    return {
        "name": op.name,
        "family": op.family,
        "doc": op.doc,
        "signature": op.signature,
        "dtypes": list(op.dtypes),
        "tensors": [
            {"name": t.name, "dims": list(t.dims), "dtype": t.dtype, "optional": t.optional} for t in op.tensors
        ],
        "attrs": [{"name": a.name, "kind": a.kind, "default": a.default} for a in op.attrs],
        "examples": {name: op.example(name).json_args() for name in op.examples},
    }


@click.command("ops")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output only.")
def ops(names: tuple[str, ...], as_json: bool) -> None:
    """List operators (all, or NAMES) with family, signature and examples."""
    specs = [oplib.get(n) for n in names] if names else oplib.all_ops()
    rows = [describe(op) for op in specs]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="opsearch operators", show_lines=True)
    for col in ("operator", "family", "signature", "examples"):
        table.add_column(col, overflow="fold")
    for op, row in zip(specs, rows):
        table.add_row(op.name, op.family, op.signature, "\n".join(op.example(e).short() + f"  ({e})" for e in op.examples))
    Console().print(table)
