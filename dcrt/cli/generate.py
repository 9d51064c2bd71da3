"""animate, interpolate, loop and batch, for every model family: every option and input checked first (no torch,
no model: a bad one costs well under a second; each family checks its own options, dcrt.families), then one
backend opened (`dcrt.open_backend`), then each video sampled and written by the Python API (`dcrt.api.save_video`:
the command line builds no pipeline and chains no clips itself)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from dcrt.atomic import check_writable
from dcrt.batch import Job, read_prompt_dir, readable_prompt
from dcrt.cli.app import app, log, say
from dcrt.cli.describe import AutoPromptFlag, DescribedPrompt
from dcrt.cli.options import (
    BATCH,
    IMAGE_NOTE,
    SAMPLING,
    GroupedCommand,
    Image,
    KeyframesAndPrompt,
    OptionalPrompt,
    OutputOptions,
    default_output,
    takes,
)
from dcrt.cli.progress import progress
from dcrt.director.correct import CorrectionRequest
from dcrt.director.describe import takes_auto_prompt
from dcrt.director.llm import LLMRequest
from dcrt.director.sound import add_audio, check_sound, pick_tracks
from dcrt.errors import UsageError
from dcrt.families import family_of
from dcrt.families.dynamicrafter.config import MODES
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.families.svd.options import SVD_ONLY_NAMES, SVDRequest
from dcrt.loading import BackendRequest
from dcrt.presets import default_preset


@app.command(
    cls=GroupedCommand,
    help="Animate IMAGE following PROMPT into a video (16 frames; longer with --frames or --extend). The SVD "
    "presets (svd-xt, tiny-svd) take no prompt: their motion follows --motion-bucket and --fps. " + IMAGE_NOTE,
)
@takes(
    model=BackendRequest,
    sampling=SamplingRequest,
    svd=(SVDRequest, SVD_ONLY_NAMES),
    output=OutputOptions,
    correction=CorrectionRequest,
    llm=LLMRequest,
)
def animate(
    image: Image,
    model: BackendRequest,
    sampling: SamplingRequest,
    svd: SVDRequest,
    output: OutputOptions,
    correction: CorrectionRequest,
    llm: LLMRequest,
    prompt: OptionalPrompt = None,
    extend: Annotated[
        int,
        typer.Option(
            help="further clips, each animated from the last frame of the one before (cheap; drifts at the joins)",
            rich_help_panel=SAMPLING,
        ),
    ] = 0,
    extend_prompts: Annotated[
        Path | None,
        typer.Option(
            help="a text file with one prompt per further clip (sets --extend to its line count)",
            rich_help_panel=SAMPLING,
        ),
    ] = None,
    auto_prompt: AutoPromptFlag = False,
) -> None:
    model = replace(model, preset=model.preset or default_preset("animate"))
    preset = model.preset_config()
    auto = takes_auto_prompt(preset, prompt, auto_prompt)
    # An auto prompt is chosen once every input is checked (generate): until then "" stands in for it, and
    # --extend's further clips take the chosen one (an int `extend`).
    further = family_of(preset).part("check_animate")(
        preset, "" if auto else prompt, extend, extend_prompts, sampling, svd
    )
    further = extend if auto and extend_prompts is None else further
    job = Job([image], prompt, image.stem)
    generate(
        "animate",
        [job],
        model,
        sampling,
        output,
        svd=svd,
        further=further,
        auto_prompt=auto,
        correction=correction,
        llm=llm,
    )


@app.command(
    cls=GroupedCommand,
    help="Generate the 16 frames from FIRST to LAST (the 512-interp and tooncrafter models); with more key frames, "
    "one clip per consecutive pair, joined on the key frame they share (15 frames per pair, plus one). "
    f"{IMAGE_NOTE}",
)
@takes(model=BackendRequest, sampling=SamplingRequest, output=OutputOptions, llm=LLMRequest)
def interpolate(
    inputs: KeyframesAndPrompt,
    model: BackendRequest,
    sampling: SamplingRequest,
    output: OutputOptions,
    llm: LLMRequest,
    prompts: Annotated[
        Path | None,
        typer.Option(help="prompt file, one line per consecutive pair; then every argument is a key frame"),
    ] = None,
    auto_prompt: AutoPromptFlag = False,
) -> None:
    if auto_prompt and prompts is not None:
        raise UsageError("--auto-prompt and --prompts both choose the prompts: use one")
    job = keyframes_job(inputs, prompts, auto_prompt)
    generate("interpolate", [job], model, sampling, output, auto_prompt=auto_prompt, llm=llm)


def keyframes_job(inputs: list[str], prompts_file: Path | None, auto_prompt: bool = False) -> Job:
    """FIRST LAST [KEYFRAME...] PROMPT, or with --prompts or --auto-prompt only key frames."""
    from dcrt.batch import read_prompt_lines

    images = [Path(p) for p in (inputs if prompts_file or auto_prompt else inputs[:-1])]
    if len(images) < 2:
        usage = "FIRST LAST [KEYFRAME...]" + ("" if prompts_file or auto_prompt else " PROMPT")
        raise UsageError(f"interpolate needs {usage}: at least two key frames, got {len(images)}")
    if auto_prompt:
        return Job(images, None, images[0].stem)
    if prompts_file is None:
        return Job(images, inputs[-1], images[0].stem)
    pair_prompts = read_prompt_lines(prompts_file, len(images) - 1, "consecutive pair of key frames")
    return Job(images, pair_prompts[0], images[0].stem, pair_prompts)


@app.command(
    cls=GroupedCommand, help=f"A looping video that starts and ends on IMAGE (the 512-interp model). {IMAGE_NOTE}"
)
@takes(model=BackendRequest, sampling=SamplingRequest, output=OutputOptions, llm=LLMRequest)
def loop(
    image: Image,
    model: BackendRequest,
    sampling: SamplingRequest,
    output: OutputOptions,
    llm: LLMRequest,
    prompt: DescribedPrompt = None,
    auto_prompt: AutoPromptFlag = False,
) -> None:
    auto = takes_auto_prompt(
        replace(model, preset=model.preset or default_preset("loop")).preset_config(), prompt, auto_prompt
    )
    generate("loop", [Job([image], prompt, image.stem)], model, sampling, output, auto_prompt=auto, llm=llm)


@app.command(
    cls=GroupedCommand,
    help="Run a folder: images sorted by name, prompts one per line in its first .txt file "
    "(interpolate: images 2i, 2i+1 share prompt i; a line `auto`: the prompt `dcrt describe` ranks first, as with "
    "--auto-prompt for every image). Writes OUT_DIR/<image>_<mode>.<format>, creating OUT_DIR. "
    f"{IMAGE_NOTE}",
)
@takes(
    model=BackendRequest,
    sampling=SamplingRequest,
    output=(OutputOptions, ("format", "quality", "fps")),
    llm=LLMRequest,
)
def batch(
    directory: Annotated[
        Path, typer.Argument(metavar="DIRECTORY", help="folder of .jpg/.jpeg/.png images and a .txt of prompts")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="directory for the videos (created if missing)", rich_help_panel=BATCH)
    ],
    model: BackendRequest,
    sampling: SamplingRequest,
    output: OutputOptions,
    llm: LLMRequest,
    mode: Annotated[str, typer.Option(help=", ".join(MODES), rich_help_panel=BATCH)] = "animate",
    prompts: Annotated[
        Path | None, typer.Option(help="prompt file (default: the folder's first .txt)", rich_help_panel=BATCH)
    ] = None,
    auto_prompt: AutoPromptFlag = False,
) -> None:
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if auto_prompt and prompts is not None:
        raise UsageError("--auto-prompt and --prompts both choose the prompts: use one")
    if model.preset is not None:
        model.preset_config().require_family("dynamicrafter", "batch")
    jobs = read_prompt_dir(directory, mode, prompts, auto_prompt)
    # Every job without a prompt is described at once (generate: one CLIP, freed before the video model).
    auto = any(job.prompt is None for job in jobs)
    generate(mode, jobs, model, sampling, output, out_dir=out_dir, auto_prompt=auto, llm=llm)


def generate(
    mode: str,
    jobs: list[Job],
    model: BackendRequest,
    sampling: SamplingRequest,
    output: OutputOptions,
    out_dir: Path | None = None,
    svd: SVDRequest = SVDRequest(),
    further: list[str] | int | None = None,
    auto_prompt: bool = False,
    correction: CorrectionRequest = CorrectionRequest(),
    llm: LLMRequest = LLMRequest(),
) -> None:
    """Check every option and input (the preset's family checks its options: dcrt.families), then open the
    backend once and write each job's video through dcrt.api. `further`: the prompts of the clips `--extend`
    chains after each video (a count: that many with the video's prompt). `auto_prompt`: jobs without a prompt get
    the one `dcrt describe` ranks first. `correction`: animate's --until (dcrt.director.correct). `llm`: the chat
    model that proposes the auto prompts and the corrected tries' settings, instead of the prompt bank and the rule
    table (dcrt.director.llm)."""
    from dcrt.images import open_image
    from dcrt.video import DEFAULT_FPS, check_video_options, format_for

    start = time.monotonic()
    model = replace(model, preset=model.preset or default_preset(mode))
    preset = model.preset_config()
    preset.check_mode(mode)
    run = family_of(preset).part("check_run")(preset, mode, sampling, svd, output.fps)
    fmt = format_for(output.out or Path(), output.format)
    fps = output.frame_rate(run.fps or DEFAULT_FPS)
    check_video_options(fmt, fps, output.quality)
    check_sound(output.audio, output.audio_library, fmt)
    if output.audio_library is not None:
        preset.require_family("dynamicrafter", "--audio-library (its checkpoints hold CLIP's text tower)")
    targets = _checked_targets(mode, jobs, fmt, output.out, out_dir)
    model.check_names()
    weights = model.requested_weights()  # a missing --ckpt fails here, before the images are read
    conditions = correction.checked(preset, weights, bool(further), targets, fmt)
    chat = llm.resolved()  # a bad URL or a missing model name: one line, before anything is sent or loaded
    if chat is not None and not (auto_prompt or conditions or output.audio_library):
        raise UsageError(
            "--llm proposes the prompt (--auto-prompt, or no PROMPT), the next tries (--until) or the sound track "
            "(--audio-library)"
        )
    pictures = [[open_image(p) for p in job.images] for job in jobs]
    jobs = [_prompted(job, run.prompt_warning) for job in jobs]
    if auto_prompt:  # the describer's CLIP loads and is freed before the video model
        from dcrt.director.describe import choose_prompts

        jobs = choose_prompts(jobs, pictures, model, log, chat)
    tracks = [output.audio] * len(jobs)
    if output.audio_library is not None:  # by the chat model where one is given, else by CLIP's text tower
        tracks = pick_tracks(output.audio_library, [job.prompt or "" for job in jobs], model, log, chat)

    # Everything checked: now the slow part (torch, the model, sampling).
    from dcrt.director.score import VideoScorer
    from dcrt.loading import open_backend

    backend = open_backend(model, *run.size, log=log, frames=run.sampling.get("frames"))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    scorer = VideoScorer(preset, weights, model.device) if output.score or conditions else None
    writer = _Writer(backend, mode, run.sampling, fmt, fps, output.quality, further or 0, scorer, conditions, chat)
    for job, images, target, track in zip(jobs, pictures, targets, tracks):
        writer.write(job, images, target, correction.tries)
        if track is not None:  # muxed after scoring: the picture is the same, the sound is not scored
            add_audio(target, track)
        typer.echo(str(target))
    # Times depend on the machine and its load: each run says its own (the README's are one machine's).
    log(f"done in {time.monotonic() - start:.1f} s, model load included")


def _checked_targets(mode: str, jobs: list[Job], fmt: str, out: Path | None, out_dir: Path | None) -> list[Path]:
    """Each job's video path (--out, else a default name that replaces nothing), each proven writable."""
    from dcrt.video import check_output_path

    targets: list[Path] = []
    for job in jobs:  # one by one: two images of one name (a.png, a.jpg) get two videos
        targets.append(out or default_output(job.name, mode, fmt, out_dir, taken=targets))
    if out_dir is not None:
        check_writable(out_dir, "--out-dir")
    if out_dir is None or out_dir.is_dir():  # a folder still to be created holds nothing to collide with
        for target in targets:
            check_output_path(target, fmt)
    return targets


@dataclass(frozen=True)
class _Writer:
    """How each job's video is made once everything is checked: the open backend, the run's sampling and output
    options, the scorer (--score, --until) and --until's conditions with the chat model that may propose tries."""

    backend: object
    mode: str
    sampling: dict
    fmt: str
    fps: int
    quality: int
    further: list[str] | int
    scorer: object | None
    conditions: tuple
    chat: LLMRequest | None

    def write(self, job: Job, images: list, target: Path, tries: int) -> None:
        """`job`'s video at `target`: one run under a denoising bar (scored beside it with --score), or --until's
        tries, each with its bar, the table of tries on stderr."""
        from dcrt.api import save_video
        from dcrt.director.correct import animate_until, format_tries
        from dcrt.video import write_video

        if not self.conditions:
            with progress() as on_step:
                # the run's own sampling wins a shared name (SVD's fps conditions the model and sets the rate)
                output = {"extend": self.further, "fps": self.fps, "quality": self.quality, "format": self.fmt}
                save_video(
                    self.backend,
                    self.mode,
                    images,
                    job.prompt,
                    target,
                    pair_prompts=job.pair_prompts,
                    on_step=on_step,
                    **(output | self.sampling),
                )
            if self.scorer is not None:
                log(f"scores: {self.scorer.write(target, job.images, job.prompt)}")
            return
        save = partial(write_video, fmt=self.fmt, fps=self.fps, quality=self.quality)
        attempts = animate_until(
            self.backend,
            images[0],
            job.prompt,
            self.conditions,
            tries,
            target,
            sampling=self.sampling,
            save=save,
            scorer=self.scorer,
            image_path=job.images[0],
            progress=progress,
            llm=self.chat,
            log=log,
        )
        say(format_tries(attempts, self.conditions))


def _prompted(job: Job, warning: str | None) -> Job:
    """`job` as dcrt.api takes it: its prompt readable (`readable_prompt`); for a family without text conditioning
    (`warning`), a prompt is warned about once every input is checked, and dropped."""
    job = replace(job, prompt=readable_prompt(job.prompt))
    if warning is None or not job.prompt:
        return job
    warnings.warn(warning, stacklevel=1)
    return replace(job, prompt=None)
