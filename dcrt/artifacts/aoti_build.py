"""PyTorch modules -> AOTInductor packages (`.pt2`), one per IO-table component: the only code that compiles them.

Each component is the export's graph module (dcrt.artifacts.export.graph_modules: float inputs cast in, float32 out)
traced by `torch.export` at the IO table's static shapes on the sample inputs, compiled and packaged by
`torch._inductor.aoti_compile_and_package`, loaded back and checked against the PyTorch module on the same
inputs. The bundle format and staleness rules are dcrt.artifacts.aoti_bundle's (read by the runtime too).

Portability: by default Inductor compiles CPU kernels with -march=native, which on an AVX-512/AMX build
machine gives packages that die with an illegal instruction elsewhere. A portable build sets the inductor
options `cpp.simdlen=256` (Inductor's vector ISA: AVX2; the same as ATEN_CPU_CAPABILITY=avx2) and
`cpp.march=x86-64-v3` (the compiler's target: AVX2 + FMA), passed per compile rather than as environment
variables, so nothing leaks into the rest of the process.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dcrt.artifacts.aoti_bundle import (
    PACKAGE_SUFFIX,
    AotiEntry,
    AotiManifest,
    AotiTarget,
    read_manifest_or_none,
    stale_reason,
)
from dcrt.artifacts.engine_bundle import bundle_dir, preset_dirname
from dcrt.artifacts.graphs import ComponentSpec, io_table
from dcrt.artifacts.host_files import host_fields, write_host_files
from dcrt.artifacts.manifest import sha256_file
from dcrt.atomic import atomic_file
from dcrt.errors import BackendUnavailable, DcrtError, UsageError
from dcrt.families.base import PresetBase
from dcrt.version import __version__
from dcrt.weights import Weights, made_from

# Bumped whenever the build makes other packages from the same inputs: old packages become stale.
AOTI_BUILDER_REVISION = 1
PRECISIONS = ("fp32", "fp16")
Log = Callable[[str], None]


@dataclass(frozen=True)
class AotiConfig:
    """How packages are built. `precision` None: fp32 on the CPU (fp16 has no fast CPU kernels), fp16 on CUDA."""

    device: str = "cpu"
    native: bool = False  # CPU: compile for this machine's CPU (-march=native) instead of portable AVX2
    precision: str | None = None
    # Packages built at once, each in a process of its own (CPU builds): Inductor's code generation and g++ are
    # one thread each, so 2 jobs on 2 idle cores nearly halve the build; each job holds a model and its compile.
    # Not a build flag: it changes how long a build takes, not what it makes.
    jobs: int = 1

    def __post_init__(self):
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}; choose {', '.join(PRECISIONS)}")
        if self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {self.jobs}")
        if self.jobs > 1 and self.device != "cpu":
            raise UsageError("--jobs is for CPU builds: CUDA packages are built one at a time on the GPU")

    @property
    def graph_precision(self) -> str:
        return self.precision or ("fp16" if self.device == "cuda" else "fp32")

    def inductor_configs(self, target: AotiTarget) -> dict:
        """Inductor options of every compile. The wrapper (the C++ that calls the kernels, one line per op, run once
        per call) is compiled at -O0 instead of -O1: the tiny UNet's wrapper took 46 s of g++ at -O1 and 17 s at
        -O0, with no measurable change in its run time (docs/backends.md, "Build time"); the kernels keep -O3."""
        options = {"aot_inductor.compile_wrapper_opt_level": "O0"}
        if target.device == "cpu" and not target.native:
            options |= {"cpp.simdlen": 256, "cpp.march": "x86-64-v3"}
        return options

    def flags(self, target: AotiTarget) -> dict:
        """What a package depends on besides its target and weights; recorded per package, compared for staleness."""
        return {
            "precision": self.graph_precision,
            "inductor": self.inductor_configs(target),
            "builder_revision": AOTI_BUILDER_REVISION,
        }


@dataclass(frozen=True)
class AotiBuildReport:
    directory: Path
    built: dict[str, str]  # component -> why it was (re)built
    up_to_date: list[str]
    seconds: dict[str, float]  # component -> build time of what was built


def plan_build(
    preset: PresetBase, weights: Weights, root: Path, target: AotiTarget, config: AotiConfig, height: int, width: int
) -> tuple[Path, AotiManifest | None, dict[str, str | None]]:
    """(the bundle directory, the manifest there that may be kept, component -> why to build it or None)."""
    directory = bundle_dir(root, target, preset_dirname(preset.name, height, width, (preset.height, preset.width)))
    existing = read_manifest_or_none(directory)
    specs = io_table(preset, height, width)
    if existing is not None and (existing.target != target or (existing.height, existing.width) != (height, width)):
        existing = None
    if existing is not None and not made_from(weights, existing.source, existing.source_stamp):
        return directory, None, {name: f"built from {existing.source}, not {weights}" for name in specs}
    flags = config.flags(target)
    return directory, existing, {n: stale_reason(existing, n, s, flags, directory) for n, s in specs.items()}


def build_aoti_bundle(
    preset: PresetBase,
    weights: Weights,
    root: Path,
    config: AotiConfig,
    target: AotiTarget,
    height: int | None = None,
    width: int | None = None,
    log: Log = lambda message: None,
    verify: bool = False,
    only: tuple[str, ...] | None = None,
) -> AotiBuildReport:
    """Build every stale package of `weights` at `preset`'s (or the given) size into its bundle under `root`; skip
    the up-to-date ones without loading the model. `only`: build just these components (a benchmark's budget);
    the bundle then lacks the others until a whole build."""
    height, width = height or preset.height, width or preset.width
    directory, existing, reasons = plan_build(preset, weights, root, target, config, height, width)
    if verify and existing is not None:  # re-hash what would be kept
        flags = config.flags(target)
        specs = io_table(preset, height, width)
        reasons = {n: r or stale_reason(existing, n, specs[n], flags, directory, True) for n, r in reasons.items()}
    stale = {name: why for name, why in reasons.items() if why is not None and (only is None or name in only)}
    fresh = [name for name, why in reasons.items() if why is None]
    for name in fresh:
        log(f"{name}: up to date")
    if not stale:
        write_host_files(directory, host_fields(preset))
        _refresh_host_fields(existing, preset, directory, log)
        return AotiBuildReport(directory, {}, fresh, {})
    check_compiler()
    directory.mkdir(parents=True, exist_ok=True)
    write_host_files(directory, host_fields(preset))
    manifest = _new_manifest(preset, weights, target, config, height, width)
    if existing is not None:
        manifest.engines = {n: e for n, e in existing.engines.items() if n in fresh}
    from dcrt.artifacts.export import write_schedule
    from dcrt.loading import load_torch_model

    model = load_torch_model(preset, weights, target.device, "fp32")
    if preset.carries_schedule:  # SVD's EDM schedule is the preset's
        manifest.schedule, manifest.schedule_sizes = write_schedule(model, directory)
    specs = io_table(preset, height, width)
    # The UNets first: the longest builds, started first, keep parallel jobs busy until the end.
    order = sorted(stale, key=lambda name: not name.startswith("unet"))
    steps = {
        name: f"[{index}/{len(order)}] {name}{PACKAGE_SUFFIX}: building ({stale[name]})"
        for index, name in enumerate(order, 1)
    }
    if config.jobs > 1 and len(order) > 1:
        # The jobs take them as they free up and report only when one ends: what runs when is not known here.
        queued = ", ".join(f"{name}{PACKAGE_SUFFIX} ({stale[name]})" for name in order)
        log(f"building {len(order)} packages, {config.jobs} at a time, longest first: {queued}")
        del model  # each job loads its own
        built = _built_in_processes(preset, weights, height, width, order, directory, config, target, log)
    else:
        built = _built_here(model, specs, steps, directory, config, target, log)
    seconds = {}
    for name, entry in built:
        manifest.engines[name] = entry
        seconds[name] = entry.build_seconds
        manifest.write(directory)  # after every package: an interrupted build keeps what it finished
    manifest.engines = {n: manifest.engines[n] for n in specs if n in manifest.engines}  # in IO-table order
    manifest.write(directory)
    return AotiBuildReport(directory, stale, fresh, seconds)


def _built_here(model, specs, steps, directory, config, target, log):
    """(component, entry) for each of `steps` (component -> its progress line), built in this process on one
    model, one after the other."""
    # Inputs and fp32 references first: an fp16 build converts the model in place.
    checks = {name: reference_outputs(model, specs[name], target.device) for name in steps}
    for name, step in steps.items():
        log(step)
        yield name, build_package(model, specs[name], *checks[name], directory, config, target, log)


def _built_in_processes(preset, weights, height, width, order, directory, config, target, log):
    """(component, entry) for each of `order` as its job finishes: `config.jobs` processes (spawned: no forked
    torch threads), each loading the model once per component it builds. A failing job stops the others at once
    (the pool is terminated) and its error is raised here; their half-written packages are removed."""
    import multiprocessing
    import os

    threads = max(1, (os.cpu_count() or 1) // config.jobs)
    jobs = [(name, preset.name, weights, height, width, directory, config, target, threads) for name in order]
    try:
        with multiprocessing.get_context("spawn").Pool(config.jobs) as pool:  # leaving it terminates the jobs
            for done, (name, entry, messages) in enumerate(pool.imap_unordered(_build_in_job, jobs), 1):
                for message in messages:
                    log(f"[{done}/{len(order)} done] {message}")
                yield name, entry
            pool.close()  # all done: let the workers exit (terminating them leaks their semaphores, with warnings)
            pool.join()
    except BaseException:
        for name in order:  # atomic_file's temporaries of the terminated jobs
            for partial in Path(directory).glob(f".{name}{PACKAGE_SUFFIX}.*"):
                partial.unlink(missing_ok=True)
        raise


def _build_in_job(job: tuple) -> tuple:
    """One package, in a job's process: (its component, its entry, the messages it logged)."""
    import torch

    from dcrt.loading import load_torch_model
    from dcrt.presets import get_preset

    name, preset_name, weights, height, width, directory, config, target, threads = job
    torch.set_num_threads(threads)
    preset = get_preset(preset_name)
    model = load_torch_model(preset, weights, target.device, "fp32")
    spec = io_table(preset, height, width)[name]
    messages = []
    inputs, reference = reference_outputs(model, spec, target.device)
    return name, build_package(model, spec, inputs, reference, directory, config, target, messages.append), messages


def check_compiler() -> None:
    """AOTInductor compiles C++ with the system's compiler (g++ unless $CXX says otherwise): say so up front."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        compiler = get_cpp_compiler()
    except Exception as exc:  # InvalidCxxCompiler: none of config.cpp.cxx runs
        raise BackendUnavailable(f"AOTInductor needs a C++ compiler (g++): {str(exc).splitlines()[0]}") from None
    if shutil.which(compiler) is None:
        raise BackendUnavailable(f"AOTInductor needs a C++ compiler, and {compiler} is not on PATH (install g++)")


def _new_manifest(
    preset: PresetBase, weights: Weights, target: AotiTarget, config: AotiConfig, height: int, width: int
) -> AotiManifest:
    return AotiManifest(
        preset.name,
        height,
        width,
        target.device,
        target.isa,
        target.torch_version,
        config.graph_precision,
        __version__,
        weights.source(),
        weights.stamp(),
        **host_fields(preset),
    )


def _refresh_host_fields(manifest: AotiManifest | None, preset: PresetBase, directory: Path, log: Log) -> None:
    """Rewrite the manifest's host fields where they differ from the preset's: they are derived, not built, so a
    bundle whose packages are all up to date still gains what a newer dcrt records for hosts."""
    fields = host_fields(preset)
    if manifest is None or all(getattr(manifest, name) == value for name, value in fields.items()):
        return
    for name, value in fields.items():
        setattr(manifest, name, value)
    manifest.write(directory)
    log("manifest.json: host fields updated")


def reference_outputs(model, spec: ComponentSpec, device: str) -> tuple[tuple, tuple]:
    """(the component's sample inputs on `device`, the fp32 module's outputs on them): what a package is checked
    against."""
    import torch

    from dcrt.artifacts.export import graph_modules
    from dcrt.artifacts.graphs import sample_inputs

    inputs = tuple(x.to(device) for x in sample_inputs(spec, model.preset))
    with torch.no_grad():
        outputs = graph_modules(model, torch.float32)[spec.name].eval()(*inputs)
    return inputs, outputs if isinstance(outputs, tuple) else (outputs,)


def build_package(
    model,
    spec: ComponentSpec,
    inputs: tuple,
    reference: tuple,
    directory: Path,
    config: AotiConfig,
    target: AotiTarget,
    log: Log,
) -> AotiEntry:
    """Trace, compile and package one component, then check the package against `reference`, the fp32 module's
    outputs on `inputs`."""
    from dcrt.artifacts.export import PRECISIONS as GRAPH_DTYPES
    from dcrt.artifacts.export import TOLERANCE, graph_modules

    start = time.monotonic()
    precision = config.graph_precision
    module = graph_modules(_in_precision(model, precision), GRAPH_DTYPES[precision])[spec.name].eval()
    path = Path(directory) / f"{spec.name}{PACKAGE_SUFFIX}"
    with atomic_file(path, suffix=PACKAGE_SUFFIX) as tmp:
        _compile(module, inputs, tmp, config.inductor_configs(target), spec.name)
        compiled_s = time.monotonic() - start
        error, max_abs = _parity(tmp, inputs, reference, target)
        tolerance = TOLERANCE[precision]
        if not error < tolerance:
            raise DcrtError(f"{path.name}: the package differs from PyTorch by {error:.2e} (tolerance {tolerance:.0e})")
    seconds = round(time.monotonic() - start, 1)
    log(f"{path.name}: {path.stat().st_size / 2**20:.1f} MiB, relative error {error:.2e}, {compiled_s:.0f} s to build")
    return AotiEntry(
        file=path.name,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        flags=config.flags(target),
        inputs=[t.as_dict() for t in spec.inputs],
        outputs=[t.as_dict() for t in spec.outputs],
        parity={"rel_error": error, "max_abs": max_abs, "tolerance": tolerance},
        build_seconds=seconds,
    )


def _in_precision(model, precision: str):
    """The model in the graph's precision (fp16: converted in place, once; the references were computed before)."""
    import torch

    if precision == "fp16" and model.dtype != torch.float16:
        model.place(model.device, torch.float16)
    return model


def _compile(module, inputs: tuple, path: Path, options: dict, name: str) -> None:
    """torch.export at the inputs' static shapes, then AOTInductor into `path`; any failure is one line."""
    import torch
    from torch._inductor import aoti_compile_and_package

    try:
        with torch.no_grad():
            program = torch.export.export(module, inputs, strict=False)
            aoti_compile_and_package(program, package_path=str(path), inductor_configs=options)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DcrtError(f"AOTInductor could not build {name} ({type(exc).__name__}: {first})") from None


def _parity(path: Path, inputs: tuple, reference, target: AotiTarget) -> tuple[float, float]:
    """(relative error, largest absolute difference) of the package at `path` against the module's outputs."""
    import torch

    from dcrt.artifacts.export import max_abs_difference, relative_error
    from dcrt.backends.aoti_backend import call_package, load_package

    runner = load_package(path, target.device)
    with torch.no_grad():
        outputs = call_package(runner, inputs)
    return relative_error(outputs, reference), max_abs_difference(outputs, reference)
