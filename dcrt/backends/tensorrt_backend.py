"""TensorRT backend: `StaticShapeBackend` over an `EngineSet` (dcrt.backends.tensorrt_runtime) whose static IO
buffers are torch tensors, so the pipeline copies into inputs and reads outputs without any conversion.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcrt.backends.static import StaticShapeBackend, load_schedule
from dcrt.backends.tensorrt_runtime import EngineSet
from dcrt.errors import BackendUnavailable, UsageError
from dcrt.io_spec import TensorSpec


def _torch_cuda_device(device):
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        raise UsageError("the TensorRT backend runs on CUDA only (use --device cuda)")
    if not torch.cuda.is_available():
        raise BackendUnavailable("the TensorRT backend needs a CUDA GPU, and none is visible (see `dcrt info`)")
    return torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())


class TensorRTBackend(StaticShapeBackend):
    """`StaticShapeBackend` over an `EngineSet` whose static IO buffers are torch tensors. All work is queued on
    torch's current stream of the device (the caller's), so it orders with the pipeline's own kernels; nothing
    syncs."""

    capturable = True  # copies and execute_async_v3 on the current stream (warmed up before capture)
    precision = "float16 engines"

    def __init__(self, bundle_dir: str | Path, device="cuda", verify: bool = False):
        self.device = _torch_cuda_device(device)
        self.io: dict[tuple[str, str], torch.Tensor] = {}  # (component, tensor) -> its bound static buffer
        self.engines = EngineSet(bundle_dir, self.device.index, buffer=self._allocate, verify=verify)
        schedule = load_schedule(self.engines.directory, self.engines.manifest.schedule)
        super().__init__(self.engines.preset, self.engines.specs, schedule)

    def _allocate(self, component: str, t: TensorSpec) -> int:
        tensor = torch.empty(t.shape, dtype=t.torch_dtype, device=self.device)
        self.io[(component, t.name)] = tensor
        return tensor.data_ptr()

    def _execute(self, component: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Copy inputs into the bound buffers and enqueue, all on the caller's current stream."""
        runner = self.engines[component]
        for t, x in zip(runner.spec.inputs, inputs):
            self.io[(component, t.name)].copy_(x, non_blocking=True)  # casts dtype / moves device if needed
        runner.enqueue(torch.cuda.current_stream(self.device).cuda_stream)
        return tuple(self.io[(component, t.name)] for t in runner.spec.outputs)
