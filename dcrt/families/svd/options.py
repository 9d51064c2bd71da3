"""A Stable Video Diffusion run's settings: what the caller asked for (`SVDRequest`), then the preset's defaults filled
in and every value checked before any slow work (`resolve_svd_options` -> `SVDOptions`).

Why a request type of its own rather than more fields on `dcrt.families.dynamicrafter.options.SamplingRequest`: the
two families share only `steps` and `seed`; the rest of each is meaningless to the other (DDIM's eta and spacing,
DynamiCrafter's single guidance scale and frame stride; SVD's guidance ramp and three added time ids). Two types
keep each family's checks and defaults in one place, and a field of the other family is refused by name in one line
(`refuse_foreign`). The defaults live in the preset (`dcrt.families.svd.config.SVDSamplingDefaults`). Torch-free,
like dcrt.families.dynamicrafter.options, so the command line rejects a bad value before it imports torch: its
checks of an SVD run are `check_animate` and `check_run`, reached through the family registry (dcrt.families).

`fps` has one meaning everywhere: the frame rate of the video. The UNet is conditioned on fps - 1 (as both released
pipelines do) and the video is written at fps.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from dcrt.errors import UsageError
from dcrt.families.base import NOT_TAKEN, SEED_RANGE, SHARED_NAMES, CheckedRun, CommandSampling, refuse_given
from dcrt.families.svd.config import SVDPreset


def _meta(text: str, flag: str | None = None) -> dict:
    return {"help": text} | ({"flag": flag} if flag else {})


@dataclass(frozen=True)
class SVDRequest:
    """What a caller asks of an SVD preset. `None` is the preset's default (`preset.sampling`)."""

    steps: int | None = field(default=None, metadata=_meta("Euler steps, 1-1000"))
    min_guidance_scale: float | None = field(
        default=None, metadata=_meta("SVD: guidance scale of the first frame (rises linearly to the last frame's)")
    )
    max_guidance_scale: float | None = field(
        default=None, metadata=_meta("SVD: guidance scale of the last frame (every scale <= 1: no guidance)")
    )
    fps: int | None = field(
        default=None, metadata=_meta("frames per second of the video; SVD is conditioned on fps - 1")
    )
    motion_bucket_id: int | None = field(
        default=None, metadata=_meta("SVD: how much motion, 0-255 (higher: more)", "--motion-bucket")
    )
    noise_aug_strength: float | None = field(
        default=None,
        metadata=_meta("SVD: noise added to the conditioning image, 0-1 (more: less like the image)", "--noise-aug"),
    )
    decode_chunk: int | None = field(
        default=None, metadata=_meta("SVD: frames per VAE decoder call (its temporal context), 1 to the frame count")
    )
    seed: int | None = field(default=None, metadata=_meta("noise seed, 0 to 2**64-1"))


@dataclass(frozen=True)
class SVDOptions:
    """A run's settings with the preset's defaults filled in (`resolve_svd_options`)."""

    steps: int
    min_guidance_scale: float
    max_guidance_scale: float
    fps: int
    motion_bucket_id: int
    noise_aug_strength: float
    decode_chunk: int
    seed: int

    def added_time_ids(self) -> tuple[float, float, float]:
        """The UNet's micro-conditioning (docs/models.md §8.2): fps - 1, motion bucket, augmentation strength."""
        return (float(self.fps - 1), float(self.motion_bucket_id), float(self.noise_aug_strength))


SVD_NAMES = tuple(f.name for f in fields(SVDRequest))
# The command line's SVD options: the rest are its DynamiCrafter options (steps, seed) and output options (fps).
SVD_ONLY_NAMES = tuple(name for name in SVD_NAMES if name not in SHARED_NAMES)
# Ranges: what the released pipelines' conditioning was made for; the embedding extrapolates beyond them.
MOTION_BUCKET_RANGE = (0, 255)
FPS_RANGE = (1, 60)
IGNORED_PROMPT = "SVD has no text conditioning; the prompt is ignored"


def svd_default(preset: SVDPreset, name: str) -> object:
    return getattr(preset.sampling, name)


def resolve_svd_options(preset: SVDPreset, request: SVDRequest | None = None, **changes) -> SVDOptions:
    """`request` (and keyword `changes` to it) with every `None` filled from the preset's defaults; raises
    UsageError, one line, for a value the sampler cannot use."""
    preset.require_family("svd", "Stable Video Diffusion's sampling options")
    asked = asdict(request or SVDRequest()) | changes
    unknown = sorted(set(asked) - set(SVD_NAMES))
    if unknown:
        raise UsageError(
            f"unknown sampling option(s) {', '.join(unknown)} for {preset.name}; choose from {', '.join(SVD_NAMES)}"
        )
    opts = SVDOptions(**{name: svd_default(preset, name) if v is None else v for name, v in asked.items()})
    _check(opts, preset)
    return opts


def _check(opts: SVDOptions, preset: SVDPreset) -> None:
    lo, hi = MOTION_BUCKET_RANGE
    fps_lo, fps_hi = FPS_RANGE
    checks = [
        (1 <= opts.steps <= 1000, f"steps must be from 1 to 1000, got {opts.steps}"),
        (_finite(opts.min_guidance_scale) >= 0, f"min guidance scale must be >= 0, got {opts.min_guidance_scale}"),
        (_finite(opts.max_guidance_scale) >= 0, f"max guidance scale must be >= 0, got {opts.max_guidance_scale}"),
        (
            FPS_RANGE[0] <= opts.fps <= FPS_RANGE[1],
            f"fps must be from {FPS_RANGE[0]} to {FPS_RANGE[1]}, got {opts.fps}",
        ),
        (lo <= opts.motion_bucket_id <= hi, f"motion bucket must be from {lo} to {hi}, got {opts.motion_bucket_id}"),
        (0 <= _finite(opts.noise_aug_strength) <= 1, f"noise aug must be from 0 to 1, got {opts.noise_aug_strength}"),
        (
            1 <= opts.decode_chunk <= preset.frames,
            f"decode chunk must be from 1 to {preset.frames} frames, got {opts.decode_chunk}",
        ),
        (SEED_RANGE[0] <= opts.seed <= SEED_RANGE[1], f"seed must be an integer from 0 to 2**64 - 1, got {opts.seed}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan


def refuse_foreign(preset: SVDPreset, sampling: CommandSampling, svd: SVDRequest) -> None:
    """One line for a DynamiCrafter option (the command line declares both families' options)."""
    refuse_given(preset, sampling, "DynamiCrafter")


def check_animate(
    preset: SVDPreset, prompt: str | None, extend: int, extend_file: Path | None, sampling: CommandSampling, svd
) -> list[str]:
    """`dcrt animate`'s own checks for an SVD preset: no other family's options, no further clips. A prompt is
    allowed (and ignored, with a warning: `check_run`)."""
    refuse_foreign(preset, sampling, svd)
    if extend or extend_file:
        raise UsageError(f"--extend and --extend-prompts are for DynamiCrafter presets, not {preset.name}")
    return []


def check_run(preset: SVDPreset, mode: str, sampling: CommandSampling, svd: SVDRequest, fps: int | None) -> CheckedRun:
    """A generating command's options checked (`sampling` holds only the shared steps and seed:
    `refuse_foreign`); --fps is SVD's conditioning fps too, so the video is written at the checked one."""
    request = replace(svd, steps=sampling.steps, seed=sampling.seed, fps=fps)
    opts = resolve_svd_options(preset, request)
    return CheckedRun(asdict(request), fps=opts.fps, prompt_warning=IGNORED_PROMPT)


def option_default(preset: SVDPreset, name: str) -> object:
    """What `None` means for option `name` (--help), or NOT_TAKEN for another family's."""
    return svd_default(preset, name) if name in SVD_NAMES else NOT_TAKEN


def with_svd_options(function: Callable) -> Callable:
    """Add `SVDRequest`'s own fields to `function`'s shown keyword parameters (as `takes_sampling_options` does
    for `SamplingRequest`'s), where it takes them as `**sampling`; the function is unchanged."""
    signature = inspect.signature(function)
    shown = set(signature.parameters)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    added = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=f.type)
        for f in fields(SVDRequest)
        if f.name not in shown
    ]
    function.__signature__ = signature.replace(parameters=[*own, *added])
    return function
