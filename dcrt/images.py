"""Conditioning images: any file PIL opens, a PIL image, a uint8 array or a [-1, 1] tensor -> [1, 3, H, W].

Preprocessing is the original CLI's: resize the *shorter* side to min(H, W) (PIL bilinear with its
antialiasing), then centre-crop to H x W. The crop pads with black where the resized image is smaller
than the target (e.g. a 4:3 photo at 320x512 gets black side bars), as the original does.

Where an input leaves a choice, the choice is said in a one-line notice (a warning), never made silently:
- transparency: pixels that are not opaque are composited on white (`TRANSPARENT_BACKGROUND`). The original's
  convert('RGB') keeps whatever colour lies under them, often black or noise; a fully opaque alpha channel is
  dropped without a word, as there (the same pixels);
- an animated image (GIF, APNG, WebP, multi-page TIFF): its first frame is used;
- an image upscaled UPSCALE_NOTICE times or more to fill the model's size (a thumbnail, a 1x1 pixel): expect a blurred
  start.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from dcrt.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch

# Modes whose conversion to 8-bit RGB is well defined; 16/32-bit grey ("I", "I;16", "F") is not.
_CONVERTIBLE_MODES = {"RGB", "RGBA", "RGBX", "L", "LA", "La", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV", "RGBa"}
TRANSPARENT_BACKGROUND = (255, 255, 255)
UPSCALE_NOTICE = 2.0  # an image enlarged by this factor or more is noticed


def open_image(path: str | Path):
    """Open an image file as an RGB PIL image, honouring EXIF rotation. Raises UsageError.

    Torch-free: the command line opens its images before it imports torch or loads a model."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory, expected an image file")
    if not path.is_file():
        raise UsageError(f"image {path} does not exist")
    # The file is opened here, not by PIL: closed however the decode ends, Ctrl-C included.
    try:
        with open(path, "rb") as file:
            return _decode(file, str(path))
    except OSError as exc:
        raise UsageError(f"cannot read image {path}: {exc}") from None


def decode_image(data: bytes, name: str = "image"):
    """An image file's bytes (a server's request) -> RGB PIL image, as `open_image`. Raises UsageError."""
    import io

    return _decode(io.BytesIO(data), name)


def _decode(file, name: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as img:
            img.load()
            if getattr(img, "n_frames", 1) > 1:
                warnings.warn(f"{name} has {img.n_frames} frames: the first is used", stacklevel=3)
            return to_rgb(_upright(img, name), name)
    except UnidentifiedImageError:
        raise UsageError(f"{name} is not an image PIL can read") from None
    except Image.DecompressionBombError as exc:  # PIL refuses to decode it: a hostile or absurd size
        raise UsageError(f"{name} is too large to decode safely ({exc}); downscale it first") from None
    except OSError as exc:  # truncated or corrupt data
        raise UsageError(f"cannot read {name}: {exc}") from None


def _upright(img, name: str):
    """`img` turned as its EXIF orientation says (ImageOps.exif_transpose). A malformed EXIF block is ignored, with a
    notice: PIL ignores one in a JPEG itself, but raises on one in a PNG (no TIFF header), which is no reason to
    refuse the picture. The C++ host (cpp_host/src/orientation.cpp) does the same."""
    import struct

    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(img)
    except (SyntaxError, struct.error, ValueError):  # ValueError: a PNG's hex "Raw profile type exif" text
        warnings.warn(f"{name} has a malformed EXIF block: it is ignored (no orientation applied)", stacklevel=4)
        return img


def to_rgb(img, name: str = "image"):
    """`img` as 8-bit RGB; transparent pixels composited on TRANSPARENT_BACKGROUND, with a notice."""
    from PIL import Image

    if img.mode not in _CONVERTIBLE_MODES:
        raise UsageError(f"{name} has unsupported mode {img.mode!r}; convert it to 8-bit RGB first")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:  # some pixel is not opaque
            red, green, blue = TRANSPARENT_BACKGROUND
            warnings.warn(
                f"{name} has transparent pixels: they are composited on white (rgb({red}, {green}, {blue}))",
                stacklevel=3,
            )
            background = Image.new("RGBA", rgba.size, (*TRANSPARENT_BACKGROUND, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _notice_upscale(size: tuple[int, int], height: int, width: int, name: str) -> None:
    """The resize takes the shorter side to min(height, width): say so when that enlarges the image a lot."""
    factor = min(height, width) / min(size)
    if factor >= UPSCALE_NOTICE:
        warnings.warn(
            f"{name} ({size[0]}x{size[1]}) is enlarged {factor:.3g}x to fill {width}x{height}: expect a blurred start",
            stacklevel=3,
        )


def _pil_to_tensor(img, height: int, width: int) -> torch.Tensor:
    import numpy as np
    import torch
    from torchvision.transforms import CenterCrop, Resize

    img = CenterCrop((height, width))(Resize(min(height, width))(img))
    pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    return (pixels * 2.0 - 1.0)[None]


def load_image(image, height: int, width: int) -> torch.Tensor:
    """-> float32 [1, 3, height, width] in [-1, 1]. A tensor input must already be at that size."""
    import numpy as np
    import torch
    from PIL import Image

    name = f"image {image}" if isinstance(image, (str, Path)) else "the image"
    if isinstance(image, torch.Tensor):
        if image.ndim != 4 or image.shape[:2] != (1, 3) or tuple(image.shape[2:]) != (height, width):
            raise UsageError(f"an image tensor must be [1, 3, {height}, {width}] in [-1, 1], got {list(image.shape)}")
        return image.float()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise UsageError(f"an image array must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
        image = Image.fromarray(image, "RGB")
    elif isinstance(image, (str, Path)):
        image = open_image(image)
    elif isinstance(image, Image.Image):
        image = to_rgb(image)
    else:
        raise UsageError(f"unsupported image input of type {type(image).__name__}")
    _notice_upscale(image.size, height, width, name)
    return _pil_to_tensor(image, height, width)


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[T, 3, H, W] roughly in [-1, 1] -> uint8 [T, H, W, 3]: clamp, map to [0, 255], truncate (as the original)."""
    import torch

    x = (video.float().clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
