"""`python -m dcrt` and the `dcrt` console script.

The command line is imported inside the `try`: Ctrl-C while typer and click load (the first tenth of a
second) is one line and exit 130 too, as it is everywhere later (dcrt.cli.main).
"""

import sys

from dcrt.errors import INTERRUPTED_EXIT_CODE, INTERRUPTED_MESSAGE


def main() -> None:
    try:
        from dcrt.cli import main as run

        run()
    except (Exception, KeyboardInterrupt) as exc:
        if not _interrupted(exc):
            raise
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)


def _interrupted(exc: BaseException | None) -> bool:
    """Whether Ctrl-C caused `exc`: Python 3.11 wraps a KeyboardInterrupt that lands while a class is being
    created (a dataclass field's __set_name__, during an import) in a RuntimeError."""
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":
    main()
