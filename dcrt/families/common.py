"""What every family's pipeline shares: its result (`VideoResult`), the progress callback (`StepCallback`), the
stage timer of `dcrt bench` (`StageTimer`, `untimed`) and seeded noise in the documented order (`NoiseSource`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from dcrt.video import DEFAULT_FPS, DEFAULT_QUALITY, write_video

# `on_step(step, steps)` after each denoising step: the progress of a run.
StepCallback = Callable[[int, int], None]


class FrameWindows(Protocol):
    """What noise for a long video needs of its windows (dcrt.families.dynamicrafter.windows.TemporalWindows)."""

    window: int  # frames one UNet call sees
    stride: int  # frames between the starts of neighbouring windows


class NoiseSource:
    """Seeded Gaussian noise in the documented order: x_T first, then one draw per step.

    The same order (and shapes) as the original, so on CUDA the same seed gives the original's noise.
    """

    def __init__(self, seed: int, device: torch.device | str):
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.device = device

    def draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device, dtype=torch.float32)

    def draw_initial(self, shape: tuple[int, ...], windows: FrameWindows, seed: int) -> torch.Tensor:
        """x_T [B, C, N, h, w]. One window's worth is drawn as for a video of that length; beyond it, noise is
        rescheduled as FreeNoise does (Qiu et al. 2023, arXiv:2310.15169; docs/sampling.md §4.10): each block
        of `stride` frames from frame `window` on repeats the block `window` frames earlier, shuffled by a
        permutation seeded with `seed`. Overlapping windows so start from the same few noise frames, which
        keeps the long video coherent; the per-step draws (eta > 0) stay independent for all N frames."""
        frames, window, stride = shape[2], windows.window, windows.stride
        if frames == window:
            return self.draw(shape)
        x = torch.empty(shape, dtype=torch.float32, device=self.device)
        x[:, :, :window] = self.draw((*shape[:2], window, *shape[3:]))
        order = torch.Generator().manual_seed(seed)  # on the CPU: the same permutations on every device
        for start in range(window, frames, stride):
            length = min(stride, frames - start)
            source = (start - window + torch.randperm(length, generator=order)).to(self.device)
            x[:, :, start : start + length] = x[:, :, source]
        return x


# `timer(stage)` -> a context manager around one stage of `Pipeline.generate` (`dcrt bench`'s StageClock).
StageTimer = Callable[[str], AbstractContextManager]


@dataclass
class VideoResult:
    latents: torch.Tensor  # [1, 4, T, h, w] final latents, before decoding (float32)
    frames: np.ndarray  # uint8 [T, H, W, 3]
    fps: int = DEFAULT_FPS  # the frame rate to play it at (SVD: the rate it was conditioned on)

    def save(
        self, path: str | Path, fps: int | None = None, quality: int = DEFAULT_QUALITY, format: str | None = None
    ) -> Path:
        """Write the frames as mp4 (H.264), gif, webp or a folder of png frames at `fps` (default: the video's);
        the format defaults to the extension's. Written to a temporary file and renamed, as the command line does."""
        return write_video(self.frames, path, format, fps=fps or self.fps, quality=quality)


def untimed(stage: str) -> AbstractContextManager:
    """The `StageTimer` of an untimed run."""
    return nullcontext()


def in_batches(network: Callable[..., torch.Tensor], batch: int | None, *inputs: torch.Tensor) -> torch.Tensor:
    """`network(*inputs)` on at most `batch` samples a call (None: all at once), the outputs concatenated: with a
    batch of 1, the guidance branches run one after the other (dcrt.memory's `unet_batch`). Every input's first
    dimension is the batch, and samples do not interact inside the network."""
    n = inputs[0].shape[0]
    if batch is None or batch >= n:
        return network(*inputs)
    return torch.cat([network(*(x[i : i + batch] for x in inputs)) for i in range(0, n, batch)])
