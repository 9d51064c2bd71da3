"""What dcrt.api runs for a DynamiCrafter preset: one clip of a mode (`generate`), `animate` with its further
clips (`extend`, dcrt.families.dynamicrafter.chaining), and one clip's frames as they are decoded (`stream`: a
writer holds one chunk at a time). Each takes the fields of `SamplingRequest` as keywords."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from dcrt.errors import UsageError
from dcrt.families.common import StepCallback, VideoResult
from dcrt.families.dynamicrafter.chaining import extend_video
from dcrt.families.dynamicrafter.options import clip_prompts, resolve_options
from dcrt.families.dynamicrafter.pipeline import pipeline_for
from dcrt.video import DEFAULT_FPS


def generate(
    model, mode: str, images: list, prompt: str, x_T: torch.Tensor | None, on_step: StepCallback | None, sampling: dict
) -> VideoResult:
    """One clip of `mode` from `images` (one, or the first and last key frames)."""
    pipe = pipeline_for(model)
    return pipe.generate(images, prompt, mode, resolve_options(pipe.preset, mode, **sampling), x_T, on_step)


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
    """`dcrt.animate` for a DynamiCrafter model: the clip, then the `extend` further clips joined on."""
    if prompt is None:
        raise UsageError(f"preset {model.preset.name} animates following a prompt: give one")
    prompts = clip_prompts(prompt, extend)
    video = generate(model, "animate", [image], prompt, x_T, on_step, sampling)
    if not prompts:
        return video
    pipe = pipeline_for(model)
    return extend_video(pipe, video, prompts, resolve_options(pipe.preset, "animate", **sampling), on_step)


def stream(
    model, mode: str, images: list, prompt: str, on_step: StepCallback | None, sampling: dict
) -> tuple[Iterator[np.ndarray], int]:
    """One clip sampled now, then (uint8 [k, H, W, 3] chunks decoded as they are read, the rate to play them at)."""
    pipe = pipeline_for(model)
    opts = resolve_options(pipe.preset, mode, **sampling)
    latents, references = pipe.sample(images, prompt, mode, opts, on_step=on_step)
    return pipe.decoded_chunks(latents, mode, references), DEFAULT_FPS
