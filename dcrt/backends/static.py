"""The `Backend` interface over graphs of static shapes, written once for ONNX Runtime and TensorRT.

An exported graph and the engine built from it take exactly the IO table's shapes (dcrt/families/dynamicrafter/io_spec.py), and
each runs as one call that leaves its output in a buffer it owns. `StaticShapeBackend` maps the interface's
variable batches onto those shapes: text and image rows one at a time, a batch-1 UNet call (no guidance) on
the batch-2 graph, VAE frames padded to the graph's batch. A subclass supplies only how one graph runs
(`_execute`): an ONNX Runtime session or a TensorRT engine. `StaticGraphs`, the running and checking of one
graph, is shared with Stable Video Diffusion's static backend (dcrt.families.svd.static).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch

from dcrt.artifacts.graphs import ComponentSpec
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.backend import Backend
from dcrt.families.dynamicrafter.config import Preset


def load_schedule(directory: Path, files) -> dict[str, torch.Tensor]:
    """The noise-schedule tensors of an export or bundle (safetensors files named by its manifest), on the CPU."""
    from safetensors.torch import load_file

    return {k: v for file in files for k, v in load_file(Path(directory) / file).items()}


class StaticGraphs(ABC):
    """Runs the graphs of `specs` by name, each on inputs of exactly its shapes: what every static-shape backend
    (either model family, ONNX Runtime or TensorRT) shares."""

    specs: dict[str, ComponentSpec]

    @abstractmethod
    def _execute(self, component: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Run `component` on inputs of exactly its spec's shapes (checked); return its output buffers."""

    def _run_all(self, component: str, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run one graph; the results are its output buffers, overwritten by the next call of the same component.
        Shapes are checked here: a static graph given another shape fails deep inside its runtime (or, for an
        engine's raw buffers, reads past them), so the error names the input instead."""
        for t, x in zip(self.specs[component].inputs, inputs):
            if tuple(x.shape) != t.shape:
                raise UsageError(f"{component}: input {t.name} must be {list(t.shape)}, got {list(x.shape)}")
        return self._execute(component, inputs)

    def _run(self, component: str, *inputs: torch.Tensor) -> torch.Tensor:
        """`_run_all`'s first output."""
        return self._run_all(component, *inputs)[0]


class StaticShapeBackend(StaticGraphs, Backend):
    """Every `Backend` method in terms of `_run(component, *inputs)` on graphs of the shapes in `specs`."""

    def __init__(self, preset: Preset, specs: dict[str, ComponentSpec], schedule: dict[str, torch.Tensor]):
        self.preset = preset
        self.specs = specs
        self._schedule = schedule
        self.decode_chunk = specs["vae_decoder"].batch  # frames per decoder call: what the graph takes
        self.encode_frames = specs["vae_encoder"].batch
        self.max_unet_batch = max(specs[name].batch for name in ("unet", "unet_image_guidance"))
        self.unet_frames = preset.frames

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._run("text_encoder", row[None]).clone() for row in tokens])

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._run("image_encoder", p[None]).clone() for p in pixels])

    def unet(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, frame_stride: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if batch == 3:
            return self._run("unet_image_guidance", x, t, context, frame_stride)
        if batch == 1:  # no guidance: run the batch-2 graph on a duplicate and keep one
            return self._run("unet", *(v.expand(2, *v.shape[1:]) for v in (x, t, context, frame_stride)))[:1]
        return self._run("unet", x, t, context, frame_stride)

    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[0]
        padded = torch.cat([frames, frames[-1:].expand(self.encode_frames - n, -1, -1, -1)])
        return self._run("vae_encoder", padded)[:n].clone()

    def encode_keyframes(self, frames: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        n = frames.shape[0]
        padded = torch.cat([frames, frames[-1:].expand(self.encode_frames - n, -1, -1, -1)])
        z, *references = (out[:n].clone() for out in self._run_all("vae_encoder", padded))
        return z, tuple(references)

    def decode_latents(self, z: torch.Tensor, references: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        if references is not None:  # a whole clip, on the decoder graph of its length
            graphs = {self.specs[c].batch: c for c in ("vae_decoder", "vae_decoder_second_pass")}
            if z.shape[0] not in graphs:
                raise UsageError(f"the dual-ref decoder graphs take clips of {sorted(graphs)} frames, not {z.shape[0]}")
            return self._run(graphs[z.shape[0]], z, *references)
        n = z.shape[0]
        padded = torch.cat([z, z[-1:].expand(self.decode_chunk - n, -1, -1, -1)])
        return self._run("vae_decoder", padded)[:n]

    def schedule_tensors(self) -> dict[str, torch.Tensor]:
        return self._schedule
