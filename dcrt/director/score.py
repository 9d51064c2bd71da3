"""A video's scores: the pixel metrics (dcrt.director.metrics) and, given an embedder of the checkpoint's OpenCLIP
(dcrt.director.clip_space), temporal consistency, fidelity to the conditioning images and prompt adherence in
CLIP's joint image-text space. Every metric is a field of `Scores`; docs/metrics.md defines each one and its range.

    scores = score_frames(frames, images=[first_image], prompt="a boat sailing", embedder=embedder)
    print(format_table(scores)); Path("boat.scores.json").write_text(scores.to_json())
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcrt.director import metrics
from dcrt.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from dcrt.director.clip_space import Embedder
    from dcrt.families.base import PresetBase
    from dcrt.weights import Weights

SCORES_VERSION = 1  # bumped when a definition in docs/metrics.md changes
CLIPSCORE_WEIGHT = 2.5  # CLIPScore's w (Hessel et al. 2021, eq. 1): 2.5 x max(cos, 0)
NO_EMBEDDER = "needs a checkpoint's CLIP: give --res PRESET (its checkpoint found as for animate, or --ckpt PATH)"


@dataclass(frozen=True)
class Scores:
    """One video's metrics (docs/metrics.md). A CLIP metric is None when it could not be computed; `missing`
    says why, by field name."""

    frames: int
    height: int
    width: int
    motion: float  # px per frame at shorter side 256: mean over frame pairs of the top-5% flow magnitudes
    motion_relative: float  # motion / 256: share of the shorter side crossed per frame
    dynamic_degree: float  # share of frame pairs moving more than 6 px per frame (VBench), 0-1
    flicker: float  # grey levels: motion-compensated brightness change between frames, 0-255
    black_frames: int
    nan_frames: int
    frozen_frames: int
    image_psnr: float | None = None  # dB: frames at the conditioning images' places vs the images
    consistency: float | None = None  # CLIP cosine of consecutive frames, mean, -1-1
    consistency_first: float | None = None  # CLIP cosine of each frame with the first, mean, -1-1
    image_similarity: float | None = None  # CLIP cosine of frames at the images' places with the images, -1-1
    prompt_score: float | None = None  # CLIPScore of the frames with the prompt, mean, 0-2.5
    missing: dict[str, str] = field(default_factory=dict)
    version: int = SCORES_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def value(self, name: str) -> float | None:
        """A metric by name (the names `--until` takes)."""
        return getattr(self, name)

    def healthy(self) -> bool:
        """No black or NaN frame: a video a user could keep."""
        return self.black_frames == 0 and self.nan_frames == 0


# The metrics, in the order tables show them, with their unit or range (docs/metrics.md has the definitions).
METRICS: dict[str, str] = {
    "motion": "px/frame @256",
    "motion_relative": "0-1",
    "dynamic_degree": "0-1",
    "flicker": "grey levels",
    "black_frames": "frames",
    "nan_frames": "frames",
    "frozen_frames": "frames",
    "image_psnr": "dB",
    "consistency": "cosine",
    "consistency_first": "cosine",
    "image_similarity": "cosine",
    "prompt_score": "CLIPScore 0-2.5",
}
CLIP_METRICS = ("consistency", "consistency_first", "image_similarity", "prompt_score")


def keyframe_positions(images: int, frames: int) -> list[int]:
    """Where conditioning images sit in a video: one image is the first frame; n >= 2 are spread evenly from the
    first frame to the last (interpolate's first and last frame, its key frames every 15 frames)."""
    if images == 1:
        return [0]
    return [round(i * (frames - 1) / (images - 1)) for i in range(images)]


def score_frames(
    frames: np.ndarray,
    images: Sequence[np.ndarray] = (),
    prompt: str | None = None,
    embedder: Embedder | None = None,
    no_embedder: str = NO_EMBEDDER,
) -> Scores:
    """Score a video: frames uint8 [T, H, W, 3] (or float in [0, 1], where NaN frames are counted), `images` the
    conditioning images as uint8 [H, W, 3] at the frames' size (`fit_image`), `prompt` the text it followed.
    Without an `embedder` the CLIP metrics are None, `no_embedder` saying why."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise UsageError(f"a video to score must be [T, H, W, 3] with T >= 1, got {list(frames.shape)}")
    if any(image.shape != frames.shape[1:] for image in images):
        sizes = sorted({str(list(image.shape)) for image in images})
        size = list(frames.shape[1:])
        raise UsageError(f"conditioning images must be at the frames' size {size} (fit_image), got {', '.join(sizes)}")
    frames, nan_frames = metrics.finite_frames(frames)
    luma = metrics.analysis_luma(frames)
    flow = metrics.optical_flow(luma)
    moved = metrics.motion(flow)
    positions = keyframe_positions(len(images), len(frames)) if images else []
    missing: dict[str, str] = {}
    if not images:
        missing |= {name: "needs the conditioning image (--image)" for name in ("image_psnr", "image_similarity")}
    if not prompt:
        missing["prompt_score"] = "needs the prompt (--prompt)"
    if len(frames) < 2:
        missing |= {name: "needs at least two frames" for name in ("consistency", "consistency_first")}
    clip = {}
    if embedder is None:
        missing |= {name: no_embedder for name in CLIP_METRICS if name not in missing}
    else:
        clip = clip_metrics(embedder, frames, images, positions, prompt)
    return Scores(
        frames=len(frames),
        height=frames.shape[1],
        width=frames.shape[2],
        motion=moved.motion,
        motion_relative=moved.relative,
        dynamic_degree=moved.dynamic_degree,
        flicker=metrics.flicker(luma, flow),
        black_frames=metrics.black_frames(frames),
        nan_frames=nan_frames,
        frozen_frames=metrics.frozen_frames(frames),
        image_psnr=_mean([metrics.psnr(frames[p], image) for p, image in zip(positions, images)]),
        **{name: clip.get(name) for name in CLIP_METRICS if name not in missing},
        missing=missing,
    )


def clip_metrics(
    embedder: Embedder,
    frames: np.ndarray,
    images: Sequence[np.ndarray],
    positions: list[int],
    prompt: str | None,
) -> dict[str, float]:
    """The CLIP metrics from the frames' (and images', prompt's) unit embeddings: cosines are dot products."""
    import numpy as np

    seen = np.asarray(embedder.embed_images(frames), np.float64)  # [T, D]
    found: dict[str, float] = {}
    if len(seen) >= 2:
        found["consistency"] = float((seen[1:] * seen[:-1]).sum(axis=1).mean())
        found["consistency_first"] = float((seen[1:] @ seen[0]).mean())
    if len(images):
        given = np.asarray(embedder.embed_images(np.stack(images)), np.float64)  # [n, D]
        found["image_similarity"] = float((seen[positions] * given).sum(axis=1).mean())
    if prompt:
        text = np.asarray(embedder.embed_texts([prompt]), np.float64)[0]  # [D]
        found["prompt_score"] = float((CLIPSCORE_WEIGHT * np.maximum(seen @ text, 0.0)).mean())
    return found


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def fit_image(image, height: int, width: int) -> np.ndarray:
    """A conditioning image (path, PIL image or uint8 array) as the model saw it: uint8 [height, width, 3],
    resized and centre-cropped by dcrt.images (the original CLI's preprocessing)."""
    from dcrt.images import load_image

    pixels = load_image(image, height, width)[0]  # [3, H, W] in [-1, 1], exactly (uint8 / 255) * 2 - 1
    return ((pixels + 1.0) / 2.0 * 255.0).round().byte().permute(1, 2, 0).numpy()


def open_embedder(
    preset: PresetBase, weights: Weights | None, device: str | None = None
) -> tuple[Embedder | None, str]:
    """The CLIP of `weights` (None: no checkpoint on this machine) for the CLIP metrics, or (None, why there is
    none): a model family without a text tower, or no checkpoint, is a reason, not an error."""
    if weights is None:
        return None, f"no checkpoint of preset {preset.name} here: give --ckpt PATH (or --random-weights)"
    try:
        preset.require_family("dynamicrafter", "the CLIP metrics")
    except UsageError as exc:
        return None, str(exc)
    import torch

    from dcrt.director.clip_space import load_clip_space
    from dcrt.families.state_dicts import WEIGHT_DTYPES
    from dcrt.loading import default_dtype, usable_device

    device = usable_device(device or ("cuda" if torch.cuda.is_available() else None))
    return load_clip_space(preset, weights, device, WEIGHT_DTYPES[default_dtype(device)]), ""


@dataclass
class VideoScorer:
    """Scores written videos with `preset`'s CLIP from `weights` (None: no checkpoint here), loaded at the first
    video (after the generation that made it, so the two models need not share the device at once)."""

    preset: PresetBase
    weights: Weights | None
    device: str | None = None
    _clip: tuple[Embedder | None, str] | None = field(default=None, init=False, repr=False)

    def score(self, video: Path, images: Sequence[Path] = (), prompt: str | None = None) -> Scores:
        if self._clip is None:
            self._clip = open_embedder(self.preset, self.weights, self.device)
        return score_video(video, images, prompt, *self._clip)

    def write(self, video: Path, images: Sequence[Path] = (), prompt: str | None = None) -> Path:
        """Score `video` and write <video>.scores.json beside it; -> that path."""
        return write_scores(self.score(video, images, prompt), video)


def score_video(
    video: Path,
    images: Sequence[Path] = (),
    prompt: str | None = None,
    embedder: Embedder | None = None,
    no_embedder: str = NO_EMBEDDER,
) -> Scores:
    """`score_frames` of a video file (or png folder, dcrt.video.read_video) and image files."""
    from dcrt.video import read_video

    frames = read_video(video)
    fitted = [fit_image(image, *frames.shape[1:3]) for image in images]
    return score_frames(frames, fitted, prompt, embedder, no_embedder)


def format_table(scores: Scores) -> str:
    """The metrics as an aligned text table: name, value, unit; a missing metric's row says why."""
    rows = [("metric", "value", "unit")]
    for name, unit in METRICS.items():
        value = scores.value(name)
        shown = "-" if value is None else (str(value) if isinstance(value, int) else f"{value:.4g}")
        rows.append((name, shown, unit if value is not None else f"missing: {scores.missing.get(name, '')}"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{name:<{widths[0]}}  {value:>{widths[1]}}  {unit}" for name, value, unit in rows]
    header = f"{scores.frames} frames, {scores.width}x{scores.height}"
    return "\n".join([header, *lines])


def scores_path(video: Path) -> Path:
    """Where a video's scores go: <video>.scores.json beside it (boat_animate.mp4.scores.json)."""
    return video.with_name(video.name + ".scores.json")


def write_scores(scores: Scores, video: Path) -> Path:
    from dcrt.atomic import atomic_file

    target = scores_path(video)
    with atomic_file(target, suffix=".json") as tmp:
        tmp.write_text(scores.to_json())
    return target
