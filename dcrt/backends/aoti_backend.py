"""AOTInductor: the `.pt2` packages of an AOTInductor bundle (`dcrt build --engine aoti`), one loaded package per
IO-table component, on the CPU or on CUDA (`AotiGraphs`, a `GraphRuntime`); `open_aoti` runs them behind the
bundle's family's backend (dcrt.backends.static).

The bundle is read and checked through dcrt.artifacts.aoti_bundle (the runtime never imports the builder): the packages
must have been built for this device, instruction set and torch version, from the IO table's tensors. A
package returns new output tensors on every call, allocated by torch (on CUDA from its caching allocator, on
the current stream).

CUDA graphs: a CUDA package enqueues its kernels on the current stream and its allocations come from the
caching allocator, so capturing it may work; whether it does was never measured where this was written (no
GPU), so `capturable` stays False until `benchmarks/gpu_report.py` (its `aoti` section) has measured it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch

from dcrt.artifacts.aoti_bundle import AotiManifest, can_run, check_bundle, detect_aoti_target, rebuild_command
from dcrt.artifacts.graphs import io_table
from dcrt.backends.static import family_backend
from dcrt.errors import UsageError
from dcrt.presets import get_preset

# Silenced while a package loads, as they say nothing a run can act on:
# - torch warns on every load of a portable (AVX2) package on an AVX-512 CPU that the ISAs differ: that is the point
#   of a portable package;
# - torch.utils.cpp_extension, imported by the loader, says "No CUDA runtime is found, using CUDA_HOME=..." on every
#   machine with a CUDA toolkit and no GPU: a CPU package needs neither.
_LOAD_LOGGERS = ("torch.export.pt2_archive._package", "torch.utils.cpp_extension")


@contextmanager
def _quiet(*names: str):
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def load_package(path: Path, device: str):
    """One `.pt2` package, callable with its inputs in manifest order; returns its outputs in manifest order.
    `run_single_threaded` drops the runner's per-call locking: dcrt calls each package from one thread, and
    torch documents the locking as what conflicts with CUDA graphs."""
    index = torch.device(device).index if torch.device(device).type == "cuda" else -1
    with _quiet(*_LOAD_LOGGERS):
        from torch._inductor import aoti_load_package

        return aoti_load_package(str(path), run_single_threaded=True, device_index=-1 if index is None else index)


def call_package(package, inputs) -> tuple[torch.Tensor, ...]:
    """A loaded package's outputs as a tuple: a package of one output returns the bare tensor."""
    out = package(*inputs)
    return tuple(out) if isinstance(out, (list, tuple)) else (out,)


class AotiGraphs:
    """An AOTInductor bundle checked against this device and the IO table, one loaded package per graph: a
    `GraphRuntime` (dcrt.backends.static). Every file is checked against its manifest record: the size always, the
    sha256 with `verify` (reads every byte)."""

    capturable = False  # unmeasured on CUDA (module docstring); gpu_report's aoti section measures it

    def __init__(self, bundle_dir: str | Path, device: str | torch.device | None = None, verify: bool = False):
        self.directory = directory = Path(bundle_dir)
        self.manifest = AotiManifest.read(directory)
        self.device = torch.device(device or self.manifest.device)
        if self.device.type != self.manifest.device:
            raise UsageError(
                f"{directory} holds {self.manifest.device} packages, not {self.device.type} ones: "
                f"build them with `{rebuild_command(self.manifest.preset, self.device.type)}`"
            )
        why = can_run(self.manifest.target, detect_aoti_target(self.device.type, self.manifest.target.native))
        if why is not None:
            raise UsageError(
                f"{directory}: {why}: rebuild with `{rebuild_command(self.manifest.preset, self.device.type)}`"
            )
        self.preset = preset = get_preset(self.manifest.preset)
        self.specs = specs = io_table(preset, self.manifest.height, self.manifest.width)
        check_bundle(self.manifest, specs, directory, verify)
        self.precision = f"{self.manifest.precision} AOTInductor packages ({self.manifest.isa})"
        self.packages = {name: self._load(directory / self.manifest.engines[name].file) for name in specs}

    def _load(self, path: Path):
        """One package; a file that torch cannot load (corrupt, though of its recorded size) is one line."""
        try:
            return load_package(path, str(self.device))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            hint = rebuild_command(self.manifest.preset, self.manifest.device)
            raise UsageError(
                f"{path} cannot be loaded ({type(exc).__name__}: {first}): check it with --verify, or rebuild with "
                f"`{hint}`"
            ) from None

    def execute(self, name: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        spec = self.specs[name]
        args = [x.to(device=self.device, dtype=t.torch_dtype).contiguous() for t, x in zip(spec.inputs, inputs)]
        with torch.inference_mode():
            return call_package(self.packages[name], args)


def open_aoti(bundle_dir: str | Path, device: str | torch.device | None = None, verify: bool = False):
    """The AOTInductor backend of the bundle's model family."""
    return family_backend(AotiGraphs(bundle_dir, device, verify))
