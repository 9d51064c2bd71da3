"""story: a storyboard rendered into one film (dcrt.director.story), or first written by a chat model from a goal
(dcrt.director.story_goal). The storyboard, the film's path and sound track and every preset's weights are checked
before any model loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcrt.cli.app import app, log
from dcrt.cli.options import OUTPUT, GroupedCommand, OutputOptions, takes
from dcrt.director.llm import DIRECTOR, LLMRequest
from dcrt.loading import BackendRequest

# The model options a story takes: each scene names its preset, these apply to all of them.
STORY_MODEL = ("random_weights", "backend", "device", "dtype")
FILM = ("quality", "audio", "audio_library")
# A chat model writes the storyboard or picks the track: no offline fallback to fall back on.
ASKED = ("endpoint", "chat_model", "api_key", "timeout")


@app.command(
    cls=GroupedCommand,
    help="Render STORYBOARD (a TOML file of scenes: docs/story.md) into one film, scene by scene, each kept in "
    "<film>.scenes/ so that --resume renders only what is missing or changed. With --goal, --image and --llm a chat "
    "model first writes STORYBOARD (a new file): rendered at once with -o, else left to edit and render.",
)
@takes(model=(BackendRequest, STORY_MODEL), output=(OutputOptions, FILM), llm=(LLMRequest, ASKED))
def story(
    storyboard: Annotated[
        Path,
        typer.Argument(
            metavar="STORYBOARD", help="the storyboard TOML file (with --goal: written)", show_default=False
        ),
    ],
    model: BackendRequest,
    output: OutputOptions,
    llm: LLMRequest,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="the film: mp4, gif, webp, or a folder of png frames", rich_help_panel=OUTPUT),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="keep the parts <film>.scenes/ holds from unchanged inputs, and its sound track unless --audio or "
            "--audio-library gives another; render only the rest",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    goal: Annotated[
        str | None,
        typer.Option(
            help="what the film should show: the chat model (--llm) writes STORYBOARD", rich_help_panel=DIRECTOR
        ),
    ] = None,
    image: Annotated[
        Path | None, typer.Option(help="with --goal: the first scene's image", rich_help_panel=DIRECTOR)
    ] = None,
    preset: Annotated[
        str, typer.Option("--res", help="with --goal: the scenes' preset", rich_help_panel=DIRECTOR)
    ] = "512",
    steps: Annotated[
        int | None,
        typer.Option(help="with --goal: every scene's DDIM steps (default: the preset's)", rich_help_panel=DIRECTOR),
    ] = None,
) -> None:
    from dcrt.director.story import Sound, check_film, check_story
    from dcrt.director.story_goal import check_goal
    from dcrt.director.storyboard import read_storyboard
    from dcrt.errors import UsageError

    request = llm.resolved()
    check_goal(goal, image, request, storyboard)
    if goal is None and out is None:
        raise UsageError("story needs -o FILM: where to write the film")
    sound = Sound(output.audio, output.audio_library, request)
    if out is not None:
        check_film(out, sound)  # before a chat model is asked for the storyboard
    if goal is None:
        board = read_storyboard(storyboard)
    else:
        board = _ask_for_storyboard(goal, image, request, storyboard, preset, steps)
        typer.echo(str(storyboard))
        if out is None:
            return
    check_story(board, out, model, output.quality, sound)
    _render(board, out, model, output.quality, sound, resume)


def _ask_for_storyboard(goal, image, request, storyboard, preset, steps):
    from dcrt.director.describe import model_view
    from dcrt.director.story_goal import write_goal_storyboard
    from dcrt.images import open_image
    from dcrt.presets import get_preset

    frame = model_view([open_image(image)], get_preset(preset))[0]
    board = write_goal_storyboard(goal, image, request, storyboard, frame, preset, steps)
    log(f"the chat model wrote {len(board.scenes)} scenes into {storyboard}")
    return board


def _render(board, out, model, quality, sound, resume) -> None:
    """The story with a bar over its parts (shown from the first part on: a refusal before it stays one line) and
    each part's denoising bar."""
    import sys

    from tqdm import tqdm

    from dcrt.cli.progress import progress
    from dcrt.director.story import story

    bars: list[tqdm] = []

    def on_part(index: int, total: int, label: str) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="part", file=sys.stderr, dynamic_ncols=True))
        bars[0].n = index
        bars[0].set_description(label)

    try:
        with progress() as on_step:
            film, _ = story(
                board,
                out,
                model,
                resume=resume,
                quality=quality,
                sound=sound,
                on_step=on_step,
                on_part=on_part,
                log=log,
            )
        if bars:
            bars[0].n = bars[0].total
            bars[0].set_description("story")
    finally:
        for bar in bars:
            bar.close()
    typer.echo(str(film))
