"""What this machine can run: library versions, devices, and which backends are usable (and why not)."""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass, field

from dcrt.version import __version__


@dataclass(frozen=True)
class BackendStatus:
    name: str
    usable: bool
    reason: str  # what it runs on when usable, what is missing when not


@dataclass
class EnvironmentReport:
    versions: dict[str, str] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)
    backends: list[BackendStatus] = field(default_factory=list)


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception as exc:  # a broken install is reported, not raised
        return f"not available ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})".replace(
            ": )", ")"
        )


def _cuda_devices() -> tuple[list[str], str]:
    import torch

    if not torch.cuda.is_available():
        reason = "torch has no CUDA build" if torch.version.cuda is None else "no CUDA driver or GPU visible"
        return [], reason
    names = [
        f"cuda:{i} {torch.cuda.get_device_name(i)} (sm{''.join(map(str, torch.cuda.get_device_capability(i)))})"
        for i in range(torch.cuda.device_count())
    ]
    return names, ""


def _ort_providers() -> list[str]:
    try:
        import onnxruntime

        return list(onnxruntime.get_available_providers())
    except Exception:
        return []


def _gpu_backend(name: str, installed: bool, not_installed: str, gpus: list[str], no_gpu: str) -> BackendStatus:
    if not installed:
        return BackendStatus(name, False, not_installed)
    if not gpus:
        return BackendStatus(name, False, f"installed, but {no_gpu}")
    return BackendStatus(name, True, gpus[0])


def collect() -> EnvironmentReport:
    import torch

    report = EnvironmentReport()
    report.versions = {
        "dcrt": __version__,
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "tensorrt": _version("tensorrt"),
        "cuda-python": _version("cuda.bindings"),
        "open_clip": _version("open_clip"),
    }
    gpus, no_gpu = _cuda_devices()
    report.devices = ["cpu"] + gpus
    providers = _ort_providers()
    ort_cuda = "CUDAExecutionProvider" in providers
    has_trt = not report.versions["tensorrt"].startswith("not available")
    report.backends = [
        BackendStatus("torch (cpu)", True, "PyTorch on the CPU"),
        BackendStatus("torch (cuda)", bool(gpus), gpus[0] if gpus else no_gpu),
        BackendStatus(
            "onnxruntime (cpu)", "CPUExecutionProvider" in providers, ", ".join(providers) or "not installed"
        ),
        _gpu_backend("onnxruntime (cuda)", ort_cuda, "onnxruntime-gpu is not installed", gpus, no_gpu),
        _gpu_backend("tensorrt", has_trt, "TensorRT is not installed (pip install 'dcrt[trt]')", gpus, no_gpu),
        _fused_kernels(gpus, no_gpu),
    ]
    return report


def _fused_kernels(gpus: list[str], no_gpu: str) -> BackendStatus:
    """The graph runner's fused guidance + DDIM kernels (dcrt.kernels): compiled at run time by NVRTC."""
    import dcrt.kernels as kernels

    name = "fused kernels"
    try:
        nvrtc = ".".join(map(str, kernels.nvrtc_version()))
    except Exception as exc:  # no cuda-python or no libnvrtc: reported, not raised
        return BackendStatus(name, False, f"NVRTC unavailable ({type(exc).__name__}): the torch-op step runs instead")
    if not gpus:
        return BackendStatus(name, False, f"NVRTC {nvrtc} compiles them, but {no_gpu}")
    import torch

    arch = kernels.arch_for_capability(*torch.cuda.get_device_capability(0))
    return BackendStatus(name, True, f"NVRTC {nvrtc} for {arch}; fp32, fp16 and bf16 model outputs")


def format_report(report: EnvironmentReport) -> str:
    lines = ["versions:"]
    lines += [f"  {k:<12} {v}" for k, v in report.versions.items()]
    lines.append("devices:")
    lines += [f"  {d}" for d in report.devices]
    if len(report.devices) == 1:
        lines.append("  (no GPU: only the CPU backends can run here)")
    lines.append("backends:")
    lines += [f"  {b.name:<20} {'yes' if b.usable else 'no '}  {b.reason}" for b in report.backends]
    return "\n".join(lines)
