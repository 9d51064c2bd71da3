"""score: a video's metrics (dcrt.director.score; definitions in docs/metrics.md) as a table or JSON. The video and
images are read and checked first; the checkpoint's CLIP is loaded only for the CLIP metrics, and only when a model
is named (--res, --ckpt or --random-weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcrt.cli.app import app
from dcrt.cli.options import WEIGHTS, GroupedCommand, takes
from dcrt.loading import BackendRequest
from dcrt.presets import DEFAULT_PRESET


@app.command(
    cls=GroupedCommand,
    help="Measure VIDEO (mp4 or anything ffmpeg reads, gif, webp, a folder of png frames): motion, flicker, black "
    "and frozen frames, and with a checkpoint's CLIP (--res with --ckpt, or --random-weights) temporal consistency, "
    "fidelity to the --image(s) and adherence to --prompt. Definitions: docs/metrics.md.",
)
@takes(
    notes={"preset": f"none, and no CLIP metrics; {DEFAULT_PRESET} with only --ckpt or --random-weights"},
    model=(BackendRequest, (*WEIGHTS, "device")),
)
def score(
    video: Annotated[Path, typer.Argument(metavar="VIDEO", help="the video to measure", show_default=False)],
    model: BackendRequest,
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            metavar="IMAGE",
            help="a conditioning image, compared with the first frame; give it again for interpolate's key frames "
            "(first and last frame, in order)",
            show_default=False,
        ),
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="the prompt the video followed", show_default=False)] = None,
    json_: Annotated[bool, typer.Option("--json", help="print the scores as JSON instead of a table")] = False,
) -> None:
    from dcrt.director.score import NO_EMBEDDER, fit_image, format_table, open_embedder, score_frames
    from dcrt.images import open_image
    from dcrt.video import read_video

    frames = read_video(video)
    pictures = [open_image(p) for p in image or []]
    model.check_names()
    named = model.preset is not None or model.checkpoint is not None or model.random_weights
    weights = model.requested_weights() if named else None  # a missing --ckpt fails here, before CLIP loads
    embedder, why = open_embedder(model.preset_config(), weights, model.device) if named else (None, NO_EMBEDDER)
    fitted = [fit_image(picture, *frames.shape[1:3]) for picture in pictures]
    scores = score_frames(frames, fitted, prompt, embedder, why)
    typer.echo(scores.to_json().rstrip() if json_ else format_table(scores))
