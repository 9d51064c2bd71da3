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
    for name in ("torch (cpu)", "onnxruntime (cpu)", "tensorrt", "aoti (cpu)", "aoti (cuda)", "versions:"):
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


def test_longer_videos_stream_to_the_writer(picture, tmp_path, run_cli):
    import imageio_ffmpeg

    target = tmp_path / "long.mp4"
    assert run_cli(["animate", str(picture), "a cat", *TINY, "--frames", "24", "-o", str(target)])[0] == 0
    reader = imageio_ffmpeg.read_frames(str(target))
    next(reader)
    assert sum(1 for _ in reader) == 24
    prompts = tmp_path / "clips.txt"
    prompts.write_text("a dog\n\na bird\n")
    code, _, err = run_cli(
        ["animate", str(picture), "a cat", *TINY, "--extend-prompts", str(prompts), "-o", str(tmp_path / "e.gif")]
    )
    assert code == 0, err
    with Image.open(tmp_path / "e.gif") as gif:
        assert gif.n_frames == 16 + 15 + 15


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
    out_dir = tmp_path / "outs" / "new"  # created by the run
    code, out, err = run_cli(["batch", str(folder), "--out-dir", str(out_dir), *TINY, "--format", "gif"])
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_animate.gif", "b_animate.gif"]


def test_same_seed_gives_identical_files(picture, tmp_path, run_cli):
    for name in ("a", "b"):
        run_cli(["animate", str(picture), "x", *TINY, "--seed", "5", "--format", "png", "-o", str(tmp_path / name)])
    for frame in (tmp_path / "a").iterdir():
        assert frame.read_bytes() == (tmp_path / "b" / frame.name).read_bytes()


def _bomb(path):
    """A 70-byte png whose header claims 20000 x 20000 pixels: over PIL's decompression-bomb limit."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("1", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", 20000, 20000)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the chunk's CRC over type + data
    path.write_bytes(data)
    return path


def _unwritable_folder(tmp_path):
    """A folder no new file can be made in: a read-only one for a user; as root (who writes anywhere a permission
    bit forbids) sysfs, which refuses new files to everyone."""
    import os
    import tempfile
    from pathlib import Path

    folder = Path("/sys/kernel")
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
    with pytest.raises(OSError):
        tempfile.mkstemp(dir=folder)
    return folder


def _bad_inputs(tmp_path, picture):
    """(arguments, the one line's message, whether it must be refused before torch is imported)."""
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG garbage")
    deep = tmp_path / "deep.png"
    Image.new("I;16", (64, 64)).save(deep)
    tiny_ckpt = dcrt.save_checkpoint(dcrt.random_model("tiny", seed=1), tmp_path / "tiny.ckpt")
    (tmp_path / "a_file").write_text("x")
    empty_ckpt = tmp_path / "empty.ckpt"
    empty_ckpt.write_bytes(b"")
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.png").write_bytes(picture.read_bytes())
    (tmp_path / "folder" / "prompts.txt").write_text("a prompt\n")
    out = str(tmp_path / "out.mp4")
    p = str(picture)
    locked = _unwritable_folder(tmp_path)
    random = ["--res", "tiny", "--random-weights"]
    early = [
        (["animate", str(tmp_path / "missing.png"), "x", *TINY, "-o", out], "does not exist"),
        (["animate", str(junk), "x", *TINY, "-o", out], "not an image"),
        (["animate", str(deep), "x", *TINY, "-o", out], "unsupported mode 'I;16'"),
        (["animate", str(tmp_path), "x", *TINY, "-o", out], "is a directory"),
        (["animate", str(_bomb(tmp_path / "bomb.png")), "x", *TINY, "-o", out], "too large to decode safely"),
        (["animate", p, "x", "--res", "2048", "-o", out], "unknown preset '2048'"),
        (["animate", p, "x", *TINY, "--steps", "0", "-o", out], "steps must be at least 1"),
        (["animate", p, "x", *TINY, "--guidance-scale", "-1", "-o", out], "guidance scale"),
        (["animate", p, "x", *TINY, "--guidance-scale", "nan", "-o", out], "guidance scale must be a finite number"),
        (["animate", p, "x", *TINY, "--eta", "inf", "-o", out], "eta must be a finite number"),
        (["animate", p, "x", *TINY, "--frame-stride", "999", "-o", out], "out of range"),
        (
            ["animate", p, "x", "--res", "tiny", "--timestep-spacing", "uniform", "--steps", "3", "-o", out],
            "visit t = 1000",
        ),
        (["animate", p, "x", *TINY, "--seed", str(2**64), "-o", out], "seed must be an integer from 0 to 2**64 - 1"),
        (["animate", p, "x", *TINY, "--seed", "-1", "-o", out], "seed must be an integer from 0"),
        (["animate", p, "x", *TINY, "--frames", "20", "-o", out], "20 frames cannot be covered exactly"),
        (["animate", p, "x", *TINY, "--frames", "8", "-o", out], "frames must be at least that"),
        (["loop", p, "x", *TINY, "--frames", "36", "-o", out], "a loop needs a multiple of 8"),
        (["animate", p, "x", *TINY, "--extend", "-1", "-o", out], "extend must be a number of clips"),
        (["animate", p, "x", *TINY, "--extend", "2", "--extend-prompts", p, "-o", out], "per further clip (--extend)"),
        (["animate", p, "x", *TINY, "--fps", "0", "-o", str(tmp_path / "out.gif")], "fps must be from 1 to 100"),
        (["animate", p, "x", *TINY, "--fps", "0", "-o", str(tmp_path / "out.webp")], "fps must be from 1 to 1000"),
        (["animate", p, "x", *TINY, "--fps", "0", "-o", out], "fps must be at least 1 for mp4"),
        (["animate", p, "x", *TINY, "--quality", "99", "-o", out], "quality must be from 0 to 51"),
        (["animate", p, "x", *TINY, "--format", "gif", "-o", out], "gif does not match the file name out.mp4"),
        (["animate", p, "x", *TINY, "--format", "mp4", "-o", str(tmp_path / "a_dir")], "is a directory"),
        (["animate", p, "x", *TINY, "-o", str(tmp_path / "nope" / "out.mp4")], "does not exist"),
        (["animate", p, "x", *TINY, "--format", "avi", "-o", out], "unsupported output format"),
        (["animate", p, "x", *TINY, "--steps", "many", "-o", out], "--steps"),
        (["animate", p, "x", "--res", "512", "--ckpt", str(tmp_path / "none.ckpt"), "-o", out], "does not exist"),
        (["animate", p, "x", *TINY, "--ckpt", str(empty_ckpt), "-o", out], "is an empty file (0 bytes)"),
        (["animate", p, "x", *TINY, "--ckpt", str(tiny_ckpt), "--random-weights", "-o", out], "exclude each other"),
        (["loop", p, "x", "--res", "512", "--random-weights", "-o", out], "cannot loop"),
        (["animate", p, "x", *TINY, "--device", "tpu", "-o", out], "unknown device"),
        (["animate", p, "x", *TINY, "--dtype", "fp8", "-o", out], "unknown dtype"),
        (["animate", p, "x", *TINY, "--backend", "tensorrt", "-o", out], "unknown backend"),
        (["animate", p, "x", *TINY, "--memory", "bogus", "-o", out], "unknown memory profile 'bogus'"),
        (["animate", p, "x", *TINY, "--memory", "low", "--backend", "ort", "-o", out], "only by the torch backend"),
        (["loop", p, "x", *TINY, "--memory", "balanced", "--backend", "trt", "-o", out], "only by the torch backend"),
        (["animate", p, "x", *TINY, "--weights", "fp4", "-o", out], "unknown --weights 'fp4'"),
        (["animate", p, "x", *TINY, "--weights", "fp8", "--backend", "aoti", "-o", out], "only by the torch backend"),
        (["batch", str(tmp_path / "nodir"), "--out-dir", str(tmp_path), *TINY], "not a directory"),
        (["batch", str(tmp_path / "folder"), "--out-dir", str(tmp_path / "a_file" / "v"), *TINY], "cannot be created"),
        # Every output location is proven writable before a model loads, not found unwritable after sampling.
        (["animate", p, "x", *TINY, "-o", str(locked / "out.mp4")], "is not writable"),
        (["animate", p, "x", *TINY, "--format", "png", "-o", str(locked / "frames")], "frames folder"),
        (["batch", str(tmp_path / "folder"), "--out-dir", str(locked / "v"), *TINY], "--out-dir"),
        (["export", *random, "-o", str(locked / "export")], "export folder"),
        (["build", *random, "--engine", "aoti", "--out", str(locked / "engines")], "engines folder"),
        (["bench", *random, "-o", str(locked / "bench")], "report folder"),
        (["tokenize", "a boat", "-o", str(locked / "tokens.npy")], "is not writable"),
        (["noise", "-o", str(locked / "noise.npy")], "is not writable"),
        (["serve", *random, "--write-repo", str(locked / "repo")], "repository folder"),
    ]
    late = [
        (
            ["animate", p, "x", "--res", "tiny-256", "--ckpt", str(tiny_ckpt), "-o", out],
            "does not match preset 'tiny-256'",
        ),
    ]
    return [(*case, True) for case in early] + [(*case, False) for case in late]


def test_bad_input_is_one_line_exit_2_and_no_file(picture, tmp_path, run_cli):
    for args, message, _ in _bad_inputs(tmp_path, picture):
        code, out, err = run_cli(args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (args, err)
        assert len(lines) == 1 and lines[0].startswith("dcrt: error:") and message in lines[0], (args, err)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(("out.", ".out."))]


# Runs the command line on each argument list in one fresh interpreter; reports whether torch was imported.
_WITHOUT_TORCH = """
import contextlib, io, json, sys
from dcrt import cli
results = []
for args in json.loads(sys.argv[1]):
    sys.argv, out, err, code = ["dcrt", *args], io.StringIO(), io.StringIO(), None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
"""


def _run_without_torch(cases: list[list[str]]) -> tuple[list, bool]:
    import json

    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, json.dumps(cases)], capture_output=True, text=True, check=True
    )
    report = json.loads(proc.stdout)
    return report["results"], report["torch"]


def test_help_and_bad_options_answer_before_torch_is_imported(picture, tmp_path):
    cases = [case for case in _bad_inputs(tmp_path, picture) if case[2]]
    help_cases = [["--help"], ["-h"], ["--version"], ["animate", "--help"], ["batch", "-h"], ["animate"]]
    results, torch_imported = _run_without_torch(help_cases + [args for args, _, _ in cases])
    assert not torch_imported
    codes = [code for code, _, _ in results]
    assert codes[: len(help_cases)] == [0, 0, 0, 0, 0, 2]
    for (args, message, _), (code, _, err) in zip(cases, results[len(help_cases) :]):
        assert code == 2 and message in err, (args, err)


def test_help_groups_options_and_names_the_defaults(run_cli):
    code, out, _ = run_cli(["animate", "-h"])
    assert code == 0
    assert "Usage: dcrt animate IMAGE [PROMPT] [OPTIONS]" in out
    sections = ["Arguments:", "Model options:", "Sampling options:", "Output options:", "Backend options:"]
    positions = [out.index(section) for section in sections]
    assert positions == sorted(positions)
    # each option under its own heading
    for option, section in [("--ckpt", 1), ("--seed", 2), ("--fps", 3), ("--backend", 4)]:
        at = out.index(f"  {option} ")
        assert positions[section] < at and (section + 1 == len(positions) or at < positions[section + 1]), option
    # the default output name, written down (flattened: a wider option column, e.g. --audio-library, wraps it)
    assert "<image's name>_<command>.<format>" in " ".join(out.split())
    code, out, _ = run_cli(["batch", "--help"])
    assert code == 0 and "Usage: dcrt batch DIRECTORY [OPTIONS]" in out and "--out " not in out
    assert "created if missing" in out
    code, out, _ = run_cli(["--version"])
    assert code == 0 and out.strip() == f"dcrt {dcrt.__version__}"


def test_help_reads_each_default_from_the_preset_table(run_cli):
    from dcrt.presets import PRESETS

    code, out, _ = run_cli(["animate", "-h"])
    flat = " ".join(out.split())
    assert code == 0
    p256, p1024 = PRESETS["256"].sampling, PRESETS["1024"].sampling
    assert f"{p256.frame_stride} for 256, tiny-256" in flat and f"{p1024.frame_stride} for 1024" in flat
    assert "animate 123, interpolate 12306, loop 234" in flat
    assert "(default: 512; interpolate: 512-interp, loop: 512-interp)" in flat


def test_bench_names_tensorrt_and_says_why_it_cannot_run_here(run_cli, tmp_path):
    code, _, err = run_cli(["bench", "--backends", "trt", "--steps", "1", "--repeat", "1", "-o", str(tmp_path)])
    assert code != 0 and len(err.strip().splitlines()) == 1 and "TensorRT" in err, err


def test_default_output_names_never_replace_a_file_and_out_does(picture, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = ["animate", str(picture), "x", *TINY, "--steps", "1", "--format", "gif"]
    code, out, err = run_cli(first)
    assert code == 0, err
    assert out.strip() == "in_animate.gif" and (tmp_path / "in_animate.gif").is_file()
    earlier = (tmp_path / "in_animate.gif").read_bytes()
    assert run_cli([*first, "--seed", "9"])[1].strip() == "in_animate-2.gif"  # a default name: a new file
    assert (tmp_path / "in_animate.gif").read_bytes() == earlier
    assert run_cli([*first, "--seed", "9", "-o", "in_animate.gif"])[1].strip() == "in_animate.gif"  # -o: replaced
    assert (tmp_path / "in_animate.gif").read_bytes() == (tmp_path / "in_animate-2.gif").read_bytes() != earlier


def test_batch_gives_two_images_of_one_name_two_videos(picture, tmp_path, run_cli):
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.open(picture).save(folder / "a.png")
    Image.open(picture).save(folder / "a.jpg")
    (folder / "prompts.txt").write_text("a boat\na cat\n")
    code, out, err = run_cli(["batch", str(folder), "--out-dir", str(tmp_path / "v"), *TINY, "--steps", "1"])
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["a_animate-2.mp4", "a_animate.mp4"]


def test_interrupt_while_writing_is_one_line_and_leaves_no_file(picture, tmp_path, run_cli, monkeypatch):
    from dcrt import video

    def interrupted(frames, path, *args):
        with open(path, "wb") as f:
            f.write(b"half a video")
        raise KeyboardInterrupt

    monkeypatch.setattr(video, "_write_animated", interrupted)
    code, out, err = run_cli(["animate", str(picture), "x", *TINY, "-o", str(tmp_path / "o.gif")])
    messages = [line for line in err.splitlines() if line.startswith("dcrt:")]  # not the progress bar's
    assert code == 130 and messages[-1] == "dcrt: interrupted" and "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("o.", ".o."))]


# Ctrl-C while the command line starts: KeyboardInterrupt raised by the import of a module it needs, as a
# real Ctrl-C would be (typer: while dcrt.cli itself loads; torch: the slowest moment, inside a command).
_INTERRUPT_AT_IMPORT = """
import builtins, sys
real_import = builtins.__import__
module = sys.argv.pop(1)

def interrupting_import(name, *args, **kwargs):
    if name == module or name.startswith(module + "."):
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)

builtins.__import__ = interrupting_import
sys.argv[0] = "dcrt"
from dcrt.__main__ import main
main()
"""


@pytest.mark.parametrize("module", ["typer", "torch"])
def test_interrupt_during_start_up_is_one_line(picture, tmp_path, module):
    target = tmp_path / "o.mp4"
    args = [module, "animate", str(picture), "x", *TINY, "-o", str(target)]
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT_AT_IMPORT, *args], capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (130, "dcrt: interrupted\n")
    assert not target.exists()


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


def test_fetch_svd_asks_for_the_original_single_file(run_cli, monkeypatch):
    import huggingface_hub

    asked = []

    def offline(**kwargs):
        asked.append(kwargs)
        raise OSError("401 Client Error: gated repository.\nAccept the license first.")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    code, _, err = run_cli(["fetch", "--res", "svd-xt"])
    assert asked == [{"repo_id": "stabilityai/stable-video-diffusion-img2vid-xt", "filename": "svd_xt.safetensors"}]
    assert code == 1 and err.strip() == (
        "dcrt: error: cannot download stabilityai/stable-video-diffusion-img2vid-xt/svd_xt.safetensors: "
        "401 Client Error: gated repository."
    )


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


def test_dtype_names_are_the_weight_dtypes():
    from dcrt.families.state_dicts import WEIGHT_DTYPES
    from dcrt.loading import WEIGHT_DTYPES as NAMES

    assert NAMES == tuple(WEIGHT_DTYPES)  # the torch-free names checked before loading


def test_readme_lists_every_exit_code():
    import re

    from conftest import REPO

    from dcrt import errors

    def codes(cls):
        return {cls.exit_code} | {code for sub in cls.__subclasses__() for code in codes(sub)}

    listed = {int(code) for code in re.findall(r"^\| (\d+) \|", (REPO / "README.md").read_text(), re.M)}
    assert listed == {0, errors.INTERRUPTED_EXIT_CODE} | codes(errors.DcrtError)


def test_cfg_is_guidance_scale_and_res_help_lists_every_preset(picture, tmp_path, run_cli):
    from dcrt.presets import PRESETS

    code, out, _ = run_cli(["animate", "-h"])
    flat = " ".join(out.split())
    assert code == 0 and "--guidance-scale, --cfg" in flat
    res_help = flat[flat.index("--res <str>") :]
    assert all(name in res_help.replace("- ", "-") for name in PRESETS)
    for flag, name in (("--cfg", "a.mp4"), ("--guidance-scale", "b.mp4")):
        assert (
            run_cli(["animate", str(picture), "x", *TINY, "--seed", "3", flag, "2.5", "-o", str(tmp_path / name)])[0]
            == 0
        )
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_the_denoising_bar_draws_its_end_once_per_clip(capsys):
    from dcrt.cli.progress import progress

    with progress() as on_step:
        for _clip in range(2):  # two clips: --extend 1
            for step in range(1, 4):
                on_step(step, 3)
        err = capsys.readouterr().err
    assert err.count("100%") == 2 and err.count("3/3") == 2, err
