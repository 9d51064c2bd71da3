"""`dcrt animate` with an SVD preset end to end on tiny-svd, and its bad inputs: one line, exit 2, no file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

TINY_SVD = ["--res", "tiny-svd", "--steps", "2"]


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(1).random((60, 90, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_animate_writes_a_playable_mp4_of_the_presets_frames(picture, tmp_path, run_cli, frame_count):
    import imageio_ffmpeg

    target = tmp_path / "out.mp4"
    code, out, err = run_cli(["animate", str(picture), *TINY_SVD, "--motion-bucket", "60", "-o", str(target)])
    assert code == 0, err
    assert out.strip() == str(target) and "2/2" in err
    meta = next(imageio_ffmpeg.read_frames(str(target)))
    assert meta["codec"] == "h264" and meta["size"] == (64, 64)
    assert meta["fps"] == 7  # the preset's fps: the rate SVD was conditioned on
    assert frame_count(str(target)) == 6


def test_fps_conditions_and_sets_the_frame_rate(picture, tmp_path, run_cli):
    import imageio_ffmpeg

    paths = [tmp_path / f"{fps}.mp4" for fps in (7, 12)]
    for path in paths:
        assert run_cli(["animate", str(picture), *TINY_SVD, "--fps", path.stem, "-o", str(path)])[0] == 0
    frames = [np.stack([f for f in list(imageio_ffmpeg.read_frames(str(p)))[1:]]) for p in paths]
    assert next(imageio_ffmpeg.read_frames(str(paths[1])))["fps"] == 12
    assert not np.array_equal(frames[0], frames[1])  # fps - 1 reached the UNet


def test_the_onnxruntime_backend_runs_an_export(picture, tmp_path, run_cli, svd_exported):
    _, export_dir, _ = svd_exported
    target = tmp_path / "ort.mp4"
    args = ["animate", str(picture), *TINY_SVD, "--backend", "ort", "--export-dir", str(export_dir), "-o", str(target)]
    code, _, err = run_cli(args)
    assert code == 0 and f"using ort on cpu with {export_dir}" in err and target.stat().st_size > 1000
    code, _, err = run_cli([*args[:-2], "--decode-chunk", "3", "-o", str(tmp_path / "out.mp4")])
    assert code == 2 and "decodes 4 frames per call (its graphs' shape): use --decode-chunk 4" in err


def test_a_prompt_is_ignored_with_one_line(picture, tmp_path, run_cli):
    code, _, err = run_cli(["animate", str(picture), "a cat", *TINY_SVD, "-o", str(tmp_path / "v.gif")])
    assert code == 0
    assert "dcrt: warning: SVD has no text conditioning; the prompt is ignored" in err


def _bad_inputs(tmp_path, picture):
    out = str(tmp_path / "out.mp4")
    p = str(picture)
    return [
        (["animate", str(tmp_path / "missing.png"), *TINY_SVD, "-o", out], "does not exist"),
        (["animate", p, *TINY_SVD, "--eta", "1", "-o", out], "--eta: DynamiCrafter option(s)"),
        (["animate", p, *TINY_SVD, "--guidance-scale", "3", "-o", out], "--guidance-scale: DynamiCrafter"),
        (["animate", p, *TINY_SVD, "--frames", "12", "-o", out], "--frames: DynamiCrafter"),
        (["animate", p, *TINY_SVD, "--extend", "1", "-o", out], "--extend and --extend-prompts are for"),
        (["animate", p, "x", "--res", "tiny", "--motion-bucket", "9", "-o", out], "--motion-bucket: Stable Video"),
        (["animate", p, "x", "--res", "tiny", "--noise-aug", "0.1", "-o", out], "--noise-aug: Stable Video"),
        (["animate", p, *TINY_SVD, "--motion-bucket", "256", "-o", out], "motion bucket must be from 0 to 255"),
        (["animate", p, *TINY_SVD, "--fps", "0", "-o", out], "fps must be from 1 to 60"),
        (["animate", p, *TINY_SVD, "--noise-aug", "-0.5", "-o", out], "noise aug must be from 0 to 1"),
        (["animate", p, *TINY_SVD, "--noise-aug", "nan", "-o", out], "noise aug must be from 0 to 1"),
        (["animate", p, *TINY_SVD, "--min-guidance-scale", "-1", "-o", out], "min guidance scale must be >= 0"),
        (["animate", p, *TINY_SVD, "--max-guidance-scale", "inf", "-o", out], "max guidance scale must be >= 0"),
        (["animate", p, *TINY_SVD, "--decode-chunk", "0", "-o", out], "decode chunk must be from 1 to 6"),
        (["animate", p, "--res", "tiny-svd", "--steps", "0", "-o", out], "steps must be from 1 to 1000"),
        (["animate", p, *TINY_SVD, "--seed", "-1", "-o", out], "seed must be an integer"),
        (["interpolate", p, p, "x", "--res", "tiny-svd", "-o", out], "cannot interpolate"),
        (
            ["batch", str(tmp_path), "--out-dir", str(tmp_path / "v"), "--res", "tiny-svd"],
            "tiny-svd does not support batch",
        ),
        (["serve", "--res", "tiny-svd"], "tiny-svd does not support serve"),
        (["ui", "--res", "tiny-svd"], "tiny-svd does not support the demo page"),
        (["animate", p, *TINY_SVD, "--ckpt", str(tmp_path / "none.safetensors"), "-o", out], "does not exist"),
    ]


def test_bad_input_is_one_line_exit_2_and_no_file(picture, tmp_path, run_cli):
    for args, message in _bad_inputs(tmp_path, picture):
        code, _, err = run_cli(args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (args, err)
        assert len(lines) == 1 and lines[0].startswith("dcrt: error:") and message in lines[0], (args, err)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(("out.", ".out."))]


def test_help_shows_svd_options_with_each_presets_default(run_cli):
    code, out, _ = run_cli(["animate", "--help"])
    assert code == 0
    flat = " ".join(out.split()).replace("- ", "-")  # words the help wraps at a hyphen
    for text in ("--motion-bucket", "--noise-aug", "--min-guidance-scale", "--max-guidance-scale", "--decode-chunk"):
        assert text in flat
    assert "14 for svd-xt, svd-xt-image-decoder; 4 for tiny-svd" in flat
    assert "25 for svd-xt, svd-xt-image-decoder, tiny-svd" in flat  # --steps


def test_bad_input_is_refused_before_torch_is_imported(picture, tmp_path):
    from tests.cli.test_cli import _run_without_torch

    cases = [args for args, _ in _bad_inputs(tmp_path, picture)]
    results, torch_imported = _run_without_torch(cases)
    assert not torch_imported
    for (args, message), (code, _, err) in zip(_bad_inputs(tmp_path, picture), results):
        assert code == 2 and message in err, (args, err)
