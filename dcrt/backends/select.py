"""`--backend auto`: the fastest backend this machine can run for a preset, and why the faster ones cannot.

Order: TensorRT engines (built for this GPU and TensorRT) > ONNX Runtime on CUDA (an export and
onnxruntime-gpu) > PyTorch on CUDA > ONNX Runtime on the CPU (an export) > PyTorch on the CPU.
`choose_backend` is pure: what is installed and visible comes in as `Facts`, which `probe()` measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dcrt.build import Target, bundle_dir, preset_dirname
from dcrt.config import Preset
from dcrt.errors import BackendUnavailable, DcrtError, UsageError
from dcrt.manifest import MANIFEST_FILE

BACKENDS = ("auto", "trt", "ort", "torch")


@dataclass(frozen=True)
class Facts:
    """What this machine offers. `None` fields are absent; the matching `*_why` says why."""

    target: Target | None = None  # TensorRT importable and a GPU visible
    tensorrt_why: str = "TensorRT is not installed"
    gpu: str | None = None  # name of the CUDA GPU PyTorch sees
    gpu_why: str = "no CUDA GPU visible"
    ort_cuda: bool = False
    ort_cpu: bool = True


@dataclass(frozen=True)
class BackendChoice:
    name: str  # "trt", "ort" or "torch"
    device: str  # "cuda" or "cpu"
    location: Path | None  # the engine bundle (trt) or export (ort) directory
    reason: str


def choose_backend(
    preset: Preset,
    requested: str,
    engines_root: Path,
    export_dir: Path,
    facts: Facts,
    device: str | None = None,
    height: int | None = None,
    width: int | None = None,
) -> BackendChoice:
    """Resolve `requested` (auto/trt/ort/torch) for `preset`. `device` None lets auto pick; "cpu" keeps it off
    the GPU. Raises BackendUnavailable / UsageError for an explicit request this machine cannot serve."""
    if requested not in BACKENDS:
        raise UsageError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    engines_root, export_dir = Path(engines_root), Path(export_dir)
    has_export = (export_dir / MANIFEST_FILE).is_file()
    preset_dir = preset_dirname(
        preset.name, height or preset.height, width or preset.width, (preset.height, preset.width)
    )
    bundle = bundle_dir(engines_root, facts.target, preset_dir) if facts.target else None
    has_engines = bundle is not None and (bundle / MANIFEST_FILE).is_file()

    if requested == "torch":
        return BackendChoice(
            "torch", device or ("cuda" if facts.gpu else "cpu"), None, "requested with --backend torch"
        )
    if requested == "ort":
        return BackendChoice(
            "ort",
            device or ("cuda" if facts.gpu and facts.ort_cuda else "cpu"),
            export_dir,
            "requested with --backend ort",
        )
    if requested == "trt":
        if facts.target is None:
            raise BackendUnavailable(f"--backend trt: {facts.tensorrt_why}")
        if device == "cpu":
            raise UsageError("--backend trt runs on CUDA, not --device cpu")
        from dcrt.build import find_bundle

        return BackendChoice(
            "trt",
            "cuda",
            find_bundle(engines_root, facts.target, preset.name, preset_dir),
            f"requested; engines for {facts.target.describe()}",
        )

    # auto: walk the order, remembering why each faster option was passed over.
    passed = []
    gpu_allowed = device != "cpu"
    if not gpu_allowed:
        passed.append("--device cpu keeps it off the GPU")
    elif facts.target is None:
        passed.append(f"not TensorRT: {facts.tensorrt_why}")
    elif not has_engines:
        passed.append(f"not TensorRT: no engines in {bundle} (`dcrt build --res {preset.name}`)")
    else:
        return BackendChoice("trt", "cuda", bundle, f"TensorRT engines for {facts.target.describe()} in {bundle}")
    if gpu_allowed and facts.gpu:
        if facts.ort_cuda and has_export:
            return BackendChoice("ort", "cuda", export_dir, _because(f"onnxruntime-gpu on {facts.gpu}", passed))
        passed.append(
            "not onnxruntime-gpu: "
            + (f"no export in {export_dir}" if facts.ort_cuda else "onnxruntime-gpu is not installed")
        )
        return BackendChoice("torch", "cuda", None, _because(f"PyTorch on {facts.gpu}", passed))
    if gpu_allowed:
        passed.append(f"not CUDA: {facts.gpu_why}")
    if facts.ort_cpu and has_export:
        return BackendChoice("ort", "cpu", export_dir, _because(f"ONNX Runtime on the CPU with {export_dir}", passed))
    passed.append(f"not ONNX Runtime: no export in {export_dir}" if facts.ort_cpu else "onnxruntime is not installed")
    return BackendChoice("torch", "cpu", None, _because("PyTorch on the CPU", passed))


def _because(what: str, passed: list[str]) -> str:
    return f"{what} ({'; '.join(passed)})" if passed else what


def probe(device: int = 0) -> Facts:
    """Measure the facts: imports TensorRT, onnxruntime and torch, asks CUDA for the GPU. Never raises."""
    from dcrt.build import detect_target

    target, tensorrt_why = None, ""
    try:
        target = detect_target(device)
    except DcrtError as exc:
        tensorrt_why = str(exc)
    gpu, gpu_why = None, ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(device)
        else:
            gpu_why = "torch has no CUDA build" if torch.version.cuda is None else "no CUDA driver or GPU visible"
    except Exception as exc:  # a broken torch install is reported, not raised
        gpu_why = f"torch.cuda failed ({type(exc).__name__})"
    try:
        import onnxruntime

        providers = set(onnxruntime.get_available_providers())
    except Exception:
        providers = set()
    return Facts(
        target, tensorrt_why, gpu, gpu_why, "CUDAExecutionProvider" in providers, "CPUExecutionProvider" in providers
    )


def describe(choice: BackendChoice) -> str:
    """One line for `dcrt info`."""
    return f"--backend auto uses {choice.name} on {choice.device}: {choice.reason}"
