"""The Python API: `dcrt.animate`, `interpolate`, `loop` and `interpolate_keyframes` over a model, a backend or a
pipeline, and `save_video`, which writes one of them to a file (the command line's way in). Each takes the fields of
`dcrt.families.dynamicrafter.options.SamplingRequest` as keywords; one left out is the preset's default
(`dcrt.families.dynamicrafter.config.SamplingDefaults`). `dcrt.animate` of a Stable Video Diffusion model runs
`animate_svd`, whose keywords are `dcrt.families.svd.options.SVDRequest`'s: what differs by model family is
asked of the family registry (dcrt.families)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from dcrt.batch import pair_prompts
from dcrt.errors import UsageError
from dcrt.families import family_of
from dcrt.families.common import StepCallback, VideoResult
from dcrt.families.dynamicrafter.backend import Backend
from dcrt.families.dynamicrafter.chaining import generate_keyframes
from dcrt.families.dynamicrafter.generate import generate
from dcrt.families.dynamicrafter.options import resolve_options, takes_sampling_options
from dcrt.families.dynamicrafter.pipeline import Pipeline, pipeline_for
from dcrt.families.svd.backend import SVDBackend
from dcrt.families.svd.generate import animate_svd
from dcrt.families.svd.options import with_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.models.dynamicrafter import DynamiCrafter
from dcrt.models.svd import StableVideoDiffusion
from dcrt.video import DEFAULT_QUALITY, write_video

Model = DynamiCrafter | Backend | Pipeline | StableVideoDiffusion | SVDBackend | SVDPipeline

__all__ = ["animate", "animate_svd", "interpolate", "interpolate_keyframes", "loop", "save_video"]


@with_svd_options
@takes_sampling_options
def animate(
    model: Model,
    image,
    prompt: str | None = None,
    *,
    extend: int | list[str] = 0,
    x_T: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
    **sampling,
) -> VideoResult:
    """Image-to-video: `image` (a path, PIL image or uint8 array) animated following `prompt`.

    `sampling`: the fields of `dcrt.families.dynamicrafter.options.SamplingRequest` (steps, guidance_scale, seed,
    ...); a field left out takes the preset's default (`dcrt.families.dynamicrafter.config.SamplingDefaults`).
    Noise: a generator seeded with `seed` draws x_T, then one tensor per step after the UNet call (the original's
    order). With `x_T` given, the per-step draws start at the generator's beginning.

    `extend`: that many further clips with the same prompt, or a list of their prompts (`extend_video`).

    A Stable Video Diffusion model (`dcrt.StableVideoDiffusion`, or its backend or pipeline) takes the fields of
    `dcrt.families.svd.options.SVDRequest` instead (steps, min_guidance_scale, fps, motion_bucket_id, ...) and no
    prompt: SVD has no text conditioning (`animate_svd`).
    """
    run = family_of(model.preset).part("animate")
    return run(model, image, prompt, extend=extend, x_T=x_T, on_step=on_step, **sampling)


@takes_sampling_options
def interpolate(
    model: Model,
    first,
    last,
    prompt: str,
    *,
    x_T: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
    **sampling,
) -> VideoResult:
    """16 frames from `first` to `last` (the 512-interp model): latent frames 0 and 15 conditioned.
    `sampling` as for `animate`."""
    return generate(model, "interpolate", [first, last], prompt, x_T, on_step, sampling)


@takes_sampling_options
def loop(
    model: Model,
    image,
    prompt: str,
    *,
    x_T: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
    **sampling,
) -> VideoResult:
    """A looping video that starts and ends on `image`: 15 frames (the original drops the 16th).
    `sampling` as for `animate`."""
    return generate(model, "loop", [image], prompt, x_T, on_step, sampling)


@takes_sampling_options
def interpolate_keyframes(
    model: Model,
    keyframes: Sequence,
    prompts: str | Sequence[str],
    *,
    on_step: StepCallback | None = None,
    **sampling,
) -> VideoResult:
    """A video through every key frame (paths, PIL images or uint8 arrays), in order: n key frames give
    15 (n - 1) + 1 frames. `prompts`: one for all clips, or one per consecutive pair. `sampling` as for
    `dcrt.animate`; clip i uses seed + i."""
    pipe = pipeline_for(model)
    prompts = pair_prompts(prompts, len(keyframes))
    opts = resolve_options(pipe.preset, "interpolate", **sampling)
    return generate_keyframes(pipe, list(keyframes), prompts, opts, on_step)


def save_video(
    model: Model,
    mode: str,
    images: list,
    prompt: str | None,
    path: str | Path,
    *,
    pair_prompts: Sequence[str] | None = None,
    extend: int | list[str] = 0,
    on_step: StepCallback | None = None,
    fps: int | None = None,
    quality: int = DEFAULT_QUALITY,
    format: str | None = None,
    **sampling,
) -> Path:
    """The video of `mode` (animate, interpolate or loop) from `images` written to `path`, as `VideoResult.save`
    writes it. More than two key frames run `interpolate_keyframes` (`pair_prompts`: one per consecutive pair,
    else `prompt` for each), `extend` runs `animate`'s further clips; a single clip's frames go to the writer as
    they are decoded, so memory does not grow with the frame count. `sampling` as for `animate`."""
    if extend and mode != "animate":
        raise UsageError(f"extend is for animate, not {mode}")
    if len(images) > 2:
        video = interpolate_keyframes(model, images, pair_prompts or prompt, on_step=on_step, **sampling)
        frames, rate = video.frames, video.fps
    elif extend:
        video = animate(model, images[0], prompt, extend=extend, on_step=on_step, **sampling)
        frames, rate = video.frames, video.fps
    else:
        frames, rate = family_of(model.preset).part("stream")(model, mode, images, prompt, on_step, sampling)
    return write_video(frames, path, format, fps=fps or rate, quality=quality)
