"""The Python API: `dcrt.animate`, `interpolate`, `loop` and `interpolate_keyframes` over a model, a backend or a
pipeline. Each takes the fields of `dcrt.families.dynamicrafter.options.SamplingRequest` as keywords; one left out is the preset's
default (`dcrt.families.dynamicrafter.config.SamplingDefaults`). `dcrt.animate` of a Stable Video Diffusion model runs `animate_svd`,
whose keywords are `dcrt.families.svd.options.SVDRequest`'s."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from dcrt.backends import Backend
from dcrt.batch import pair_prompts
from dcrt.errors import UsageError
from dcrt.families.common import StepCallback, VideoResult
from dcrt.families.dynamicrafter.chaining import extend_video, generate_keyframes
from dcrt.families.dynamicrafter.options import clip_prompts, resolve_options, takes_sampling_options
from dcrt.families.dynamicrafter.pipeline import Pipeline, pipeline_for
from dcrt.families.svd.backend import SVDBackend
from dcrt.families.svd.options import resolve_svd_options, with_svd_options
from dcrt.families.svd.pipeline import SVDPipeline, svd_pipeline_for
from dcrt.models.dynamicrafter import DynamiCrafter
from dcrt.models.svd import StableVideoDiffusion

Model = DynamiCrafter | Backend | Pipeline | StableVideoDiffusion | SVDBackend | SVDPipeline


def _run(mode: str, model: Model, images: list, prompt: str, x_T, on_step, sampling: dict) -> VideoResult:
    pipe = pipeline_for(model)
    return pipe.generate(images, prompt, mode, resolve_options(pipe.preset, mode, **sampling), x_T, on_step)


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

    `sampling`: the fields of `dcrt.families.dynamicrafter.options.SamplingRequest` (steps, guidance_scale, seed, ...); a field left
    out takes the preset's default (`dcrt.families.dynamicrafter.config.SamplingDefaults`). Noise: a generator seeded with `seed`
    draws x_T, then one tensor per step after the UNet call (the original's order). With `x_T` given, the
    per-step draws start at the generator's beginning.

    `extend`: that many further clips with the same prompt, or a list of their prompts (`extend_video`).

    A Stable Video Diffusion model (`dcrt.StableVideoDiffusion`, or its backend or pipeline) takes the fields of
    `dcrt.families.svd.options.SVDRequest` instead (steps, min_guidance_scale, fps, motion_bucket_id, ...) and no
    prompt: SVD has no text conditioning (`animate_svd`).
    """
    if model.preset.family == "svd":
        if extend:
            raise UsageError("extend is for DynamiCrafter presets; SVD animates one clip")
        return animate_svd(model, image, prompt, x_T=x_T, on_step=on_step, **sampling)
    if prompt is None:
        raise UsageError(f"preset {model.preset.name} animates following a prompt: give one")
    prompts = clip_prompts(prompt, extend)
    video = _run("animate", model, [image], prompt, x_T, on_step, sampling)
    if not prompts:
        return video
    pipe = pipeline_for(model)
    return extend_video(pipe, video, prompts, resolve_options(pipe.preset, "animate", **sampling), on_step)


@with_svd_options
def animate_svd(
    model: StableVideoDiffusion | SVDBackend | SVDPipeline,
    image,
    prompt: str | None = None,
    *,
    x_T: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
    **sampling,
) -> VideoResult:
    """Image-to-video with Stable Video Diffusion: `image` (a path, PIL image or uint8 array) into the preset's
    frames. `sampling`: the fields of `dcrt.families.svd.options.SVDRequest`; one left out is the preset's default
    (`preset.sampling`). A prompt is ignored, with a warning. Noise: see dcrt.families.svd.pipeline."""
    if prompt:
        warnings.warn("SVD has no text conditioning; the prompt is ignored", stacklevel=2)
    pipe = svd_pipeline_for(model)
    return pipe.generate(image, resolve_svd_options(pipe.preset, **sampling), x_T, on_step)


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
    return _run("interpolate", model, [first, last], prompt, x_T, on_step, sampling)


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
    return _run("loop", model, [image], prompt, x_T, on_step, sampling)


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
