"""dcrt.open_backend: --backend auto and the named backends, for Python callers as for the CLI."""

import pytest

import dcrt
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.loading import BackendRequest, open_backend


def test_auto_without_export_or_gpu_runs_torch_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no export/tiny here
    messages = []
    backend = open_backend("tiny", log=messages.append)
    assert isinstance(backend, TorchBackend) and backend.device.type == "cpu"
    assert messages[-1].startswith("using torch on cpu") and "random:tiny:seed0" in messages[-1]


def test_auto_uses_a_fitting_export(exported):
    from dcrt.backends.onnxruntime_backend import OnnxRuntimeGraphs
    from dcrt.families.dynamicrafter.static import StaticShapeBackend

    messages = []
    backend = dcrt.open_backend(BackendRequest(preset="tiny", export_dir=exported[0]), log=messages.append)
    assert isinstance(backend, StaticShapeBackend) and isinstance(backend.graphs, OnnxRuntimeGraphs), messages
    assert f"with {exported[0]}" in messages[-1]


def _damaged_export(exported, tmp_path, how: str):
    """A copy of the tiny export whose unet.onnx is cut to half its size (`truncated`) or keeps its size with its
    bytes replaced (`garbled`: the manifest's size check passes, ONNX Runtime's parser does not)."""
    import shutil

    copy = tmp_path / "tiny"
    shutil.copytree(exported[0], copy)
    unet = copy / "unet.onnx"
    size = unet.stat().st_size
    unet.write_bytes(unet.read_bytes()[: size // 2] if how == "truncated" else b"\xff" * size)
    return copy


@pytest.mark.parametrize("how, why", [("truncated", "does not match the sha256"), ("garbled", "cannot be loaded")])
def test_auto_passes_over_an_export_that_does_not_load_and_a_named_backend_stops(exported, tmp_path, how, why):
    """One rule for unusable artifacts: auto passes over them with a notice saying why and how to remake them; a
    backend named explicitly fails in one line."""
    damaged = _damaged_export(exported, tmp_path, how)
    messages = []
    backend = open_backend(BackendRequest(preset="tiny", export_dir=damaged), log=messages.append)
    assert isinstance(backend, TorchBackend), messages
    notice = next(m for m in messages if m.startswith(f"notice: not using {damaged}"))
    assert why in notice and "dcrt export --res tiny --random-weights" in notice and f"--out {damaged}" in notice
    with pytest.raises(UsageError, match=why) as refused:
        open_backend(BackendRequest(preset="tiny", export_dir=damaged, backend="ort"))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(backend="tensorrt"), "unknown backend 'tensorrt'"),
        (dict(device="gpu"), "unknown device 'gpu'"),
        (dict(dtype="fp8"), "unknown dtype 'fp8'"),
        (dict(random_weights=True, checkpoint="model.ckpt"), "exclude each other"),
    ],
)
def test_bad_requests_fail_before_loading(changes, message):
    with pytest.raises(UsageError, match=message):
        open_backend("tiny", **changes)


def test_the_suite_sees_nothing_of_the_checkout_or_the_home_folder():
    """What the README's commands leave behind (export/, engines/, videos, a fetched checkpoint) is out of sight:
    each test starts in an empty folder outside the checkout, and the caches dcrt reads are empty folders."""
    import os
    from pathlib import Path

    from conftest import REPO

    assert not list(Path.cwd().iterdir()) and REPO not in (Path.cwd(), *Path.cwd().parents)
    for name in ("HF_HOME", "HF_HUB_CACHE", "DCRT_CACHE_DIR", "DCRT_CHECKPOINT_DIR"):
        assert not Path(os.environ[name]).is_relative_to(Path.home()) or Path.home() == Path("/tmp"), name
    assert open_backend("tiny", log=lambda message: None).__class__ is TorchBackend  # no export, no bundle in sight
