"""A simulated CUDA device on the CPU: what the first GPU run would trip over, found by CI instead.

Inside `simulated_cuda()`:
- tensors are `FakeTensorMode` tensors (shapes, dtypes and devices; no data), the models' on `cuda:0`, so an op
  that mixes a CPU and a CUDA tensor, or two dtypes where CUDA's kernels refuse it, raises as it would there;
- CUDA autocast is on where code asks for it (torch switches it off when it finds no driver);
- a CUDA graph capture is simulated: the captured body runs under `NoHostSync`, which raises on every op that
  makes the host wait for the device (`.item()`, a copy to the CPU, `nonzero`), as a real capture does; replay
  only counts, since fake tensors hold no values;
- dcrt's fused kernels are the real `dcrt.runners.kernels.Kernels` wrappers (their argument checks: contiguous CUDA
  tensors of the right dtypes) over a recorder of launches that checks the kernel names and the launch
  configuration against CUDA's limits;
- the CUDA generator draws on the CPU (fake tensors ignore the values), streams are no-ops;
- attention calls are checked against the batch limit of CUDA's fused attention kernels
  (`dcrt.models.layers.MAX_ATTENTION_BATCH`);
- decoded frames come back as arrays of the right shape (`frames_shape_only`), since fake tensors have
  nothing to copy to the host.

benchmarks/memory.py counts the device bytes of a run inside it; the tests (tests/test_simulated_cuda.py) run
every GPU mode inside it.

What it cannot see: numerics, kernel bodies, and timing. tests/runners/test_kernels.py and the `-m gpu` tests cover
those on a GPU (benchmarks/gpu_report.py runs them first).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import dcrt
import dcrt.runners.kernels
from dcrt.models import layers
from dcrt.runners.kernel_compile import KERNEL_NAMES, KernelError

DEVICE = torch.device("cuda", 0)
# CUDA's launch limits: gridDim.x < 2^31, gridDim.y and .z <= 65535, at most 1024 threads a block.
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_THREADS_PER_BLOCK = 1024

aten = torch.ops.aten


def fake_model(network: type, preset, dtype: torch.dtype, fake: FakeTensorMode, device: str | torch.device = "cpu"):
    """`network(preset)` (DynamiCrafter, StableVideoDiffusion) as fake tensors in `dtype` on `device` (its schedule
    buffers as the model builds them)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the dtype: converting fake parameters afterwards is unsupported
    try:
        with fake, torch.device(device):
            return network(dcrt.get_preset(preset)).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(default)


def frames_shape_only(video: torch.Tensor) -> np.ndarray:
    """`to_uint8_frames` for fake tensors: the device-side conversion runs, the host copy is an empty array."""
    x = ((video.float().clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0).to(torch.uint8).permute(0, 2, 3, 1)
    return np.zeros(tuple(x.shape), np.uint8)


class HostSync(RuntimeError):
    """An op inside a simulated capture made the host wait for the device."""


class NoHostSync(TorchDispatchMode):
    """Raises `HostSync` on ops that synchronise the host with the device: reading a value (`.item()`, `bool()`),
    data-dependent shapes (`nonzero`), copies from a CUDA tensor to the CPU."""

    READS_VALUES = {aten.item.default, aten._local_scalar_dense.default, aten.nonzero.default, aten.is_nonzero.default}
    CONVERSIONS = {aten._to_copy.default, aten.to.dtype_layout, aten.to.device}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.READS_VALUES:
            raise HostSync(f"{func} reads a device value on the host")
        if func in self.CONVERSIONS and _on_cuda(args[0]) and any(map(_is_cpu, [*args[1:], *kwargs.values()])):
            raise HostSync("a copy from the device to the CPU")
        if func is aten.copy_.default and _is_cpu(args[0].device) and _on_cuda(args[1]):
            raise HostSync("a copy from the device into a CPU tensor")
        return func(*args, **kwargs)


def _on_cuda(t) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type == "cuda"


def _is_cpu(device) -> bool:
    return isinstance(device, torch.device) and device.type == "cpu"


@dataclass
class SimulatedGraph:
    """torch.cuda.CUDAGraph's part that the runners use: capture once, then replay."""

    captures: int = 0
    replays: int = 0

    def replay(self) -> None:
        if not self.captures:
            raise RuntimeError("replay of a graph that was never captured")
        self.replays += 1


@dataclass
class SimulatedStream:
    cuda_stream: int = 0

    def wait_stream(self, other) -> None:
        pass

    def synchronize(self) -> None:
        pass


@dataclass
class Launch:
    name: str
    grid: tuple[int, ...]
    block: tuple[int, ...]


@dataclass
class LaunchRecorder:
    """Stands in for `dcrt.runners.kernels.KernelModule`: checks each launch's kernel name and configuration, keeps
    it."""

    launches: list[Launch] = field(default_factory=list)

    def function(self, name: str):
        if name not in KERNEL_NAMES:
            raise KernelError(f"no kernel {name!r} in the cubin")
        return name

    def launch(self, name: str, grid: tuple[int, ...], block: tuple[int, ...], args: list, stream: int = 0) -> None:
        self.function(name)
        grid, block = (*grid, 1, 1)[:3], (*block, 1, 1)[:3]
        if any(not 0 < g <= limit for g, limit in zip(grid, MAX_GRID)):
            raise KernelError(f"{name}: grid {grid} outside CUDA's limits {MAX_GRID}")
        if min(block) < 1 or block[0] * block[1] * block[2] > MAX_THREADS_PER_BLOCK:
            raise KernelError(f"{name}: block {block} outside CUDA's limits")
        self.launches.append(Launch(name, grid, block))


class SimulatedGenerator(torch.Generator):
    """A `torch.Generator(device="cuda")` that draws on the CPU: fake tensors ignore the values anyway."""

    def __new__(cls, device="cpu"):
        return super().__new__(cls, "cpu")

    def __init__(self, device="cpu"):
        pass


@dataclass
class SimulatedCuda:
    """What a run inside `simulated_cuda()` did on the simulated device."""

    fake: FakeTensorMode
    graphs: list[SimulatedGraph] = field(default_factory=list)
    kernels: LaunchRecorder = field(default_factory=LaunchRecorder)
    attention_batches: list[int] = field(default_factory=list)

    def new_graph(self) -> SimulatedGraph:
        self.graphs.append(SimulatedGraph())
        return self.graphs[-1]

    @contextlib.contextmanager
    def capture(self, graph: SimulatedGraph, **kwargs) -> Iterator[None]:
        with NoHostSync():
            yield
        graph.captures += 1

    def load_kernels(self, device) -> dcrt.runners.kernels.Kernels:
        """dcrt's `Kernels` wrappers, as `load_kernels` gives them, launching into the recorder."""
        kernels = object.__new__(dcrt.runners.kernels.Kernels)
        kernels.device, kernels.module = torch.device(device), self.kernels
        return kernels

    def attention(self, q, k, v, *args, **kwargs):
        """F.scaled_dot_product_attention, recording each call's batch and holding it to the kernels' limit."""
        if q.shape[0] > layers.MAX_ATTENTION_BATCH:
            raise RuntimeError(f"attention batch {q.shape[0]} > {layers.MAX_ATTENTION_BATCH}: invalid configuration")
        self.attention_batches.append(q.shape[0])
        return _sdpa(q, k, v, *args, **kwargs)

    def build(self, network: type, preset, dtype: torch.dtype) -> torch.nn.Module:
        """`network(preset)` with fake weights in `dtype` on the simulated device."""
        return fake_model(network, preset, dtype, self.fake, DEVICE)


_sdpa = F.scaled_dot_product_attention


@contextlib.contextmanager
def simulated_cuda() -> Iterator[SimulatedCuda]:
    """The simulated device (module docstring); the fake tensor mode is entered, with inference mode."""
    cuda = SimulatedCuda(FakeTensorMode(allow_non_fake_inputs=True))
    stream = SimulatedStream()
    patches = [
        mock.patch("torch.cuda.amp.common.amp_definitely_not_available", lambda: False),
        # Fake mode computes ops on one-element real tensors for real ("constants"): on CUDA, that needs a driver.
        mock.patch("torch._subclasses.fake_tensor.CONSTANT_NUMEL_LIMIT", 0),
        mock.patch("torch.cuda.CUDAGraph", cuda.new_graph),
        mock.patch("torch.cuda.graph", cuda.capture),
        mock.patch("torch.cuda.Stream", SimulatedStream),
        mock.patch("torch.cuda.stream", lambda s: contextlib.nullcontext()),
        mock.patch("torch.cuda.current_stream", lambda device=None: stream),
        mock.patch("torch.cuda.synchronize", lambda device=None: None),
        mock.patch("torch.cuda.empty_cache", lambda: None),
        mock.patch("torch.Generator", SimulatedGenerator),
        mock.patch("dcrt.runners.kernels.load_kernels", cuda.load_kernels),
        mock.patch("torch.nn.functional.scaled_dot_product_attention", cuda.attention),
        *(
            mock.patch(f"dcrt.families.{m}.to_uint8_frames", frames_shape_only)
            for m in ("dynamicrafter.pipeline", "dynamicrafter.clip_decode", "svd.pipeline")
        ),
    ]
    with contextlib.ExitStack() as stack, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Accessing the data pointer of FakeTensor")
        for patch in patches:
            stack.enter_context(patch)
        stack.enter_context(cuda.fake)
        stack.enter_context(torch.inference_mode())
        yield cuda
