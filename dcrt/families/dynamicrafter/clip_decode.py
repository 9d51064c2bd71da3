"""ToonCrafter's clip decoding: the whole clip at once, then its middle frames again (docs/models.md §6.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcrt.images import to_uint8_frames

if TYPE_CHECKING:  # io_spec reads `second_pass_frames`: keep this module's imports light
    import numpy as np
    import torch

    from dcrt.families.dynamicrafter.backend import Backend


def second_pass_frames(frames: int) -> list[int]:
    """The latent frames the second decode pass sees: all but the second and the second-to-last."""
    return [i for i in range(frames) if i not in (1, frames - 2)]


def decode_clip(backend: Backend, z: torch.Tensor, references: tuple[torch.Tensor, ...]) -> np.ndarray:
    """One clip's latents [T, 4, h, w] -> uint8 [T, H, W, 3] as the original decodes it (docs/models.md §6.3):
    the whole clip at once, then again without latent frames 1 and T-2, whose output replaces the middle two
    frames (T/2 - 1 and T/2: the same latents, decoded with other temporal neighbours)."""
    t = z.shape[0]
    frames = to_uint8_frames(backend.decode_latents(z, references))  # converted first: buffers may be reused
    middle = to_uint8_frames(backend.decode_latents(z[second_pass_frames(t)], references))
    frames[t // 2 - 1 : t // 2 + 1] = middle[t // 2 - 2 : t // 2]
    return frames
