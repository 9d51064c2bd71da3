"""The Euler graph runner's step body (device-side step counter, static buffers, one batched UNet call for both
guidance branches) equals the eager EDM loop; on a CPU the body runs without capture: the operations a CUDA
graph replays."""

import numpy as np
import pytest
import torch

import dcrt
from dcrt.artifacts.export import relative_error
from dcrt.families.svd.options import resolve_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.families.svd.sampler import EDMInputs, FrameGuidance, build_edm_schedule, sample_edm
from dcrt.families.svd.torch_backend import TorchSVDBackend
from dcrt.runners.edm import EDMGraphRunner


@pytest.fixture(scope="module")
def svd_model():
    return dcrt.random_svd_model("tiny-svd", seed=0)


def _inputs(seed: int) -> tuple[EDMInputs, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    inputs = EDMInputs(
        image_embeds=torch.randn(2, 1, 32, generator=g),
        concat=torch.randn(2, 4, 6, 8, 8, generator=g),
        added_time_ids=torch.tensor([[6.0, 127.0, 0.02], [6.0, 127.0, 0.02]]),
    )
    return inputs, torch.randn(1, 4, 6, 8, 8, generator=g)


class CountingUNet:
    def __init__(self, unet):
        self.unet, self.batches = unet, []

    def __call__(self, x, c_noise, context, time_ids):
        self.batches.append(x.shape[0])
        return self.unet(x, c_noise, context, time_ids)


@pytest.mark.parametrize("guidance", [FrameGuidance(1.0, 3.0), FrameGuidance(1.0, 1.0)], ids=["ramp", "off"])
def test_runner_step_equals_the_eager_loop(svd_model, guidance):
    schedule = build_edm_schedule(svd_model.preset.edm, 4)
    inputs, noise = _inputs(1)
    unet = CountingUNet(svd_model.unet)
    with torch.inference_mode():
        eager = sample_edm(svd_model.unet, inputs, schedule, guidance, noise)
    runner = EDMGraphRunner(unet, schedule, guidance, inputs, noise, capture=False)
    torch.testing.assert_close(runner.run(inputs, noise), eager, rtol=1e-5, atol=1e-6)
    assert unet.batches == [guidance.branches] * 4  # both branches in one call, every step
    # reusable: another video through the same buffers
    other_inputs, other_noise = _inputs(2)
    with torch.inference_mode():
        expected = sample_edm(svd_model.unet, other_inputs, schedule, guidance, other_noise)
    torch.testing.assert_close(runner.run(other_inputs, other_noise), expected, rtol=1e-5, atol=1e-6)


def test_the_pipeline_hands_sampling_to_the_runner(svd_model):
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    opts = resolve_svd_options(svd_model.preset, steps=3)
    eager = SVDPipeline(TorchSVDBackend(svd_model), cuda_graph=False)
    graph_body = SVDPipeline(TorchSVDBackend(svd_model), cuda_graph=True)  # on a CPU: the body, uncaptured
    a, b = eager.sample(image, opts), graph_body.sample(image, opts)
    assert relative_error(b, a) < 1e-5
    assert len(graph_body._runners) == 1 and not eager._runners
    graph_body.sample(image, opts)
    assert len(graph_body._runners) == 1  # reused for the next video
    assert SVDPipeline(TorchSVDBackend(svd_model)).cuda_graph is False  # CPU default: the eager loop


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.float16, 1e-2)], ids=["fp32", "fp16"])
def test_captured_graph_equals_eager_on_cuda(dtype, tolerance):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = dcrt.random_svd_model("tiny-svd", seed=0, device="cuda", dtype=dtype)
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    opts = resolve_svd_options(model.preset, steps=4)
    eager = SVDPipeline(TorchSVDBackend(model), cuda_graph=False).sample(image, opts)
    graph = SVDPipeline(TorchSVDBackend(model))
    assert graph.cuda_graph
    captured = graph.sample(image, opts)
    assert next(iter(graph._runners.values())).graph is not None
    assert relative_error(captured, eager) < tolerance
