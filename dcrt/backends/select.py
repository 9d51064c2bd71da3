"""`--backend auto`: the fastest backend this machine can run for a request, and why the faster ones cannot.

Order: TensorRT engines (built for this GPU and TensorRT) > AOTInductor packages for this GPU > ONNX Runtime
on CUDA (an export and onnxruntime-gpu) > PyTorch on CUDA > AOTInductor packages for this CPU > ONNX Runtime
on the CPU (an export) > PyTorch on the CPU. Why AOTInductor sits where it does: docs/backends.md.
An engine bundle, AOTInductor bundle or export serves a request only when its manifest says it holds the
requested preset, size and weights (dcrt.weights): auto passes over one that does not, with a notice; a backend named
explicitly raises instead. `choose_backend` decides from `Facts`, which `probe()` measures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dcrt.artifacts.manifest import MANIFEST_FILE
from dcrt.errors import BackendUnavailable, DcrtError, UsageError
from dcrt.families.dynamicrafter.config import Preset
from dcrt.weights import Weights, describe_source, made_from

if TYPE_CHECKING:
    from dcrt.artifacts.aoti_bundle import AotiTarget
    from dcrt.artifacts.engine_bundle import Target

BACKENDS = ("auto", "trt", "aoti", "ort", "torch")
EXPORT, TRT, AOTI = "export", "trt", "aoti"  # the kinds of artifact a run may load
Log = Callable[[str], None]


@dataclass(frozen=True)
class Facts:
    """What this machine offers. `None` fields are absent; the matching `*_why` says why."""

    target: Target | None = None  # TensorRT importable and a GPU visible
    tensorrt_why: str = "TensorRT is not installed"
    gpu: str | None = None  # name of the CUDA GPU PyTorch sees
    gpu_why: str = "no CUDA GPU visible"
    ort_cuda: bool = False
    ort_cpu: bool = True
    # AOTInductor targets whose packages run here, preferred first: this GPU, this CPU (native), portable AVX2.
    aoti: tuple[AotiTarget, ...] = ()


@dataclass(frozen=True)
class Request:
    """What a run needs from an export or engine bundle. `weights` None: no checkpoint is at hand, so
    the artifact's own weights are used."""

    preset: Preset
    height: int
    width: int
    weights: Weights | None = None


@dataclass(frozen=True)
class BackendChoice:
    name: str  # "trt", "aoti", "ort" or "torch"
    device: str  # "cuda" or "cpu"
    location: Path | None  # the engine bundle (trt), AOTInductor bundle (aoti) or export (ort) directory
    reason: str
    weights: str = ""  # the weights the run uses (a checkpoint path or a random source)
    notices: tuple[str, ...] = ()  # auto: each export or bundle passed over, and why

    def summary(self) -> str:
        """The one line every run prints: which backend, and which weights."""
        where = f" with {self.location}" if self.location is not None else ""
        return f"using {self.name} on {self.device}{where}, weights {self.weights}"


@dataclass(frozen=True)
class Unfit:
    """Why the export or bundle at `location` cannot serve a request, and the command that makes one that can."""

    location: Path
    fact: str  # completes "<location> ..."
    remedy: str

    def error(self) -> str:
        return f"{self.location} {self.fact}: {self.remedy}, or choose --backend torch"

    def notice(self) -> str:
        return f"not using {self.location}: it {self.fact} ({self.remedy} to use it)"


def unfit(location: Path, kind: str, request: Request, log: Log) -> tuple[Unfit | None, str]:
    """(why the export (kind EXPORT) or bundle (TRT, AOTI) at `location` cannot serve `request`, or None; the
    weights it holds). Raises UsageError when its manifest is missing or unreadable."""
    from dcrt.artifacts.aoti_bundle import AotiManifest
    from dcrt.artifacts.engine_bundle import EngineManifest
    from dcrt.artifacts.manifest import ExportManifest

    name, h, w, weights = request.preset.name, request.height, request.width, request.weights
    if kind == TRT:
        manifest = EngineManifest.read(location)
        source, stamp = manifest.export.get("source", ""), manifest.export.get("source_stamp")
        verb, command = "rebuild", f"dcrt build --res {name}"
    elif kind == AOTI:
        manifest = AotiManifest.read(location)
        source, stamp = manifest.source, manifest.source_stamp
        verb, command = "rebuild", f"dcrt build --res {name} --engine aoti --device {manifest.device}"
    else:
        manifest = ExportManifest.read(location)
        source, stamp = manifest.source, manifest.source_stamp
        verb, command = "re-export", f"dcrt export --res {name} --out {location}"
    holds = describe_source(source, stamp)

    def remedy(how: str, flags: str = "") -> str:
        return f"{verb} it {how} with `{command}{flags}`"

    if manifest.preset != name:
        return Unfit(location, f"holds preset {manifest.preset}, not {name}", remedy("for that preset")), holds
    if (manifest.height, manifest.width) != (h, w):
        size = f"holds {manifest.height}x{manifest.width} graphs, not {h}x{w}"
        return Unfit(location, size, remedy("at that size", f" --height {h} --width {w}")), holds
    if weights is not None and not made_from(weights, source, stamp, log):
        flag = "--random-weights" if weights.checkpoint is None else f"--ckpt {weights.checkpoint}"
        return Unfit(location, f"was made from {holds}, not {weights}", remedy("from those weights", f" {flag}")), holds
    return None, holds


def check_backend_name(name: str) -> None:
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def choose_backend(
    preset: Preset,
    requested: str,
    engines_root: Path,
    export_dir: Path,
    facts: Facts,
    device: str | None = None,
    height: int | None = None,
    width: int | None = None,
    weights: Weights | None = None,
    log: Log = lambda message: None,
) -> BackendChoice:
    """Resolve `requested` (auto/trt/aoti/ort/torch) for `preset`. `device` None lets auto pick; "cpu" keeps it
    off the GPU. Raises BackendUnavailable / UsageError for an explicit request this machine cannot serve.
    `log` hears of a checkpoint hashed in full (a slow moment)."""
    from dcrt.artifacts.engine_bundle import bundle_dir, preset_dirname

    check_backend_name(requested)
    request = Request(preset, height or preset.height, width or preset.width, weights)
    engines_root, export_dir = Path(engines_root), Path(export_dir)
    has_export = (export_dir / MANIFEST_FILE).is_file()
    preset_dir = preset_dirname(preset.name, request.height, request.width, (preset.height, preset.width))
    bundle = bundle_dir(engines_root, facts.target, preset_dir) if facts.target else None
    has_engines = bundle is not None and (bundle / MANIFEST_FILE).is_file()
    torch_weights = str(weights) if weights is not None else ""
    aoti = _aoti_bundles(engines_root, preset_dir, facts, device)

    def serves(location: Path, kind: str) -> tuple[Unfit | None, str]:
        why, holds = unfit(location, kind, request, log)
        return why, str(weights) if weights is not None else holds

    if requested == "torch":
        return BackendChoice(
            "torch", device or ("cuda" if facts.gpu else "cpu"), None, "requested with --backend torch", torch_weights
        )
    if requested == "ort":
        why, used = serves(export_dir, EXPORT)
        if why is not None:
            raise UsageError(why.error())
        return BackendChoice(
            "ort",
            device or ("cuda" if facts.gpu and facts.ort_cuda else "cpu"),
            export_dir,
            "requested with --backend ort",
            used,
        )
    if requested == "trt":
        if facts.target is None:
            raise BackendUnavailable(f"--backend trt: {facts.tensorrt_why}")
        if device == "cpu":
            raise UsageError("--backend trt runs on CUDA, not --device cpu")
        from dcrt.artifacts.engine_bundle import find_bundle

        found = find_bundle(engines_root, facts.target, preset.name, preset_dir)
        why, used = serves(found, TRT)
        if why is not None:
            raise UsageError(why.error())
        return BackendChoice("trt", "cuda", found, f"requested; engines for {facts.target.describe()}", used)
    if requested == "aoti":
        return _requested_aoti(aoti, engines_root, preset, preset_dir, facts, device, serves)

    # auto: walk the order, remembering why each faster option was passed over.
    passed, notices = [], []

    def fits(location: Path, kind: str, what: str) -> str | None:
        """The weights `location` serves this request with, or None after noting why it cannot."""
        try:
            why, used = serves(location, kind)
        except DcrtError as exc:  # a manifest that cannot be read: a notice, as for one that does not fit
            notices.append(f"not using {location}: {exc}")
            passed.append(f"not {what}: {exc}")
            return None
        if why is None:
            return used
        notices.append(why.notice())
        passed.append(f"not {what}: {location} {why.fact}")
        return None

    def pick(name: str, on: str, location: Path | None, what: str, used: str) -> BackendChoice:
        return BackendChoice(name, on, location, _because(what, passed), used, tuple(notices))

    def aoti_on(on: str) -> BackendChoice | None:
        found = [(target, location) for target, location in aoti if target.device == on]
        for target, location in found:
            if (used := fits(location, AOTI, "AOTInductor")) is not None:
                return pick("aoti", on, location, f"AOTInductor packages for {target.describe()} in {location}", used)
        if not found:
            passed.append(f"not AOTInductor on {on}: no packages in {engines_root} (`{_aoti_command(preset, on)}`)")
        return None

    gpu_allowed = device != "cpu"
    if not gpu_allowed:
        passed.append("--device cpu keeps it off the GPU")
    elif facts.target is None:
        passed.append(f"not TensorRT: {facts.tensorrt_why}")
    elif not has_engines:
        passed.append(f"not TensorRT: no engines in {bundle} (`dcrt build --res {preset.name}`)")
    elif (used := fits(bundle, TRT, "TensorRT")) is not None:
        return pick("trt", "cuda", bundle, f"TensorRT engines for {facts.target.describe()} in {bundle}", used)
    if gpu_allowed and facts.gpu:
        if (chosen := aoti_on("cuda")) is not None:
            return chosen
        if facts.ort_cuda and has_export and (used := fits(export_dir, EXPORT, "onnxruntime-gpu")) is not None:
            return pick("ort", "cuda", export_dir, f"onnxruntime-gpu on {facts.gpu}", used)
        if not (facts.ort_cuda and has_export):
            passed.append(
                "not onnxruntime-gpu: "
                + (f"no export in {export_dir}" if facts.ort_cuda else "onnxruntime-gpu is not installed")
            )
        return pick("torch", "cuda", None, f"PyTorch on {facts.gpu}", torch_weights)
    if gpu_allowed:
        passed.append(f"not CUDA: {facts.gpu_why}")
    if (chosen := aoti_on("cpu")) is not None:
        return chosen
    if facts.ort_cpu and has_export and (used := fits(export_dir, EXPORT, "ONNX Runtime")) is not None:
        return pick("ort", "cpu", export_dir, f"ONNX Runtime on the CPU with {export_dir}", used)
    if not (facts.ort_cpu and has_export):
        passed.append(
            f"not ONNX Runtime: no export in {export_dir}" if facts.ort_cpu else "onnxruntime is not installed"
        )
    return pick("torch", "cpu", None, "PyTorch on the CPU", torch_weights)


def _aoti_command(preset: Preset, device: str) -> str:
    return f"dcrt build --res {preset.name} --engine aoti --device {device}"


def _aoti_bundles(root: Path, preset_dir: str, facts: Facts, device: str | None) -> list[tuple[AotiTarget, Path]]:
    """The AOTInductor bundles this machine can run that exist under `root`, preferred first, on `device`'s kind."""
    from dcrt.artifacts.engine_bundle import bundle_dir

    kind = None if device is None else device.split(":")[0]
    found = []
    for target in facts.aoti:
        location = bundle_dir(root, target, preset_dir)
        if (kind is None or target.device == kind) and (location / MANIFEST_FILE).is_file():
            found.append((target, location))
    return found


def _requested_aoti(aoti, root: Path, preset: Preset, preset_dir: str, facts: Facts, device: str | None, serves):
    """`--backend aoti`: the first bundle this machine runs (on `device`, when named), or why there is none."""
    if not aoti:
        kind = (device or ("cuda" if facts.gpu else "cpu")).split(":")[0]
        targets = [t for t in facts.aoti if t.device == kind]
        if not targets:
            raise BackendUnavailable(f"--backend aoti on {kind}: no AOTInductor target here ({facts.gpu_why})")
        from dcrt.artifacts.aoti_bundle import find_bundle

        find_bundle(root, targets[-1], preset.name, preset_dir)  # raises: which bundles exist, and the command
    target, location = aoti[0]
    why, used = serves(location, AOTI)
    if why is not None:
        raise UsageError(why.error())
    return BackendChoice("aoti", target.device, location, f"requested; packages for {target.describe()}", used)


def _because(what: str, passed: list[str]) -> str:
    return f"{what} ({'; '.join(passed)})" if passed else what


def probe(device: int = 0) -> Facts:
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
    return Facts(
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


def describe(choice: BackendChoice) -> str:
    """One line for `dcrt info`."""
    return f"--backend auto uses {choice.name} on {choice.device}: {choice.reason}"
