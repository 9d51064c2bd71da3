"""Synthetic videos with known answers for the director's tests."""

from __future__ import annotations

import numpy as np


def moving_square(step: tuple[int, int], frames: int = 8, size: tuple[int, int] = (256, 256), seed: int = 0):
    """A 64-px square of random texture on a flat grey background, moving `step` = (dx, dy) px per frame. Texture:
    optical flow sees motion where there is structure (inside a flat square it sees none, the aperture problem)."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    video = np.full((frames, *size, 3), 90, np.uint8)
    for t in range(frames):
        x, y = 20 + step[0] * t, 30 + step[1] * t
        video[t, y : y + 64, x : x + 64] = texture
    return video


def smooth_scene(size: tuple[int, int] = (128, 192), seed: int = 1) -> np.ndarray:
    """A still image with structure at every scale: uint8 [H, W, 3]."""
    import cv2

    noise = np.random.default_rng(seed).integers(40, 210, (*size, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (9, 9), 3)
