"""The `dcrt` command line: one module per group of commands, each only declaring and checking its options and
handing the work to the library (dcrt.api, dcrt.loading, dcrt.artifacts, each family's bench). A command serves
every model family: what differs is asked of the family registry (dcrt.families).

    app.py        the typer app, `main` (errors -> one line and an exit code), grouped help
    options.py    library option types (SamplingRequest, BackendRequest, OutputOptions) rendered as options
    generate.py   animate, interpolate, loop, batch (through dcrt.api)
    describe.py   describe (dcrt.director)
    progress.py   the denoising progress bar of the generating commands
    artifacts.py  fetch, export, build
    host.py       tokenize, noise (the C++ host's inputs)
    machine.py    info, bench
    serving.py    serve, client, ui
    score.py      score (dcrt.director.score)
    jobs.py       api (the jobs service, dcrt.serving.jobs)
    story.py      story (dcrt.director.story)

Importing this package imports typer and the dcrt option tables only: torch and the models are imported by
a command after its options and inputs are checked, so help and bad arguments answer at once.
"""

from dcrt.cli import (  # noqa: F401  (each registers its commands on `app`)
    artifacts,
    describe,
    generate,
    host,
    jobs,
    machine,
    score,
    serving,
    story,
)
from dcrt.cli.app import app, main

__all__ = ["app", "main"]
