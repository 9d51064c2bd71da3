"""TensorRT backends: `StaticShapeBackend` (DynamiCrafter) or `StaticSVDBackend` (Stable Video Diffusion) over an
`EngineSet` (dcrt.backends.tensorrt_runtime) whose static IO buffers are torch tensors, so the pipeline copies
into inputs and reads outputs without any conversion. `open_tensorrt` opens a bundle with its family's backend.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcrt.artifacts.engine_bundle import read_manifest_or_none
from dcrt.artifacts.graphs import TensorSpec
from dcrt.backends.static import StaticShapeBackend, load_schedule
from dcrt.backends.tensorrt_runtime import EngineSet
from dcrt.errors import BackendUnavailable, UsageError
from dcrt.families.svd.static import StaticSVDBackend
from dcrt.presets import get_preset


def _torch_cuda_device(device):
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        raise UsageError("the TensorRT backend runs on CUDA only (use --device cuda)")
    if not torch.cuda.is_available():
        raise BackendUnavailable("the TensorRT backend needs a CUDA GPU, and none is visible (see `dcrt info`)")
    return torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())


class EngineCalls:
    """An `EngineSet` whose static IO buffers are torch tensors, and one graph's run on them: copy the inputs in and
    enqueue, all on torch's current stream of the device (the caller's), so it orders with the pipeline's own
    kernels; nothing syncs. Shared by both model families' TensorRT backends."""

    def _open_engines(self, bundle_dir: str | Path, device, verify: bool) -> EngineSet:
        self.device = _torch_cuda_device(device)
        self.io: dict[tuple[str, str], torch.Tensor] = {}  # (component, tensor) -> its bound static buffer
        self.engines = EngineSet(bundle_dir, self.device.index, buffer=self._allocate, verify=verify)
        return self.engines

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


class TensorRTBackend(EngineCalls, StaticShapeBackend):
    """A DynamiCrafter engine bundle (`dcrt build`) as a `StaticShapeBackend`."""

    capturable = True  # copies and execute_async_v3 on the current stream (warmed up before capture)
    precision = "float16 engines"

    def __init__(self, bundle_dir: str | Path, device="cuda", verify: bool = False):
        engines = self._open_engines(bundle_dir, device, verify)
        engines.preset.require_family("dynamicrafter", "TensorRTBackend (open_tensorrt opens either family)")
        schedule = load_schedule(engines.directory, engines.manifest.schedule)
        super().__init__(engines.preset, engines.specs, schedule)


class TensorRTSVDBackend(EngineCalls, StaticSVDBackend):
    """A Stable Video Diffusion engine bundle as a `StaticSVDBackend`."""

    capturable = True
    precision = "float16 engines"

    def __init__(self, bundle_dir: str | Path, device="cuda", verify: bool = False):
        engines = self._open_engines(bundle_dir, device, verify)
        engines.preset.require_family("svd", "TensorRTSVDBackend (open_tensorrt opens either family)")
        super().__init__(engines.preset, engines.specs)


def open_tensorrt(bundle_dir: str | Path, device="cuda", verify: bool = False):
    """The TensorRT backend of the bundle's model family."""
    manifest = read_manifest_or_none(Path(bundle_dir))
    svd = manifest is not None and get_preset(manifest.preset).family == "svd"
    return (TensorRTSVDBackend if svd else TensorRTBackend)(bundle_dir, device, verify)
