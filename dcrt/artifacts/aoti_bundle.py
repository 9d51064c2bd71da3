"""The on-disk AOTInductor bundle: where it lives, what its manifest records, and when a package in it is stale.

A bundle is `engines/aoti-<device>-<isa>-torch<version>/<preset>/`: one `<component>.pt2` per IO-table graph
(torch.export + AOTInductor), the noise schedule, and a `manifest.json` whose `engines` list each package's
file, size, sha256 and its inputs and outputs in the positional order the package takes them. A C++ host
reads only this manifest (docs/bundles.md, "AOTInductor bundles").

Shared by the builder (dcrt.artifacts.aoti_build) and the runtime (dcrt.backends.aoti_backend); paths and the checks
every bundle kind shares come from dcrt.artifacts.engine_bundle.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from dcrt.artifacts.engine_bundle import check_entries, entry_stale_reason, io_matches, locate_bundle, slug
from dcrt.artifacts.graphs import ComponentSpec
from dcrt.artifacts.manifest import MANIFEST_FILE, read_manifest, write_manifest
from dcrt.errors import BackendUnavailable, DcrtError, UsageError

AOTI_SCHEMA_VERSION = 1
ENGINE_KIND = "aoti"
PACKAGE_SUFFIX = ".pt2"
AOTI_DEVICES = ("cpu", "cuda")
PORTABLE_ISA = "avx2"  # x86-64-v3: AVX2 + FMA, every x86-64 CPU since 2013-2015
# torch.backends.cpu.get_cpu_capability() values that can run an AVX2 package.
_RUNS_AVX2 = ("AVX2", "AVX512")


@dataclass(frozen=True)
class AotiTarget:
    """What a package runs on: its device, its instruction set (an x86 ISA level, a CPU model, or a CUDA
    compute capability) and the torch version whose runtime loads it."""

    device: str  # "cpu" or "cuda"
    isa: str  # "avx2", "native-<cpu model>", or "sm90"
    torch_version: str

    @property
    def dirname(self) -> str:
        return f"aoti-{self.device}-{self.isa}-torch{self.torch_version.replace('+', '-')}"

    @property
    def native(self) -> bool:
        return self.isa.startswith("native-")

    def describe(self) -> str:
        return f"{self.device} ({self.isa}), torch {self.torch_version}"


def cpu_model() -> str:
    """This CPU's model name as a folder-name slug: what a native package is built for."""
    from dcrt.environment import cpu_name

    return slug(cpu_name(), "cpu")


def runs_avx2() -> bool:
    import torch

    return torch.backends.cpu.get_cpu_capability() in _RUNS_AVX2


def cuda_target(index: int | None = None) -> AotiTarget:
    """CUDA device `index`'s target (default: the current device); packages are compiled for its capability."""
    import torch

    major, minor = torch.cuda.get_device_capability(index)
    return AotiTarget("cuda", f"sm{major}{minor}", torch.__version__)


def cpu_target(native: bool) -> AotiTarget:
    import torch

    return AotiTarget("cpu", f"native-{cpu_model()}" if native else PORTABLE_ISA, torch.__version__)


def detect_aoti_target(device: str, native: bool = False) -> AotiTarget:
    """The target a build for `device` makes on this machine (and a run needs), or one line saying why none."""
    if device not in AOTI_DEVICES:
        raise UsageError(f"unknown device {device!r} for AOTInductor packages; choose {' or '.join(AOTI_DEVICES)}")
    import torch

    if device == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda: no CUDA GPU is visible to torch (see `dcrt info`)")
        if native:
            raise UsageError("--native is for CPU packages; CUDA packages are always built for this GPU")
        return cuda_target()
    if not native and not runs_avx2():
        raise BackendUnavailable(
            f"this CPU ({platform.machine()}, {torch.backends.cpu.get_cpu_capability()}) cannot run portable AVX2 "
            "packages: build for it with --native"
        )
    return cpu_target(native)


def can_run(built_for: AotiTarget, here: AotiTarget) -> str | None:
    """Why packages built for `built_for` cannot run where `here` was detected (a portable AVX2 target, or this
    GPU), or None when they can: an AVX2 package runs on any AVX2 CPU; a native one only on its CPU model."""
    if built_for.device != here.device:
        return f"built for {built_for.device}, this run is on {here.device}"
    if built_for.torch_version != here.torch_version:
        return f"built with torch {built_for.torch_version}, this is torch {here.torch_version}"
    if built_for.device == "cuda" and built_for.isa != here.isa:
        return f"built for {built_for.isa}, this GPU is {here.isa}"
    if built_for.native and built_for.isa != f"native-{cpu_model()}":
        return f"built for the CPU {built_for.isa.removeprefix('native-')}, this one is {cpu_model()}"
    return None


# ---------------------------------------------------------------------------------------------- manifest


@dataclass
class AotiEntry:
    file: str
    sha256: str
    bytes: int
    flags: dict  # what the package depends on besides its target and weights (AotiConfig.flags)
    inputs: list[dict]  # positional order of the package's arguments
    outputs: list[dict]  # positional order of its results
    parity: dict  # {"rel_error", "max_abs", "tolerance"}: the package vs the PyTorch module at build time
    build_seconds: float


@dataclass
class AotiManifest:
    preset: str
    height: int
    width: int
    device: str
    isa: str
    torch_version: str
    precision: str  # inside the packages; their inputs and outputs are float32 / int64 regardless
    dcrt_version: str
    source: str  # the weights: "sha256:<checkpoint>" or "random:<preset>:seed0" (dcrt.weights)
    source_stamp: dict | None = None
    engines: dict[str, AotiEntry] = field(default_factory=dict)
    schedule: dict[str, str] = field(default_factory=dict)  # file -> sha256
    schedule_sizes: dict[str, int] = field(default_factory=dict)  # file -> bytes
    # For hosts without Python (the C++ host, cpp_host/): what the UNet predicts, the preset's animate defaults
    # as dcrt.families.dynamicrafter.options.resolve_options fills them in plus the video's fps (and its other modes'),
    # so a host starts from `dcrt animate`'s settings, and the tokenizer's vocabulary file.
    parameterization: str | None = None
    sampling: dict | None = None
    modes: dict | None = None  # the other modes' defaults, as `sampling`: {"interpolate": {...}, "loop": {...}}
    tokenizer: str | None = None  # the CLIP BPE vocabulary file (dcrt.artifacts.host_files.write_host_files)
    engine_kind: str = ENGINE_KIND
    schema_version: int = AOTI_SCHEMA_VERSION

    @property
    def target(self) -> AotiTarget:
        return AotiTarget(self.device, self.isa, self.torch_version)

    def write(self, directory: Path) -> Path:
        return write_manifest(self, directory)

    @classmethod
    def read(cls, directory: Path) -> AotiManifest:
        def parse(data: dict) -> AotiManifest:
            if data.get("engine_kind") != ENGINE_KIND:
                raise UsageError(f"{Path(directory) / MANIFEST_FILE} is not an AOTInductor bundle's manifest")
            engines = {k: AotiEntry(**v) for k, v in data.pop("engines").items()}
            return cls(**data, engines=engines)

        return read_manifest(
            directory,
            AOTI_SCHEMA_VERSION,
            parse,
            missing="not a dcrt AOTInductor bundle (run `dcrt build --engine aoti`)",
            schema_word="AOTInductor schema version",
            remedy=": rebuild with `dcrt build --engine aoti`",
            kind="dcrt AOTInductor manifest",
        )


def read_manifest_or_none(directory: Path) -> AotiManifest | None:
    try:
        return AotiManifest.read(directory)
    except DcrtError:
        return None


# ------------------------------------------------------------------------------------------------ checks


def rebuild_command(preset: str, device: str) -> str:
    return f"dcrt build --res {preset} --engine aoti --device {device}"


def stale_reason(
    manifest: AotiManifest | None,
    component: str,
    spec: ComponentSpec,
    flags: dict,
    directory: Path,
    verify: bool = False,
) -> str | None:
    """Why the package of `component` must be (re)built, or None when the one on disk is up to date. The bundle's
    target and weights are checked before (`AotiManifest.target`, `source`): they make every package stale."""
    entry = manifest.engines.get(component) if manifest is not None else None
    changes = (
        (lambda e: e.flags != flags, "the build flags changed"),
        (lambda e: not io_matches(e, spec), "the IO table changed"),
    )
    return entry_stale_reason(entry, directory, changes, verify)


def find_bundle(root: Path, target: AotiTarget, preset: str, preset_dir: str | None = None) -> Path:
    """The bundle for this target; if there is none, say which AOTInductor bundles exist and how to build one."""
    rebuild = rebuild_command(preset, target.device)
    return locate_bundle(root, target, preset_dir or preset, "AOTInductor packages", "aoti-*", rebuild)


def check_bundle(manifest: AotiManifest, specs: dict[str, ComponentSpec], directory: Path, verify: bool) -> None:
    """Every component recorded with the IO table's tensors, every file of its recorded size (and sha256)."""
    hint = f"rebuild with `{rebuild_command(manifest.preset, manifest.device)}`"
    check_entries(manifest, specs, directory, hint, verify)
