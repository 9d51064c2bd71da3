"""The pixel metrics of a video (no model): motion from optical flow, flicker, black, frozen and NaN frames, and a
pixel-space comparison with a conditioning image. Definitions and ranges: docs/metrics.md (each constant below is
one of the numbers it states).

Optical flow is OpenCV's Farneback (dense, deterministic, CPU), computed once per frame pair on the frames' luma at
the analysis size (shorter side ANALYSIS_SHORT_SIDE) and shared by the motion and flicker metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Flow is measured with the shorter side at 256 px, so motion is in the same unit at every output size (VBench's
# dynamic degree scales its threshold the same way: 6.0 x min(H, W) / 256).
ANALYSIS_SHORT_SIDE = 256
TOP_SHARE = 0.05  # a pair's motion: the mean of its largest 5% of flow magnitudes (VBench's dynamic degree)
DYNAMIC_THRESHOLD = 6.0  # px per frame at the analysis size: VBench's "this pair moves" threshold
# Farneback's parameters: OpenCV's documented typical values with a 4-level pyramid, which follows the tests'
# textured square within 0.1 px up to 40 px per frame at the analysis size (the largest tried).
FARNEBACK = dict(pyr_scale=0.5, levels=4, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
FLICKER_BLOCK = 16  # px: the motion-compensated residual is averaged in blocks this size before its absolute value
BLACK_LEVEL = 16  # grey level: video "black" (the studio-range black of 8-bit video)
BLACK_SHARE = 0.99  # a frame is black when this share of its pixels is at most BLACK_LEVEL
PSNR_CAP = 100.0  # dB: what identical images get (JSON has no infinity)
FROZEN_LEVEL = 0.5  # grey levels: a frame whose mean absolute difference from the one before is below this is frozen


@dataclass(frozen=True)
class Motion:
    """Motion summarised as VBench's dynamic degree does, from the flow of each consecutive frame pair."""

    motion: float  # px per frame at the analysis size: the mean over pairs of each pair's top-5% flow magnitude
    relative: float  # motion / ANALYSIS_SHORT_SIDE: fraction of the shorter side crossed per frame
    dynamic_degree: float  # share of pairs whose top-5% magnitude exceeds DYNAMIC_THRESHOLD, in [0, 1]


def finite_frames(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """uint8 [T, H, W, 3], or float [T, H, W, 3] in [0, 1] -> (uint8 frames, how many frames held a NaN or inf).
    Non-finite pixels become 0 so that the other metrics still read the rest of the video."""
    import numpy as np

    if frames.dtype == np.uint8:
        return frames, 0
    bad = ~np.isfinite(frames)
    nan_frames = int(bad.reshape(len(frames), -1).any(axis=1).sum())
    pixels = np.where(bad, 0.0, frames)
    return (np.clip(pixels, 0.0, 1.0) * 255.0).round().astype(np.uint8), nan_frames


def analysis_luma(frames: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float32 luma [T, h, w] (BT.601, grey levels 0-255) with the shorter side at
    ANALYSIS_SHORT_SIDE (area-averaged when shrinking, bilinear when enlarging)."""
    import cv2
    import numpy as np

    height, width = frames.shape[1:3]
    scale = ANALYSIS_SHORT_SIDE / min(height, width)
    size = (round(width * scale), round(height * scale))  # cv2 sizes are (width, height)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    return np.stack([cv2.resize(g, size, interpolation=interpolation) for g in grey]).astype(np.float32)


def optical_flow(luma: np.ndarray) -> np.ndarray:
    """Luma [T, h, w] -> Farneback flow [T - 1, h, w, 2] (x, y) from each frame to the next:
    luma[t][y, x] ~ luma[t + 1][y + flow[t, y, x, 1], x + flow[t, y, x, 0]]."""
    import cv2
    import numpy as np

    if len(luma) < 2:
        return np.zeros((0, *luma.shape[1:], 2), np.float32)
    return np.stack([cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK) for a, b in zip(luma[:-1], luma[1:])])


def motion(flow: np.ndarray) -> Motion:
    """Flow [P, h, w, 2] -> `Motion`. A video of one frame has no pairs: no motion."""
    import numpy as np

    if len(flow) == 0:
        return Motion(0.0, 0.0, 0.0)
    magnitude = np.linalg.norm(flow, axis=-1).reshape(len(flow), -1)
    top = max(1, round(TOP_SHARE * magnitude.shape[1]))
    per_pair = np.sort(magnitude, axis=1)[:, -top:].mean(axis=1)
    mean = float(per_pair.mean())
    return Motion(mean, mean / ANALYSIS_SHORT_SIDE, float((per_pair > DYNAMIC_THRESHOLD).mean()))


def flicker(luma: np.ndarray, flow: np.ndarray) -> float:
    """Motion-compensated brightness change, grey levels: each next frame warped back onto its predecessor along
    the flow, the residual (warped - previous) averaged over the valid pixels of each FLICKER_BLOCK square (the
    zero-mean error of warping texture cancels there; a change of brightness does not), then the mean absolute
    block value over blocks and pairs. 0 for one frame."""
    import cv2
    import numpy as np

    if len(flow) == 0:
        return 0.0
    height, width = luma.shape[1:]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    rows, cols = height // FLICKER_BLOCK, width // FLICKER_BLOCK
    changes = []
    for previous, following, step in zip(luma[:-1], luma[1:], flow):
        map_x, map_y = grid_x + step[..., 0], grid_y + step[..., 1]
        warped = cv2.remap(following, map_x, map_y, cv2.INTER_LINEAR)
        valid = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        counts = _block_sums(valid.astype(np.float32), rows, cols)
        sums = _block_sums(np.where(valid, warped - previous, 0.0), rows, cols)
        seen = counts > 0
        changes.append(np.abs(sums[seen] / counts[seen]).mean() if seen.any() else 0.0)
    return float(np.mean(changes))


def _block_sums(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[h, w] -> [rows, cols]: sums over FLICKER_BLOCK squares (a ragged right and bottom edge left out)."""
    size = FLICKER_BLOCK
    return image[: rows * size, : cols * size].reshape(rows, size, cols, size).sum(axis=(1, 3))


def black_frames(frames: np.ndarray) -> int:
    """Frames (uint8 [T, H, W, 3]) where at least BLACK_SHARE of the pixels have every channel <= BLACK_LEVEL."""
    dark = (frames.max(axis=-1) <= BLACK_LEVEL).reshape(len(frames), -1).mean(axis=1)
    return int((dark >= BLACK_SHARE).sum())


def frozen_frames(frames: np.ndarray) -> int:
    """Frames after the first whose mean absolute difference from the frame before is below FROZEN_LEVEL."""
    import numpy as np

    if len(frames) < 2:
        return 0
    steps = np.abs(np.diff(frames.astype(np.int16), axis=0)).reshape(len(frames) - 1, -1).mean(axis=1)
    return int((steps < FROZEN_LEVEL).sum())


def psnr(frame: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images of one size, dB (peak 255), at most PSNR_CAP (identical
    images: the cap, which JSON can carry where it cannot carry infinity)."""
    import numpy as np

    mse = float(np.mean((frame.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10.0 * float(np.log10(255.0**2 / mse)))
