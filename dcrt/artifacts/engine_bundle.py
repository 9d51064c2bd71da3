"""The on-disk engine bundle: where it lives, what its manifest records, and when a plan in it is stale.

A bundle is `engines/<gpu>-sm<cc>-trt<version>/<preset>/`: one `<component>.plan` per IO-table graph and
a `manifest.json` that embeds the export's manifest and adds what the plans depend on (GPU, compute
capability, TensorRT version, build flags, ONNX hashes). A plan is rebuilt exactly when one of those
changed or the plan file is not the one recorded.

Shared by the builder (dcrt.artifacts.tensorrt_build, the only code that calls TensorRT's builder) and the runtime
(dcrt.backends.tensorrt_runtime), which loads a bundle without the build code. Format: docs/bundles.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from dcrt.artifacts.graphs import ComponentSpec
from dcrt.artifacts.manifest import MANIFEST_FILE, ExportManifest, file_problem, read_manifest, write_manifest
from dcrt.errors import BackendUnavailable, DcrtError, UsageError
from dcrt.presets import get_preset
from dcrt.version import __version__

ENGINE_SCHEMA_VERSION = 2  # 2: schedule_sizes
PLAN_SUFFIX = ".plan"


def slug(text: str, fallback: str) -> str:
    """`text` in lower case with every run of characters other than [a-z0-9] replaced by `-` (a folder name)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or fallback


@dataclass(frozen=True)
class Target:
    """The GPU and TensorRT a plan is built for: plans run only where all three match."""

    gpu_name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str

    @property
    def sm(self) -> str:
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"

    @property
    def dirname(self) -> str:
        return f"{slug(self.gpu_name, 'gpu')}-{self.sm}-trt{self.tensorrt_version}"

    def describe(self) -> str:
        return f"{self.gpu_name} ({self.sm}), TensorRT {self.tensorrt_version}"


def import_tensorrt():
    """`tensorrt`, or one line saying what is missing."""
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or a wheel whose libraries are missing (OSError)
        raise BackendUnavailable(
            f"TensorRT is not available ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): "
            "install it on a machine with an NVIDIA GPU (pip install 'dcrt[trt]')"
        ) from None
    return tensorrt


def detect_target(device: int = 0) -> Target:
    """This machine's GPU and TensorRT, or BackendUnavailable naming what is missing. Needs no PyTorch."""
    trt = import_tensorrt()
    try:
        from cuda.bindings import runtime
    except ImportError:
        raise BackendUnavailable("cuda-python is not installed (pip install 'dcrt[trt]')") from None
    err, count = runtime.cudaGetDeviceCount()
    if err != runtime.cudaError_t.cudaSuccess or not count:
        raise BackendUnavailable(f"no CUDA GPU is visible ({getattr(err, 'name', err)}): TensorRT needs one")
    if device >= count:
        raise UsageError(f"CUDA device {device} does not exist ({count} visible)")
    err, props = runtime.cudaGetDeviceProperties(device)
    if err != runtime.cudaError_t.cudaSuccess:
        raise BackendUnavailable(f"cannot query CUDA device {device} ({getattr(err, 'name', err)})")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return Target(name.split("\0")[0].strip(), (int(props.major), int(props.minor)), trt.__version__)


def preset_dirname(preset: str, height: int, width: int, default: tuple[int, int]) -> str:
    """`512`, or `512-640x1024` for a non-default resolution (static shapes: a plan per size)."""
    return preset if (height, width) == default else f"{preset}-{height}x{width}"


class BundleTarget(Protocol):
    """What a bundle is built for (a TensorRT `Target`, an AOTInductor `dcrt.artifacts.aoti_bundle.AotiTarget`)."""

    @property
    def dirname(self) -> str: ...


def bundle_dir(root: Path, target: BundleTarget, preset_dir: str) -> Path:
    return Path(root) / target.dirname / preset_dir


def onnx_digest(files: dict[str, str]) -> str:
    """One hash for a graph stored as several files (model + external data)."""
    return ":".join(f"{name}={files[name]}" for name in sorted(files))


class BuildFlags(Protocol):
    """What a key needs of a build configuration (dcrt.artifacts.tensorrt_build.BuildConfig)."""

    def flags(self, component: str, precision: str) -> dict: ...


@dataclass(frozen=True)
class EngineKey:
    """Everything a plan's content is a function of; a plan whose recorded key differs is stale."""

    target: Target
    preset: str
    component: str
    onnx: str  # onnx_digest of the graph's files
    flags: str  # json of BuildConfig.flags, sorted keys (hashable, comparable)


def engine_key(target: Target, export: ExportManifest, component: str, config: BuildFlags) -> EngineKey:
    return EngineKey(
        target,
        export.preset,
        component,
        onnx_digest(export.components[component].files),
        json.dumps(config.flags(component, export.precision), sort_keys=True),
    )


# ---------------------------------------------------------------------------------------------- manifest


@dataclass
class EngineEntry:
    file: str
    sha256: str
    bytes: int
    device_memory_bytes: int  # ICudaEngine.device_memory_size_v2: activations, shared block's lower bound
    onnx: dict[str, str]  # the graph's files -> sha256, as in the export manifest
    flags: dict
    inputs: list[dict]
    outputs: list[dict]
    build_seconds: float


@dataclass
class EngineManifest:
    preset: str
    height: int
    width: int
    precision: str
    gpu_name: str
    compute_capability: list[int]  # [major, minor]
    tensorrt_version: str
    dcrt_version: str
    export: dict  # the export's manifest.json, verbatim: IO table, parity, source checkpoint
    engines: dict[str, EngineEntry] = field(default_factory=dict)
    # The checkpoint's noise-schedule tensors, copied from the export so a host needs only this folder:
    # file -> sha256, and file -> bytes.
    schedule: dict[str, str] = field(default_factory=dict)
    schedule_sizes: dict[str, int] = field(default_factory=dict)
    # For hosts without Python (the C++ host), as in an AOTInductor manifest (dcrt.artifacts.host_files): what the UNet
    # predicts, the preset's defaults per mode, and the CLIP BPE vocabulary file copied beside the plans. Absent from
    # manifests written before them (read as None: the host then asks for every setting and refuses the bundle).
    parameterization: str | None = None
    sampling: dict | None = None
    modes: dict | None = None
    tokenizer: str | None = None
    schema_version: int = ENGINE_SCHEMA_VERSION

    @property
    def target(self) -> Target:
        return Target(self.gpu_name, tuple(self.compute_capability), self.tensorrt_version)

    @property
    def device_memory_bytes(self) -> int:
        """Size of the one scratch block every engine of the bundle shares (they never run at once)."""
        return max((e.device_memory_bytes for e in self.engines.values()), default=0)

    def write(self, directory: Path) -> Path:
        return write_manifest(self, directory)

    @classmethod
    def read(cls, directory: Path) -> EngineManifest:
        def parse(data: dict) -> EngineManifest:
            engines = {k: EngineEntry(**v) for k, v in data.pop("engines").items()}
            return cls(**data, engines=engines)

        return read_manifest(
            directory,
            ENGINE_SCHEMA_VERSION,
            parse,
            missing="not a dcrt engine bundle (run `dcrt build`)",
            schema_word="engine schema version",
            remedy=": rebuild with `dcrt build`",
            kind="dcrt engine manifest",
        )


def new_manifest(export: ExportManifest, target: Target, host_fields: dict) -> EngineManifest:
    """The manifest of `export`'s plans for `target`, with no engines yet; `host_fields`:
    dcrt.artifacts.host_files.host_fields of its preset."""
    return EngineManifest(
        export.preset,
        export.height,
        export.width,
        export.precision,
        target.gpu_name,
        list(target.compute_capability),
        target.tensorrt_version,
        __version__,
        asdict(export),
        **host_fields,
    )


def read_manifest_or_none(directory: Path) -> EngineManifest | None:
    try:
        return EngineManifest.read(directory)
    except DcrtError:
        return None


# ------------------------------------------------------------------------------------------------ checks


def rebuild_command(manifest_or_preset: EngineManifest | str) -> str:
    preset = manifest_or_preset if isinstance(manifest_or_preset, str) else manifest_or_preset.preset
    return f"dcrt build --res {preset}"


def check_target(manifest: EngineManifest, target: Target, preset: str, where: Path) -> None:
    """Plans run only on the GPU model / compute capability / TensorRT version they were built with."""
    problems = []
    if manifest.preset != preset:
        problems.append(f"preset {manifest.preset}, not {preset}")
    if tuple(manifest.compute_capability) != target.compute_capability or manifest.gpu_name != target.gpu_name:
        problems.append(
            f"GPU {manifest.gpu_name} (sm{''.join(map(str, manifest.compute_capability))}), "
            f"this one is {target.gpu_name} ({target.sm})"
        )
    if manifest.tensorrt_version != target.tensorrt_version:
        problems.append(f"TensorRT {manifest.tensorrt_version}, this is TensorRT {target.tensorrt_version}")
    if problems:
        raise UsageError(
            f"engines in {where} were built for {'; '.join(problems)}: rebuild them with `{rebuild_command(preset)}`"
        )


def stale_reason(key: EngineKey, manifest: EngineManifest | None, directory: Path, verify: bool = False) -> str | None:
    """Why the plan for `key` must be (re)built, or None when the one on disk is up to date: the recorded key
    and the plan's size decide; `verify` also re-hashes the plan."""
    if manifest is None:
        return "not built"
    if manifest.target != key.target or manifest.preset != key.preset:
        return f"built for {manifest.target.describe()}, preset {manifest.preset}"
    changes = (
        (lambda e: onnx_digest(e.onnx) != key.onnx, "the ONNX export changed"),
        (lambda e: json.dumps(e.flags, sort_keys=True) != key.flags, "the build flags changed"),
    )
    return entry_stale_reason(manifest.engines.get(key.component), directory, changes, verify)


def find_bundle(root: Path, target: Target, preset: str, preset_dir: str | None = None) -> Path:
    """The bundle for this GPU/TensorRT; if there is none, say which bundles exist and how to build one."""
    return locate_bundle(root, target, preset_dir or preset, "TensorRT engines", "*-trt*", rebuild_command(preset))


def locate_bundle(root: Path, target: BundleTarget, preset_dir: str, what: str, kind_glob: str, rebuild: str) -> Path:
    """The bundle of `preset_dir` for `target` under `root`; if there is none, one line naming the targets that
    have bundles of this kind (target folders matching `kind_glob`) and the command `rebuild` that builds it."""
    directory = bundle_dir(root, target, preset_dir)
    if (directory / MANIFEST_FILE).is_file():
        return directory
    others = sorted(p.parent.parent.name for p in Path(root).glob(f"{kind_glob}/{preset_dir}/{MANIFEST_FILE}"))
    built = f"; {root} has them only for {', '.join(others)}" if others else ""
    raise UsageError(
        f"no {what} of preset {preset_dir} for {target.describe()} in {root}{built}: build them with `{rebuild}`"
    )


def check_bundle(
    manifest: EngineManifest, specs: dict[str, ComponentSpec], directory: Path, verify: bool = False
) -> None:
    """Every component present and consistent with the embedded export, every file of its recorded size, and
    (verify) of its recorded sha256: that reads every plan, so it is asked for, not done on every load."""
    hint = f"rebuild with `{rebuild_command(manifest)}`"
    exported = manifest.export.get("components", {})
    check_entries(manifest, specs, directory, hint, verify)
    for name in specs:
        entry = manifest.engines[name]
        if entry.onnx != exported.get(name, {}).get("files"):
            raise UsageError(f"{directory / entry.file} was built from another export than the bundle's: {hint}")


class BundleEntry(Protocol):
    """What every bundle's per-component record holds (`EngineEntry`, `dcrt.artifacts.aoti_bundle.AotiEntry`)."""

    file: str
    sha256: str
    bytes: int
    inputs: list[dict]
    outputs: list[dict]


Entry = TypeVar("Entry", bound=BundleEntry)


class BundleManifest(Protocol):
    preset: str
    engines: dict[str, BundleEntry]
    schedule: dict[str, str]
    schedule_sizes: dict[str, int]


def io_matches(entry: BundleEntry, spec: ComponentSpec) -> bool:
    """Whether a recorded component takes and returns exactly the IO table's tensors, in its order."""
    return entry.inputs == [t.as_dict() for t in spec.inputs] and entry.outputs == [t.as_dict() for t in spec.outputs]


def entry_stale_reason(
    entry: Entry | None, directory: Path, changes: Sequence[tuple[Callable[[Entry], bool], str]], verify: bool = False
) -> str | None:
    """Shared by every bundle kind: why the recorded `entry` must be (re)built, or None when its file is up to date.
    `changes`: the kind's (whether what the entry was built from changed, the reason), in the order they are asked,
    after the file is found and before it is measured (and, with `verify`, hashed): the cheap checks first."""
    if entry is None:
        return "not built"
    path = Path(directory) / entry.file
    if not path.is_file():
        return f"{entry.file} is missing"
    for changed, reason in changes:
        if changed(entry):
            return reason
    if file_problem(path, entry.sha256, entry.bytes, verify) is not None:
        return f"{entry.file} does not match its manifest"
    return None


def check_entries(
    manifest: BundleManifest, specs: dict[str, ComponentSpec], directory: Path, hint: str, verify: bool = False
) -> None:
    """Shared by every bundle kind: each component recorded with the IO table's tensors, each file (and the noise
    schedule's) of its recorded size and, with `verify`, sha256. `hint` completes every error: how to rebuild."""
    for name, spec in specs.items():
        entry = manifest.engines.get(name)
        if entry is None:
            raise UsageError(f"{directory} has no engine for {name} (interrupted build?): {hint}")
        if not io_matches(entry, spec):
            raise UsageError(f"{directory / entry.file} has other inputs/outputs than preset {manifest.preset}: {hint}")
        problem = file_problem(directory / entry.file, entry.sha256, entry.bytes, verify)
        if problem is not None:
            raise UsageError(f"{directory / entry.file} {problem}: {hint}")
    if not manifest.schedule and get_preset(manifest.preset).carries_schedule:
        raise UsageError(f"{directory} has no noise-schedule file: {hint}")
    for file, digest in manifest.schedule.items():
        problem = file_problem(directory / file, digest, manifest.schedule_sizes[file], verify)
        if problem is not None:
            raise UsageError(f"{directory / file} {problem}: {hint}")
