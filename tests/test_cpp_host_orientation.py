"""The C++ host's EXIF orientation (cpp_host/src/orientation.cpp) against dcrt.images (PIL's exif_transpose): every
orientation of a JPEG and a PNG, in both TIFF byte orders, and malformed or truncated EXIF blocks, each decoded,
resized and cropped by the host's image piece and compared bit for bit with load_image of the same file. Built once
per session with the rest of the host (tests/cpp_host_support.py).
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from cpp_host_support import check

from dcrt.images import load_image

ORIENTATION = 0x0112
TARGET = (48, 64)  # not square, as the picture is not: every orientation gives other pixels


def picture() -> np.ndarray:
    """uint8 [45, 70, 3] with no symmetry: gradients along both axes, a block off the centre, noise."""
    h, w = 45, 70
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 250 / w, y * 250 / h, np.full((h, w), 60.0)], -1)
    rgb[5:15, 40:62] = (250, 30, 200)
    rgb += np.random.default_rng(5).integers(0, 40, (h, w, 3))
    return rgb.clip(0, 255).astype(np.uint8)


def tiff(entries: list[tuple[int, int, int, bytes]], order: str = "<", tail: bytes = b"") -> bytes:
    """A TIFF block (header, IFD0 at 8, next-IFD 0, then `tail`): entries of (tag, type, count, 4 value bytes)."""
    header = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "L", 8)
    ifd = struct.pack(order + "H", len(entries))
    ifd += b"".join(struct.pack(order + "HHL", tag, kind, count) + value for tag, kind, count, value in entries)
    return header + ifd + struct.pack(order + "L", 0) + tail


def orientation_block(value: int, order: str) -> bytes:
    """Orientation `value` (SHORT) after another tag, as cameras write it."""
    short = struct.pack(order + "HH", value, 0)
    return tiff([(0x010F, 2, 4, b"dcr\x00"), (ORIENTATION, 3, 1, short)], order)


def save(path: Path, exif: bytes | None) -> Path:
    """The picture as PNG or JPEG (by `path`'s suffix) with `exif` as its eXIf chunk or APP1 "Exif" segment."""
    from PIL import Image

    image = Image.fromarray(picture(), "RGB")
    fmt = "PNG" if path.suffix == ".png" else "JPEG"
    if exif is None:
        image.save(path, fmt)
    elif fmt == "JPEG":
        image.save(path, fmt, exif=b"Exif\x00\x00" + exif)
    else:
        image.save(path, fmt, exif=exif)
    return path


def assert_host_matches_python(host_build, path: Path, tmp_path: Path) -> np.ndarray:
    out = tmp_path / "pixels.npy"
    check(host_build, "pixels", path, *TARGET, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's notes on corrupt EXIF data, dcrt's on a malformed block
        ref = load_image(path, *TARGET).numpy()
    np.testing.assert_array_equal(np.load(out), ref)
    return ref


@pytest.mark.parametrize("fmt", ["jpg", "png"])
@pytest.mark.parametrize("value", range(1, 9))
def test_every_orientation_matches_python(host_build, tmp_path, fmt, value):
    """Orientation 1-8 (odd values big-endian "MM", even ones little-endian "II"): the host's pixels are
    load_image's; 2-8 each differ from the unrotated picture's, so none passes by doing nothing."""
    order = ">" if value % 2 else "<"
    path = save(tmp_path / f"o{value}.{fmt}", orientation_block(value, order))
    ref = assert_host_matches_python(host_build, path, tmp_path)
    plain = load_image(save(tmp_path / f"plain.{fmt}", None), *TARGET).numpy()
    assert (value == 1) == np.array_equal(ref, plain)


def test_pil_written_exif_is_read(host_build, tmp_path):
    """The EXIF PIL itself writes (Image.Exif), rotated by 90 degrees."""
    from PIL import Image

    exif = Image.Exif()
    exif[ORIENTATION] = 8
    for fmt in ("JPEG", "PNG"):
        path = tmp_path / f"pil.{fmt.lower()}"
        Image.fromarray(picture(), "RGB").save(path, fmt, exif=exif)
        assert_host_matches_python(host_build, path, tmp_path)


def test_exif_split_over_two_jpeg_segments_and_after_png_pixels(host_build, tmp_path):
    """A JPEG whose EXIF goes on in a second APP1 "Exif" segment (PIL appends the payloads), and a PNG whose eXIf
    chunk follows the image data."""
    block = orientation_block(6, "<")
    jpeg = save(tmp_path / "plain.jpg", None).read_bytes()

    def app1(payload: bytes) -> bytes:
        return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload

    split = jpeg[:2] + app1(b"Exif\x00\x00" + block[:20]) + app1(b"Exif\x00\x00" + block[20:]) + jpeg[2:]
    (tmp_path / "split.jpg").write_bytes(split)
    assert_host_matches_python(host_build, tmp_path / "split.jpg", tmp_path)

    png = save(tmp_path / "plain.png", None).read_bytes()
    chunk = b"eXIf" + block
    trailing = png[:-12] + struct.pack(">L", len(block)) + chunk + struct.pack(">L", zlib.crc32(chunk)) + png[-12:]
    (tmp_path / "trailing.png").write_bytes(trailing)
    assert_host_matches_python(host_build, tmp_path / "trailing.png", tmp_path)


SHORT6 = struct.pack("<HH", 6, 0)
MALFORMED = {  # EXIF blocks PIL reads in part or not at all: the host reads the same, and nothing outside them
    "no TIFF header": b"not a TIFF header",
    "a header cut short": b"II*\x00",
    "empty": b"",
    "IFD0 outside the block": b"II*\x00" + struct.pack("<L", 1 << 30),
    "the orientation entry cut off": tiff([(0x010F, 2, 4, b"dcr\x00"), (ORIENTATION, 3, 1, SHORT6)])[:26],
    "values outside the block": tiff([(ORIENTATION, 3, 1 << 31, struct.pack("<L", 8))]),
    "no next-IFD offset": tiff([(ORIENTATION, 3, 1, SHORT6)])[:-4],  # the entry is whole: PIL keeps it
    "an unknown type": tiff([(ORIENTATION, 99, 1, SHORT6)]),
    "no values": tiff([(ORIENTATION, 3, 0, SHORT6)]),
    "three values elsewhere": tiff([(ORIENTATION, 3, 3, struct.pack("<L", 26))], tail=struct.pack("<HHH", 5, 1, 1)),
    "a LONG": tiff([(ORIENTATION, 4, 1, struct.pack("<L", 7))]),
    "a BYTE": tiff([(ORIENTATION, 1, 1, b"\x06\x00\x00\x00")]),
    "a value out of range": tiff([(ORIENTATION, 3, 1, struct.pack("<HH", 9, 0))]),
    "the tag twice": tiff([(ORIENTATION, 3, 1, SHORT6), (ORIENTATION, 3, 1, struct.pack("<HH", 3, 0))]),
}


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_malformed_exif_is_read_as_python_reads_it(host_build, tmp_path, fmt):
    for name, block in MALFORMED.items():
        path = save(tmp_path / f"malformed.{fmt}", block)
        try:
            assert_host_matches_python(host_build, path, tmp_path)
        except AssertionError as failure:
            raise AssertionError(f"{name}: {failure}") from None


def test_python_ignores_a_malformed_png_exif_with_a_notice(tmp_path):
    """PIL raises on a PNG eXIf without a TIFF header (a JPEG's it ignores): dcrt.images says so in one notice and
    reads the picture unturned, as the host does, instead of a traceback."""
    from PIL import Image

    path = save(tmp_path / "bad.png", b"not a TIFF header")
    with pytest.warns(UserWarning, match="malformed EXIF block: it is ignored"):
        pixels = load_image(path, 45, 70)
    plain = load_image(Image.fromarray(picture(), "RGB"), 45, 70)
    np.testing.assert_array_equal(pixels.numpy(), plain.numpy())
