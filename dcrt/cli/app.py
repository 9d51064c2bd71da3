"""The typer app and `main`. Library errors (DcrtError) and bad arguments become one line on stderr and a
non-zero exit code (2 for bad input); tracebacks are for bugs only."""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

import click
import typer

from dcrt.errors import INTERRUPTED_EXIT_CODE, INTERRUPTED_MESSAGE, DcrtError

app = typer.Typer(
    help="dcrt: fast inference for the DynamiCrafter image-to-video models.",
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Typer >= 0.20 ships its own copy of click with its own exception classes; older ones use click's.
_ARGUMENT_ERRORS = (click.exceptions.ClickException, getattr(typer, "TyperException", click.exceptions.ClickException))


def say(message: str) -> None:
    """A progress or status line on stderr (stdout carries only what a command produces: file paths, reports)."""
    typer.echo(message, err=True)


def log(message: str) -> None:
    """The library's `log` callback: its messages, prefixed as every dcrt line on stderr is."""
    say(f"dcrt: {message}")


def _version(value: bool) -> None:
    if value:
        from dcrt.version import __version__

        typer.echo(f"dcrt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """dcrt: fast inference for the DynamiCrafter image-to-video models."""


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    say(f"dcrt: warning: {message}")


def main() -> None:
    """Run the command line on sys.argv (the console script, `dcrt.__main__.main`, calls this). Everything slow
    runs inside the `try`: Ctrl-C is one line and exit 130 (outputs are written to temporary files and renamed,
    so none is left half-written)."""
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            # A ResourceWarning is a developer's diagnostic (an event loop or file some library left to the
            # collector), not a notice about the user's run: it would be a second line beside a one-line error.
            warnings.simplefilter("ignore", ResourceWarning)
            warnings.showwarning = _show_warning
            code = app(standalone_mode=False, prog_name="dcrt")
    except (typer.Abort, click.exceptions.Abort, KeyboardInterrupt):
        code = INTERRUPTED_EXIT_CODE
    except _ARGUMENT_ERRORS as exc:  # bad arguments: one line, exit 2
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        say(f"dcrt: error: {message}")
        sys.exit(getattr(exc, "exit_code", 2))
    except DcrtError as exc:
        say(f"dcrt: error: {exc}")
        sys.exit(exc.exit_code)
    if code == INTERRUPTED_EXIT_CODE:  # typer >= 0.2x returns this code for Ctrl-C in a command, silently
        say(INTERRUPTED_MESSAGE)
    sys.exit(code or 0)
