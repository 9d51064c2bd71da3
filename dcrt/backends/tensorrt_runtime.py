"""The TensorRT runtime: the plans of an engine bundle (`dcrt build`), ready to run on a caller-owned CUDA stream.
It makes no torch call: TensorRT and cuda-python's `cuda.bindings` only.

`EngineSet` checks the bundle against this GPU and TensorRT (dcrt.artifacts.engine_bundle: the runtime never imports
the builder), deserializes every plan once, gives all execution contexts ONE scratch block (USER_MANAGED:
the engines never run at the same time, so the largest `device_memory_size_v2` is enough), and binds every
input/output to a static device buffer once with `set_tensor_address`. A run is then one
`execute_async_v3(stream)`: nothing is allocated, bound or synchronised per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dcrt.artifacts.engine_bundle import (
    EngineManifest,
    Target,
    check_bundle,
    check_target,
    detect_target,
    import_tensorrt,
    rebuild_command,
)
from dcrt.artifacts.graphs import ComponentSpec, TensorSpec
from dcrt.errors import DcrtError, UsageError
from dcrt.families import family_of
from dcrt.presets import get_preset

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


class EngineSet:
    """All plans of a bundle, ready to enqueue. Torch-free; `buffer(component, spec)` supplies each static IO
    address (default: one cudaMalloc each, owned here). Files are checked by size; `verify` re-hashes them."""

    def __init__(
        self,
        bundle_dir: str | Path,
        device: int = 0,
        buffer: Callable[[str, TensorSpec], int] | None = None,
        verify: bool = False,
        target: Target | None = None,
        trt=None,
        allocate: Callable[[int], object] | None = None,
    ):
        self.directory = Path(bundle_dir)
        if not self.directory.is_dir():
            raise UsageError(f"engine bundle {self.directory} does not exist (run `dcrt build`)")
        self.manifest = EngineManifest.read(self.directory)
        self.preset = get_preset(self.manifest.preset)
        self.specs = family_of(self.preset).part("io_table")(self.preset, self.manifest.height, self.manifest.width)
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
