"""ONNX Runtime: an export's graphs, one session each, with IO bound to preallocated buffers (`OnnxRuntimeGraphs`,
a `GraphRuntime`); `open_onnxruntime` runs them behind the export's family's backend (dcrt.backends.static).

CPU execution provider here; CUDA (and TensorRT) execution providers where onnxruntime-gpu is
installed. Inputs are bound straight from torch tensors' memory and outputs land in tensors that
are allocated once, so a call copies nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcrt.artifacts.graphs import ComponentSpec, io_table
from dcrt.artifacts.manifest import ExportManifest
from dcrt.backends.static import family_backend
from dcrt.errors import BackendUnavailable, UsageError
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
        """Run on inputs of the spec's shapes (StaticGraphs checks them); returns the output buffers (valid
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


class OnnxRuntimeGraphs:
    """An export directory (`dcrt export`) checked against the IO table, one `BoundGraph` session per graph: a
    `GraphRuntime` (dcrt.backends.static). Every file is checked against its manifest record: the size always, the
    sha256 with `verify`."""

    capturable = False  # each call synchronises the stream before ONNX Runtime reads its inputs

    def __init__(self, export_dir: str | Path, device: str | torch.device = "cpu", verify: bool = False):
        export_dir = Path(export_dir)
        if not export_dir.is_dir():
            raise UsageError(f"export directory {export_dir} does not exist (run `dcrt export` first)")
        self.directory = export_dir
        self.manifest = ExportManifest.read(export_dir)
        self.preset = preset = get_preset(self.manifest.preset)
        self.device = torch.device(device)
        self.precision = f"{self.manifest.precision} graphs"
        self.specs = specs = io_table(preset, self.manifest.height, self.manifest.width)
        missing = set(specs) - set(self.manifest.components)
        if missing:
            raise UsageError(f"{export_dir / 'manifest.json'} lacks components {sorted(missing)}")
        for name, spec in specs.items():
            if self.manifest.components[name].inputs != [t.as_dict() for t in spec.inputs]:
                raise UsageError(f"{export_dir / spec.filename} has other inputs than preset {preset.name} needs")
        self.manifest.verify_files(export_dir, full=verify)
        providers = providers_for(self.device)
        self.sessions = {name: self._bind(spec, providers) for name, spec in specs.items()}

    def _bind(self, spec: ComponentSpec, providers: list[str]) -> BoundGraph:
        """One graph's session; a file ONNX Runtime cannot load (corrupt, though of its recorded size) is one line."""
        path = self.directory / spec.filename
        try:
            return BoundGraph(path, spec, self.device, providers)
        except Exception as exc:  # ONNX Runtime's own classes (InvalidProtobuf, Fail, ...), none a common base
            first = (str(exc).strip().splitlines() or [""])[0]
            raise UsageError(
                f"{path} cannot be loaded ({type(exc).__name__}: {first}): check it with --verify, or re-export "
                f"with `{self.manifest.export_command(self.directory)}`"
            ) from None

    def execute(self, name: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return self.sessions[name](*inputs)


def open_onnxruntime(export_dir: str | Path, device: str | torch.device = "cpu", verify: bool = False):
    """The ONNX Runtime backend of the export's model family."""
    return family_backend(OnnxRuntimeGraphs(export_dir, device, verify))
