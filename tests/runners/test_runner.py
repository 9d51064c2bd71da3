"""The graph runner's step body (device-side step counter, pre-drawn noise) equals the eager sampler.

On a CPU the body runs without capture: the same operations a CUDA graph replays.
"""

import numpy as np
import pytest
import torch

import dcrt
from dcrt.artifacts.export import relative_error
from dcrt.families.common import NoiseSource
from dcrt.families.dynamicrafter.pipeline import Pipeline
from dcrt.families.dynamicrafter.sampler import Guidance, SamplerInputs, sample
from dcrt.families.dynamicrafter.schedule import build_ddim_schedule
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.runners import kernels
from dcrt.runners.ddim import GraphRunner


@pytest.mark.parametrize(
    "guidance, eta",
    [
        (Guidance(guidance_rescale=0.7), 1.0),
        (Guidance(image_guidance_scale=2.0), 0.0),
        (Guidance(guidance_scale=1.0), 1.0),
    ],
)
def test_runner_step_math_equals_eager(tiny_model, guidance, eta):
    p = tiny_model.preset
    schedule = build_ddim_schedule(dict(tiny_model.schedule.named_buffers()), p.diffusion, 4, "uniform_trailing", eta)
    inputs = SamplerInputs(context=torch.randn(3, 333, 64), concat=torch.randn(1, 4, 16, 8, 8), frame_stride=24)
    x_T = torch.randn(1, 4, 16, 8, 8)
    noise = (lambda: NoiseSource(9, "cpu")) if eta > 0 else (lambda: None)
    with torch.inference_mode():
        eager = sample(tiny_model.unet, inputs, schedule, guidance, x_T, noise())
    runner = GraphRunner(tiny_model.unet, schedule, guidance, inputs, x_T, eta > 0, capture=False)
    torch.testing.assert_close(runner.run(inputs, x_T, noise()), eager, rtol=1e-5, atol=1e-6)
    # reusable: a second video through the same runner gives the same answer again
    torch.testing.assert_close(runner.run(inputs, x_T, noise()), eager, rtol=1e-5, atol=1e-6)


def test_pipeline_with_the_runner_equals_the_eager_pipeline(tiny_model):
    image = (np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8)
    eager = Pipeline(TorchBackend(tiny_model), cuda_graph=False)
    graph_body = Pipeline(TorchBackend(tiny_model), cuda_graph=True)  # on a CPU: the body, uncaptured
    a, b = dcrt.animate(eager, image, "x", steps=3), dcrt.animate(graph_body, image, "x", steps=3)
    assert relative_error(b.latents, a.latents) < 1e-5
    assert len(graph_body._runners) == 1


@pytest.fixture(scope="module")
def tiny_tooncrafter():
    return dcrt.random_model("tiny-tooncrafter", seed=0)


def _keyframes(height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [(rng.random((height, width, 3)) * 255).astype(np.uint8) for _ in range(2)]


def test_tooncrafter_through_the_runner_and_fused_kernels_equals_the_eager_pipeline(tiny_tooncrafter):
    """The dual-ref path (key frames encoded once with their reference features, the clip decoder) through the
    graph runner's step body and the fused kernels' wiring, at ToonCrafter's defaults (eta 1, rescale 0.7)."""
    eager = Pipeline(TorchBackend(tiny_tooncrafter), cuda_graph=False)
    graph_body = Pipeline(TorchBackend(tiny_tooncrafter), cuda_graph=True, fused_kernels=kernels.ReferenceKernels())
    first, last = _keyframes(64, 64)
    a, b = (dcrt.interpolate(p, first, last, "x", steps=3) for p in (eager, graph_body))
    assert relative_error(b.latents, a.latents) < 1e-5
    assert np.abs(b.frames.astype(int) - a.frames.astype(int)).max() <= 1
    assert len(graph_body._runners) == 1 and graph_body.kernels is not None


def test_cpu_pipelines_default_to_the_eager_loop(tiny_model):
    assert Pipeline(TorchBackend(tiny_model)).cuda_graph is False


@pytest.mark.gpu
@pytest.mark.parametrize("fused_kernels", [False, True])
@pytest.mark.parametrize("image_scale", [None, 2.0])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)], ids=["fp32", "bf16"])
def test_captured_graph_equals_eager_on_cuda(fused_kernels, image_scale, dtype, tolerance):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = dcrt.random_model("tiny", device="cuda", dtype=dtype)
    image = (np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8)
    eager = dcrt.animate(
        Pipeline(TorchBackend(model), cuda_graph=False), image, "x", steps=5, image_guidance_scale=image_scale
    )
    graph = Pipeline(TorchBackend(model), cuda_graph=True, fused_kernels=fused_kernels)
    assert graph.capture and (graph.kernels is not None) == fused_kernels
    first = dcrt.animate(graph, image, "x", steps=5, image_guidance_scale=image_scale)
    second = dcrt.animate(graph, image, "x", steps=5, image_guidance_scale=image_scale)
    assert relative_error(first.latents, eager.latents) < tolerance
    torch.testing.assert_close(first.latents, second.latents)  # replay is deterministic
    assert graph._runners and all(r.graph is not None for r in graph._runners.values())  # it was captured


@pytest.mark.gpu
@pytest.mark.parametrize("fused_kernels", [False, True])
def test_captured_tooncrafter_equals_eager_on_cuda(fused_kernels):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = dcrt.random_model("tiny-tooncrafter", device="cuda", dtype=torch.float32)
    first, last = _keyframes(64, 64)
    eager = dcrt.interpolate(Pipeline(TorchBackend(model), cuda_graph=False), first, last, "x", steps=5)
    graph = Pipeline(TorchBackend(model), cuda_graph=True, fused_kernels=fused_kernels)
    captured = dcrt.interpolate(graph, first, last, "x", steps=5)
    assert graph.capture and all(r.graph is not None for r in graph._runners.values())
    assert relative_error(captured.latents, eager.latents) < 1e-4
    assert np.abs(captured.frames.astype(int) - eager.frames.astype(int)).max() <= 1
