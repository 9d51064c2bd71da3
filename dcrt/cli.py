"""The `dcrt` command line. Library errors (DcrtError) become one line on stderr and an exit code."""

from __future__ import annotations

import sys

import typer

from dcrt.errors import DcrtError

app = typer.Typer(
    help="dcrt: fast inference for the DynamiCrafter image-to-video models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """dcrt: fast inference for the DynamiCrafter image-to-video models."""


@app.command()
def info() -> None:
    """Versions, devices, and which backends this machine can use (and why not)."""
    from dcrt.info import collect, format_report

    typer.echo(format_report(collect()))


def main() -> None:
    try:
        app()
    except DcrtError as exc:
        typer.echo(f"dcrt: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("dcrt: interrupted", err=True)
        sys.exit(130)
