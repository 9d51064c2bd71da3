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


def save(path: Path, exif: bytes | None, xmp: str | None = None, raw_profile: str | None = None) -> Path:
    """The picture as PNG or JPEG (by `path`'s suffix) with `exif` as its eXIf chunk or APP1 "Exif" segment, `xmp`
    as its iTXt "XML:com.adobe.xmp" chunk or APP1 XMP segment, and (PNG) `raw_profile` as ImageMagick's zTXt
    "Raw profile type exif"."""
    from PIL import Image, PngImagePlugin

    image = Image.fromarray(picture(), "RGB")
    options = {}
    if path.suffix == ".png":
        if exif is not None:
            options["exif"] = exif
        text = options["pnginfo"] = PngImagePlugin.PngInfo()
        if xmp is not None:
            text.add_itxt("XML:com.adobe.xmp", xmp)
        if raw_profile is not None:
            text.add_text("Raw profile type exif", raw_profile, zip=True)
        image.save(path, "PNG", **options)
    else:
        if exif is not None:
            options["exif"] = b"Exif\x00\x00" + exif
        if xmp is not None:
            options["xmp"] = xmp.encode()
        image.save(path, "JPEG", **options)
    return path


def assert_host_matches_python(host_build, paths: list[Path], tmp_path: Path) -> list[np.ndarray]:
    """Each file's pixels from the host (one dcrt_host_check call for all) equal load_image's; -> load_image's."""
    outs = [tmp_path / f"pixels{index}.npy" for index in range(len(paths))]
    check(host_build, "pixels", *[arg for path, out in zip(paths, outs) for arg in (path, *TARGET, out)])
    refs = []
    for path, out in zip(paths, outs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's notes on corrupt EXIF data, dcrt's on a malformed block
            refs.append(load_image(path, *TARGET).numpy())
        np.testing.assert_array_equal(np.load(out), refs[-1], err_msg=path.name)
    return refs


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_every_orientation_matches_python(host_build, tmp_path, fmt):
    """Orientation 1-8 (odd values big-endian "MM", even ones little-endian "II"): the host's pixels are
    load_image's; 2-8 each differ from the unrotated picture's and from each other, so none passes by doing nothing."""
    paths = [save(tmp_path / f"o{v}.{fmt}", orientation_block(v, ">" if v % 2 else "<")) for v in range(1, 9)]
    refs = assert_host_matches_python(host_build, paths, tmp_path)
    plain = load_image(save(tmp_path / f"plain.{fmt}", None), *TARGET).numpy()
    assert np.array_equal(refs[0], plain)
    assert len({ref.tobytes() for ref in refs}) == 8


def test_pil_written_exif_is_read(host_build, tmp_path):
    """The EXIF PIL itself writes (Image.Exif), rotated by 90 degrees."""
    from PIL import Image

    exif = Image.Exif()
    exif[ORIENTATION] = 8
    paths = [tmp_path / "pil.jpg", tmp_path / "pil.png"]
    for path in paths:
        Image.fromarray(picture(), "RGB").save(path, exif=exif)
    assert_host_matches_python(host_build, paths, tmp_path)


def png_with_exif_chunks(png: bytes, *payloads: bytes, after_pixels: bool = False) -> bytes:
    """`png` with an eXIf chunk of each payload, after IHDR or before IEND."""
    chunks = b""
    for payload in payloads:
        chunk = b"eXIf" + payload
        chunks += struct.pack(">L", len(payload)) + chunk + struct.pack(">L", zlib.crc32(chunk))
    at = len(png) - 12 if after_pixels else 33  # IEND is the last 12 bytes; IHDR ends at 33
    return png[:at] + chunks + png[at:]


def test_exif_split_over_jpeg_segments_and_in_png_chunks_pil_reads(host_build, tmp_path):
    """A JPEG whose EXIF goes on in a second APP1 "Exif" segment (PIL appends the payloads); PNGs whose eXIf chunk
    follows the image data, starts with "Exif\0\0" (PIL skips it), or comes twice (PIL keeps the last)."""
    block = orientation_block(6, "<")
    jpeg = save(tmp_path / "plain.jpg", None).read_bytes()

    def app1(payload: bytes) -> bytes:
        return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload

    split = jpeg[:2] + app1(b"Exif\x00\x00" + block[:20]) + app1(b"Exif\x00\x00" + block[20:]) + jpeg[2:]
    (tmp_path / "split.jpg").write_bytes(split)

    png = save(tmp_path / "plain.png", None).read_bytes()
    (tmp_path / "trailing.png").write_bytes(png_with_exif_chunks(png, block, after_pixels=True))
    (tmp_path / "prefixed.png").write_bytes(png_with_exif_chunks(png, b"Exif\x00\x00" + block))
    (tmp_path / "twice.png").write_bytes(png_with_exif_chunks(png, orientation_block(1, "<"), block))
    paths = [tmp_path / name for name in ("split.jpg", "trailing.png", "prefixed.png", "twice.png")]
    plain = load_image(tmp_path / "plain.png", *TARGET).numpy()
    for path, ref in zip(paths, assert_host_matches_python(host_build, paths, tmp_path)):
        assert not np.array_equal(ref, plain), path.name  # turned


SHORT6_BLOCK = orientation_block(6, "<")


def xmp_packet(orientation: str) -> str:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" {orientation}/></rdf:RDF></x:xmpmeta>'
    )


XMP_CASES = [  # (EXIF block or None, XMP packet, turned): getexif reads XMP's orientation only where EXIF has no entry
    (None, xmp_packet('tiff:Orientation="6"'), True),
    (None, xmp_packet("><tiff:Orientation>8</tiff:Orientation></rdf:Description"), True),
    (orientation_block(1, "<"), xmp_packet('tiff:Orientation="6"'), False),  # EXIF's 1 wins
    (tiff([(ORIENTATION, 1, 1, b"\x06\x00\x00\x00")]), xmp_packet('tiff:Orientation="6"'), False),  # a BYTE entry
    (tiff([(ORIENTATION, 99, 1, b"\x06\x00\x00\x00")]), xmp_packet('tiff:Orientation="5"'), True),  # skipped
]


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_xmp_orientation_where_exif_has_none(host_build, tmp_path, fmt):
    """PIL's getexif takes the orientation from the XMP packet (a JPEG's APP1 XMP segment, a PNG's iTXt) only where
    the EXIF block holds no Orientation entry: one of a type PIL skips counts as none, one of bytes as an entry."""
    plain = load_image(save(tmp_path / f"plain.{fmt}", None), *TARGET).numpy()
    paths = [save(tmp_path / f"xmp{index}.{fmt}", exif, xmp) for index, (exif, xmp, _) in enumerate(XMP_CASES)]
    refs = assert_host_matches_python(host_build, paths, tmp_path)
    assert [not np.array_equal(ref, plain) for ref in refs] == [turned for *_, turned in XMP_CASES]


def raw_profile(exif: bytes) -> str:
    """ImageMagick's text form of an EXIF block: a blank line, the name, the length, then hex in lines of 72."""
    text = ("Exif\x00\x00".encode() + exif).hex()
    return f"\nexif\n{len(exif) + 6:8d}\n" + "\n".join(text[i : i + 72] for i in range(0, len(text), 72)) + "\n"


def test_png_raw_profile_exif_where_there_is_no_exif_chunk(host_build, tmp_path):
    """PIL reads ImageMagick's "Raw profile type exif" text where a PNG has no eXIf chunk; hex it cannot read makes
    it raise, and then dcrt.images ignores the block (and so does the host, XMP included)."""
    cases = {  # file -> turned
        save(tmp_path / "raw.png", None, raw_profile=raw_profile(orientation_block(6, ">"))): True,
        save(tmp_path / "raw-and-exif.png", orientation_block(1, "<"), raw_profile=raw_profile(SHORT6_BLOCK)): False,
        save(tmp_path / "bad-hex.png", None, xmp_packet('tiff:Orientation="6"'), raw_profile="\nexif\n 8\n4x"): False,
        save(tmp_path / "no-hex.png", None, xmp_packet('tiff:Orientation="6"'), raw_profile="\nexif\n"): True,
    }
    plain = load_image(save(tmp_path / "plain.png", None), *TARGET).numpy()
    refs = assert_host_matches_python(host_build, list(cases), tmp_path)
    assert [not np.array_equal(ref, plain) for ref in refs] == list(cases.values())


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
    paths = [save(tmp_path / f"{name.replace(' ', '-')}.{fmt}", block) for name, block in MALFORMED.items()]
    assert_host_matches_python(host_build, paths, tmp_path)


def test_python_ignores_a_malformed_png_exif_with_a_notice(tmp_path):
    """PIL raises on a PNG eXIf without a TIFF header (a JPEG's it ignores): dcrt.images says so in one notice and
    reads the picture unturned, as the host does, instead of a traceback."""
    from PIL import Image

    path = save(tmp_path / "bad.png", b"not a TIFF header")
    with pytest.warns(UserWarning, match="malformed EXIF block: it is ignored"):
        pixels = load_image(path, 45, 70)
    plain = load_image(Image.fromarray(picture(), "RGB"), 45, 70)
    np.testing.assert_array_equal(pixels.numpy(), plain.numpy())
