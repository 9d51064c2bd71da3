"""Videos longer than the model's 16 frames: which overlapping 16-frame windows cover N latent frames, and how
their outputs are weighted where they overlap (docs/sampling.md §4.10). Torch-free: the command line checks a
frame count before it imports torch; `dcrt.families.dynamicrafter.sampler.WindowedDenoiser` runs the plan.

The UNet's context holds the image tokens of exactly `window` frames (the length the model was trained on),
so a longer video is never fed to it whole: every DDIM step runs the UNet on each window, and a frame's
output is the weighted mean of the windows that cover it. The weights rise linearly towards a window's
centre ("pyramid" weights: min(j + 1, window - j) at position j), so a frame takes most of its value from
the window that sees it with the most context on both sides, and the overlap blends without a seam.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcrt.errors import UsageError

# A bound of our own: the runner keeps every step's noise for all frames on the device ([steps, 4, N, h, w]
# float32: 7.4 GB for 256 frames of the 1024 model at 50 steps), and the host keeps the uint8 frames.
MAX_FRAMES = 256


@dataclass(frozen=True)
class TemporalWindows:
    """Windows of `window` frames over `frames`, starting every `window - overlap` frames. `wrap`: the video
    loops, so windows run on past the last frame into the first ones (every frame is covered equally)."""

    frames: int
    window: int
    overlap: int
    wrap: bool = False

    @property
    def stride(self) -> int:
        return self.window - self.overlap

    @property
    def count(self) -> int:
        if self.frames == self.window:
            return 1
        return self.frames // self.stride if self.wrap else (self.frames - self.window) // self.stride + 1

    def frame_indices(self) -> list[list[int]]:
        """The latent frames of each window, in order (mod `frames` where windows wrap)."""
        return [[(k * self.stride + j) % self.frames for j in range(self.window)] for k in range(self.count)]

    def weights(self) -> list[list[float]]:
        """Each window's weight per position, normalised so that every frame's weights sum to 1."""
        shape = [min(j + 1, self.window - j) for j in range(self.window)]
        total = [0.0] * self.frames
        for indices in self.frame_indices():
            for j, f in enumerate(indices):
                total[f] += shape[j]
        return [[shape[j] / total[f] for j, f in enumerate(indices)] for indices in self.frame_indices()]


def plan_windows(frames: int, window: int, overlap: int, wrap: bool = False) -> TemporalWindows:
    """The windows for `frames` latent frames, or one UsageError line saying which frame counts work."""
    if frames < window:
        raise UsageError(f"frames must be at least {window}, the length the model was trained on, got {frames}")
    if frames > MAX_FRAMES:
        raise UsageError(
            f"frames must be at most {MAX_FRAMES} (dcrt's memory bound for one sampling pass), got {frames}"
        )
    if not 0 <= overlap < window:
        raise UsageError(f"overlap must be from 0 to {window - 1} frames, got {overlap}")
    plan = TemporalWindows(frames, window, overlap, wrap)
    if frames == window:
        return plan
    stride = plan.stride
    reachable = frames % stride == 0 if wrap else (frames - window) % stride == 0
    if not reachable:
        if wrap:
            rule = f"a loop needs a multiple of {stride} (the window {window} minus the overlap {overlap})"
            near = (frames // stride) * stride, (frames // stride + 1) * stride
        else:
            rule = f"windows of {window} every {stride} frames cover {window} + {stride}k"
            below = window + (frames - window) // stride * stride
            near = below, below + stride
        options = " or ".join(str(n) for n in near if window <= n <= MAX_FRAMES)
        raise UsageError(f"{frames} frames cannot be covered exactly: {rule}; try {options}, or another --overlap")
    return plan
