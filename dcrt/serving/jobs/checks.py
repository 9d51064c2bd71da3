"""A job request checked as `dcrt animate` / `interpolate` / `loop` check their options (the preset's family checks
its own: dcrt.families), plus the service's limits, before it is queued: what a client got wrong is a UsageError
(one line, a 4xx), never a failed job. `plan_job` runs again when a worker takes the job, so the queue stores only
what the client sent. Torch-free."""

from __future__ import annotations

import io
from dataclasses import dataclass

from dcrt.director.describe import takes_auto_prompt
from dcrt.errors import UsageError
from dcrt.families import family_of
from dcrt.families.base import PresetBase
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.families.svd.options import SVD_ONLY_NAMES, SVDRequest
from dcrt.memory import check_memory_name
from dcrt.serving.jobs.schema import SAMPLING_FIELDS
from dcrt.serving.jobs.settings import ApiSettings
from dcrt.video import DEFAULT_FPS, check_video_options


@dataclass(frozen=True)
class JobPlan:
    """What a worker hands to dcrt.api.save_video for one checked job."""

    mode: str
    prompt: str | None
    sampling: dict[str, object]  # dcrt.api's sampling keywords
    fps: int
    quality: int
    format: str
    frames: int  # of the written video
    size: tuple[int, int]  # height, width
    steps: int  # denoising steps of one clip
    auto_prompt: bool = False  # the prompt is chosen from the images when the job runs (dcrt.director.describe)
    score: bool = False  # the video is scored once written (dcrt.director.score)
    pair_prompts: tuple[str, ...] | None = None  # more than two key frames: the prompt chosen for each pair


@dataclass(frozen=True)
class ServedModel:
    """What the service's workers run: every job is for this preset and memory profile (a worker holds one model
    load: a job for another is refused, not queued)."""

    preset: PresetBase
    memory: str
    triton: bool = False  # run by a `dcrt serve` endpoint: its requests carry one image, or two to interpolate
    cannot_describe: str | None = None  # why this service cannot choose prompts (None: it can)


def plan_job(request, served: ServedModel, images: int) -> JobPlan:
    """`request` (a schema.JobRequest) with `images` input images -> its plan, or a UsageError."""
    preset = served.preset
    if request.preset not in (None, preset.name):
        raise UsageError(f"this service runs preset {preset.name}, not {request.preset}: send the job to one that does")
    if request.memory is not None:
        check_memory_name(request.memory)
        if request.memory != served.memory:
            raise UsageError(f"this service runs memory profile {served.memory}, not {request.memory}")
    preset.check_mode(request.mode)
    _check_image_count(request.mode, images)
    if served.triton and images > 2:
        raise UsageError("this service sends its jobs to Triton, whose requests take at most two key frames")
    auto = takes_auto_prompt(preset, request.prompt, request.auto_prompt, names=("auto_prompt", "prompt"))
    if auto and served.cannot_describe is not None:
        raise UsageError(f"{served.cannot_describe}: give the job a prompt")
    sampling = SamplingRequest(**{name: getattr(request, name) for name in SAMPLING_FIELDS})
    svd = SVDRequest(**{name: getattr(request, name) for name in SVD_ONLY_NAMES})
    family = family_of(preset)
    # another family's options, a prompt ("" stands in for the one chosen when the job runs)
    family.part("check_animate")(preset, "" if auto else request.prompt, 0, None, sampling, svd)
    run = family.part("check_run")(preset, request.mode, sampling, svd, request.fps)
    fps = request.fps if request.fps is not None else run.fps or DEFAULT_FPS
    check_video_options(request.format, fps, request.quality)
    clip = int(run.sampling.get("frames") or preset.frames)
    frames = clip if images <= 2 else (clip - 1) * (images - 1) + 1  # key frames: clips joined on shared frames
    height, width = (given or default for given, default in zip(run.size, (preset.height, preset.width)))
    prompt = None if run.prompt_warning is not None else request.prompt
    steps = run.sampling.get("steps") or family.part("option_default")(preset, "steps")
    size = (height, width)
    return JobPlan(
        request.mode, prompt, run.sampling, fps, request.quality, request.format, frames, size, steps,
        auto_prompt=auto, score=request.score,
    )  # fmt: skip


def _check_image_count(mode: str, count: int) -> None:
    if mode == "interpolate" and count < 2:
        raise UsageError(f"interpolate needs at least two images (the first and last key frames), got {count}")
    if mode != "interpolate" and count != 1:
        raise UsageError(f"{mode} takes one image, got {count}")


def check_limits(plan: JobPlan, settings: ApiSettings) -> None:
    """The service's limits on what one job may cost."""
    height, width = plan.size
    if height * width > settings.max_pixels:
        raise UsageError(f"output {width}x{height} is over this service's {settings.max_pixels} pixels")
    if plan.frames > settings.max_frames:
        raise UsageError(f"the video would have {plan.frames} frames, over this service's {settings.max_frames}")


def check_image(data: bytes, name: str, max_pixels: int) -> None:
    """An uploaded image: its size read from the header before it is decoded, then decoded whole."""
    from PIL import Image, UnidentifiedImageError

    from dcrt.images import decode_image

    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError:
        raise UsageError(f"{name} is too large to decode safely: downscale it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):  # what PIL's plugins raise on bad headers
        raise UsageError(f"{name} is not an image PIL can read") from None
    if width * height > max_pixels:
        raise UsageError(f"{name} is {width}x{height}, over this service's {max_pixels} pixels: downscale it")
    decode_image(data, name)
