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
