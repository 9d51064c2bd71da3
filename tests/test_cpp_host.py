"""The C++ host (cpp_host/): dcrt_host, the command line over the library (include/dcrt/host.h), against the Python
pipeline on the tiny preset's AOTInductor bundle (marker aoti, in the default run): the same prompt string, seed and
an image file of another size give the same frames within one level of 255, with no dcrt command run first. Its
pieces: tests/test_cpp_host_pieces.py; its build and fixtures: tests/cpp_host_support.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cpp_host_support import bundle_with_manifest, cmake_build, read_frames, run_host

from dcrt.backends.aoti_backend import open_aoti
from dcrt.families.dynamicrafter.options import resolve_options
from dcrt.presets import get_preset
from dcrt.video import DEFAULT_FPS


def mp4_fps(path: Path) -> float:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    fps = next(reader)["fps"]  # the metadata
    reader.close()
    return fps


def sampling_flags(sampling: dict) -> list[str]:
    """The Python API's options as dcrt_host's flags (the seed included)."""
    return [arg for name, value in sampling.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


HOST_RUNS = [  # (sampling options as the Python API names them)
    dict(steps=5, seed=123),  # the tiny preset's defaults: guidance 7.5, rescale 0.7, eta 1
    dict(steps=4, seed=7, eta=0.0, image_guidance_scale=2.0, guidance_rescale=0.0, frame_stride=10),
    dict(steps=3, seed=2**64 - 1, guidance_scale=1.0),  # no guidance: the batch-2 graph on duplicated rows
]


@pytest.mark.aoti
@pytest.mark.parametrize("sampling", HOST_RUNS, ids=["defaults", "image-guidance-eta0", "no-guidance"])
def test_host_frames_equal_python_pipeline(host_binary, host_bundle, host_image, tmp_path, sampling):
    """The prompt string, the seed and a 120 x 90 JPEG (the bundle is 64 x 64) -> the C++ host's frames are the
    Python pipeline's (PyTorch reference modules with the bundle's weights, eager on the CPU; and the same packages
    run by Python), within one level of 255. Nothing but the bundle comes from Python."""
    import dcrt

    prompt = "a boat sailing, at dusk!"
    out = tmp_path / "frames"
    flags = sampling_flags(sampling)
    done = run_host(
        host_binary, "--bundle", host_bundle, "--image", host_image, "--prompt", prompt, *flags, "--out", out
    )
    manifest = json.loads((Path(host_bundle) / "manifest.json").read_text())
    defaults = resolve_options(get_preset("tiny"), "animate")
    assert manifest["parameterization"] == "v" and manifest["tokenizer"] == "clip_bpe_vocab.txt"
    recorded = dict(manifest["sampling"])
    assert recorded.pop("fps") == DEFAULT_FPS  # the frame rate `dcrt animate` writes at
    assert recorded == {name: getattr(defaults, name) for name in recorded}
    frames = read_frames(out)
    # The reference modules (eager PyTorch on the CPU, the weights the bundle was compiled from), and the same
    # packages run by Python (--backend aoti): the second leaves only the host's own arithmetic.
    for name, model in (("torch", dcrt.random_model("tiny", seed=0)), ("aoti", open_aoti(host_bundle))):
        ref = dcrt.animate(model, host_image, prompt, **sampling).frames
        diff = np.abs(frames.astype(int) - ref.astype(int))
        print(f"host vs Python {name}: max |diff| {diff.max()} of 255, {np.mean(diff > 0):.2%} of values differ")
        assert frames.shape == ref.shape == (16, 64, 64, 3)
        assert diff.max() <= 1
    print(done.stderr.strip())


@pytest.fixture(scope="session")
def last_image(tmp_path_factory) -> Path:
    """interpolate's last key frame: a 70 x 80 PNG, another size again."""
    from PIL import Image

    y, x = np.mgrid[0:80, 0:70]
    rgb = np.stack([255 - x * 3, y * 3, (x + y) * 1.5], -1).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("host-last-image") / "last.png"
    Image.fromarray(rgb, "RGB").save(path)
    return path


@pytest.mark.aoti
@pytest.mark.parametrize("mode", ["interpolate", "loop"])
def test_host_interpolate_and_loop_equal_python_pipeline(
    host_binary, host_bundle, host_image, last_image, tmp_path, mode
):
    """dcrt interpolate (two key frames at the ends of c_concat) and dcrt loop (one image at both ends, the repeated
    last frame left out) on the same bundle, settings from the manifest's `modes`: the Python pipeline's frames
    within one level."""
    import dcrt

    sampling = dict(steps=3, seed=9)
    images = [host_image, last_image] if mode == "interpolate" else [host_image]
    extra = ["--last-image", last_image] if mode == "interpolate" else []
    args = ["--bundle", host_bundle, "--mode", mode, "--image", host_image, *extra, "--prompt", "a boat"]
    run_host(host_binary, *args, *sampling_flags(sampling), "--out", tmp_path / "frames")
    manifest = json.loads((Path(host_bundle) / "manifest.json").read_text())
    defaults = resolve_options(get_preset("tiny"), mode)
    assert {k: v for k, v in manifest["modes"][mode].items() if k != "fps"} == {
        name: getattr(defaults, name) for name in manifest["sampling"] if name != "fps"
    }
    count = 15 if mode == "loop" else 16
    frames = read_frames(tmp_path / "frames", count)
    assert not (tmp_path / "frames" / f"{count:03d}.png").exists()
    for name, model in (("torch", dcrt.random_model("tiny", seed=0)), ("aoti", open_aoti(host_bundle))):
        ref = getattr(dcrt, mode)(model, *images, "a boat", **sampling).frames
        diff = np.abs(frames.astype(int) - ref.astype(int))
        print(f"{mode}: host vs Python {name}: max |diff| {diff.max()}, {np.mean(diff > 0):.2%} of values differ")
        assert frames.shape == ref.shape == (count, 64, 64, 3)
        assert diff.max() <= 1


@pytest.mark.aoti
def test_host_errors_are_one_line(host_binary, host_bundle, host_image, tmp_path):
    """Bad input: one line on stderr, exit code 2, and no output left behind."""
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out = ["--out", tmp_path / "frames"]
    run = ["--image", host_image, "--seed", 1, "--steps", 2]
    cases = {
        "does not exist": ["--bundle", tmp_path / "nowhere", *run],
        "--bundle is required": ["--image", host_image, "--seed", 1],
        "--seed is required": ["--bundle", host_bundle, "--image", host_image],
        "--seed must be an integer from 0 to 2**64 - 1": ["--bundle", host_bundle, "--image", host_image, "--seed", -1],
        "is not a PNG or JPEG image": ["--bundle", host_bundle, "--image", tmp_path / "notes.txt", "--seed", 1],
        "not a valid PNG file": ["--bundle", host_bundle, "--image", tmp_path / "empty.png", "--seed", 1],
        "--steps takes a whole number": ["--bundle", host_bundle, *run, "--steps", "2.5"],
        "--steps must be >= 1": ["--bundle", host_bundle, *run, "--steps", 0],
        "--mode interpolate needs --last-image": ["--bundle", host_bundle, *run, "--mode", "interpolate"],
        "--mode must be animate, interpolate or loop": ["--bundle", host_bundle, *run, "--mode", "bounce"],
    }
    original = json.loads((Path(host_bundle) / "manifest.json").read_text())
    manifest = original | {"torch_version": "2.0.0+cpu"}  # the same bundle, as if compiled with another torch
    cases["compiled with torch 2.0.0+cpu"] = ["--bundle", bundle_with_manifest(host_bundle, tmp_path / "t", manifest)]
    broken = tmp_path / "broken"  # a manifest without its preset
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({k: v for k, v in original.items() if k != "preset"}))
    cases['not a valid bundle manifest (missing JSON key "preset")'] = ["--bundle", broken]
    manifest = {k: v for k, v in original.items() if k not in ("sampling", "modes")}  # as TensorRT's: no defaults
    cases["records no sampling defaults: pass --timestep-spacing"] = [
        "--bundle", bundle_with_manifest(host_bundle, tmp_path / "no-defaults", manifest), "--steps", 2,
    ]  # fmt: skip
    manifest = {k: v for k, v in original.items() if k != "tokenizer"}  # as a bundle built before the vocabulary
    cases["names no tokenizer vocabulary"] = ["--bundle", bundle_with_manifest(host_bundle, tmp_path / "v", manifest)]
    manifest = original | {"sampling": None}  # as dcrt records a 512-interp bundle: interpolate and loop only
    cases["which has no animate mode"] = ["--bundle", bundle_with_manifest(host_bundle, tmp_path / "interp", manifest)]
    # ToonCrafter's decoder takes the key frames' reference features: refused before any package is loaded.
    decoder = original["engines"]["vae_decoder"]
    toon = decoder | {"inputs": [*decoder["inputs"], dict(decoder["inputs"][0], name="references")]}
    manifest = original | {"engines": original["engines"] | {"vae_decoder": toon}}
    cases["(ToonCrafter), which this host does not run"] = [
        "--bundle", bundle_with_manifest(host_bundle, tmp_path / "toon", manifest),
    ]  # fmt: skip
    # As a manifest written before dcrt recorded the video's fps: --mp4 then needs --fps, asked before any work.
    manifest = original | {"sampling": {k: v for k, v in original["sampling"].items() if k != "fps"}}
    no_fps = bundle_with_manifest(host_bundle, tmp_path / "no-fps", manifest)
    cases["records no fps: pass --fps"] = ["--bundle", no_fps, *run, "--mp4", tmp_path / "boat.mp4"]
    cases["--fps must be >= 1"] = ["--bundle", host_bundle, *run, "--fps", 0, "--mp4", tmp_path / "boat.mp4"]
    for message, args in cases.items():
        if "--image" not in args:
            args = [*args, "--image", host_image, "--seed", 1]
        done = run_host(host_binary, *args, *out, check_rc=False)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, (message, done.stderr)
        assert not list(tmp_path.glob("frames*")) and not list(tmp_path.glob("*.mp4"))


@pytest.mark.gpu
def test_host_on_cuda_equals_python(tmp_path_factory, host_image, tmp_path, run_cli):
    """On a GPU: the host built with -DDCRT_HOST_CUDA=ON (the step through dcrt::kernels) on the tiny preset's
    CUDA packages, against the same packages run by the Python pipeline; both draw the noise from a CUDA generator
    seeded with the seed. Written without a GPU: it has not run yet."""
    import dcrt

    if not torch.cuda.is_available() or shutil.which("nvcc") is None:
        pytest.skip("needs a CUDA GPU and nvcc to build the host's CUDA path")
    build = tmp_path_factory.mktemp("host-build-cuda")
    major, minor = torch.cuda.get_device_capability()
    cmake_build(build, "dcrt_host", options=("-DDCRT_HOST_CUDA=ON", f"-DDCRT_CUDA_ARCHITECTURES={major}{minor}"))
    code, bundle, err = run_cli(
        ["build", "--res", "tiny", "--engine", "aoti", "--device", "cuda", "--out", str(tmp_path / "engines")]
    )
    assert code == 0, err
    bundle = Path(bundle.strip().splitlines()[-1])
    sampling = dict(steps=5, seed=123)
    args = ["--bundle", bundle, "--image", host_image, "--prompt", "a boat", *sampling_flags(sampling)]
    run_host(build / "dcrt_host", *args, "--device", "cuda", "--out", tmp_path / "frames")
    frames = read_frames(tmp_path / "frames")
    ref = dcrt.animate(open_aoti(bundle, "cuda"), host_image, "a boat", **sampling).frames
    diff = np.abs(frames.astype(int) - ref.astype(int))
    print(f"host (CUDA) vs Python aoti (CUDA): max |diff| {diff.max()} of 255, {np.mean(diff > 0):.2%} differ")
    assert diff.max() <= 1


@pytest.mark.aoti
def test_host_writes_mp4_with_ffmpeg_on_path(host_binary, host_bundle, host_image, tmp_path, frame_count):
    """--mp4 encodes the frames with the ffmpeg found on PATH (here imageio-ffmpeg's); without one, a notice."""
    import imageio_ffmpeg

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    inputs = ["--image", host_image, "--prompt", "a boat", "--seed", 3, "--steps", 2]
    (tmp_path / "tmp").mkdir()  # where the frames go for ffmpeg: nothing is left there
    with_ffmpeg = dict(os.environ, PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin", TMPDIR=str(tmp_path / "tmp"))
    for env, expect_video in ((with_ffmpeg, True), (with_ffmpeg | {"PATH": "/nowhere"}, False)):
        video = tmp_path / f"boat {expect_video}.mp4"
        done = run_host(host_binary, "--bundle", host_bundle, *inputs, "--mp4", video, env=env)
        assert video.exists() == expect_video and ("no ffmpeg on PATH" in done.stderr) != expect_video
        assert not list(tmp_path.glob("*.partial*")) and not list((tmp_path / "tmp").iterdir())
    assert frame_count(str(tmp_path / "boat True.mp4")) == 16
    assert mp4_fps(tmp_path / "boat True.mp4") == DEFAULT_FPS  # the manifest's, as built
    # The frame rate is read from the manifest, not a copy of its value; --fps overrides it.
    manifest = json.loads((Path(host_bundle) / "manifest.json").read_text())
    at_5 = bundle_with_manifest(
        host_bundle, tmp_path / "at-5", manifest | {"sampling": manifest["sampling"] | {"fps": 5}}
    )
    for flags, fps in (([], 5), (["--fps", "12"], 12)):
        video = tmp_path / f"at {fps}.mp4"
        run_host(host_binary, "--bundle", at_5, *inputs, "--mp4", video, *flags, env=with_ffmpeg)
        assert mp4_fps(video) == fps


@pytest.mark.aoti
@pytest.mark.heavy  # on the tiny-svd bundle, built only for -m heavy (tests/backends/test_aoti_svd.py)
def test_host_refuses_an_svd_bundle_in_one_line(host_binary, aoti_tiny_svd_bundle, host_image, tmp_path):
    """The host runs DynamiCrafter's graphs only: a Stable Video Diffusion bundle (no text encoder, no schedule file)
    is named as such before anything else is read."""
    args = ["--bundle", aoti_tiny_svd_bundle, "--image", host_image, "--seed", 1, "--out", tmp_path / "frames"]
    done = run_host(host_binary, *args, check_rc=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is a tiny-svd bundle (Stable Video Diffusion), which this host does not run" in done.stderr
    assert "(dcrt animate --res tiny-svd --backend aoti)" in done.stderr
    assert not (tmp_path / "frames").exists()


def test_host_reads_a_tensorrt_bundle_as_dcrt_build_writes_it(host_binary, host_image, tmp_path):
    """A TensorRT bundle from `dcrt build` (its TensorRT compile faked at the builder: tests/_trt_fakes.py) carries the
    vocabulary and the defaults, so the host gets past them to the engine, which this CPU build lacks and names. As a
    bundle of an older dcrt (no vocabulary named), it is refused with the build command that adds it."""
    from _trt_fakes import TARGET, FakeBuilder, make_export
    from safetensors.torch import save_file

    from dcrt.artifacts.tensorrt_build import BuildConfig, build_bundle
    from dcrt.families.dynamicrafter.schedule import schedule_tensors

    make_export(tmp_path / "export")
    bundle = build_bundle(tmp_path / "export", tmp_path / "engines", BuildConfig(), TARGET, FakeBuilder()).directory
    # The fake export's schedule file is a stand-in; the host reads a real one before it opens the plans.
    save_file(schedule_tensors(get_preset("tiny").diffusion), bundle / "schedule.safetensors")
    args = ["--image", host_image, "--seed", 1, "--out", tmp_path / "frames"]
    done = run_host(host_binary, "--bundle", bundle, *args, check_rc=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is a TensorRT bundle, and this dcrt_host was built without TensorRT" in done.stderr

    manifest = json.loads((bundle / "manifest.json").read_text())
    older = bundle_with_manifest(bundle, tmp_path / "older", {k: v for k, v in manifest.items() if k != "tokenizer"})
    done = run_host(host_binary, "--bundle", older, *args, check_rc=False)
    assert done.returncode == 2 and "names no tokenizer vocabulary" in done.stderr, done.stderr
    assert done.stderr.endswith("run `dcrt build --res tiny` again\n")
    assert not (tmp_path / "frames").exists()
