"""ONNX export -> TensorRT engine bundle: the only code that calls TensorRT's builder.

Planning is plain Python over the bundle format (dcrt.artifacts.engine_bundle); only `build_engine` talks to TensorRT,
and `build_bundle` takes it as a parameter so CI runs the planning with a fake. Everything is written with
write-then-rename; the bundle's manifest is rewritten after every plan.

Precision: TensorRT 11 removed weak typing (BuilderFlag.FP16, OBEY_PRECISION_CONSTRAINTS, layer
precision hints), so the precision of every layer is the one in the ONNX graph and networks are
built strongly typed (the flag is required on TensorRT 10 and ignored on 11). An FP16 engine is built
from an fp16 export (`dcrt export --precision fp16`), whose GroupNorm/LayerNorm already run in fp32
between casts (dcrt/models/layers.py, docs/numerics.md §7.1). For the components in `BuildConfig.fp32_softmax`
(the VAE by default: its mid attention over h*w tokens is where the 1024 black frames were
reported; ToonCrafter's decoders add cross-attention to 2*h*w key-frame tokens, docs/models.md §6.2) the
build also lifts every Softmax of an fp16 graph to fp32 by inserting casts around it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dcrt.artifacts.engine_bundle import (
    PLAN_SUFFIX,
    EngineEntry,
    Target,
    bundle_dir,
    engine_key,
    import_tensorrt,
    new_manifest,
    preset_dirname,
    read_manifest_or_none,
    stale_reason,
)
from dcrt.artifacts.graphs import ComponentSpec, io_table
from dcrt.artifacts.host_files import host_fields, write_host_files
from dcrt.artifacts.manifest import MANIFEST_FILE, ExportManifest, file_problem
from dcrt.atomic import atomic_file
from dcrt.errors import DcrtError, UsageError

TIMING_CACHE_FILE = "timing.cache"
# Bumped whenever build_engine changes what it builds from the same inputs: old plans become stale.
BUILDER_REVISION = 2  # 2: the always-true `strongly_typed` flag left the key

# (component, phase, step, total) from TensorRT's progress monitor; total is 0 when unknown.
Progress = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class BuildConfig:
    """How plans are built. Networks are always strongly typed (precision from the graph): the only mode of
    TensorRT 11, so it is no option."""

    opt_level: int = 3  # builder_optimization_level: 0 (fast build) .. 5 (slowest build, fastest engine)
    workspace_gb: float | None = None  # WORKSPACE pool limit; None = TensorRT's default (the device's memory)
    timing_cache: Path | None = None  # None = <target dir>/timing.cache, shared by every preset on that GPU
    fp32_softmax: tuple[str, ...] = ("vae_encoder", "vae_decoder", "vae_decoder_second_pass", "vae_decoder_tail")

    def __post_init__(self):
        if not 0 <= self.opt_level <= 5:
            raise UsageError(f"--opt-level must be 0..5, got {self.opt_level}")
        if self.workspace_gb is not None and self.workspace_gb <= 0:
            raise UsageError(f"--workspace must be a positive number of GB, got {self.workspace_gb}")

    @property
    def workspace_bytes(self) -> int | None:
        return None if self.workspace_gb is None else int(self.workspace_gb * 2**30)

    def flags(self, component: str, precision: str) -> dict:
        """What a plan of `component` depends on besides its ONNX and target (the timing cache does not count:
        it only makes tactic selection faster). Recorded in the manifest and compared for staleness."""
        return {
            "precision": precision,
            "opt_level": self.opt_level,
            "workspace_bytes": self.workspace_bytes,
            "fp32_softmax": precision == "fp16" and component in self.fp32_softmax,
            "builder_revision": BUILDER_REVISION,
        }


def profile_for(spec: ComponentSpec) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """The one optimisation profile: min = opt = max = the IO table's static shape of every input."""
    return {t.name: (t.shape, t.shape, t.shape) for t in spec.inputs}


# ------------------------------------------------------------------------------------------------ bundle


@dataclass(frozen=True)
class BuiltEngine:
    plan: bytes
    device_memory_bytes: int


# The TensorRT-facing step, injectable so the whole bundle logic runs in CI with a fake.
EngineBuilder = Callable[[Path, ComponentSpec, BuildConfig, bool, Path, Progress], BuiltEngine]


@dataclass(frozen=True)
class BuildReport:
    directory: Path
    built: dict[str, str]  # component -> why it was (re)built
    up_to_date: list[str]


def build_bundle(
    export_dir: Path,
    engines_root: Path,
    config: BuildConfig,
    target: Target,
    builder: EngineBuilder | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda message: None,
    verify: bool = False,
) -> BuildReport:
    """Build every stale plan of the export in `export_dir`; skip the up-to-date ones. The export's files and
    the plans on disk are checked by size against their manifests; `verify` re-hashes all of them too."""
    from dcrt.presets import get_preset

    export_dir, engines_root = Path(export_dir), Path(engines_root)
    export = ExportManifest.read(export_dir)
    export.verify_files(export_dir, full=verify)
    preset = get_preset(export.preset)
    specs = io_table(preset, export.height, export.width)
    missing = set(specs) - set(export.components)
    if missing:
        raise UsageError(f"{export_dir / MANIFEST_FILE} lacks components {sorted(missing)}")
    directory = bundle_dir(
        engines_root, target, preset_dirname(export.preset, export.height, export.width, (preset.height, preset.width))
    )
    directory.mkdir(parents=True, exist_ok=True)
    existing = read_manifest_or_none(directory)
    fields = host_fields(preset)
    write_host_files(directory, fields)  # the vocabulary, as an AOTInductor bundle holds it: the C++ host needs it
    manifest = new_manifest(export, target, fields)
    if existing is not None and existing.target == target and existing.preset == export.preset:
        manifest.engines = dict(existing.engines)  # keep what is up to date, replace what is rebuilt
    for file, digest in export.schedule.items():
        copied = existing is not None and existing.schedule.get(file) == digest
        if copied and file_problem(directory / file, digest, export.schedule_sizes[file], verify) is None:
            continue
        with atomic_file(directory / file) as tmp:
            tmp.write_bytes((export_dir / file).read_bytes())
    manifest.schedule, manifest.schedule_sizes = dict(export.schedule), dict(export.schedule_sizes)
    timing_cache = config.timing_cache or directory.parent / TIMING_CACHE_FILE
    builder = builder or build_engine
    built, fresh = {}, []
    for name, spec in specs.items():
        key = engine_key(target, export, name, config)
        reason = stale_reason(key, existing, directory, verify)
        if reason is None:
            fresh.append(name)
            log(f"{name}: up to date")
            continue
        log(f"{name}: building ({reason})")
        start = time.monotonic()
        flags = json.loads(key.flags)
        result = builder(
            export_dir / spec.filename,
            spec,
            config,
            flags["fp32_softmax"],
            timing_cache,
            _for_component(progress, name),
        )
        plan_path = directory / f"{name}{PLAN_SUFFIX}"
        with atomic_file(plan_path) as tmp:
            tmp.write_bytes(result.plan)
        manifest.engines[name] = EngineEntry(
            file=plan_path.name,
            sha256=hashlib.sha256(result.plan).hexdigest(),  # hashed once, from memory, as it is written
            bytes=len(result.plan),
            device_memory_bytes=result.device_memory_bytes,
            onnx=dict(export.components[name].files),
            flags=flags,
            inputs=[t.as_dict() for t in spec.inputs],
            outputs=[t.as_dict() for t in spec.outputs],
            build_seconds=round(time.monotonic() - start, 1),
        )
        manifest.write(directory)  # after every plan: an interrupted build keeps what it finished
        built[name] = reason
    manifest.engines = {k: manifest.engines[k] for k in specs}  # drop components the export no longer has
    manifest.write(directory)
    return BuildReport(directory, built, fresh)


def _for_component(progress: Progress | None, component: str) -> Callable[[str, int, int], None]:
    return (lambda phase, step, total: progress(component, phase, step, total)) if progress else (lambda *a: None)


# -------------------------------------------------------------------------------------------- TensorRT


def lift_softmax_to_fp32(model):
    """Cast the input of every Softmax of an fp16 ONNX graph to fp32 and its output back (in place).

    Strongly typed TensorRT then runs those softmaxes in fp32, which is what a precision constraint
    did before TensorRT 11. Only for graphs whose softmaxes are fp16 (fp16 exports)."""
    from onnx import TensorProto, helper

    graph = model.graph
    nodes = []
    for node in graph.node:
        if node.op_type != "Softmax":
            nodes.append(node)
            continue
        src, dst = node.input[0], node.output[0]
        wide_in, wide_out = f"{node.name or dst}_fp32_in", f"{node.name or dst}_fp32_out"
        nodes.append(helper.make_node("Cast", [src], [wide_in], to=TensorProto.FLOAT, name=f"{wide_in}_cast"))
        node.input[0], node.output[0] = wide_in, wide_out
        nodes.append(node)
        nodes.append(helper.make_node("Cast", [wide_out], [dst], to=TensorProto.FLOAT16, name=f"{wide_out}_cast"))
    del graph.node[:]
    graph.node.extend(nodes)
    # Stale value_info would claim fp16 for the renamed tensors; TensorRT infers types itself.
    kept = [v for v in graph.value_info if not v.name.endswith(("_fp32_in", "_fp32_out"))]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return model


def build_engine(
    onnx_path: Path,
    spec: ComponentSpec,
    config: BuildConfig,
    fp32_softmax: bool,
    timing_cache: Path,
    progress: Callable[[str, int, int], None],
) -> BuiltEngine:
    """Parse, configure and build one plan with TensorRT 10/11 (strongly typed, one static profile)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # STRONGLY_TYPED: layer precisions come from the graph's types (required on 10.x, the only mode on 11.x).
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if fp32_softmax:
        import onnx

        model = lift_softmax_to_fp32(onnx.load(str(onnx_path), load_external_data=False))
        ok = parser.parse(model.SerializeToString(), str(onnx_path))  # the path locates external weights
    else:
        ok = parser.parse_from_file(str(onnx_path))
    if not ok:
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise DcrtError(f"TensorRT cannot parse {onnx_path}: {errors}")
    _check_network_io(network, spec, onnx_path)

    cfg = builder.create_builder_config()
    cfg.builder_optimization_level = config.opt_level
    if config.workspace_bytes is not None:
        cfg.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_for(spec).items():
        profile.set_shape(name, lo, opt, hi)
    cfg.add_optimization_profile(profile)
    cache = cfg.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    cfg.set_timing_cache(cache, ignore_mismatch=False)
    cfg.progress_monitor = _progress_monitor(trt, progress)

    plan = builder.build_serialized_network(network, cfg)
    if plan is None:
        raise DcrtError(f"TensorRT failed to build {onnx_path.name} (see the messages above)")
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(timing_cache) as tmp:
        tmp.write_bytes(bytes(cfg.get_timing_cache().serialize()))
    plan = bytes(plan)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    return BuiltEngine(plan, int(engine.device_memory_size_v2))


def _check_network_io(network, spec: ComponentSpec, onnx_path: Path) -> None:
    got = [network.get_input(i).name for i in range(network.num_inputs)]
    want = [t.name for t in spec.inputs]
    if got != want:
        raise UsageError(f"{onnx_path} has inputs {got}, the IO table says {want}: re-export it")


def _progress_monitor(trt, report: Callable[[str, int, int], None]):
    """A trt.IProgressMonitor forwarding top-level phases to `report(phase, step, total)`."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.totals: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.totals[phase_name] = num_steps
            report(phase_name, 0, num_steps)

        def step_complete(self, phase_name, step):
            report(phase_name, step + 1, self.totals.get(phase_name, 0))
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            total = self.totals.pop(phase_name, 0)
            report(phase_name, total, total)

    return Monitor()


def console_progress() -> Progress:
    """A tqdm bar per component on stderr, advanced by TensorRT's outermost phase."""
    import sys

    from tqdm import tqdm

    bars: dict[str, tqdm] = {}
    outer: dict[str, str] = {}

    def report(component: str, phase: str, step: int, total: int) -> None:
        if outer.setdefault(component, phase) != phase:
            return  # nested phases would make the bar jump back and forth
        bar = bars.get(component)
        if bar is None:
            bar = bars[component] = tqdm(
                total=total or None, desc=component, unit="step", file=sys.stderr, dynamic_ncols=True
            )
        bar.n = step
        bar.refresh()
        if total and step >= total:
            bar.close()

    return report
