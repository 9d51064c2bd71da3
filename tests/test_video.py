"""Writing frames: the formats, the checks made before any frame is computed, and `VideoResult.save`."""

import numpy as np
import pytest
import torch
from PIL import Image

from dcrt.errors import UsageError
from dcrt.families.common import VideoResult
from dcrt.video import check_video_options, format_for


@pytest.fixture
def result():
    frames = (np.random.default_rng(0).random((16, 64, 64, 3)) * 255).astype(np.uint8)
    return VideoResult(latents=torch.zeros(1, 4, 16, 8, 8), frames=frames)


def test_save_writes_the_format_of_the_name(result, tmp_path):
    assert result.save(tmp_path / "v.gif", fps=4) == tmp_path / "v.gif"
    with Image.open(tmp_path / "v.gif") as gif:
        assert gif.n_frames == 16 and gif.info["duration"] == 250
    result.save(tmp_path / "frames", format="png")
    assert sorted(p.name for p in (tmp_path / "frames").iterdir())[:2] == ["000.png", "001.png"]
    result.save(tmp_path / "v.mp4", quality=30)
    assert (tmp_path / "v.mp4").read_bytes()[4:8] == b"ftyp"  # an MP4 container
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.parametrize(
    "name, fmt, message",
    [
        ("v.mp4", "gif", "output format gif does not match the file name v.mp4: name it v.gif"),
        ("frames.gif", "png", "output format png does not match the file name frames.gif"),
        ("v.avi", None, "unsupported output format 'avi'"),
    ],
)
def test_a_format_that_contradicts_the_name_is_refused(result, tmp_path, name, fmt, message):
    with pytest.raises(UsageError, match=message):
        result.save(tmp_path / name, format=fmt)
    assert not list(tmp_path.iterdir())


def test_png_folders_may_have_dotted_names(tmp_path):
    assert format_for(tmp_path / "run.v2", "png") == "png"
    assert format_for(tmp_path / "v.GIF", None) == "gif"


@pytest.mark.parametrize(
    "fmt, fps, quality, message",
    [
        ("gif", 0, 10, "fps must be from 1 to 100 for gif, got 0"),
        ("gif", 101, 10, "fps must be from 1 to 100 for gif"),
        ("webp", 0, 10, "fps must be from 1 to 1000 for webp"),
        ("mp4", -1, 10, "fps must be at least 1 for mp4"),
        ("mp4", 8, 52, "quality must be from 0 to 51"),
        ("webp", 8, -1, "quality must be from 0 to 51"),
    ],
)
def test_options_the_writers_cannot_honour(fmt, fps, quality, message):
    with pytest.raises(UsageError, match=message):
        check_video_options(fmt, fps, quality)
