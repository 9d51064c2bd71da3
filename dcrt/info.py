"""What this machine can run: library versions, devices, and which backends are usable (and why not)."""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass, field

from dcrt.environment import Gpu, cuda_gpus, ort_providers, package_version
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
    version, why = package_version(module)
    return version if version is not None else f"not available ({why})"


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
    found, no_gpu = cuda_gpus()
    gpus = [gpu.describe() for gpu in found]
    report.devices = ["cpu"] + gpus
    providers = ort_providers()
    ort_cuda = "CUDAExecutionProvider" in providers
    has_trt = package_version("tensorrt")[0] is not None
    report.backends = [
        BackendStatus("torch (cpu)", True, "PyTorch on the CPU"),
        BackendStatus("torch (cuda)", bool(gpus), gpus[0] if gpus else no_gpu),
        BackendStatus(
            "onnxruntime (cpu)", "CPUExecutionProvider" in providers, ", ".join(providers) or "not installed"
        ),
        _gpu_backend("onnxruntime (cuda)", ort_cuda, "onnxruntime-gpu is not installed", gpus, no_gpu),
        _gpu_backend("tensorrt", has_trt, "TensorRT is not installed (pip install 'dcrt[trt]')", gpus, no_gpu),
        *_aoti(gpus, no_gpu),
        _fused_kernels(found, no_gpu),
    ]
    return report


def _aoti(gpus: list[str], no_gpu: str) -> list[BackendStatus]:
    """AOTInductor packages: PyTorch runs them; building them takes a C++ compiler (`dcrt build --engine aoti`)."""
    compiler = shutil.which("g++")
    how = "packages from `dcrt build --engine aoti`" + ("" if compiler else " (building them needs g++: not installed)")
    return [BackendStatus("aoti (cpu)", True, how), _gpu_backend("aoti (cuda)", True, "", gpus, no_gpu)]


def _fused_kernels(gpus: list[Gpu], no_gpu: str) -> BackendStatus:
    """The graph runner's fused guidance + DDIM kernels (dcrt.runners.kernels): compiled at run time by NVRTC."""
    import dcrt.runners.kernel_compile as kernels  # torch-free: `dcrt info` answers before torch loads

    name = "fused kernels"
    try:
        nvrtc = ".".join(map(str, kernels.nvrtc_version()))
    except Exception as exc:  # no cuda-python or no libnvrtc: reported, not raised
        return BackendStatus(name, False, f"NVRTC unavailable ({type(exc).__name__}): the torch-op step runs instead")
    if not gpus:
        return BackendStatus(name, False, f"NVRTC {nvrtc} compiles them, but {no_gpu}")
    arch = kernels.arch_for_capability(*gpus[0].capability)
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
