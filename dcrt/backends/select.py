"""`--backend auto`: the fastest backend this machine can run for a request, and why the faster ones cannot.

Order: TensorRT engines (built for this GPU and TensorRT) > AOTInductor packages for this GPU > ONNX Runtime
on CUDA (an export and onnxruntime-gpu) > PyTorch on CUDA > ONNX Runtime on the CPU (an export) > AOTInductor
packages for this CPU > PyTorch on the CPU. Why AOTInductor sits where it does: docs/backends.md.
The order is data, `AUTO_ORDER` (tests/backends/test_select.py checks that this paragraph, docs/backends.md and
`--backend`'s help list it as the table does); `choose_backend` walks it once and takes the first candidate this
machine runs whose artifact serves the request.
An engine bundle, AOTInductor bundle or export serves a request only when its manifest says it holds the
requested preset, size and weights (dcrt.weights) and it loads: auto passes over one that does not, with a notice
saying why and how to remake it (`dcrt.loading.open_backend` hands back the ones that failed to load); a backend
named explicitly raises instead, in one line. `choose_backend` decides from `MachineFacts`
(dcrt.backends.machine_facts), which `probe()` measures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from dcrt.artifacts.manifest import MANIFEST_FILE
from dcrt.backends.artifact_check import AOTI, EXPORT, TRT, ArtifactMismatch, ArtifactNeeds, Log, mismatch
from dcrt.backends.machine_facts import MachineFacts
from dcrt.errors import BackendUnavailable, DcrtError, UsageError
from dcrt.families.base import PresetBase
from dcrt.memory import AUTO, FAST
from dcrt.weights import Weights

if TYPE_CHECKING:
    from dcrt.artifacts.aoti_bundle import AotiTarget

BACKENDS = ("auto", "trt", "aoti", "ort", "torch")


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


def check_backend_name(name: str) -> None:
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def torch_only_flags(memory: str = AUTO, weight_storage: str | None = None) -> list[str]:
    """The flags of a request that only the torch backend honours. The static backends (trt, aoti, ort) hold their
    weights and shapes as built, everything on the device: memory profile `fast` (`auto` takes them as they are),
    weights in the graphs' own precision."""
    flags = [f"--memory {memory}"] if memory not in (FAST.name, AUTO) else []
    return flags + ([f"--weights {weight_storage}"] if weight_storage is not None else [])


def check_torch_only(flags: list[str], backend: str) -> None:
    """An explicit static backend refuses what it cannot honour (`--memory balanced --backend trt`)."""
    if backend not in ("auto", "torch") and flags:
        raise UsageError(
            f"{' and '.join(flags)} {'is' if len(flags) == 1 else 'are'} honoured only by the torch backend "
            f"({backend} runs its graphs as built): use --backend torch or auto"
        )


# When a candidate's runtime runs on this machine: (facts, GPU allowed) -> None, or why it was passed over. "" passes
# it over silently: the GPU being off limits or absent is said once, by PyTorch on CUDA's line.
MachineCheck = Callable[[MachineFacts, bool], str | None]


def _tensorrt_runs(facts: MachineFacts, gpu_allowed: bool) -> str | None:
    if not gpu_allowed:
        return ""
    return None if facts.target is not None else f"not TensorRT: {facts.tensorrt_why}"


def _gpu_runs(facts: MachineFacts, gpu_allowed: bool) -> str | None:
    return None if gpu_allowed and facts.gpu else ""


def _onnxruntime_gpu_runs(facts: MachineFacts, gpu_allowed: bool) -> str | None:
    if not (gpu_allowed and facts.gpu):
        return ""
    return None if facts.ort_cuda else "not onnxruntime-gpu: onnxruntime-gpu is not installed"


def _torch_gpu_runs(facts: MachineFacts, gpu_allowed: bool) -> str | None:
    if not gpu_allowed:
        return "--device cpu keeps it off the GPU"
    return None if facts.gpu else f"not CUDA: {facts.gpu_why}"


def _runs_anywhere(facts: MachineFacts, gpu_allowed: bool) -> str | None:
    return None


def _onnxruntime_cpu_runs(facts: MachineFacts, gpu_allowed: bool) -> str | None:
    return None if facts.ort_cpu else "onnxruntime is not installed"


@dataclass(frozen=True)
class BackendCandidate:
    """One line of auto's order: a runtime on a device, the artifact it loads, and when this machine runs it.
    `reason` (chosen) and `missing` (no such artifact exists) are templates over `CandidateSearch.words`."""

    runtime: str  # BackendChoice.name
    device: str  # "cuda" or "cpu"
    runs_here: MachineCheck
    reason: str
    artifact: str | None = None  # TRT, AOTI or EXPORT; None: PyTorch runs the checkpoint itself
    honours_torch_only: bool = False  # honours `torch_only_flags` (the torch backend); else runs as built
    label: str = ""  # completes "not <label>: <location> ..." for an artifact that does not serve the request
    missing: str = ""


_NO_AOTI_PACKAGES = "not AOTInductor on {device}: no packages in {root} (`{aoti_command}`)"

AUTO_ORDER: tuple[BackendCandidate, ...] = (
    BackendCandidate(
        runtime="trt",
        device="cuda",
        runs_here=_tensorrt_runs,
        reason="TensorRT engines for {target} in {location}",
        artifact=TRT,
        label="TensorRT",
        missing="not TensorRT: no engines in {bundle} (`dcrt build --res {preset}`)",
    ),
    BackendCandidate(
        runtime="aoti",
        device="cuda",
        runs_here=_gpu_runs,
        reason="AOTInductor packages for {target} in {location}",
        artifact=AOTI,
        label="AOTInductor",
        missing=_NO_AOTI_PACKAGES,
    ),
    BackendCandidate(
        runtime="ort",
        device="cuda",
        runs_here=_onnxruntime_gpu_runs,
        reason="onnxruntime-gpu on {gpu}",
        artifact=EXPORT,
        label="onnxruntime-gpu",
        missing="not onnxruntime-gpu: no export in {export}",
    ),
    BackendCandidate(
        runtime="torch", device="cuda", runs_here=_torch_gpu_runs, reason="PyTorch on {gpu}", honours_torch_only=True
    ),
    BackendCandidate(
        runtime="ort",
        device="cpu",
        runs_here=_onnxruntime_cpu_runs,
        reason="ONNX Runtime on the CPU with {location}",
        artifact=EXPORT,
        label="ONNX Runtime",
        missing="not ONNX Runtime: no export in {export}",
    ),
    BackendCandidate(
        runtime="aoti",
        device="cpu",
        runs_here=_runs_anywhere,
        reason="AOTInductor packages for {target} in {location}",
        artifact=AOTI,
        label="AOTInductor",
        missing=_NO_AOTI_PACKAGES,
    ),
    BackendCandidate(
        runtime="torch", device="cpu", runs_here=_runs_anywhere, reason="PyTorch on the CPU", honours_torch_only=True
    ),
)


@dataclass
class CandidateSearch:
    """One request's search: what it needs, what the machine offers, where its artifacts would be, and (auto) what
    was passed over so far."""

    needs: ArtifactNeeds
    facts: MachineFacts
    device: str | None  # as asked; None lets auto pick
    engines_root: Path
    export_dir: Path
    preset_dir: str  # the bundles' folder name for this preset and size
    log: Log
    torch_only: list[str] = field(default_factory=list)  # the request's flags only torch honours
    unusable: Mapping[Path, str] = field(default_factory=dict)  # artifacts that failed to load: why, and the fix
    passed: list[str] = field(default_factory=list)  # why each faster candidate was passed over
    notices: list[str] = field(default_factory=list)  # each existing export or bundle passed over

    @property
    def gpu_allowed(self) -> bool:
        return self.device != "cpu"

    @property
    def torch_weights(self) -> str:
        return str(self.needs.weights) if self.needs.weights is not None else ""

    @cached_property
    def bundle(self) -> Path | None:
        """Where TensorRT engines for this GPU and TensorRT would be."""
        from dcrt.artifacts.engine_bundle import bundle_dir

        return bundle_dir(self.engines_root, self.facts.target, self.preset_dir) if self.facts.target else None

    @cached_property
    def aoti_bundles(self) -> list[tuple[AotiTarget, Path]]:
        """The AOTInductor bundles this machine can run that exist, preferred first, on the asked device's kind."""
        from dcrt.artifacts.engine_bundle import bundle_dir

        kind = None if self.device is None else self.device.split(":")[0]
        found = []
        for target in self.facts.aoti:
            location = bundle_dir(self.engines_root, target, self.preset_dir)
            if (kind is None or target.device == kind) and (location / MANIFEST_FILE).is_file():
                found.append((target, location))
        return found

    def artifacts(self, kind: str, device: str) -> list[tuple[Path, str]]:
        """The artifacts of `kind` for `device` that exist, preferred first: (location, the target it was made for)."""
        if kind == TRT:
            built = self.bundle is not None and (self.bundle / MANIFEST_FILE).is_file()
            return [(self.bundle, self.facts.target.describe())] if built else []
        if kind == AOTI:
            return [(location, target.describe()) for target, location in self.aoti_bundles if target.device == device]
        return [(self.export_dir, "")] if (self.export_dir / MANIFEST_FILE).is_file() else []

    def words(self, device: str, location: Path | None = None, target: str = "") -> dict[str, object]:
        """The fields of a candidate's `missing` and `reason` templates."""
        preset = self.needs.preset.name
        return {
            "device": device,
            "aoti_command": f"dcrt build --res {preset} --engine aoti --device {device}",
            "bundle": self.bundle,
            "root": self.engines_root,
            "export": self.export_dir,
            "preset": preset,
            "gpu": self.facts.gpu,
            "location": location,
            "target": target,
        }

    def serves(self, location: Path, kind: str) -> tuple[ArtifactMismatch | None, str]:
        """(why the artifact cannot serve the request, or None; the weights a run on it uses)."""
        why, holds = mismatch(location, kind, self.needs, self.log)
        return why, str(self.needs.weights) if self.needs.weights is not None else holds

    def fits(self, location: Path, kind: str, label: str) -> str | None:
        """The weights `location` serves the request with, or None after noting why it cannot."""
        if location in self.unusable:
            self.notices.append(f"not using {location}: {self.unusable[location]}")
            self.passed.append(f"not {label}: {location} cannot be loaded")
            return None
        try:
            why, used = self.serves(location, kind)
        except DcrtError as exc:  # a manifest that cannot be read: a notice, as for one that does not fit
            self.notices.append(f"not using {location}: {exc}")
            self.passed.append(f"not {label}: {exc}")
            return None
        if why is None:
            return used
        self.notices.append(why.notice())
        self.passed.append(f"not {label}: {location} {why.fact}")
        return None

    def try_candidate(self, candidate: BackendCandidate) -> BackendChoice | None:
        """`candidate` as the choice when this machine runs it and one of its artifacts serves the request; else
        None, with why it was passed over noted (flags only torch honours: once, by `_auto`'s notice)."""
        if self.torch_only and not candidate.honours_torch_only:
            return None
        why = candidate.runs_here(self.facts, self.gpu_allowed)
        if why is not None:
            if why:
                self.passed.append(why)
            return None
        if candidate.artifact is None:
            return self.choose(candidate, None, "", self.torch_weights)
        found = self.artifacts(candidate.artifact, candidate.device)
        if not found:
            self.passed.append(candidate.missing.format(**self.words(candidate.device)))
        for location, target in found:
            if (used := self.fits(location, candidate.artifact, candidate.label)) is not None:
                return self.choose(candidate, location, target, used)
        return None

    def choose(self, candidate: BackendCandidate, location: Path | None, target: str, used: str) -> BackendChoice:
        reason = candidate.reason.format(**self.words(candidate.device, location, target))
        because = f"{reason} ({'; '.join(self.passed)})" if self.passed else reason
        return BackendChoice(candidate.runtime, candidate.device, location, because, used, tuple(self.notices))


def _auto(search: CandidateSearch) -> BackendChoice:
    """The first candidate of `AUTO_ORDER` that this machine runs on an artifact that serves the request (and
    honours the flags only torch honours, when asked)."""
    if search.torch_only:
        them = "it" if len(search.torch_only) == 1 else "them"
        search.notices.append(
            f"{' and '.join(search.torch_only)}: only the torch backend honours {them}, so auto passes over "
            "TensorRT, AOTInductor and ONNX Runtime"
        )
    for candidate in AUTO_ORDER:
        if (choice := search.try_candidate(candidate)) is not None:
            return choice
    raise AssertionError("the last candidate, PyTorch on the CPU, runs anywhere")


def _requested_torch(search: CandidateSearch) -> BackendChoice:
    device = search.device or ("cuda" if search.facts.gpu else "cpu")
    return BackendChoice("torch", device, None, "requested with --backend torch", search.torch_weights)


def _requested_ort(search: CandidateSearch) -> BackendChoice:
    why, used = search.serves(search.export_dir, EXPORT)
    if why is not None:
        raise UsageError(why.error())
    device = search.device or ("cuda" if search.facts.gpu and search.facts.ort_cuda else "cpu")
    return BackendChoice("ort", device, search.export_dir, "requested with --backend ort", used)


def _requested_trt(search: CandidateSearch) -> BackendChoice:
    target = search.facts.target
    if target is None:
        raise BackendUnavailable(f"--backend trt: {search.facts.tensorrt_why}")
    if search.device == "cpu":
        raise UsageError("--backend trt runs on CUDA, not --device cpu")
    from dcrt.artifacts.engine_bundle import find_bundle

    found = find_bundle(search.engines_root, target, search.needs.preset.name, search.preset_dir)
    why, used = search.serves(found, TRT)
    if why is not None:
        raise UsageError(why.error())
    return BackendChoice("trt", "cuda", found, f"requested; engines for {target.describe()}", used)


def _requested_aoti(search: CandidateSearch) -> BackendChoice:
    """`--backend aoti`: the first bundle this machine runs (on the device, when named), or why there is none."""
    facts = search.facts
    if not search.aoti_bundles:
        kind = (search.device or ("cuda" if facts.gpu else "cpu")).split(":")[0]
        targets = [t for t in facts.aoti if t.device == kind]
        if not targets:
            raise BackendUnavailable(f"--backend aoti on {kind}: no AOTInductor target here ({facts.gpu_why})")
        from dcrt.artifacts.aoti_bundle import find_bundle

        preset = search.needs.preset.name
        find_bundle(search.engines_root, targets[-1], preset, search.preset_dir)  # raises: which exist, the command
    target, location = search.aoti_bundles[0]
    why, used = search.serves(location, AOTI)
    if why is not None:
        raise UsageError(why.error())
    return BackendChoice("aoti", target.device, location, f"requested; packages for {target.describe()}", used)


_CHOOSERS: dict[str, Callable[[CandidateSearch], BackendChoice]] = {
    "auto": _auto,
    "torch": _requested_torch,
    "ort": _requested_ort,
    "trt": _requested_trt,
    "aoti": _requested_aoti,
}


def choose_backend(
    preset: PresetBase,
    requested: str,
    engines_root: Path,
    export_dir: Path,
    facts: MachineFacts,
    device: str | None = None,
    height: int | None = None,
    width: int | None = None,
    weights: Weights | None = None,
    log: Log = lambda message: None,
    torch_only: list[str] | None = None,
    unusable: Mapping[Path, str] | None = None,
) -> BackendChoice:
    """Resolve `requested` (auto/trt/aoti/ort/torch) for `preset`. `device` None lets auto pick; "cpu" keeps it
    off the GPU. Raises BackendUnavailable / UsageError for an explicit request this machine cannot serve.
    `log` hears of a checkpoint hashed in full (a slow moment). `torch_only`: the request's flags only the torch
    backend honours (`torch_only_flags`): auto chooses torch, an explicit static backend refuses. `unusable`:
    artifacts auto found but could not load (location -> why and how to remake it), passed over with a notice."""
    from dcrt.artifacts.engine_bundle import preset_dirname

    check_backend_name(requested)
    check_torch_only(torch_only or [], requested)
    needs = ArtifactNeeds(preset, height or preset.height, width or preset.width, weights)
    preset_dir = preset_dirname(preset.name, needs.height, needs.width, (preset.height, preset.width))
    search = CandidateSearch(
        needs, facts, device, Path(engines_root), Path(export_dir), preset_dir, log, torch_only or [], unusable or {}
    )
    return _CHOOSERS[requested](search)


def describe(choice: BackendChoice) -> str:
    """One line for `dcrt info`."""
    return f"--backend auto uses {choice.name} on {choice.device}: {choice.reason}"
