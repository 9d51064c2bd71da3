"""dcrt.images and the prompts' text: every guess an input forces is said in one notice, never made silently."""

import warnings

import numpy as np
import pytest
from PIL import Image

from dcrt.batch import read_prompt_lines, readable_prompt
from dcrt.images import TRANSPARENT_BACKGROUND, load_image, open_image


def _notices(action):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = action()
    return result, [str(w.message) for w in caught]


def test_transparent_pixels_are_composited_on_white_with_a_notice(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200  # red under every pixel, transparent or not
    rgba[:4, :, 3] = 255  # the top half opaque
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image, notices = _notices(lambda: open_image(tmp_path / "a.png"))
    pixels = np.asarray(image)
    assert (pixels[:4] == (200, 0, 0)).all() and (pixels[4:] == TRANSPARENT_BACKGROUND).all()
    assert len(notices) == 1 and "transparent pixels" in notices[0] and "white" in notices[0]


def test_an_opaque_alpha_channel_is_dropped_silently_as_the_original_does(tmp_path):
    rgba = np.full((8, 8, 4), 255, np.uint8)
    rgba[..., :3] = np.random.default_rng(0).integers(0, 256, (8, 8, 3))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image, notices = _notices(lambda: open_image(tmp_path / "a.png"))
    assert notices == [] and (np.asarray(image) == rgba[..., :3]).all()


def test_an_animated_image_uses_its_first_frame_with_a_notice(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(250, 0, 0), (0, 250, 0), (0, 0, 250)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    image, notices = _notices(lambda: open_image(tmp_path / "a.gif"))
    assert np.asarray(image)[0, 0].argmax() == 0  # red: the first frame
    assert len(notices) == 1 and "3 frames: the first is used" in notices[0]


@pytest.mark.parametrize("size, noticed", [((1, 1), True), ((32, 48), True), ((33, 50), False), ((64, 64), False)])
def test_a_large_enlargement_is_noticed(size, noticed):
    image = Image.new("RGB", size, (10, 20, 30))
    tensor, notices = _notices(lambda: load_image(image, 64, 64))
    assert tuple(tensor.shape) == (1, 3, 64, 64)
    assert bool(notices) == noticed and all("enlarged" in n and "64x64" in n for n in notices)


def test_a_command_line_prompt_that_is_not_utf8_is_read_with_replacements_and_a_notice():
    argv_prompt = b"a \xff cat".decode("utf-8", errors="surrogateescape")  # how Python hands over such bytes
    prompt, notices = _notices(lambda: readable_prompt(argv_prompt))
    assert prompt == "a \ufffd cat" and len(notices) == 1 and "not UTF-8" in notices[0]
    assert _notices(lambda: readable_prompt("a café, 🐈"))[1] == []


def test_a_prompt_file_that_is_not_utf8_is_noticed_with_its_line(tmp_path):
    (tmp_path / "p.txt").write_bytes(b"a boat\na \xff cat\n")
    lines, notices = _notices(lambda: read_prompt_lines(tmp_path / "p.txt", 2, "clip"))
    assert lines == ["a boat", "a \ufffd cat"] and len(notices) == 1 and "line 2" in notices[0]
