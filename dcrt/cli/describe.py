"""describe: ranked motion prompts for an image (dcrt.director.describe), offline or from a chat model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dcrt.cli.app import app, log
from dcrt.cli.options import IMAGE_HELP, OUTPUT, PROMPT_HELP, SAMPLING, GroupedCommand, takes
from dcrt.director.describe import DescribeRequest
from dcrt.director.llm import LLMRequest
from dcrt.loading import BackendRequest

# The model options describe takes: whose CLIP, where it runs.
DESCRIBED_BY = ("preset", "checkpoint", "random_weights", "device", "dtype")


@app.command(
    cls=GroupedCommand,
    help="Propose motion prompts for IMAGE, or with LAST for the clip between two key frames (interpolate, loop), "
    "best first. Offline by default: the checkpoint's own CLIP ranks dcrt's prompt bank (README: Describing an "
    "image); with --llm an OpenAI-compatible chat model proposes them. Prints rank, score and prompt per line.",
)
@takes(model=(BackendRequest, DESCRIBED_BY), request=DescribeRequest, llm=LLMRequest)
def describe(
    images: Annotated[
        list[Path],
        typer.Argument(metavar="IMAGE [LAST]", help=f"the image, or two key frames ({IMAGE_HELP})", show_default=False),
    ],
    model: BackendRequest,
    request: DescribeRequest,
    llm: LLMRequest,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print JSON: each prompt with its score, source and parts", rich_help_panel=OUTPUT),
    ] = False,
) -> None:
    from dcrt.director.bank import load_bank
    from dcrt.errors import UsageError
    from dcrt.images import open_image

    if len(images) > 2:
        raise UsageError(f"describe takes IMAGE or FIRST LAST, got {len(images)} images")
    request.check()
    model.check_names()
    llm.resolved()  # a missing model name or a bad URL: one line, before anything loads
    bank = load_bank(request.bank)
    pictures = [open_image(p) for p in images]
    if llm.endpoint is None or llm.fallback:
        model.requested_weights()  # a missing --ckpt fails here, before the images are described
    from dcrt.director.describe import describe as run

    ranked = run(pictures, model, top=request.top, bank=bank, llm=llm if llm.endpoint else None, log=log)
    if as_json:
        typer.echo(json.dumps({"prompts": [r.as_dict() for r in ranked]}, indent=2))
        return
    for rank, r in enumerate(ranked, 1):
        score = "-" if r.score is None else f"{r.score:.4f}"
        typer.echo(f"{rank:>2}  {score:>7}  {r.prompt}")


# The generating commands' way to leave the prompt to describe (dcrt.cli.generate).
AUTO_PROMPT_HELP = (
    "choose the prompt with `dcrt describe` (offline: the checkpoint's CLIP ranks dcrt's prompt bank; interpolate: "
    "for each pair of key frames, seeing both) and log it; also what a DynamiCrafter preset does without PROMPT"
)
AutoPromptFlag = Annotated[bool, typer.Option("--auto-prompt", help=AUTO_PROMPT_HELP, rich_help_panel=SAMPLING)]
DescribedPrompt = Annotated[
    str | None,
    typer.Argument(metavar="[PROMPT]", help=f"{PROMPT_HELP} (default: chosen by --auto-prompt)", show_default=False),
]
