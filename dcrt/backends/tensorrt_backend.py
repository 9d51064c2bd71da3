"""TensorRT backend: the plans of an engine bundle (`dcrt build`), run on a caller-owned CUDA stream.

Two layers. `EngineSet` makes no torch call (TensorRT + cuda-python's `cuda.bindings`): it checks the
bundle against this GPU and TensorRT, deserializes every plan once, gives all execution contexts ONE
scratch block (USER_MANAGED: the engines never run at the same time, so the largest
`device_memory_size_v2` is enough), and binds every input/output to a static device buffer once with
`set_tensor_address`. A run is then one `execute_async_v3(stream)`: nothing is allocated, bound or
synchronised per call. `TensorRTBackend` puts the `Backend` interface on top: its static buffers are
torch tensors, so the pipeline copies into inputs and reads outputs without any conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dcrt.backends.base import Backend
from dcrt.build import EngineManifest, Target, check_target, detect_target, import_tensorrt, rebuild_command
from dcrt.config import get_preset
from dcrt.errors import BackendUnavailable, DcrtError, UsageError
from dcrt.io_spec import ComponentSpec, TensorSpec, io_table
from dcrt.manifest import sha256_file

_ELEMENT_BYTES = {"float32": 4, "int64": 8}


def _cuda(result, what: str):
    """cuda.bindings returns (error, *values): raise on error, return the values."""
    from cuda.bindings import runtime

    err, *values = result
    if err != runtime.cudaError_t.cudaSuccess:
        raise DcrtError(f"{what} failed: {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else values


def nbytes(spec: TensorSpec) -> int:
    count = 1
    for d in spec.shape:
        count *= d
    return count * _ELEMENT_BYTES[spec.dtype]


class DeviceMemory:
    """Bytes from cudaMalloc on one device, freed by `free()` (or when collected)."""

    def __init__(self, size: int, device: int = 0):
        from cuda.bindings import runtime

        _cuda(runtime.cudaSetDevice(device), "cudaSetDevice")
        self.size = size
        self.ptr = int(_cuda(runtime.cudaMalloc(max(size, 1)), f"cudaMalloc({size})"))

    def free(self) -> None:
        if self.ptr:
            from cuda.bindings import runtime

            runtime.cudaFree(self.ptr)
            self.ptr = 0

    def __del__(self):
        try:
            self.free()
        except Exception:  # interpreter shutdown: the driver reclaims it anyway
            pass


@dataclass(frozen=True)
class BoundTensor:
    spec: TensorSpec
    ptr: int  # device address bound to the context once


class EngineRunner:
    """One deserialized engine: a context on the shared scratch block, every IO tensor bound once."""

    def __init__(self, trt, engine, spec: ComponentSpec, scratch, buffers: dict[str, int]):
        self.spec = spec
        self.engine = engine
        _check_engine_io(trt, engine, spec)
        # USER_MANAGED: TensorRT allocates no activation memory of its own; we hand it the shared block.
        self.context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if self.context is None:
            raise DcrtError(f"TensorRT could not create an execution context for {spec.name}")
        self.context.set_device_memory(scratch.ptr, scratch.size)
        self.tensors = {}
        for t in (*spec.inputs, *spec.outputs):
            if not self.context.set_tensor_address(t.name, buffers[t.name]):
                raise DcrtError(f"{spec.name}: TensorRT refused the address of {t.name}")
            self.tensors[t.name] = BoundTensor(t, buffers[t.name])

    def enqueue(self, stream: int) -> None:
        """Queue one run on `stream` (a cudaStream_t as int); returns at once, no host synchronisation."""
        if not self.context.execute_async_v3(stream):
            raise DcrtError(f"TensorRT failed to enqueue {self.spec.name}")

    def copy_in(self, name: str, src: int, stream: int) -> None:
        """Device-to-device copy of an input into its bound buffer, ordered on `stream`."""
        from cuda.bindings import runtime

        t = self.tensors[name]
        _cuda(
            runtime.cudaMemcpyAsync(
                t.ptr, src, nbytes(t.spec), runtime.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream
            ),
            f"cudaMemcpyAsync({self.spec.name}.{name})",
        )


def _check_engine_io(trt, engine, spec: ComponentSpec) -> None:
    """The plan's IO must be the IO table's (names, modes, shapes, dtypes): a stale plan fails here, not later."""
    dtypes = {"float32": trt.float32, "int64": trt.int64}
    want = {t.name: (trt.TensorIOMode.INPUT, t) for t in spec.inputs} | {
        t.name: (trt.TensorIOMode.OUTPUT, t) for t in spec.outputs
    }
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    if sorted(names) != sorted(want):
        raise UsageError(f"{spec.name}.plan has tensors {names}, the IO table says {list(want)}: rebuild it")
    for name in names:
        mode, t = want[name]
        got = (engine.get_tensor_mode(name), tuple(engine.get_tensor_shape(name)), engine.get_tensor_dtype(name))
        if got != (mode, t.shape, dtypes[t.dtype]):
            raise UsageError(
                f"{spec.name}.plan: tensor {name} is {got}, the IO table says {(mode, t.shape, t.dtype)}: rebuild it"
            )


def check_bundle(manifest: EngineManifest, specs: dict[str, ComponentSpec], directory: Path, verify: bool) -> None:
    """Every component present, consistent with the embedded export, and (verify) each plan's sha256."""
    hint = f"rebuild with `{rebuild_command(manifest)}`"
    exported = manifest.export.get("components", {})
    for name, spec in specs.items():
        entry = manifest.engines.get(name)
        if entry is None:
            raise UsageError(f"{directory} has no engine for {name} (interrupted build?): {hint}")
        if entry.inputs != [t.as_dict() for t in spec.inputs] or entry.outputs != [t.as_dict() for t in spec.outputs]:
            raise UsageError(f"{directory / entry.file} has other inputs/outputs than preset {manifest.preset}: {hint}")
        if entry.onnx != exported.get(name, {}).get("files"):
            raise UsageError(f"{directory / entry.file} was built from another export than the bundle's: {hint}")
        path = directory / entry.file
        if not path.is_file():
            raise UsageError(f"{path} is missing: {hint}")
        if verify and sha256_file(path) != entry.sha256:
            raise UsageError(f"{path} does not match the sha256 in its manifest (corrupt or modified): {hint}")
    if not manifest.schedule:
        raise UsageError(f"{directory} has no noise-schedule file: {hint}")
    for file, digest in manifest.schedule.items():
        if not (directory / file).is_file() or (verify and sha256_file(directory / file) != digest):
            raise UsageError(f"{directory / file} is missing or modified: {hint}")


class EngineSet:
    """All plans of a bundle, ready to enqueue. Torch-free; `buffer(component, spec)` supplies each static IO
    address (default: one cudaMalloc each, owned here)."""

    def __init__(
        self,
        bundle_dir: str | Path,
        device: int = 0,
        buffer: Callable[[str, TensorSpec], int] | None = None,
        verify: bool = True,
        target: Target | None = None,
        trt=None,
        allocate: Callable[[int], object] | None = None,
    ):
        self.directory = Path(bundle_dir)
        if not self.directory.is_dir():
            raise UsageError(f"engine bundle {self.directory} does not exist (run `dcrt build`)")
        self.manifest = EngineManifest.read(self.directory)
        self.preset = get_preset(self.manifest.preset)
        self.specs = io_table(self.preset, self.manifest.height, self.manifest.width)
        trt = trt or import_tensorrt()
        check_target(self.manifest, target or detect_target(device), self.preset.name, self.directory)
        check_bundle(self.manifest, self.specs, self.directory, verify)
        allocate = allocate or (lambda size: DeviceMemory(size, device))
        self._owned = []  # buffers allocated here live as long as the set
        if buffer is None:

            def buffer(component: str, t: TensorSpec) -> int:
                self._owned.append(allocate(nbytes(t)))
                return self._owned[-1].ptr

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engines = {}
        for name in self.specs:
            plan = (self.directory / self.manifest.engines[name].file).read_bytes()
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise UsageError(
                    f"TensorRT could not load {self.directory / self.manifest.engines[name].file}: "
                    f"rebuild with `{rebuild_command(self.manifest)}`"
                )
            engines[name] = engine
        # One scratch block for all: sized by the hungriest engine, measured now (not trusted from the manifest).
        self.scratch = allocate(max(int(e.device_memory_size_v2) for e in engines.values()))
        self.runners = {
            name: EngineRunner(
                trt, engines[name], spec, self.scratch, {t.name: buffer(name, t) for t in (*spec.inputs, *spec.outputs)}
            )
            for name, spec in self.specs.items()
        }

    def __getitem__(self, component: str) -> EngineRunner:
        return self.runners[component]


def _torch_cuda_device(device):
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        raise UsageError("the TensorRT backend runs on CUDA only (use --device cuda)")
    if not torch.cuda.is_available():
        raise BackendUnavailable("the TensorRT backend needs a CUDA GPU, and none is visible (see `dcrt info`)")
    return torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())


class TensorRTBackend(Backend):
    """`Backend` over an `EngineSet` whose static IO buffers are torch tensors. All work is queued on torch's
    current stream of the device (the caller's), so it orders with the pipeline's own kernels; nothing syncs."""

    capturable = True  # copies and execute_async_v3 on the current stream (warmed up before capture)
    precision = "float16 engines"

    def __init__(self, bundle_dir: str | Path, device="cuda", verify: bool = True):
        self.device = _torch_cuda_device(device)
        self.io: dict[tuple[str, str], torch.Tensor] = {}  # (component, tensor) -> its bound static buffer
        self.engines = EngineSet(bundle_dir, self.device.index, buffer=self._allocate, verify=verify)
        self.preset = self.engines.preset
        self.decode_chunk = self.engines.specs["vae_decoder"].batch
        self.encode_frames = self.engines.specs["vae_encoder"].batch
        from safetensors.torch import load_file

        schedule = self.engines.manifest.schedule
        self._schedule = {k: v for f in schedule for k, v in load_file(self.engines.directory / f).items()}

    def _allocate(self, component: str, t: TensorSpec) -> int:
        tensor = torch.empty(t.shape, dtype=t.torch_dtype, device=self.device)
        self.io[(component, t.name)] = tensor
        return tensor.data_ptr()

    def _run(self, component: str, *inputs: torch.Tensor) -> torch.Tensor:
        """Copy inputs into the bound buffers and enqueue, all on the caller's current stream; returns the
        output buffer (overwritten by the next call of the same component)."""
        runner = self.engines[component]
        for t, x in zip(runner.spec.inputs, inputs):
            if tuple(x.shape) != t.shape:
                raise UsageError(f"{component}: input {t.name} must be {list(t.shape)}, got {list(x.shape)}")
            self.io[(component, t.name)].copy_(x, non_blocking=True)  # casts dtype / moves device if needed
        runner.enqueue(torch.cuda.current_stream(self.device).cuda_stream)
        return self.io[(component, runner.spec.outputs[0].name)]

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._run("text_encoder", row[None]).clone() for row in tokens])

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._run("image_encoder", p[None]).clone() for p in pixels])

    def unet(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if batch == 3:
            return self._run("unet_b3", x, t, context, fs)
        if batch == 1:  # no guidance: run the batch-2 engine on a duplicate and keep one
            return self._run("unet", *(v.expand(2, *v.shape[1:]) for v in (x, t, context, fs)))[:1]
        return self._run("unet", x, t, context, fs)

    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[0]
        padded = torch.cat([frames, frames[-1:].expand(self.encode_frames - n, -1, -1, -1)])
        return self._run("vae_encoder", padded)[:n].clone()

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        padded = torch.cat([z, z[-1:].expand(self.decode_chunk - n, -1, -1, -1)])
        return self._run("vae_decoder", padded)[:n]

    def schedule_buffers(self) -> dict[str, torch.Tensor]:
        return self._schedule
