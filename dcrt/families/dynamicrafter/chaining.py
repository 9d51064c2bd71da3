"""Videos chained from clips, each joined to the next on a frame they share: interpolation through more than two
key frames (docs/models.md §6.4; one clip per consecutive pair) and `--extend` (each clip animated from the last
frame of the one before; docs/sampling.md §4.10). Clip i uses seed + i, so any clip can be made again alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from dcrt.families.base import SEED_RANGE
from dcrt.families.common import StepCallback, VideoResult
from dcrt.families.dynamicrafter.options import SamplingOptions
from dcrt.families.dynamicrafter.pipeline import Pipeline


def join_clips(clips: list[VideoResult]) -> VideoResult:
    """Clips whose last frame is the next one's first key frame -> one video: each later clip loses its first
    frame (and latent frame), so every key frame appears once. Nothing is blended."""
    return VideoResult(
        latents=torch.cat([c.latents if i == 0 else c.latents[:, :, 1:] for i, c in enumerate(clips)], dim=2),
        frames=np.concatenate([c.frames if i == 0 else c.frames[1:] for i, c in enumerate(clips)]),
    )


def clip_progress(on_step: StepCallback | None, clip: int, clips: int) -> StepCallback | None:
    """Progress over all clips: step k of clip i is step i * steps + k of steps * clips."""
    return None if on_step is None else lambda k, total: on_step(clip * total + k, total * clips)


def generate_keyframes(
    pipe: Pipeline, keyframes: list, prompts: list[str], opts: SamplingOptions, on_step: StepCallback | None = None
) -> VideoResult:
    """Clip i interpolates key frames i and i+1 with prompts[i] and seed `opts.seed + i` (so each clip can be
    made again alone), then the clips are joined (`join_clips`)."""
    clips, count = [], len(prompts)
    for i, (first, last, prompt) in enumerate(zip(keyframes[:-1], keyframes[1:], prompts, strict=True)):
        seed = (opts.seed + i) % (SEED_RANGE[1] + 1)
        progress = clip_progress(on_step, i, count)
        clips.append(pipe.generate([first, last], prompt, "interpolate", replace(opts, seed=seed), on_step=progress))
    return join_clips(clips)


def extend_video(
    pipe: Pipeline, video: VideoResult, prompts: list[str], opts: SamplingOptions, on_step: StepCallback | None = None
) -> VideoResult:
    """`video` (clip 0) followed by one clip per prompt, clip i animated from the last frame of clip i - 1 with
    seed `opts.seed + i`, joined on that frame (`join_clips`). Cheap, but each clip sees only one frame of the
    past: motion may change and colours drift at the joins."""
    clips = [video]
    for i, prompt in enumerate(prompts, 1):
        clip_opts = replace(opts, seed=(opts.seed + i) % (SEED_RANGE[1] + 1))
        progress = clip_progress(on_step, i - 1, len(prompts))
        clips.append(pipe.generate([clips[-1].frames[-1]], prompt, "animate", clip_opts, on_step=progress))
    return join_clips(clips)
