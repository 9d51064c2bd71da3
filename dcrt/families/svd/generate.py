"""What dcrt.api runs for a Stable Video Diffusion preset: `animate` (one clip: SVD chains none), and its frames as
they are decoded (`stream`: a writer holds one chunk at a time). Each takes the fields of `SVDRequest` as
keywords; a prompt is ignored, with a warning (SVD has no text conditioning)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from dcrt.errors import UsageError
from dcrt.families.common import StepCallback, VideoResult
from dcrt.families.svd.backend import SVDBackend
from dcrt.families.svd.options import IGNORED_PROMPT, resolve_svd_options, with_svd_options
from dcrt.families.svd.pipeline import SVDPipeline, svd_pipeline_for
from dcrt.models.svd import StableVideoDiffusion


def animate(
    model,
    image,
    prompt: str | None = None,
    *,
    extend: int | list[str] = 0,
    x_T: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
    **sampling,
) -> VideoResult:
    """`dcrt.animate` for an SVD model: `animate_svd`, which has no further clips."""
    if extend:
        raise UsageError("extend is for DynamiCrafter presets; SVD animates one clip")
    return animate_svd(model, image, prompt, x_T=x_T, on_step=on_step, **sampling)


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
        warnings.warn(IGNORED_PROMPT, stacklevel=2)
    pipe = svd_pipeline_for(model)
    return pipe.generate(image, resolve_svd_options(pipe.preset, **sampling), x_T, on_step)


def stream(
    model, mode: str, images: list, prompt: str | None, on_step: StepCallback | None, sampling: dict
) -> tuple[Iterator[np.ndarray], int]:
    """The clip sampled now, then (uint8 [k, H, W, 3] chunks decoded as they are read, its conditioning fps)."""
    if prompt:
        warnings.warn(IGNORED_PROMPT, stacklevel=3)
    pipe = svd_pipeline_for(model)
    pipe.preset.check_mode(mode)
    opts = resolve_svd_options(pipe.preset, **sampling)
    latents = pipe.sample(images[0], opts, on_step=on_step)
    return pipe.decoded_chunks(latents, opts), opts.fps
