"""The graph runner's step body (device-side step counter, pre-drawn noise) equals the eager sampler.

On a CPU the body runs without capture: the same operations a CUDA graph replays.
"""

import numpy as np
import pytest
import torch

import dcrt
from dcrt.backends import TorchBackend
from dcrt.export import relative_error
from dcrt.pipeline import Pipeline
from dcrt.runner import GraphRunner
from dcrt.sampler import Guidance, NoiseSource, SamplerInputs, sample
from dcrt.schedule import build_ddim_schedule


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
