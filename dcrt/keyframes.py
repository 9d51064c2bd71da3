"""Interpolation through more than two key frames (docs/models.md §6.4): one clip per consecutive pair, joined
on the key frame two clips share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dcrt.errors import UsageError
from dcrt.options import SEED_RANGE, SamplingOptions, resolve_options, takes_sampling_options
from dcrt.pipeline import Model, Pipeline, VideoResult, pipeline_for
from dcrt.sampler import StepCallback


def pair_prompts(prompts: str | Sequence[str], keyframes: int) -> list[str]:
    """One prompt per consecutive pair: a single prompt is used for every pair."""
    if keyframes < 2:
        raise UsageError(f"interpolation needs at least two key frames, got {keyframes}")
    if isinstance(prompts, str):
        return [prompts] * (keyframes - 1)
    if len(prompts) != keyframes - 1:
        raise UsageError(
            f"{keyframes} key frames make {keyframes - 1} clips: give one prompt per clip, not {len(prompts)}"
        )
    return list(prompts)


def read_pair_prompts(path: Path, keyframes: int) -> list[str]:
    """A prompt file for `interpolate --prompts`: one non-empty line per consecutive pair of key frames."""
    if not path.is_file():
        raise UsageError(f"prompt file {path} does not exist")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != keyframes - 1:
        raise UsageError(
            f"{path}: {len(lines)} prompts for {keyframes} key frames (one line per pair: {keyframes - 1})"
        )
    return lines


def join_clips(clips: list[VideoResult]) -> VideoResult:
    """Clips whose last frame is the next one's first key frame -> one video: each later clip loses its first
    frame (and latent frame), so every key frame appears once. Nothing is blended."""
    return VideoResult(
        latents=torch.cat([c.latents if i == 0 else c.latents[:, :, 1:] for i, c in enumerate(clips)], dim=2),
        frames=np.concatenate([c.frames if i == 0 else c.frames[1:] for i, c in enumerate(clips)]),
    )


def generate_keyframes(
    pipe: Pipeline, keyframes: list, prompts: list[str], opts: SamplingOptions, on_step: StepCallback | None = None
) -> VideoResult:
    """Clip i interpolates key frames i and i+1 with prompts[i] and seed `opts.seed + i` (so each clip can be
    made again alone), then the clips are joined (`join_clips`)."""
    clips, count = [], len(prompts)
    for i, (first, last, prompt) in enumerate(zip(keyframes[:-1], keyframes[1:], prompts, strict=True)):
        seed = (opts.seed + i) % (SEED_RANGE[1] + 1)
        # progress over all clips: step k of clip i is step i * steps + k of steps * clips
        progress = None if on_step is None else lambda k, total, i=i: on_step(i * total + k, total * count)
        clips.append(pipe.generate([first, last], prompt, "interpolate", replace(opts, seed=seed), on_step=progress))
    return join_clips(clips)


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
