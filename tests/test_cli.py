"""The command line end to end on the tiny preset, and every bad-input case: one line, exit 2, no output."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import dcrt


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(1).random((60, 90, 3)) * 255).astype(np.uint8)).save(path)
    return path


TINY = ["--res", "tiny", "--steps", "2"]


def test_help_and_no_arguments(run_cli):
    code, out, _ = run_cli([])
    assert code == 0 and "animate" in out and "info" in out


def test_info_reports_backends_plainly(run_cli):
    code, out, _ = run_cli(["info"])
    assert code == 0
    for name in ("torch (cpu)", "onnxruntime (cpu)", "tensorrt", "versions:"):
        assert name in out
    import torch

    if not torch.cuda.is_available():
        assert "no GPU" in out


@pytest.mark.parametrize("fmt", ["mp4", "gif", "webp", "png"])
def test_animate_writes_each_format(picture, tmp_path, run_cli, fmt):
    target = tmp_path / ("frames" if fmt == "png" else f"out.{fmt}")
    code, out, err = run_cli(["animate", str(picture), "a cat", *TINY, "--out", str(target), "--format", fmt])
    assert code == 0, err
    assert out.strip() == str(target)
    if fmt == "png":
        assert len(list(target.glob("*.png"))) == 16
    else:
        assert target.stat().st_size > 1000
    assert "denoising" in err and "2/2" in err  # the progress bar
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_mp4_is_h264_at_8_fps(picture, tmp_path, run_cli):
    import imageio_ffmpeg

    target = tmp_path / "v.mp4"
    assert run_cli(["animate", str(picture), "a cat", *TINY, "-o", str(target)])[0] == 0
    reader = imageio_ffmpeg.read_frames(str(target))
    meta = next(reader)
    assert meta["codec"] == "h264" and meta["fps"] == 8 and meta["size"] == (64, 64)
    assert sum(1 for _ in reader) == 16


def test_interpolate_loop_and_batch(picture, tmp_path, run_cli):
    assert run_cli(["interpolate", str(picture), str(picture), "x", *TINY, "-o", str(tmp_path / "i.gif")])[0] == 0
    assert run_cli(["loop", str(picture), "x", *TINY, "-o", str(tmp_path / "l.gif")])[0] == 0
    with Image.open(tmp_path / "l.gif") as gif:
        assert gif.n_frames == 15
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("b.png", "a.png"):
        (folder / name).write_bytes(picture.read_bytes())
    (folder / "prompts.txt").write_text("first\n\nsecond\n")
    out_dir = tmp_path / "outs"
    out_dir.mkdir()
    code, out, err = run_cli(["batch", str(folder), "--out-dir", str(out_dir), *TINY, "--format", "gif"])
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_animate.gif", "b_animate.gif"]


def test_same_seed_gives_identical_files(picture, tmp_path, run_cli):
    for name in ("a", "b"):
        run_cli(["animate", str(picture), "x", *TINY, "--seed", "5", "--format", "png", "-o", str(tmp_path / name)])
    for frame in (tmp_path / "a").iterdir():
        assert frame.read_bytes() == (tmp_path / "b" / frame.name).read_bytes()


def _bad_inputs(tmp_path, picture):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG garbage")
    deep = tmp_path / "deep.png"
    Image.new("I;16", (64, 64)).save(deep)
    tiny_ckpt = dcrt.save_checkpoint(dcrt.random_model("tiny", seed=1), tmp_path / "tiny.ckpt")
    out = str(tmp_path / "out.mp4")
    p = str(picture)
    return [
        (["animate", str(tmp_path / "missing.png"), "x", *TINY, "-o", out], "does not exist"),
        (["animate", str(junk), "x", *TINY, "-o", out], "not an image"),
        (["animate", str(deep), "x", *TINY, "-o", out], "unsupported mode 'I;16'"),
        (["animate", str(tmp_path), "x", *TINY, "-o", out], "is a directory"),
        (["animate", p, "x", "--res", "2048", "-o", out], "unknown preset '2048'"),
        (
            ["animate", p, "x", "--res", "tiny-256", "--ckpt", str(tiny_ckpt), "-o", out],
            "does not match preset 'tiny-256'",
        ),
        (["animate", p, "x", *TINY, "--steps", "0", "-o", out], "steps must be at least 1"),
        (["animate", p, "x", *TINY, "--cfg", "-1", "-o", out], "guidance scale"),
        (["animate", p, "x", *TINY, "--fs", "999", "-o", out], "out of range"),
        (["animate", p, "x", *TINY, "-o", str(tmp_path / "nope" / "out.mp4")], "does not exist"),
        (["animate", p, "x", *TINY, "--format", "avi", "-o", out], "unsupported output format"),
        (["animate", p, "x", *TINY, "--steps", "many", "-o", out], "--steps"),
        (["animate", p, "x", "--res", "512", "--ckpt", str(tmp_path / "none.ckpt"), "-o", out], "does not exist"),
        (["loop", p, "x", "--res", "512", "--random-weights", "-o", out], "cannot loop"),
        (["animate", p, "x", *TINY, "--device", "tpu", "-o", out], "unknown device"),
        (["batch", str(tmp_path / "nodir"), "--out-dir", str(tmp_path), *TINY], "not a directory"),
    ]


def test_bad_input_is_one_line_exit_2_and_no_file(picture, tmp_path, run_cli):
    for args, message in _bad_inputs(tmp_path, picture):
        code, out, err = run_cli(args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (args, err)
        assert len(lines) == 1 and lines[0].startswith("dcrt: error:") and message in lines[0], (args, err)
        assert not (tmp_path / "out.mp4").exists()


def test_long_prompt_warns_and_runs(picture, tmp_path, run_cli):
    code, _, err = run_cli(["animate", str(picture), "word " * 100, *TINY, "-o", str(tmp_path / "o.gif")])
    assert code == 0 and "dcrt: warning: prompt is longer than 77 CLIP tokens" in err


def test_fetch_without_network_is_one_line(run_cli, monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your connection.")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    code, _, err = run_cli(["fetch", "--res", "256"])
    assert code == 1 and err.startswith("dcrt: error: cannot download Doubiiu/DynamiCrafter/model.ckpt")
    assert len(err.strip().splitlines()) == 1


def test_checkpoint_found_in_checkpoint_dir(tmp_path, monkeypatch):
    from dcrt.hub import find_checkpoint

    target = tmp_path / "dynamicrafter_512_v1" / "model.ckpt"
    target.parent.mkdir()
    target.write_bytes(b"x")
    monkeypatch.setenv("DCRT_CHECKPOINT_DIR", str(tmp_path))
    assert find_checkpoint(dcrt.get_preset("512")) == target
    monkeypatch.setenv("DCRT_CHECKPOINT_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    from dcrt.errors import UsageError

    with pytest.raises(UsageError, match="dcrt fetch --res 512"):
        find_checkpoint(dcrt.get_preset("512"))


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "dcrt", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "animate" in proc.stdout
