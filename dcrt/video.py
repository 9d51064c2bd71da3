"""Frames -> files people can open: mp4 (H.264), gif, webp, or a folder of png frames.

Everything is written to a temporary path beside the target and renamed at the end, so an
interrupted run never leaves a half-written video.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dcrt.atomic import atomic_dir, atomic_file
from dcrt.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

FORMATS = ("mp4", "gif", "webp", "png")
DEFAULT_FORMAT = "mp4"
DEFAULT_FPS = 8  # the original writes every video at 8 fps
DEFAULT_QUALITY = 10  # x264 CRF, as the original
QUALITY_RANGE = (0, 51)  # x264's CRF scale (8-bit)
# Frame delays are stored in 1/100 s (gif) and in ms (webp): faster rates cannot be written.
MAX_FPS = {"gif": 100, "webp": 1000}


def format_for(path: Path, fmt: str | None) -> str:
    """The format named, else the one the file extension says (no extension: mp4).

    A named format that contradicts the file's extension is refused: gif bytes in `out.mp4` open nowhere.
    A folder of png frames may have any name that is not another format's extension.
    """
    named = path.suffix.lstrip(".").lower()
    fmt = fmt or named or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise UsageError(f"unsupported output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if named and named != fmt and (fmt != "png" or named in FORMATS):
        raise UsageError(
            f"output format {fmt} does not match the file name {path.name}: "
            f"name it {path.stem}.{fmt}, or leave the format out to take it from the name"
        )
    return fmt


def check_video_options(fmt: str, fps: int, quality: int) -> None:
    """Reject what the writers cannot honour, before any frame is computed."""
    top = MAX_FPS.get(fmt)
    if fps < 1 or (top is not None and fps > top):
        limit = f"from 1 to {top}" if top else "at least 1"
        raise UsageError(f"fps must be {limit} for {fmt}, got {fps}")
    lo, hi = QUALITY_RANGE
    if not lo <= quality <= hi:
        raise UsageError(f"quality must be from {lo} to {hi} (x264's CRF scale, lower is better), got {quality}")


def check_output_path(path: Path, fmt: str) -> None:
    """That a video (png: a folder of frames) can be written at `path`, before any model loads."""
    from dcrt.atomic import check_writable

    if not path.parent.is_dir():
        raise UsageError(f"output directory {path.parent} does not exist")
    if path.is_dir() and (fmt != "png" or any(path.iterdir())):
        raise UsageError(f"output path {path} is {'a non-empty' if fmt == 'png' else 'a'} directory")
    check_writable(path, "frames folder" if fmt == "png" else "output video")


def _single_frames(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for chunk in chunks:
        yield from chunk


def _write_mp4(frames: Iterator[np.ndarray], path: str, fps: int, quality: int) -> None:
    import imageio_ffmpeg
    import numpy as np

    first = next(frames, None)
    if first is None:
        raise UsageError("there are no frames to write")
    h, w, _ = first.shape
    writer = imageio_ffmpeg.write_frames(
        path,
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        output_params=["-crf", str(quality), "-f", "mp4"],
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in itertools.chain([first], frames):
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _write_animated(frames: Iterator[np.ndarray], path: str, fps: int, fmt: str, quality: int) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    options = {"format": "GIF"} if fmt == "gif" else {"format": "WEBP", "quality": max(1, 100 - 2 * quality)}
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, **options)


def _write_pngs(frames: Iterator[np.ndarray], directory: str) -> None:
    from PIL import Image

    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(directory, f"{i:03d}.png"))


def write_video(
    frames: np.ndarray | Iterable[np.ndarray],
    path: str | Path,
    fmt: str | None = None,
    fps: int = DEFAULT_FPS,
    quality: int = DEFAULT_QUALITY,
) -> Path:
    """uint8 [T, H, W, 3], or an iterable of such chunks (written as they come: mp4 and png stream, gif and
    webp collect their frames) -> file (or png folder). `quality` is x264's CRF (lower is better; 10 as the
    original)."""
    path = Path(path)
    fmt = format_for(path, fmt)
    check_video_options(fmt, fps, quality)
    check_output_path(path, fmt)
    frames = _single_frames([frames] if hasattr(frames, "shape") else frames)
    if fmt == "png":
        with atomic_dir(path) as tmp:
            _write_pngs(frames, str(tmp))
        return path
    with atomic_file(path, suffix=f".{fmt}") as tmp:
        if fmt == "mp4":
            _write_mp4(frames, str(tmp), fps, quality)
        else:
            _write_animated(frames, str(tmp), fps, fmt, quality)
    return path


def read_video(path: str | Path) -> np.ndarray:
    """A video file (anything ffmpeg decodes; gif and webp through PIL, which reads animated webp) or a folder of
    png frames (as `write_video` writes it) -> uint8 [T, H, W, 3]. Raises UsageError, one line, for a missing,
    unreadable or empty one."""
    path = Path(path)
    if path.is_dir():
        frames = [_read_still(p) for p in sorted(path.glob("*.png"))]
    elif not path.is_file():
        raise UsageError(f"video {path} does not exist")
    elif path.suffix.lower() in (".gif", ".webp"):
        frames = _read_animated(path)
    else:
        frames = _read_ffmpeg(path)
    if not frames:
        raise UsageError(f"{path} holds no video frames" + (" (no .png files)" if path.is_dir() else ""))
    if len({f.shape for f in frames}) > 1:
        raise UsageError(f"{path}'s frames differ in size")
    import numpy as np

    return np.stack(frames)


def _read_ffmpeg(path: Path) -> list[np.ndarray]:
    import gc
    import warnings

    with warnings.catch_warnings():
        # An ffmpeg that exits at once (not a video) leaves its pipes to the garbage collector, which warns: the
        # one line below says what went wrong.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _decode_ffmpeg(path)
        except (OSError, RuntimeError) as exc:
            # imageio-ffmpeg appends ffmpeg's stderr: its last line names the problem ("Invalid data found ...").
            said = [line for line in str(exc).splitlines() if line.strip()]
        gc.collect()
    raise UsageError(f"{path} is not a video ffmpeg can read: {said[-1] if said else 'no frames'}")


def _decode_ffmpeg(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg
    import numpy as np

    reader = imageio_ffmpeg.read_frames(str(path))
    width, height = next(reader)["size"]  # the metadata, then the frames
    return [np.frombuffer(chunk, np.uint8).reshape(height, width, 3) for chunk in reader]


def _read_animated(path: Path) -> list[np.ndarray]:
    import numpy as np
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"{path} is not an animation PIL can read: {exc}") from None


def _read_still(path: Path) -> np.ndarray:
    import numpy as np

    from dcrt.images import open_image

    return np.asarray(open_image(path))
