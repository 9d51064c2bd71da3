"""What this machine offers the runtimes (`MachineFacts`, measured once by `probe`): TensorRT and a GPU, ONNX Runtime's
providers, the AOTInductor targets whose packages run here. dcrt.backends.select decides from these facts alone, so
its choice is tested on any machine with facts written by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcrt.errors import DcrtError

if TYPE_CHECKING:
    from dcrt.artifacts.aoti_bundle import AotiTarget
    from dcrt.artifacts.engine_bundle import Target


@dataclass(frozen=True)
class MachineFacts:
    """What this machine offers. `None` fields are absent; the matching `*_why` says why."""

    target: Target | None = None  # TensorRT importable and a GPU visible
    tensorrt_why: str = "TensorRT is not installed"
    gpu: str | None = None  # name of the CUDA GPU PyTorch sees
    gpu_why: str = "no CUDA GPU visible"
    ort_cuda: bool = False
    ort_cpu: bool = True
    # AOTInductor targets whose packages run here, preferred first: this GPU, this CPU (native), portable AVX2.
    aoti: tuple[AotiTarget, ...] = ()


def probe(device: int = 0) -> MachineFacts:
    """Measure the facts: imports TensorRT, onnxruntime and torch, asks CUDA for the GPU. Never raises."""
    from dcrt.artifacts.engine_bundle import detect_target

    target, tensorrt_why = None, ""
    try:
        target = detect_target(device)
    except DcrtError as exc:
        tensorrt_why = str(exc)
    from dcrt.environment import cuda_gpus, ort_providers  # the one probe of the machine, torch-free at import

    gpus, gpu_why = cuda_gpus()
    gpu = gpus[device].name if device < len(gpus) else None
    if gpus and gpu is None:
        gpu_why = f"CUDA device {device} does not exist ({len(gpus)} visible)"
    providers = set(ort_providers())
    return MachineFacts(
        target,
        tensorrt_why,
        gpu,
        gpu_why,
        "CUDAExecutionProvider" in providers,
        "CPUExecutionProvider" in providers,
        aoti_targets(device if gpu is not None else None),
    )


def aoti_targets(gpu: int | None) -> tuple[AotiTarget, ...]:
    """The AOTInductor targets whose packages run here, preferred first: CUDA device `gpu`, this CPU model, AVX2."""
    from dcrt.artifacts.aoti_bundle import cpu_target, cuda_target, runs_avx2

    targets = [cuda_target(gpu)] if gpu is not None else []
    return (*targets, cpu_target(native=True), *([cpu_target(native=False)] if runs_avx2() else []))
