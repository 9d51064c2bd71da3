"""The C++ host's test support (cpp_host/): one CMake build per session, the bundle, a non-square image of another
size than the bundle's, and helpers to run the binaries. tests/conftest.py imports the fixtures, so that every
cpp_host test module shares one build.

Set DCRT_HOST_BUILD=<dir> to reuse a build folder between runs (CMake rebuilds only what changed), and
DCRT_HOST_BUNDLE=<dir> to use an existing tiny AOTInductor bundle.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

HOST_SOURCE = Path(__file__).resolve().parents[1] / "cpp_host"
# What the suite builds: the library's command line, its numeric pieces, and the example service.
HOST_TARGETS = ("dcrt_host", "dcrt_host_check", "dcrt_host_service")


def cmake_build(build: Path, *targets: str, options: tuple[str, ...] = ()) -> None:
    torch_dir = os.path.dirname(torch.__file__)
    abi = int(torch.compiled_with_cxx11_abi())
    configure = ["cmake", "-S", HOST_SOURCE, "-B", build, f"-DTORCH_DIR={torch_dir}", f"-DTORCH_CXX11_ABI={abi}"]
    subprocess.run([*configure, *options], check=True, capture_output=True)
    done = subprocess.run(["cmake", "--build", build, "--target", *targets, "-j", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="session")
def host_build(tmp_path_factory) -> Path:
    """The build folder with HOST_TARGETS built (libtorch's headers make it a few minutes on 2 cores)."""
    build = Path(os.environ.get("DCRT_HOST_BUILD") or tmp_path_factory.mktemp("host-build"))
    cmake_build(build, *HOST_TARGETS)
    return build


@pytest.fixture(scope="session")
def host_binary(host_build) -> Path:
    return host_build / "dcrt_host"


@pytest.fixture(scope="session")
def host_bundle(request) -> Path:
    """$DCRT_HOST_BUNDLE (an existing tiny AOTI bundle, for quick iteration), else `aoti_tiny_bundle`."""
    if os.environ.get("DCRT_HOST_BUNDLE"):
        return Path(os.environ["DCRT_HOST_BUNDLE"])
    return request.getfixturevalue("aoti_tiny_bundle")


@pytest.fixture(scope="session")
def host_image(tmp_path_factory) -> Path:
    """A 90 x 120 JPEG with structure (gradients and a disc): not the tiny preset's 64 x 64, not square, so dcrt's
    resize of the shorter side and its centre crop both change it."""
    from PIL import Image

    y, x = np.mgrid[0:90, 0:120]
    disc = ((x - 70) ** 2 + (y - 40) ** 2 < 400) * 120
    rgb = np.stack([x * 2, y * 2.5, 255 - x - y + disc], -1).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("host-image") / "boat.jpg"
    Image.fromarray(rgb, "RGB").save(path, quality=90)
    return path


def check(build: Path, *args) -> None:
    """dcrt_host_check SUBCOMMAND ARGS (cpp_host/tests/host_check.cpp)."""
    subprocess.run([build / "dcrt_host_check", *map(str, args)], check=True)


def run_host(binary: Path, *args, check_rc: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, env=env)
    if check_rc:
        assert done.returncode == 0, done.stderr
    return done


def bundle_with_manifest(bundle: Path, directory: Path, manifest: dict) -> Path:
    """`bundle`'s files (linked) under another manifest."""
    directory.mkdir()
    for file in Path(bundle).iterdir():
        if file.name != "manifest.json":
            (directory / file.name).symlink_to(file)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def read_frames(directory: Path, count: int = 16) -> np.ndarray:
    """The host's PNG frames, named as `dcrt animate --format png` names them (dcrt.video): 000.png, 001.png, ..."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(directory / f"{k:03d}.png")) for k in range(count)])
