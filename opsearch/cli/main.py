"""The ``opsearch`` command: one click group; each concern's commands live in their own module.

User mistakes (:class:`~opsearch.errors.OpsearchError` and click's usage errors) print one line
on stderr and exit 2; anything else exits 1.
"""

from __future__ import annotations

import sys

import click

from ..errors import OpsearchError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OpsearchError as e:
            click.echo(f"opsearch: error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="opsearch")
def cli() -> None:
    """Operator search and autotuning: tune novel convolutions with TVM, store schedules in SQL,
    call the tuned kernels from PyTorch."""


def _register() -> None:
    from . import demo_cmd, model_cmd, ops_cmd, tune_cmd

    cli.add_command(ops_cmd.ops)
    cli.add_command(demo_cmd.demo)
    cli.add_command(tune_cmd.tune)
    cli.add_command(model_cmd.model)
    cli.add_command(__import__(f"{__package__}.bench_cmd", fromlist=["bench"]).bench)
    cli.add_command(__import__(f"{__package__}.report_cmd", fromlist=["report"]).report)
    try:
        from . import db_cmd
    except ImportError:  # the database commands are optional until their module exists
        return
    cli.add_command(db_cmd.db)


_register()


def main() -> None:
    """The console script: like click's standalone mode, except that a usage mistake (unknown
    option, bad choice, missing argument) is one line on stderr, exit status 2."""
    try:
        rv = cli.main(prog_name="opsearch", standalone_mode=False)
    except click.UsageError as e:
        hint = f" (see 'opsearch {e.ctx.info_name if e.ctx and e.ctx.parent else ''} --help')".replace("  ", " ")
        click.echo(f"opsearch: error: {e.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
