"""The C++ host (cpp_host): built with CMake once per session, its pieces checked against the Python
references they reproduce (schedule, guidance + DDIM step, CLIP preprocessing, frames, PNG reading), and the
whole host against the Python pipeline on the tiny preset's AOTInductor bundle (marker aoti, in the default
run).

Set DCRT_HOST_BUILD=<dir> to reuse a build folder between runs (CMake rebuilds only what changed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dcrt.backends.aoti_backend import open_aoti
from dcrt.families.dynamicrafter.options import resolve_options
from dcrt.families.dynamicrafter.sampler import Guidance, combine_guidance, ddim_step
from dcrt.families.dynamicrafter.schedule import build_ddim_schedule, schedule_tensors
from dcrt.images import load_image, to_uint8_frames
from dcrt.models.clip import clip_pixels
from dcrt.presets import get_preset
from dcrt.video import DEFAULT_FPS

HOST_SOURCE = Path(__file__).resolve().parents[1] / "cpp_host"


def cmake_build(build: Path, *targets: str, options: tuple[str, ...] = ()) -> None:
    torch_dir = os.path.dirname(torch.__file__)
    abi = int(torch.compiled_with_cxx11_abi())
    configure = ["cmake", "-S", HOST_SOURCE, "-B", build, f"-DTORCH_DIR={torch_dir}", f"-DTORCH_CXX11_ABI={abi}"]
    configure += options
    subprocess.run(configure, check=True, capture_output=True)
    for target in targets:
        subprocess.run(["cmake", "--build", build, "--target", target, "-j", "2"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def host_build(tmp_path_factory) -> Path:
    """The build folder, with dcrt_host_check built (the plain C++ pieces, no libtorch: seconds)."""
    build = Path(os.environ.get("DCRT_HOST_BUILD") or tmp_path_factory.mktemp("host-build"))
    cmake_build(build, "dcrt_host_check")
    return build


def check(build: Path, *args) -> None:
    subprocess.run([build / "dcrt_host_check", *map(str, args)], check=True)


def schedule_file(tmp_path: Path, preset: str) -> Path:
    path = tmp_path / "schedule.safetensors"
    save_file(schedule_tensors(get_preset(preset).diffusion), path)
    return path


CASES = [
    ("tiny", "v", 5, "uniform_trailing", 1.0),
    ("tiny-256", "eps", 16, "uniform", 0.5),  # 17 steps: the uniform spacing's quirk
    ("512", "v", 50, "uniform_trailing", 0.0),
]


@pytest.mark.parametrize("preset, kind, steps, spacing, eta", CASES)
def test_schedule_matches_python(host_build, tmp_path, preset, kind, steps, spacing, eta):
    path = schedule_file(tmp_path, preset)
    check(host_build, "schedule", path, kind, steps, spacing, eta, tmp_path)
    diffusion = get_preset(preset).diffusion
    ref = build_ddim_schedule(schedule_tensors(diffusion), diffusion, steps, spacing, eta)
    np.testing.assert_array_equal(np.load(tmp_path / "timesteps.npy"), ref.timesteps.numpy())
    # Equal to one ulp: torch's CPU float32 sqrt is not always correctly rounded (0.7300432 -> 0.85442561, where
    # std::sqrt and numpy give the nearest float, 0.85442567); 1 of 400 coefficients differs this way.
    np.testing.assert_array_max_ulp(np.load(tmp_path / "table.npy"), ref.table().numpy(), maxulp=1)


def python_step(out, x, noise, guidance, schedule, i):
    return ddim_step(x, combine_guidance(out, guidance), noise, schedule.at(i))


STEPS = [  # (guidance scale, image guidance scale, rescale, eta, batch)
    (7.5, None, 0.0, 1.0, 1),
    (7.5, None, 0.7, 1.0, 1),
    (5.0, 2.0, 0.7, 0.0, 2),
    (1.0, None, 0.0, 1.0, 1),
]


@pytest.mark.parametrize("scale, image_scale, rescale, eta, batch", STEPS)
def test_step_matches_python(host_build, tmp_path, scale, image_scale, rescale, eta, batch):
    """Guidance combine + DDIM update at a middle step: bit for bit without rescale; with it, the std ratio
    is summed in another order than torch's (a few ulp)."""
    diffusion = get_preset("tiny").diffusion
    path = schedule_file(tmp_path, "tiny")
    schedule = build_ddim_schedule(schedule_tensors(diffusion), diffusion, 5, "uniform_trailing", eta)
    guidance = Guidance(scale, image_scale, rescale)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, 16, 8, 8, generator=g)
    out = torch.randn(guidance.branches * batch, 4, 16, 8, 8, generator=g)
    noise = torch.randn(x.shape, generator=g) if eta > 0 else None
    for name, value in (("out", out), ("x", x), ("noise", noise)):
        if value is not None:
            np.save(tmp_path / f"{name}.npy", value.numpy())
    noise_arg = tmp_path / "noise.npy" if noise is not None else "-"
    args = ["step", path, "v", 5, "uniform_trailing", eta, 2, tmp_path / "out.npy", tmp_path / "x.npy", noise_arg]
    check(host_build, *args, scale, "-" if image_scale is None else image_scale, rescale, tmp_path / "r.npy")
    ref = python_step(out, x, noise, guidance, schedule, 2).numpy()
    if rescale > 0:
        np.testing.assert_allclose(np.load(tmp_path / "r.npy"), ref, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), ref)


@pytest.mark.parametrize("size", [(64, 64), (320, 512), (224, 224)])
def test_clip_pixels_matches_python(host_build, tmp_path, size):
    """Upsampling (tiny), the antialiased downsampling of the released sizes, and the identity size."""
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(2)) * 2 - 1
    np.save(tmp_path / "image.npy", image.numpy())
    check(host_build, "clip", tmp_path / "image.npy", 224, tmp_path / "clip.npy")
    ref = clip_pixels(image, get_preset("tiny").image).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "clip.npy"), ref, rtol=0, atol=2e-5)


def test_frames_match_python(host_build, tmp_path):
    video = torch.randn(3, 3, 16, 24, generator=torch.Generator().manual_seed(3)) * 1.2
    np.save(tmp_path / "video.npy", video.numpy())
    check(host_build, "frames", tmp_path / "video.npy", tmp_path / "frames.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "frames.npy"), to_uint8_frames(video))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA"])
def test_png_pixels_match_python(host_build, tmp_path, mode):
    """A PNG at the preset's size reads as dcrt.images.load_image reads it (alpha dropped, grey and palette
    expanded), so the host needs no resize."""
    from PIL import Image

    rgb = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image = Image.fromarray(rgb, "RGB")
    image = image.convert(mode) if mode != "RGBA" else Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA")
    image.save(tmp_path / "image.png")
    check(host_build, "pixels", tmp_path / "image.png", tmp_path / "pixels.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "pixels.npy"), load_image(tmp_path / "image.png", 64, 64).numpy())


# --- the whole host on the tiny preset's AOTInductor bundle, against the Python pipeline -------------------------


@pytest.fixture(scope="session")
def host_binary(host_build) -> Path:
    """dcrt_host itself (links libtorch from the installed wheel: about a minute of compiling)."""
    cmake_build(host_build, "dcrt_host")
    return host_build / "dcrt_host"


@pytest.fixture(scope="session")
def host_bundle(request) -> Path:
    """$DCRT_HOST_BUNDLE (an existing tiny AOTI bundle, for quick iteration), else `aoti_tiny_bundle`."""
    if os.environ.get("DCRT_HOST_BUNDLE"):
        return Path(os.environ["DCRT_HOST_BUNDLE"])
    return request.getfixturevalue("aoti_tiny_bundle")


@pytest.fixture(scope="session")
def host_image(tmp_path_factory) -> Path:
    """A 64 x 64 PNG with structure (gradients and a disc), at the tiny preset's size."""
    from PIL import Image

    y, x = np.mgrid[0:64, 0:64]
    disc = ((x - 40) ** 2 + (y - 24) ** 2 < 150) * 120
    rgb = np.stack([x * 4, y * 4, 255 - x * 2 - y + disc], -1).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("host-image") / "image.png"
    Image.fromarray(rgb, "RGB").save(path)
    return path


def bundle_with_manifest(bundle: Path, directory: Path, manifest: dict) -> Path:
    """`bundle`'s files (linked) under another manifest."""
    directory.mkdir()
    for file in Path(bundle).iterdir():
        if file.name != "manifest.json":
            (directory / file.name).symlink_to(file)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def mp4_fps(path: Path) -> float:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    fps = next(reader)["fps"]  # the metadata
    reader.close()
    return fps


def run_host(binary: Path, *args, check_rc: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([binary, *map(str, args)], capture_output=True, text=True)
    if check_rc:
        assert done.returncode == 0, done.stderr
    return done


HOST_RUNS = [  # (sampling options as the Python API names them)
    dict(steps=5, seed=123),  # the tiny preset's defaults: guidance 7.5, rescale 0.7, eta 1
    dict(steps=4, seed=7, eta=0.0, image_guidance_scale=2.0, guidance_rescale=0.0, frame_stride=10),
    dict(steps=3, seed=5, guidance_scale=1.0),  # no guidance: the batch-2 graph on duplicated rows
]


@pytest.mark.aoti
@pytest.mark.parametrize("sampling", HOST_RUNS, ids=["defaults", "image-guidance-eta0", "no-guidance"])
def test_host_frames_equal_python_pipeline(host_binary, host_bundle, host_image, tmp_path, run_cli, sampling):
    """Same image, token ids, seed and options -> the C++ host's frames are the Python pipeline's (PyTorch
    reference modules with the bundle's weights, eager on the CPU), to within one level of 255."""
    from PIL import Image

    import dcrt

    prompt = "a boat sailing"
    noise_opts = [f"--{k.replace('_', '-')}={v}" for k, v in sampling.items() if k in ("steps", "eta", "seed")]
    assert run_cli(["tokenize", prompt, "--res", "tiny", "--out", str(tmp_path / "tokens.npy")])[0] == 0
    assert run_cli(["noise", "--res", "tiny", *noise_opts, "--out", str(tmp_path / "noise.npy")])[0] == 0
    host_opts = [f"--{k.replace('_', '-')}={v}" for k, v in sampling.items() if k != "seed"]
    host_opts = [arg for opt in host_opts for arg in opt.split("=", 1)]
    out = tmp_path / "frames"
    done = run_host(
        host_binary,
        "--bundle",
        host_bundle,
        "--image",
        host_image,
        "--tokens",
        tmp_path / "tokens.npy",
        "--noise",
        tmp_path / "noise.npy",
        "--out",
        out,
        *host_opts,
    )
    manifest = json.loads((Path(host_bundle) / "manifest.json").read_text())
    defaults = resolve_options(get_preset("tiny"), "animate")
    assert manifest["parameterization"] == "v"
    recorded = dict(manifest["sampling"])
    assert recorded.pop("fps") == DEFAULT_FPS  # the frame rate `dcrt animate` writes at
    assert recorded == {name: getattr(defaults, name) for name in recorded}
    frames = np.stack([np.asarray(Image.open(out / f"frame_{k:03d}.png")) for k in range(16)])
    # The reference modules (eager PyTorch on the CPU, the weights the bundle was compiled from), and the same
    # packages run by Python (--backend aoti): the second leaves only the host's own arithmetic.
    for name, model in (("torch", dcrt.random_model("tiny", seed=0)), ("aoti", open_aoti(host_bundle))):
        ref = dcrt.animate(model, host_image, prompt, **sampling).frames
        diff = np.abs(frames.astype(int) - ref.astype(int))
        print(f"host vs Python {name}: max |diff| {diff.max()} of 255, {np.mean(diff > 0):.2%} of values differ")
        assert frames.shape == ref.shape == (16, 64, 64, 3)
        assert diff.max() <= 1
    print(done.stderr.strip())


@pytest.mark.aoti
def test_host_errors_are_one_line(host_binary, host_bundle, host_image, tmp_path, run_cli):
    """Bad input: one line on stderr, exit code 2, and no output folder left behind."""
    from PIL import Image

    assert run_cli(["tokenize", "a boat", "--res", "tiny", "--out", str(tmp_path / "tokens.npy")])[0] == 0
    assert run_cli(["noise", "--res", "tiny", "--steps", "3", "--out", str(tmp_path / "noise.npy")])[0] == 0
    Image.new("RGB", (80, 64)).save(tmp_path / "wide.png")
    base = ["--tokens", tmp_path / "tokens.npy", "--noise", tmp_path / "noise.npy", "--out", tmp_path / "frames"]
    cases = {
        "does not exist": ["--bundle", tmp_path / "nowhere", "--image", host_image, "--steps", 3],
        "bundle's size, 64x64": ["--bundle", host_bundle, "--image", tmp_path / "wide.png", "--steps", 3],
        "write it with `dcrt noise`": ["--bundle", host_bundle, "--image", host_image, "--steps", 5],
        "is required": ["--bundle", host_bundle],
    }
    original = json.loads((Path(host_bundle) / "manifest.json").read_text())
    manifest = original | {"torch_version": "2.0.0+cpu"}  # the same bundle, as if compiled with another torch
    other_torch = bundle_with_manifest(host_bundle, tmp_path / "other-torch", manifest)
    cases["compiled with torch 2.0.0+cpu"] = ["--bundle", other_torch, "--image", host_image, "--steps", 3]
    broken = tmp_path / "broken"  # a manifest without its preset
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "preset"}))
    cases['not a valid bundle manifest (missing JSON key "preset")'] = ["--bundle", broken, "--image", host_image]
    manifest = {k: v for k, v in original.items() if k != "sampling"}  # as a TensorRT manifest: no defaults
    no_defaults = bundle_with_manifest(host_bundle, tmp_path / "no-defaults", manifest)
    cases["records no sampling defaults: pass --eta"] = ["--bundle", no_defaults, "--image", host_image, "--steps", 3]
    # As a manifest written before dcrt recorded the video's fps: --mp4 then needs --fps, asked before any work.
    manifest = original | {"sampling": {k: v for k, v in original["sampling"].items() if k != "fps"}}
    no_fps = bundle_with_manifest(host_bundle, tmp_path / "no-fps", manifest)
    mp4 = ["--mp4", tmp_path / "boat.mp4"]
    cases["records no fps: pass --fps"] = ["--bundle", no_fps, "--image", host_image, "--steps", 3, *mp4]
    cases["--fps must be >= 1"] = ["--bundle", host_bundle, "--image", host_image, "--fps", 0, *mp4]
    for message, args in cases.items():
        done = run_host(host_binary, *args, *base, check_rc=False)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert not (tmp_path / "frames").exists() and not (tmp_path / "frames.partial").exists()


@pytest.mark.gpu
def test_host_on_cuda_equals_python(tmp_path_factory, host_image, tmp_path, run_cli):
    """On a GPU: the host built with -DDCRT_HOST_CUDA=ON (the step through dcrt::kernels) on the tiny preset's
    CUDA packages, against the same packages run by the Python pipeline with noise drawn on CUDA.
    Written without a GPU: it has not run yet."""
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
    assert run_cli(["tokenize", "a boat", "--res", "tiny", "--out", str(tmp_path / "tokens.npy")])[0] == 0
    noise = ["--steps", "5", "--seed", "123", "--device", "cuda", "--out", str(tmp_path / "noise.npy")]
    assert run_cli(["noise", "--res", "tiny", *noise])[0] == 0
    run_host(
        build / "dcrt_host",
        "--bundle",
        bundle,
        "--image",
        host_image,
        "--tokens",
        tmp_path / "tokens.npy",
        "--noise",
        tmp_path / "noise.npy",
        "--steps",
        5,
        "--device",
        "cuda",
        "--out",
        tmp_path / "frames",
    )
    from PIL import Image

    frames = np.stack([np.asarray(Image.open(tmp_path / "frames" / f"frame_{k:03d}.png")) for k in range(16)])
    ref = dcrt.animate(open_aoti(bundle, "cuda"), host_image, "a boat", **sampling).frames
    diff = np.abs(frames.astype(int) - ref.astype(int))
    print(f"host (CUDA) vs Python aoti (CUDA): max |diff| {diff.max()} of 255, {np.mean(diff > 0):.2%} differ")
    assert diff.max() <= 1


@pytest.mark.aoti
def test_host_writes_mp4_with_ffmpeg_on_path(host_binary, host_bundle, host_image, tmp_path, run_cli, frame_count):
    """--mp4 encodes the frames with the ffmpeg found on PATH (here imageio-ffmpeg's); without one, a notice."""
    import imageio_ffmpeg

    assert run_cli(["tokenize", "a boat", "--res", "tiny", "--out", str(tmp_path / "tokens.npy")])[0] == 0
    assert run_cli(["noise", "--res", "tiny", "--steps", "2", "--out", str(tmp_path / "noise.npy")])[0] == 0
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    inputs = ["--bundle", host_bundle, "--image", host_image, "--tokens", tmp_path / "tokens.npy"]
    inputs += ["--noise", tmp_path / "noise.npy", "--steps", 2]
    for path, expect_video in ((f"{tmp_path / 'bin'}:/usr/bin:/bin", True), ("/nowhere", False)):
        out, video = tmp_path / f"frames-{expect_video}", tmp_path / f"boat {expect_video}.mp4"
        done = subprocess.run(
            [host_binary, *map(str, [*inputs, "--out", out, "--mp4", video])],
            capture_output=True,
            text=True,
            env=dict(os.environ, PATH=path),
        )
        assert done.returncode == 0, done.stderr
        assert video.exists() == expect_video and ("no ffmpeg on PATH" in done.stderr) != expect_video
        assert not list(tmp_path.glob("*.partial*"))
    assert frame_count(str(tmp_path / "boat True.mp4")) == 16
    assert mp4_fps(tmp_path / "boat True.mp4") == DEFAULT_FPS  # the manifest's, as built
    # The frame rate is read from the manifest, not a copy of its value; --fps overrides it.
    manifest = json.loads((Path(host_bundle) / "manifest.json").read_text())
    at_5 = bundle_with_manifest(
        host_bundle, tmp_path / "at-5", manifest | {"sampling": manifest["sampling"] | {"fps": 5}}
    )
    for flags, fps in (([], 5), (["--fps", "12"], 12)):
        video = tmp_path / f"at {fps}.mp4"
        args = ["--bundle", at_5, *inputs[2:], "--out", tmp_path / f"frames-{fps}", "--mp4", video, *flags]
        env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
        done = subprocess.run([host_binary, *map(str, args)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        assert mp4_fps(video) == fps


@pytest.mark.aoti
def test_host_refuses_an_svd_bundle_in_one_line(host_binary, aoti_tiny_svd_bundle, host_image, tmp_path):
    """The host runs DynamiCrafter's graphs only: a Stable Video Diffusion bundle (no text encoder, no schedule file)
    is named as such before anything else is read."""
    args = ["--bundle", aoti_tiny_svd_bundle, "--image", host_image, "--tokens", tmp_path / "t.npy"]
    done = run_host(host_binary, *args, "--noise", tmp_path / "n.npy", "--out", tmp_path / "frames", check_rc=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is a tiny-svd bundle (Stable Video Diffusion), which this host does not run" in done.stderr
    assert "(dcrt animate --res tiny-svd --backend aoti)" in done.stderr
    assert not (tmp_path / "frames").exists()
