"""`dcrt score` on synthetic videos written as the generating commands write them: the table, --json, the CLIP
metrics with the tiny preset's CLIP, and bad inputs answered in one line before any model loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _videos import moving_square

from dcrt.video import write_video


@pytest.fixture
def square_mp4(tmp_path):
    """An H.264 mp4 of a textured square moving 4 px per frame (shorter side 256: the analysis size)."""
    return write_video(moving_square((4, 0), frames=16), tmp_path / "square.mp4")


@pytest.fixture
def no_clip_loads(monkeypatch):
    """Fail the test if the CLIP is asked for."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("dcrt.director.score.open_embedder", refuse)


def test_the_table_reports_the_planted_motion_and_why_clip_metrics_are_missing(run_cli, square_mp4, no_clip_loads):
    code, out, err = run_cli(["score", str(square_mp4)])
    assert (code, err) == (0, "")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert float(rows["motion"][0]) == pytest.approx(4.0, rel=0.1)
    assert rows["black_frames"][0] == "0" and rows["frozen_frames"][0] == "0"
    assert " ".join(rows["consistency"]).startswith("- missing: needs a checkpoint's CLIP")


def test_json_with_the_tiny_preset_has_every_metric(run_cli, square_mp4, tmp_path):
    from PIL import Image

    first = tmp_path / "first.png"
    Image.fromarray(moving_square((4, 0))[0]).save(first)
    code, out, err = run_cli(
        ["score", str(square_mp4), "--image", str(first), "--prompt", "a box", "--res", "tiny", "--json"]
    )
    assert code == 0, err
    scores = json.loads(out)
    assert scores["motion"] == pytest.approx(4.0, rel=0.1)
    assert scores["missing"] == {}
    assert -1 <= scores["consistency"] <= 1 and -1 <= scores["image_similarity"] <= 1
    assert 0 <= scores["prompt_score"] <= 2.5
    assert scores["image_psnr"] > 20  # the first frame is the image, through H.264's 4:2:0 chroma


def bad_inputs(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    empty = tmp_path / "empty"
    empty.mkdir()
    return {
        "missing": ([str(tmp_path / "nothing.mp4")], "video {tmp}/nothing.mp4 does not exist"),
        "not a video": ([str(text)], f"{text} is not a video ffmpeg can read"),
        "empty folder": ([str(empty)], f"{empty} holds no video frames"),
    }


@pytest.mark.parametrize("case", ["missing", "not a video", "empty folder"])
def test_bad_videos_are_one_line_and_exit_2_before_any_model(run_cli, tmp_path, case, no_clip_loads):
    args, message = bad_inputs(tmp_path)[case]
    code, out, err = run_cli(["score", *args, "--random-weights"])
    assert code == 2 and out == ""
    assert err.startswith("dcrt: error: " + message.format(tmp=tmp_path)) and err.count("\n") == 1


def test_a_bad_image_or_checkpoint_is_one_line_before_any_model(run_cli, square_mp4, tmp_path, no_clip_loads):
    code, _, err = run_cli(["score", str(square_mp4), "--image", str(tmp_path / "gone.png"), "--random-weights"])
    assert code == 2 and err == f"dcrt: error: image {tmp_path}/gone.png does not exist\n"
    code, _, err = run_cli(["score", str(square_mp4), "--res", "512", "--ckpt", str(tmp_path / "gone.ckpt")])
    assert code == 2 and err.startswith("dcrt: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("fmt", ["gif", "png"])
def test_gif_and_png_folders_are_read_too(run_cli, tmp_path, fmt, no_clip_loads):
    """gif through PIL (lossless palette of a grey-level texture), png frames from the folder `write_video` makes."""
    video = moving_square((3, 0), frames=5)
    video[:] = video.mean(axis=-1, keepdims=True).astype(np.uint8)  # grey: a gif's palette holds every level
    path = write_video(video, tmp_path / ("v.gif" if fmt == "gif" else "frames"), fmt=fmt)
    code, out, err = run_cli(["score", str(path), "--json"])
    assert code == 0, err
    scores = json.loads(out)
    assert scores["frames"] == 5 and scores["motion"] == pytest.approx(3.0, rel=0.1)


def test_help_and_a_bad_video_answer_before_torch_is_imported(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from dcrt import cli\n"
        "codes = []\n"
        "for args in (['score', '--help'], ['score', sys.argv[1], '--random-weights'], ['animate', '-h']):\n"
        "    sys.argv = ['dcrt', *args]\n"
        "    try:\n"
        "        cli.main()\n"
        "    except SystemExit as exc:\n"
        "        codes.append(exc.code)\n"
        "print(codes, 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "gone.mp4")], capture_output=True, text=True, timeout=300
    )
    assert done.stdout.splitlines()[-1] == "[0, 2, 0] False", done.stderr
    assert "dcrt: error: video " in done.stderr and "--until" in done.stdout
