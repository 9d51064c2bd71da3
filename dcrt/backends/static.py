"""Backends over graphs of static shapes, as two parts composed: a runtime and a family's adapter.

A runtime (`GraphRuntime`: ONNX Runtime's `OnnxRuntimeGraphs`, TensorRT's `TensorRTGraphs`, AOTInductor's
`AotiGraphs`) opens one export or bundle and runs its graphs by name, each on inputs of exactly the IO table's
shapes. It knows nothing of a model family. A family's adapter (`family.part("static_backend")`:
dcrt.families.dynamicrafter.static.StaticShapeBackend, dcrt.families.svd.static.StaticSVDBackend) takes a runtime
and maps its family's backend interface onto those shapes. `StaticGraphs` is what every adapter shares: the
runtime's facts, and one graph's call with its inputs' shapes checked. `family_backend(graphs)` puts the two
together for whichever family the artifact holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from dcrt.artifacts.graphs import ComponentSpec
from dcrt.errors import UsageError
from dcrt.families import family_of
from dcrt.families.base import PresetBase


class ArtifactManifest(Protocol):
    """What an adapter reads from an export's or bundle's manifest (each runtime has its own manifest type)."""

    schedule: dict[str, str]  # schedule file name -> sha256: the checkpoint's noise schedule, where it carries one


class GraphRuntime(Protocol):
    """One export or bundle, opened on one device, that runs its graphs by name."""

    preset: PresetBase  # the preset the artifact was made for, of any family
    specs: dict[str, ComponentSpec]  # graph name -> its static shapes (the IO table the artifact was checked against)
    device: torch.device
    precision: str  # what the graphs compute in, in words
    capturable: bool  # whether a call only enqueues work on the current CUDA stream (Backend.capturable)
    directory: Path
    manifest: ArtifactManifest

    def execute(self, name: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Run graph `name` on inputs of exactly its spec's shapes (checked by the caller); return its output
        buffers, which the next call of the same graph may overwrite."""
        ...


class StaticGraphs:
    """What every family's static adapter shares: the runtime's facts as the backend's, and one graph's call."""

    def __init__(self, graphs: GraphRuntime):
        self.graphs = graphs
        self.preset = graphs.preset
        self.specs = graphs.specs
        self.device = graphs.device
        self.precision = graphs.precision
        self.capturable = graphs.capturable

    def _run_all(self, component: str, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run one graph; the results are its output buffers, overwritten by the next call of the same component.
        Shapes are checked here: a static graph given another shape fails deep inside its runtime (or, for an
        engine's raw buffers, reads past them), so the error names the input instead."""
        for t, x in zip(self.specs[component].inputs, inputs):
            if tuple(x.shape) != t.shape:
                raise UsageError(f"{component}: input {t.name} must be {list(t.shape)}, got {list(x.shape)}")
        return self.graphs.execute(component, inputs)

    def _run(self, component: str, *inputs: torch.Tensor) -> torch.Tensor:
        """`_run_all`'s first output."""
        return self._run_all(component, *inputs)[0]


def family_backend(graphs: GraphRuntime):
    """The backend of the artifact's own model family over `graphs`."""
    return family_of(graphs.preset).part("static_backend")(graphs)
