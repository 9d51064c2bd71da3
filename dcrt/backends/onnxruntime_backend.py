"""ONNX Runtime backend: the exported graphs, one session each, with IO bound to preallocated buffers.

CPU execution provider here; CUDA (and TensorRT) execution providers where onnxruntime-gpu is
installed. Inputs are bound straight from torch tensors' memory and outputs land in tensors that
are allocated once, so a call copies nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcrt.artifacts.graphs import ComponentSpec, io_table
from dcrt.artifacts.manifest import ExportManifest
from dcrt.backends.static import StaticShapeBackend, load_schedule
from dcrt.errors import BackendUnavailable, UsageError
from dcrt.families.svd.static import StaticSVDBackend
from dcrt.presets import get_preset


def providers_for(device: torch.device) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailable("onnxruntime on cuda needs onnxruntime-gpu (pip install 'dcrt[gpu]')")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class BoundGraph:
    """One ONNX Runtime session whose outputs live in torch tensors allocated once."""

    def __init__(self, path: Path, spec: ComponentSpec, device: torch.device, providers: list[str]):
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.spec = spec
        self.device = device
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.binding = self.session.io_binding()
        self.outputs = [torch.empty(t.shape, dtype=t.torch_dtype, device=device) for t in spec.outputs]
        for t, buffer in zip(spec.outputs, self.outputs):
            self.binding.bind_output(
                t.name, self._device_type, self._device_id, np.dtype(t.dtype), t.shape, buffer.data_ptr()
            )

    @property
    def _device_type(self) -> str:
        return "cuda" if self.device.type == "cuda" else "cpu"

    @property
    def _device_id(self) -> int:
        return self.device.index or 0

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run on inputs of the spec's shapes (StaticShapeBackend checks them); returns the output buffers (valid
        until the next call)."""
        import numpy as np

        held = []  # keep contiguous copies alive until the run finishes
        for t, x in zip(self.spec.inputs, inputs):
            x = x.to(device=self.device, dtype=t.torch_dtype).contiguous()
            held.append(x)
            self.binding.bind_input(
                t.name, self._device_type, self._device_id, np.dtype(t.dtype), t.shape, x.data_ptr()
            )
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # inputs written by torch kernels must be done
        self.session.run_with_iobinding(self.binding)
        return tuple(self.outputs)


class ExportSessions:
    """An export directory (`dcrt export`) checked against the IO table, one `BoundGraph` session per component.
    Every file is checked against its manifest record: the size always, the sha256 with `verify`."""

    def __init__(self, export_dir: str | Path, device: str | torch.device = "cpu", verify: bool = False):
        export_dir = Path(export_dir)
        if not export_dir.is_dir():
            raise UsageError(f"export directory {export_dir} does not exist (run `dcrt export` first)")
        self.directory = export_dir
        self.manifest = ExportManifest.read(export_dir)
        self.preset = preset = get_preset(self.manifest.preset)
        self.device = torch.device(device)
        self.specs = specs = io_table(preset, self.manifest.height, self.manifest.width)
        missing = set(specs) - set(self.manifest.components)
        if missing:
            raise UsageError(f"{export_dir / 'manifest.json'} lacks components {sorted(missing)}")
        for name, spec in specs.items():
            if self.manifest.components[name].inputs != [t.as_dict() for t in spec.inputs]:
                raise UsageError(f"{export_dir / spec.filename} has other inputs than preset {preset.name} needs")
        self.manifest.verify_files(export_dir, full=verify)
        providers = providers_for(self.device)
        self.graphs = {
            name: BoundGraph(export_dir / spec.filename, spec, self.device, providers) for name, spec in specs.items()
        }


class OnnxRuntimeBackend(StaticShapeBackend):
    """Runs a DynamiCrafter export directory (`dcrt export`) on ONNX Runtime (`ExportSessions`)."""

    capturable = False  # each call synchronises the stream before ONNX Runtime reads its inputs

    def __init__(self, export_dir: str | Path, device: str | torch.device = "cpu", verify: bool = False):
        sessions = ExportSessions(export_dir, device, verify)
        sessions.preset.require_family("dynamicrafter", "OnnxRuntimeBackend (open_onnxruntime opens either family)")
        self.manifest, self.device, self.graphs = sessions.manifest, sessions.device, sessions.graphs
        self.precision = f"{self.manifest.precision} graphs"
        schedule = load_schedule(sessions.directory, self.manifest.schedule)
        super().__init__(sessions.preset, sessions.specs, schedule)

    def _execute(self, component: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return self.graphs[component](*inputs)


class OnnxRuntimeSVDBackend(StaticSVDBackend):
    """Runs a Stable Video Diffusion export directory on ONNX Runtime (`ExportSessions`)."""

    capturable = False

    def __init__(self, export_dir: str | Path, device: str | torch.device = "cpu", verify: bool = False):
        sessions = ExportSessions(export_dir, device, verify)
        sessions.preset.require_family("svd", "OnnxRuntimeSVDBackend (open_onnxruntime opens either family)")
        self.manifest, self.device, self.graphs = sessions.manifest, sessions.device, sessions.graphs
        self.precision = f"{self.manifest.precision} graphs"
        super().__init__(sessions.preset, sessions.specs)

    def _execute(self, component: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return self.graphs[component](*inputs)


def open_onnxruntime(export_dir: str | Path, device: str | torch.device = "cpu", verify: bool = False):
    """The ONNX Runtime backend of the export's model family."""
    family = get_preset(ExportManifest.read(Path(export_dir)).preset).family if Path(export_dir).is_dir() else None
    backend = OnnxRuntimeSVDBackend if family == "svd" else OnnxRuntimeBackend
    return backend(export_dir, device, verify)
