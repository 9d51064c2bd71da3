"""Stand-ins for the parts of an engine build that need TensorRT or a GPU, so CI tests the logic around them.

`make_export` writes an export directory whose "graphs" are a few bytes each (with a real manifest);
`fake_builder` turns a graph into a "plan" that names its component; `FakeTrt` is the slice of the
`tensorrt` module the runtime uses, recording every call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import dcrt
from dcrt.artifacts.engine_bundle import Target
from dcrt.artifacts.graphs import io_table
from dcrt.artifacts.manifest import ComponentEntry, ExportManifest, sha256_file
from dcrt.artifacts.tensorrt_build import BuiltEngine

TARGET = Target("NVIDIA H100 80GB HBM3", (9, 0), "10.13.0")
DEVICE_MEMORY = {
    "text_encoder": 1 << 20,
    "image_encoder": 2 << 20,
    "unet": 8 << 20,
    "unet_image_guidance": 12 << 20,
    "vae_encoder": 4 << 20,
    "vae_decoder": 10 << 20,
    "vae_decoder_second_pass": 9 << 20,  # ToonCrafter's 14-frame clip decoder
    "vae_decoder_tail": 7 << 20,  # SVD's decoder of the short last chunk
}


def make_export(out: Path, preset: str = "tiny", precision: str = "fp16", tag: str = "") -> ExportManifest:
    p = dcrt.get_preset(preset)
    out.mkdir(parents=True, exist_ok=True)
    manifest = ExportManifest(p.name, p.height, p.width, precision, 17, f"random:{p.name}:seed0", dcrt.__version__)
    if p.family != "svd":  # SVD's exports have no schedule file (its EDM schedule comes from the preset)
        (out / "schedule.safetensors").write_bytes(b"schedule")
        manifest.schedule = {"schedule.safetensors": sha256_file(out / "schedule.safetensors")}
        manifest.schedule_sizes = {"schedule.safetensors": (out / "schedule.safetensors").stat().st_size}
    for name, spec in io_table(p).items():
        (out / spec.filename).write_bytes(f"graph {name} {tag}".encode())
        manifest.components[name] = ComponentEntry(
            **spec.as_dict(),
            files={spec.filename: sha256_file(out / spec.filename)},
            sizes={spec.filename: (out / spec.filename).stat().st_size},
            bytes=(out / spec.filename).stat().st_size,
            parity={},
        )
    manifest.write(out)
    return manifest


def change_graph(export_dir: Path, component: str, tag: str) -> None:
    """Re-export one graph (new bytes, new hash in the manifest)."""
    manifest = ExportManifest.read(export_dir)
    entry = manifest.components[component]
    (export_dir / entry.file).write_bytes(f"graph {component} {tag}".encode())
    entry.files = {entry.file: sha256_file(export_dir / entry.file)}
    entry.sizes = {entry.file: (export_dir / entry.file).stat().st_size}
    manifest.write(export_dir)


@dataclass
class FakeBuilder:
    calls: list = field(default_factory=list)

    def __call__(self, onnx_path, spec, config, fp32_softmax, timing_cache, progress):
        self.calls.append((spec.name, fp32_softmax, timing_cache))
        progress("Building engine", 0, 2)
        progress("Building engine", 2, 2)
        plan = json.dumps({"component": spec.name, "onnx": onnx_path.read_text()}).encode()
        return BuiltEngine(plan, DEVICE_MEMORY[spec.name])


class FakeContext:
    def __init__(self, log):
        self.log = log
        self.addresses = {}

    def set_device_memory(self, ptr, size):
        self.log.append(("set_device_memory", ptr, size))

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        self.log.append(("set_tensor_address", name, ptr))
        return True

    def execute_async_v3(self, stream):
        self.log.append(("execute_async_v3", stream))
        return True


class FakeEngine:
    def __init__(self, spec, device_memory, log, trt):
        self.spec, self.log, self.trt = spec, log, trt
        self.device_memory_size_v2 = device_memory
        self.io = [(t, trt.TensorIOMode.INPUT) for t in spec.inputs]
        self.io += [(t, trt.TensorIOMode.OUTPUT) for t in spec.outputs]
        self.num_io_tensors = len(self.io)
        self.contexts = []

    def get_tensor_name(self, i):
        return self.io[i][0].name

    def _find(self, name):
        return next(x for x in self.io if x[0].name == name)

    def get_tensor_mode(self, name):
        return self._find(name)[1]

    def get_tensor_shape(self, name):
        return self._find(name)[0].shape

    def get_tensor_dtype(self, name):
        return {"float32": self.trt.float32, "int64": self.trt.int64}[self._find(name)[0].dtype]

    def create_execution_context(self, strategy):
        assert strategy == self.trt.ExecutionContextAllocationStrategy.USER_MANAGED
        self.contexts.append(FakeContext(self.log))
        return self.contexts[-1]


class FakeTrt:
    """`trt.Logger`, `trt.Runtime(...).deserialize_cuda_engine`, enums and dtypes; `shape_override` breaks a plan."""

    float32, int64 = "DataType.FLOAT", "DataType.INT64"
    TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    ExecutionContextAllocationStrategy = SimpleNamespace(USER_MANAGED="USER_MANAGED")

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity):
            pass

    def __init__(self, preset: str = "tiny", break_component: str | None = None):
        self.log = []
        self.engines = {}
        specs = io_table(dcrt.get_preset(preset))
        trt = self

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, plan):
                name = json.loads(plan)["component"]
                spec = specs[name]
                if name == break_component:  # a plan whose first input has another shape
                    first = spec.inputs[0]
                    spec = type(spec)(
                        spec.name, (type(first)(first.name, first.dtype, (1,)), *spec.inputs[1:]), spec.outputs
                    )
                trt.engines[name] = FakeEngine(spec, DEVICE_MEMORY[name], trt.log, trt)
                return trt.engines[name]

        self.Runtime = Runtime


@dataclass
class FakeMemory:
    size: int
    ptr: int


class FakeAllocator:
    def __init__(self):
        self.blocks = []

    def __call__(self, size):
        self.blocks.append(FakeMemory(size, 0x1000 * (len(self.blocks) + 1)))
        return self.blocks[-1]
