"""DynamiCrafter's `Backend` over a runtime of static-shape graphs (dcrt.backends.static.GraphRuntime: ONNX
Runtime, TensorRT or AOTInductor).

An exported graph and the engine or package built from it take exactly the IO table's shapes
(dcrt/families/dynamicrafter/io_spec.py), and each runs as one call that leaves its output in a buffer it owns.
`StaticShapeBackend` maps the interface's variable batches onto those shapes: text and image rows one at a time, a
batch-1 UNet call (no guidance) on the batch-2 graph, VAE frames padded to the graph's batch. The noise schedule
comes from the artifact's schedule files (this family's presets carry the checkpoint's: `Preset.carries_schedule`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcrt.backends.static import GraphRuntime, StaticGraphs
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.backend import Backend


def load_schedule(directory: Path, files) -> dict[str, torch.Tensor]:
    """The noise-schedule tensors of an export or bundle (safetensors files named by its manifest), on the CPU."""
    from safetensors.torch import load_file

    return {k: v for file in files for k, v in load_file(Path(directory) / file).items()}


class StaticShapeBackend(StaticGraphs, Backend):
    """Every `Backend` method in terms of `_run(component, *inputs)` on the runtime's graphs."""

    def __init__(self, graphs: GraphRuntime):
        graphs.preset.require_family("dynamicrafter", "StaticShapeBackend (family_backend picks the family's)")
        super().__init__(graphs)
        specs = graphs.specs
        self._schedule = load_schedule(graphs.directory, graphs.manifest.schedule)
        self.decode_chunk = specs["vae_decoder"].batch  # frames per decoder call: what the graph takes
        self.encode_frames = specs["vae_encoder"].batch
        self.max_unet_batch = max(specs[name].batch for name in ("unet", "unet_image_guidance"))
        self.unet_frames = graphs.preset.frames

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
