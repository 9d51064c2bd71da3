"""One probe of the machine: CUDA GPUs, ONNX Runtime providers, package versions, CPU and driver.

Read by `dcrt info` (dcrt.info), `--backend auto` (dcrt.backends.machine_facts.probe) and bench reports
(dcrt.bench.environment). Torch-free at import: each function imports what it asks about when called,
and none raises: a missing or broken package is an answer, with the reason.
"""

from __future__ import annotations

import importlib
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]

    def describe(self) -> str:
        return f"cuda:{self.index} {self.name} (sm{''.join(map(str, self.capability))})"


def cuda_gpus() -> tuple[list[Gpu], str]:
    """(the CUDA GPUs PyTorch sees, why there are none when the list is empty)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return [], "torch has no CUDA build" if torch.version.cuda is None else "no CUDA driver or GPU visible"
        gpus = range(torch.cuda.device_count())
        return [Gpu(i, torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i))) for i in gpus], ""
    except Exception as exc:  # a broken torch install is reported, not raised
        return [], f"torch.cuda failed ({type(exc).__name__})"


def ort_providers() -> list[str]:
    """ONNX Runtime's execution providers (e.g. CUDAExecutionProvider, CPUExecutionProvider); [] without it."""
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:
        return []


def package_version(module: str) -> tuple[str | None, str]:
    """(`module.__version__`, or "installed" when it has none; None and why when it cannot be imported)."""
    try:
        return getattr(importlib.import_module(module), "__version__", "installed"), ""
    except Exception as exc:  # a broken install is reported, not raised
        message = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
        )
        return out.stdout.strip() or None
    except OSError:
        return None
