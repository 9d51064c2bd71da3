"""PyTorch reference modules -> one ONNX graph per component, checked in ONNX Runtime.

Each graph is traced at the static shapes of the IO table, constant-folded, checked with
`onnx.checker`, run in ONNX Runtime against the PyTorch module on sample inputs, and recorded in
`manifest.json` with its hash and measured error. Everything is written to a temporary directory
that replaces the target only when all of it succeeded.
"""

from __future__ import annotations

import gc
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dcrt.artifacts.graph_module import GraphModule
from dcrt.artifacts.graphs import ComponentSpec, io_table, sample_inputs
from dcrt.artifacts.manifest import ComponentEntry, ExportManifest, sha256_file
from dcrt.atomic import atomic_dir, atomic_file
from dcrt.errors import DcrtError, UsageError
from dcrt.families import family_of
from dcrt.families.base import PresetBase
from dcrt.models.dynamicrafter import DynamiCrafter
from dcrt.version import __version__
from dcrt.weights import Weights, made_from

OPSET = 17
SCHEDULE_FILE = "schedule.safetensors"
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
# Relative error budgets of ONNX Runtime vs PyTorch (fp32 weights) per graph precision.
TOLERANCE = {"fp32": 1e-4, "fp16": 3e-2}


def graph_modules(model, dtype: torch.dtype) -> dict[str, GraphModule]:
    """The computation of each IO-table component of `model` (any family's), in terms of its reference modules."""
    return family_of(model.preset).part("graph_modules")(model, dtype)


def _fold_constants(graph):
    """Fold the exporter's shape arithmetic into constants and drop dead nodes (onnx-graphsurgeon)."""
    import onnx_graphsurgeon as gs

    g = gs.import_onnx(graph)
    g.fold_constants().cleanup().toposort()
    return gs.export_onnx(g)


def _gather_external_data(graph, source_dir: Path, data_path: Path) -> None:
    """Stream the exporter's one-file-per-tensor weights into one `.data` file, a tensor at a time."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    offset = 0
    with open(data_path, "wb") as out:
        for tensor in graph.graph.initializer:
            if not uses_external_data(tensor):
                continue
            info = ExternalDataInfo(tensor)
            with open(source_dir / info.location, "rb") as f:
                f.seek(info.offset or 0)
                data = f.read(info.length) if info.length else f.read()
            out.write(data)
            # Rewrite the reference in place: the tensor's bytes are never loaded into the proto.
            del tensor.external_data[:]
            for key, value in (("location", data_path.name), ("offset", str(offset)), ("length", str(len(data)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += len(data)


def export_graph(module: GraphModule, spec: ComponentSpec, inputs: list[torch.Tensor], path: Path) -> list[Path]:
    """Trace and save one graph (weights in one external `.data` file above 2 GB), checked. Returns its files.

    Graphs under 2 GB are also constant-folded with onnx-graphsurgeon; larger ones keep the exporter's
    own folding, so that their weights are streamed from disk instead of held in memory twice.
    """
    import onnx
    from onnx.external_data_helper import uses_external_data

    data_path = path.parent / f"{spec.filename}.data"
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        raw = Path(scratch) / spec.filename
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter: several times faster than dynamo here, and what TensorRT's demos use.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(inputs),
                str(raw),
                input_names=[t.name for t in spec.inputs],
                output_names=[t.name for t in spec.outputs],
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        graph = onnx.load(str(raw), load_external_data=False)
        large = any(uses_external_data(t) for t in graph.graph.initializer)
        if large:
            _gather_external_data(graph, Path(scratch), data_path)
        else:
            graph = _fold_constants(graph)
        onnx.save_model(graph, str(path))
    del graph
    onnx.checker.check_model(str(path))  # by path: works above the 2 GB protobuf limit
    return [path, data_path] if large else [path]


def parity_session_options():
    """ONNX Runtime CPU options of the export's parity check: as little resident memory as it can."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Without pre-packing, MatMul reads its weights straight from the memory-mapped `.data` file
    # instead of an anonymous packed copy: 5.5 GB less resident memory for a full-size UNet check.
    options.add_session_config_entry("session.disable_prepacking", "1")
    # Level "all" adds the CPU-only NCHWc conv layout: 2.7 GB of reordered UNet weights for no check value.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    # ONNX Runtime's planner gives a freed buffer only to a later tensor of exactly its byte size and
    # keeps it until then, so each tensor size in the UNet holds its own buffers for the whole run.
    # Without planned reuse a tensor's memory goes back to the arena at its last use. Batch-3 512 UNet:
    # 192x320 needs 7.3 GiB with reuse, 2.4 GiB without (benchmarks/onnx_memory.py); at 320x512 the
    # run with reuse passed 21 GiB (OOM on 24 GB), the export without it peaks at 12.6 GiB.
    options.enable_mem_reuse = False
    return options


def parity_session(model: str):
    import onnxruntime as ort

    return ort.InferenceSession(model, parity_session_options(), providers=["CPUExecutionProvider"])


def run_onnx(path: Path, spec: ComponentSpec, inputs: list[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """The graph's output, or its outputs as a tuple when it has several (as `GraphModule` returns them)."""
    values = {t.name: x.numpy() for t, x in zip(spec.inputs, inputs)}
    outputs = parity_session(str(path)).run([t.name for t in spec.outputs], values)
    outputs = tuple(torch.from_numpy(o) for o in outputs)
    return outputs if len(outputs) > 1 else outputs[0]


def relative_error(out: torch.Tensor | tuple, ref: torch.Tensor | tuple) -> float:
    """||out - ref|| / ||ref||; for tuples of outputs, the largest over the pairs."""
    if isinstance(ref, tuple):
        return max(relative_error(o, r) for o, r in zip(out, ref, strict=True))
    return float((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30))


def max_abs_difference(out: torch.Tensor | tuple, ref: torch.Tensor | tuple) -> float:
    if isinstance(ref, tuple):
        return max(max_abs_difference(o, r) for o, r in zip(out, ref, strict=True))
    return float((out - ref).abs().max())


@dataclass(frozen=True)
class ExportRequest:
    """What an export is made of. Built `for_weights`, it takes the source and stamp from the weights on demand:
    an up-to-date export is then recognised by the checkpoint's stamp without hashing the checkpoint, and a new
    export hashes it once (dcrt.weights)."""

    preset: PresetBase
    precision: str = "fp32"
    source: str = "unknown"
    height: int | None = None
    width: int | None = None
    source_stamp: dict | None = None  # dcrt.artifacts.manifest.file_stamp of the checkpoint, when it is a file
    weights: Weights | None = None  # when given, the source and stamp come from it (leave the two above unset)

    def __post_init__(self):
        if self.weights is not None and (self.source != "unknown" or self.source_stamp is not None):
            raise ValueError("an ExportRequest takes weights or a source and stamp, not both")

    @classmethod
    def for_weights(
        cls,
        weights: Weights,
        preset: PresetBase,
        precision: str = "fp32",
        height: int | None = None,
        width: int | None = None,
    ) -> ExportRequest:
        return cls(preset, precision, height=height, width=width, weights=weights)

    def recorded_source(self) -> str:
        """The manifest's `source`; for a checkpoint its sha256, hashed at most once per `Weights`."""
        return self.source if self.weights is None else self.weights.source()

    def recorded_stamp(self) -> dict | None:
        return self.source_stamp if self.weights is None else self.weights.stamp()

    def holds_weights_of(self, manifest: ExportManifest) -> bool:
        """Whether `manifest` records this request's weights: by the stamp when it decides, else by the hash."""
        if self.weights is None:
            return manifest.source == self.source
        return made_from(self.weights, manifest.source, manifest.source_stamp)

    def recorded_fields(self) -> dict:
        """Everything the manifest records of the request except its weights."""
        return dict(
            preset=self.preset.name,
            height=self.height or self.preset.height,
            width=self.width or self.preset.width,
            precision=self.precision,
            opset=OPSET,
            dcrt_version=__version__,
        )

    def manifest(self) -> ExportManifest:
        return ExportManifest(
            **self.recorded_fields(), source=self.recorded_source(), source_stamp=self.recorded_stamp()
        )


def is_up_to_date(out: Path, request: ExportRequest, verify: bool = False) -> bool:
    """An export of the same inputs already sits in `out`, every file of its recorded size (and, with `verify`,
    of its recorded sha256: reads every byte). The weights are compared last, by stamp when it can decide."""
    try:
        existing = ExportManifest.read(out)
        existing.verify_files(out, full=verify)
    except DcrtError:
        return False
    return (
        all(getattr(existing, k) == v for k, v in request.recorded_fields().items())
        and set(existing.components) == set(io_table(request.preset, request.height, request.width))
        and request.holds_weights_of(existing)
    )


def kept_export(out: Path, request: ExportRequest) -> ExportManifest:
    """The up-to-date export in `out`, re-stamped when the same weights were copied or touched."""
    existing = ExportManifest.read(out)
    stamp = request.recorded_stamp()
    if existing.source_stamp != stamp:
        existing.source_stamp = stamp
        existing.write(out)
    return existing


def _checked_entry(
    spec: ComponentSpec, files: list[Path], inputs: list[torch.Tensor], reference: torch.Tensor | tuple, precision: str
) -> ComponentEntry:
    """The manifest entry of one exported graph, after checking it in ONNX Runtime against `reference`."""
    result = run_onnx(files[0], spec, inputs)
    error = relative_error(result, reference)
    tolerance = TOLERANCE[precision]
    if not error < tolerance:
        raise DcrtError(
            f"{spec.filename}: ONNX Runtime differs from PyTorch by {error:.2e} (tolerance {tolerance:.0e})"
        )
    return ComponentEntry(
        **spec.as_dict(),
        files={f.name: sha256_file(f) for f in files},
        sizes={f.name: f.stat().st_size for f in files},
        bytes=sum(f.stat().st_size for f in files),
        parity={"rel_error": error, "max_abs": max_abs_difference(result, reference), "tolerance": tolerance},
    )


def write_schedule(model: DynamiCrafter, directory: Path) -> tuple[dict[str, str], dict[str, int]]:
    """The checkpoint's noise-schedule tensors (float32) as `directory/schedule.safetensors`, written atomically:
    ({file: sha256}, {file: bytes}) as manifests record them. Exports and AOTInductor bundles both carry it."""
    from safetensors.torch import save_file

    path = Path(directory) / SCHEDULE_FILE
    with atomic_file(path, suffix=".safetensors") as tmp:
        save_file({k: v.float().cpu().contiguous() for k, v in model.schedule.named_buffers()}, tmp)
    return {SCHEDULE_FILE: sha256_file(path)}, {SCHEDULE_FILE: path.stat().st_size}


def export_model(
    model: DynamiCrafter,
    out: Path,
    request: ExportRequest,
    force: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> ExportManifest:
    """Export every component of `model` (fp32) into `out`. An fp16 export converts `model` in place."""
    if model.dtype != torch.float32:
        raise UsageError("export needs the model in fp32 (the parity reference)")
    if not force and is_up_to_date(out, request):
        log(f"{out} is up to date (use --force to export again)")
        return kept_export(out, request)
    specs = io_table(request.preset, request.height, request.width)
    # The references (small outputs) are computed first, while the model is still fp32: an fp16
    # export converts it in place. Each graph's trace and ONNX Runtime session are freed before the next.
    fp32_graphs = graph_modules(model, torch.float32)
    inputs = {name: sample_inputs(spec, request.preset) for name, spec in specs.items()}
    log(f"running the {len(specs)} PyTorch references (fp32)")
    with torch.no_grad():
        references = {name: fp32_graphs[name](*inputs[name]) for name in specs}
    del fp32_graphs
    dtype = PRECISIONS[request.precision]
    if dtype != torch.float32:
        model.place("cpu", dtype)
    graphs = graph_modules(model, dtype)
    manifest = request.manifest()
    with atomic_dir(out) as staging:
        if model.preset.carries_schedule:
            manifest.schedule, manifest.schedule_sizes = write_schedule(model, staging)
        for index, (name, spec) in enumerate(specs.items(), 1):
            step = f"[{index}/{len(specs)}] {spec.filename}"
            log(f"{step}: tracing, then checking in ONNX Runtime")
            start = time.perf_counter()
            files = export_graph(graphs[name], spec, inputs[name], staging / spec.filename)
            manifest.components[name] = _checked_entry(spec, files, inputs[name], references[name], request.precision)
            entry = manifest.components[name]
            log(
                f"{step}: {entry.bytes / 2**20:.1f} MiB, relative error {entry.parity['rel_error']:.2e}, "
                f"{time.perf_counter() - start:.0f} s"
            )
            gc.collect()
        manifest.write(staging)
    return manifest
