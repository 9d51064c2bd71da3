"""Capture safety on a CPU: what a CUDA graph would meet, checked without a GPU.

1. The runner's step body (torch ops and the fused path) runs under a dispatch mode that fails on any op
   that synchronises with the host or moves data between devices. It runs on the meta device, so a
   `.cpu()` or a host tensor shows up as a device change (on a CPU it would be invisible).
2. The pipeline hands its kernels to the runner (a counting stand-in for the CUDA kernels), and chooses the
   graph only for backends that declare themselves capturable.
3. A simulated capture (torch.cuda's graph, stream and synchronize calls patched) runs a whole bench
   measurement: nothing synchronises while the step is being captured.
"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import dcrt
from dcrt import bench
from dcrt.artifacts.export import relative_error
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter import bench as dynamicrafter_bench
from dcrt.families.dynamicrafter.baseline import BaselineBackend
from dcrt.families.dynamicrafter.options import resolve_options
from dcrt.families.dynamicrafter.pipeline import Pipeline
from dcrt.families.dynamicrafter.sampler import Guidance, SamplerInputs
from dcrt.families.dynamicrafter.schedule import build_ddim_schedule
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.runners import kernels
from dcrt.runners.ddim import GraphRunner

# Ops whose result the host must wait for: a scalar read back, or an output size that depends on data.
HOST_SYNC_OPS = {
    "aten._local_scalar_dense.default",
    "aten.item.default",
    "aten.is_nonzero.default",
    "aten.equal.default",
    "aten.nonzero.default",
    "aten.nonzero_static.default",
    "aten.masked_select.default",
    "aten.repeat_interleave.Tensor",
    "aten.repeat_interleave.self_Tensor",
    "aten._unique2.default",
    "aten.unique_dim.default",
    "aten.unique_consecutive.default",
    "aten.bincount.default",
    "aten.histc.default",
    "aten._assert_async.msg",
}


class NoHostSync(TorchDispatchMode):
    """Fails on a host-synchronising op, or on any tensor in or out that is not on `device`."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device
        self.ops: set[str] = set()

    def _check_devices(self, func, tensors) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.device != self.device:
                raise AssertionError(f"{func} touches a {t.device} tensor inside the captured step")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name in HOST_SYNC_OPS:
            raise AssertionError(f"{name} synchronises with the host inside the captured step")
        self.ops.add(name)
        self._check_devices(func, torch.utils._pytree.tree_leaves((args, kwargs)))
        out = func(*args, **(kwargs or {}))
        self._check_devices(func, torch.utils._pytree.tree_leaves(out))
        return out


@pytest.fixture(scope="module", params=["tiny", "tiny-tooncrafter"])
def meta_runner_parts(request):
    model = dcrt.random_model(request.param, seed=0)
    schedule = build_ddim_schedule(
        dict(model.schedule.named_buffers()), model.preset.diffusion, 3, "uniform_trailing", 1.0
    )
    model.place("meta", torch.float32)
    return TorchBackend(model), schedule


def _loaded_meta_runner(backend, schedule, guidance, kernels_):
    meta = torch.device("meta")
    inputs = SamplerInputs(
        context=torch.empty(3, 333, 64, device=meta), concat=torch.empty(1, 4, 16, 8, 8, device=meta), frame_stride=24
    )
    x_T = torch.empty(1, 4, 16, 8, 8, device=meta)
    runner = GraphRunner(backend.unet, schedule, guidance, inputs, x_T, True, capture=False, kernels=kernels_)
    runner._load(inputs, x_T, SimpleNamespace(draw=lambda shape: torch.empty(shape, device=meta)))
    return runner


@pytest.mark.parametrize("fused", [False, True], ids=["torch-ops", "fused"])
@pytest.mark.parametrize(
    "guidance", [Guidance(guidance_rescale=0.7), Guidance(image_guidance_scale=2.0)], ids=["cfg-rescale", "3-way"]
)
def test_runner_step_never_syncs_or_leaves_the_device(meta_runner_parts, guidance, fused):
    backend, schedule = meta_runner_parts
    runner = _loaded_meta_runner(backend, schedule, guidance, kernels.ReferenceKernels() if fused else None)
    with torch.inference_mode(), NoHostSync(torch.device("meta")) as mode:
        runner._step()
    assert "aten.index_select.default" in mode.ops  # the step gathered at the device-side counter
    assert any("conv" in op for op in mode.ops)  # and the UNet ran under the check


def test_the_check_catches_a_host_read_and_a_device_change():
    x = torch.empty(4, device="meta")
    with pytest.raises(AssertionError, match="synchronises"), NoHostSync(torch.device("meta")):
        x.sum().item()
    with pytest.raises(AssertionError, match="cpu"), NoHostSync(torch.device("meta")):
        x + torch.ones(4)


class CountingKernels(kernels.ReferenceKernels):
    """The kernels' torch reference, counting calls: proves the pipeline hands the runner its kernels."""

    def __init__(self):
        self.calls = {"cfg_combine": 0, "ddim_update": 0}

    def cfg_combine(self, *args, **kwargs):
        self.calls["cfg_combine"] += 1
        super().cfg_combine(*args, **kwargs)

    def ddim_update(self, *args, **kwargs):
        self.calls["ddim_update"] += 1
        super().ddim_update(*args, **kwargs)


def test_pipeline_runs_its_fused_kernels(tiny_model, monkeypatch):
    fake = CountingKernels()
    monkeypatch.setattr(kernels, "load_kernels", lambda device: fake)
    image = (np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8)
    fused = Pipeline(TorchBackend(tiny_model), cuda_graph=True, fused_kernels=True)
    assert fused.kernels is fake
    eager = dcrt.animate(
        Pipeline(TorchBackend(tiny_model), cuda_graph=False), image, "x", steps=3, guidance_rescale=0.7
    )
    result = dcrt.animate(fused, image, "x", steps=3, guidance_rescale=0.7)
    assert fake.calls == {"cfg_combine": 3, "ddim_update": 3}
    assert relative_error(result.latents, eager.latents) < 1e-5


class FakeCudaBackend(TorchBackend):
    """A torch backend that claims a CUDA device: the pipeline's choices, without a GPU."""

    def __init__(self, model, capturable: bool):
        super().__init__(model)
        self.device = torch.device("cuda", 0)
        self.capturable = capturable


def test_pipeline_captures_only_capturable_backends(tiny_model, monkeypatch):
    monkeypatch.setattr(kernels, "load_kernels", lambda device: CountingKernels())
    capturable = Pipeline(FakeCudaBackend(tiny_model, capturable=True))
    assert capturable.capture and capturable.kernels is not None  # the defaults on CUDA: graph + fused kernels
    synchronising = Pipeline(FakeCudaBackend(tiny_model, capturable=False))
    assert not synchronising.cuda_graph and not synchronising.capture and synchronising.kernels is None
    with pytest.raises(UsageError, match="cannot run in a CUDA graph"):
        Pipeline(FakeCudaBackend(tiny_model, capturable=False), cuda_graph=True)
    with pytest.raises(UsageError, match="need cuda_graph"):
        Pipeline(FakeCudaBackend(tiny_model, capturable=True), cuda_graph=False, fused_kernels=True)
    assert not BaselineBackend(tiny_model).capturable  # the original's way is never captured


def test_fused_kernels_need_cuda(tiny_model):
    with pytest.raises(kernels.KernelError, match="CUDA devices"):
        Pipeline(TorchBackend(tiny_model), cuda_graph=True, fused_kernels=True)


class SimulatedCuda:
    """torch.cuda's capture, stream and synchronize calls, recording what happens during a capture."""

    def __init__(self):
        self.capturing = False
        self.captures = 0
        self.syncs_outside = 0

    def synchronize(self, *args, **kwargs):
        if self.capturing:
            raise AssertionError("a host synchronisation inside a CUDA graph capture")
        self.syncs_outside += 1

    @contextmanager
    def graph(self, cuda_graph, *args, **kwargs):
        self.capturing, self.captures = True, self.captures + 1
        try:
            yield
        finally:
            self.capturing = False

    def stream_object(self, *args, **kwargs):
        return SimpleNamespace(wait_stream=lambda other: None, synchronize=self.synchronize, cuda_stream=0)

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "synchronize", self.synchronize)
        monkeypatch.setattr(torch.cuda, "graph", self.graph)
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: self.capturing)
        monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: SimpleNamespace(replay=lambda: None))
        monkeypatch.setattr(torch.cuda, "Stream", self.stream_object)
        monkeypatch.setattr(torch.cuda, "current_stream", self.stream_object)
        monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextmanager(lambda: (yield))())
        # The bench's timer synchronises through one function; on a CPU it would not reach torch.cuda.
        monkeypatch.setattr(bench, "synchronize", lambda device: self.synchronize())


def test_bench_times_a_captured_loop_without_syncing_inside(tiny_model, monkeypatch):
    cuda = SimulatedCuda()
    cuda.install(monkeypatch)
    pipeline = Pipeline(TorchBackend(tiny_model), cuda_graph=True, fused_kernels=CountingKernels())
    pipeline.capture = True  # as on CUDA: capture the step (here through the simulated torch.cuda)
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    opts = resolve_options(tiny_model.preset, steps=3)
    result = dynamicrafter_bench.run_backend(
        "torch", pipeline, [image], "x", opts, warmup=1, repeat=1, log=lambda m: None
    )
    assert cuda.captures == 1  # captured once, replayed by the second run
    assert cuda.syncs_outside >= 8  # the clock synchronised around each stage, outside the capture
    assert set(result.runs[0]) == set(bench.STAGES)
    assert result.settings["cuda_graph"] and result.settings["fused_kernels"]
