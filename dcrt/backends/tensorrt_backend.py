"""TensorRT: an `EngineSet` (dcrt.backends.tensorrt_runtime) whose static IO buffers are torch tensors
(`TensorRTGraphs`, a `GraphRuntime`), so the pipeline copies into inputs and reads outputs without any conversion.
`open_tensorrt` runs a bundle behind its family's backend (dcrt.backends.static).
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcrt.artifacts.graphs import TensorSpec
from dcrt.backends.static import family_backend
from dcrt.backends.tensorrt_runtime import EngineSet
from dcrt.errors import BackendUnavailable, UsageError


def _torch_cuda_device(device):
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        raise UsageError("the TensorRT backend runs on CUDA only (use --device cuda)")
    if not torch.cuda.is_available():
        raise BackendUnavailable("the TensorRT backend needs a CUDA GPU, and none is visible (see `dcrt info`)")
    return torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())


class TensorRTGraphs:
    """An engine bundle's plans (`EngineSet`) whose static IO buffers are torch tensors: a `GraphRuntime`
    (dcrt.backends.static). A graph's run copies its inputs in and enqueues, all on torch's current stream of the
    device (the caller's), so it orders with the pipeline's own kernels; nothing syncs."""

    capturable = True  # copies and execute_async_v3 on the current stream (warmed up before capture)
    precision = "float16 engines"

    def __init__(self, bundle_dir: str | Path, device="cuda", verify: bool = False):
        self.device = _torch_cuda_device(device)
        self.io: dict[tuple[str, str], torch.Tensor] = {}  # (component, tensor) -> its bound static buffer
        self.engines = EngineSet(bundle_dir, self.device.index, buffer=self._allocate, verify=verify)
        self.preset, self.specs = self.engines.preset, self.engines.specs
        self.directory, self.manifest = self.engines.directory, self.engines.manifest

    def _allocate(self, component: str, t: TensorSpec) -> int:
        tensor = torch.empty(t.shape, dtype=t.torch_dtype, device=self.device)
        self.io[(component, t.name)] = tensor
        return tensor.data_ptr()

    def execute(self, name: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Copy inputs into the bound buffers and enqueue, all on the caller's current stream."""
        runner = self.engines[name]
        for t, x in zip(runner.spec.inputs, inputs):
            self.io[(name, t.name)].copy_(x, non_blocking=True)  # casts dtype / moves device if needed
        runner.enqueue(torch.cuda.current_stream(self.device).cuda_stream)
        return tuple(self.io[(name, t.name)] for t in runner.spec.outputs)


def open_tensorrt(bundle_dir: str | Path, device="cuda", verify: bool = False):
    """The TensorRT backend of the bundle's model family."""
    return family_backend(TensorRTGraphs(bundle_dir, device, verify))
