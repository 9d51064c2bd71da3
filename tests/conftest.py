"""Shared fixtures: tiny seeded models built in milliseconds-to-a-second, checkpoints written by the tests."""

from __future__ import annotations

import collections
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# The C++ host's fixtures: one CMake build per session, shared by every tests/test_cpp_host*.py module.
from cpp_host_support import host_binary, host_build, host_bundle, host_image  # noqa: F401

import dcrt

REPO = Path(__file__).resolve().parents[1]

FP32_EPS = 2.0**-23  # 1.19e-7: the spacing of float32 numbers just above 1.0 (torch.finfo(torch.float32).eps)


def fp32_tolerance(ops: int, amplification: float = 1.0) -> float:
    """The relative error two fp32 computations of the same function may differ by when they only order their sums
    differently (another runtime, thread count, SIMD path or memory alignment): at most one rounding (eps) per op
    in the longest chain of dependent ops, the chain's errors adding up (OPS x eps), times AMPLIFICATION where
    later math magnifies an earlier difference (a sampler's steps). Bounds that are "not bit-identical but the
    same computation" say their OPS and AMPLIFICATION, so a bound is derived, not raised until green."""
    return FP32_EPS * ops * amplification


# The longest chain of dependent ops in one tiny fp32 graph, conditioning included: the tiny UNet has 1029 layers
# (convolutions, linears, norms, activations; q/k/v and the like side by side, so its chain is shorter).
GRAPH_OPS = 1000
# 1.2e-4. Measured with 1 and 2 threads: ONNX Runtime vs torch <= 3.1e-6, AOTInductor vs torch <= 5.6e-6 (its
# build-time check of the UNet 1.8e-5), a memory-mapped vs an aligned copy of the same weights 1.3e-6.
GRAPH_TOLERANCE = fp32_tolerance(GRAPH_OPS)


def sampling_tolerance(steps: int, scale: float, image_scale: float | None = None, rescale: float = 0.0) -> float:
    """The fp32 bound on the final latents of one sampler run two ways (runtimes, thread counts). Each step's noise
    prediction combines the UNet's outputs, each GRAPH_TOLERANCE off, with weights whose absolute values sum to
    |1 - s| + |s| (two-way guidance at scale s: (1 - s) u + s c) or |1 - s_img| + |s_img - s| + |s| (three-way:
    u + s_img (i - u) + s (c - i)); guidance rescale r multiplies that by a ratio of stds of the same outputs, adding
    r x (their two differences); the DDIM (or Euler) update carries the prediction's difference into the latents
    with a coefficient near 1, and the STEPS' differences add up."""
    if image_scale is None:
        weights = abs(1 - scale) + abs(scale)
    else:
        weights = abs(1 - image_scale) + abs(image_scale - scale) + abs(scale)
    return fp32_tolerance(GRAPH_OPS, amplification=steps * weights * (1 + 2 * rescale))


def pytest_addoption(parser):
    parser.addoption(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads for torch (AOTInductor packages too) and every ONNX Runtime session in the test "
        "process (default: theirs; OMP_NUM_THREADS reaches child processes); the runtime-vs-runtime tolerances "
        "must hold with any count, e.g. --threads 1 and --threads 2",
    )


def pytest_configure(config):
    _point_outside_state_at_empty_folders(config)
    threads = config.getoption("--threads")
    if threads:
        torch.set_num_threads(threads)
        try:
            import onnxruntime
        except ImportError:
            return
        options = onnxruntime.SessionOptions

        def with_threads():  # dcrt builds its sessions from onnxruntime.SessionOptions(): each gets the count
            made = options()
            made.intra_op_num_threads = threads
            return made

        onnxruntime.SessionOptions = with_threads


def shared_dir() -> Path | None:
    """Data from outside the repository: $DCRT_SHARED_DIR, or a `shared/` folder beside the checkout (the
    project's development machines). A clone has neither; the tests that need it skip, saying so."""
    candidates = [os.environ.get("DCRT_SHARED_DIR"), REPO.parent / "shared", REPO.parent.parent / "shared"]
    return next((Path(c) for c in candidates if c and (Path(c) / "checkpoint_keys").is_dir()), None)


@pytest.fixture(scope="session")
def tiny_model() -> dcrt.DynamiCrafter:
    return dcrt.random_model("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_256_model() -> dcrt.DynamiCrafter:
    return dcrt.random_model("tiny-256", seed=0)


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_model, tmp_path_factory) -> Path:
    return dcrt.save_checkpoint(tiny_model, tmp_path_factory.mktemp("ckpt") / "model.ckpt")


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """An fp32 ONNX export of the tiny preset's random weights: (directory, manifest)."""
    from dcrt.artifacts.export import ExportRequest, export_model
    from dcrt.weights import Weights

    model = dcrt.random_model("tiny", seed=0)
    out = tmp_path_factory.mktemp("export") / "tiny"
    manifest = export_model(model, out, ExportRequest(model.preset, "fp32", Weights("tiny").source()))
    return out, manifest


@pytest.fixture(scope="session")
def svd_exported(tmp_path_factory):
    """An fp32 ONNX export of tiny-svd's random weights: (the model, directory, manifest)."""
    from dcrt.artifacts.export import ExportRequest, export_model
    from dcrt.weights import Weights

    model = dcrt.random_svd_model("tiny-svd", seed=0)
    out = tmp_path_factory.mktemp("export") / "tiny-svd"
    manifest = export_model(model, out, ExportRequest(model.preset, "fp32", Weights("tiny-svd").source()))
    return model, out, manifest


AOTI_BUILD_LOG = "build-log.txt"  # beside the bundles' root: what `dcrt build --engine aoti` printed on stderr


def build_aoti_bundle_by_cli(root: Path, preset: str) -> Path:
    """`dcrt build --res PRESET --engine aoti --jobs 2` in a child process, into ROOT/engines; ROOT/build-log.txt
    holds its stderr. Returns the bundle directory."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    build = ["build", "--res", preset, "--engine", "aoti", "--jobs", "2", "--out", str(root / "engines")]
    command = [sys.executable, "-m", "dcrt", *build]  # 2 jobs: the packages build two at a time
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    (root / AOTI_BUILD_LOG).write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def aoti_tiny_bundle(tmp_path_factory) -> Path:
    """The tiny preset's AOTInductor bundle (its seeded random weights, portable AVX2 CPU packages), built once per
    session by the command line itself (`build_aoti_bundle_by_cli`). Returns the bundle directory; ROOT/build-log.txt
    holds the build's stderr (minutes on 2 cores)."""
    return build_aoti_bundle_by_cli(tmp_path_factory.mktemp("aoti"), "tiny")


@pytest.fixture(scope="session")
def aoti_tiny_svd_bundle(tmp_path_factory) -> Path:
    """The tiny-svd preset's AOTInductor bundle, as `aoti_tiny_bundle` (about a minute on 2 cores)."""
    return build_aoti_bundle_by_cli(tmp_path_factory.mktemp("aoti-svd"), "tiny-svd")


# Every module that hashes files, imported before `hashed` replaces their sha256_file.
_HASHING_MODULES = (
    "dcrt.artifacts.manifest",
    "dcrt.weights",
    "dcrt.artifacts.export",
    "dcrt.artifacts.engine_bundle",
    "dcrt.artifacts.tensorrt_build",
    "dcrt.backends.onnxruntime_backend",
    "dcrt.backends.tensorrt_runtime",
    "dcrt.artifacts.aoti_build",
)


@pytest.fixture
def hashed(monkeypatch) -> collections.Counter:
    """Counts full-file hashes (dcrt.artifacts.manifest.sha256_file, in every dcrt module that imported it) by file
    name."""
    for name in _HASHING_MODULES:
        importlib.import_module(name)
    real = sys.modules["dcrt.artifacts.manifest"].sha256_file
    counts = collections.Counter()

    def counting(path, *args, **kwargs):
        counts[Path(path).name] += 1
        return real(path, *args, **kwargs)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("dcrt") and getattr(module, "sha256_file", None) is real:
            monkeypatch.setattr(module, "sha256_file", counting)
    return counts


# What dcrt reads from outside the arguments it is given: the default artifact and output folders (export/, engines/,
# bench-results/, <image>_<mode>.mp4) relative to the working directory, the checkpoint folder and Hugging Face cache
# from the environment, the kernel cache under the home folder.
_OUTSIDE_STATE = {
    "HF_HOME": "hf-home",
    "HF_HUB_CACHE": "hf-hub",
    "DCRT_CACHE_DIR": "dcrt-cache",
    "DCRT_CHECKPOINT_DIR": "checkpoints",
}


def _point_outside_state_at_empty_folders(config) -> None:
    """Before collection imports anything that reads them (huggingface_hub fixes its cache folder at import)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="dcrt-tests-outside-"))
    config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
    for name, folder in _OUTSIDE_STATE.items():
        os.environ[name] = str(root / folder)


@pytest.fixture(scope="session", autouse=True)
def _isolated_from_the_checkout(tmp_path_factory):
    """The suite never sees what the README's commands leave in the checkout or the home folder: it runs in an empty
    working directory (here, for the session's fixtures; `_empty_working_directory`, for each test), with every
    cache and checkpoint folder dcrt reads pointed at empty ones (`_point_outside_state_at_empty_folders`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("session-cwd"))
        yield


@pytest.fixture(autouse=True)
def _empty_working_directory(tmp_path_factory, monkeypatch):
    """Each test starts in a working directory of its own: one test's default outputs are not another's inputs."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any attempt to load the video model or the describer's CLIP fails the test: what it checks happens before."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("dcrt.loading.open_backend", refuse)
    monkeypatch.setattr("dcrt.director.describe.open_embedder", refuse)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `dcrt ARGS...` in-process: -> (exit code, stdout, stderr)."""
    from dcrt import cli

    def run(args: list[str]) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.argv", ["dcrt", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    return run


@pytest.fixture
def frame_count():
    """Frames in a video file (gradio_client returns a path, or {"video": path} in older clients)."""

    def count(video: str | dict) -> int:
        import imageio_ffmpeg  # absent where only the GPU tests are collected

        reader = imageio_ffmpeg.read_frames(video["video"] if isinstance(video, dict) else video)
        next(reader)  # the metadata
        return sum(1 for _ in reader)

    return count


@pytest.fixture
def chat():
    """A loopback OpenAI-compatible chat server (tests/_chat.py): set `.reply`, read `.requests`, point at `.url`."""
    from _chat import serving_chat

    with serving_chat() as fake:
        yield fake
