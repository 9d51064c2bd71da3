"""End to end on a real GPU with TensorRT (`pytest -m trt`): export the tiny preset in fp16, build every
engine, compare each with the PyTorch module, then animate through the TensorRT backend.

Skips only when TensorRT cannot be imported or no CUDA GPU is visible; anything else that goes wrong fails.
"""

import numpy as np
import pytest
import torch

import dcrt
from dcrt.artifacts.export import ExportRequest, export_model, graph_modules, relative_error
from dcrt.artifacts.graphs import io_table, sample_inputs

pytestmark = pytest.mark.trt
FP16_TOLERANCE = 3e-2


@pytest.fixture(scope="module")
def target():
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:  # only a missing TensorRT skips; a broken one (OSError, ...) fails
        pytest.skip(f"TensorRT is not installed ({exc})")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    from dcrt.artifacts.engine_bundle import detect_target

    return detect_target()


@pytest.fixture(scope="module")
def bundle(target, tmp_path_factory):
    from dcrt.artifacts.tensorrt_build import BuildConfig, build_bundle

    root = tmp_path_factory.mktemp("trt")
    model = dcrt.random_model("tiny", seed=0)  # converted to fp16 in place by the export
    export_model(model, root / "export", ExportRequest(model.preset, "fp16", "random:tiny:seed0"))
    events = []
    report = build_bundle(
        root / "export", root / "engines", BuildConfig(opt_level=2), target, progress=lambda *e: events.append(e)
    )
    assert len(report.built) == 6 and events, "every engine built, with progress reported"
    again = build_bundle(root / "export", root / "engines", BuildConfig(opt_level=2), target)
    assert again.built == {}, "a second build finds everything up to date"
    return report.directory


@pytest.fixture(scope="module")
def backend(bundle):
    from dcrt.backends.tensorrt_backend import open_tensorrt

    return open_tensorrt(bundle, "cuda")


@pytest.mark.parametrize(
    "name", ["text_encoder", "image_encoder", "unet", "unet_image_guidance", "vae_encoder", "vae_decoder"]
)
def test_each_engine_matches_pytorch(backend, name):
    preset = dcrt.get_preset("tiny")
    spec = io_table(preset)[name]
    inputs = sample_inputs(spec, preset, seed=5)
    reference = dcrt.random_model("tiny", seed=0)
    with torch.no_grad():
        want = graph_modules(reference, torch.float32)[name](*inputs)
    got = backend._run(name, *(x.cuda() for x in inputs))
    torch.cuda.current_stream().synchronize()
    got = got.float().cpu()
    assert torch.isfinite(got).all()
    assert relative_error(got, want) < FP16_TOLERANCE


def test_animate_on_tensorrt_matches_pytorch(backend):
    from dcrt.families.dynamicrafter.pipeline import Pipeline

    image = (np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8)
    x_T = torch.randn(1, 4, 16, 8, 8, generator=torch.Generator().manual_seed(4))  # same start on CPU and GPU
    reference = dcrt.animate(dcrt.random_model("tiny", seed=0), image, "a cat", steps=3, eta=0.0, x_T=x_T)
    result = dcrt.animate(Pipeline(backend), image, "a cat", steps=3, eta=0.0, x_T=x_T)
    assert result.frames.shape == reference.frames.shape and result.frames.shape[0] == 16
    assert torch.isfinite(result.latents).all()
    assert relative_error(result.latents.float().cpu(), reference.latents.float().cpu()) < 0.1
