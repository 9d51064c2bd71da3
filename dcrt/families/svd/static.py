"""Stable Video Diffusion's `SVDBackend` over a runtime of static-shape graphs (dcrt.backends.static.GraphRuntime:
ONNX Runtime, TensorRT or AOTInductor), whose shapes are dcrt.families.svd.io_spec's. `StaticGraphs` runs and
checks one graph; this maps SVD's calls onto the shapes, as DynamiCrafter's adapter
(dcrt.families.dynamicrafter.static) does its own. No schedule file: SVD's EDM schedule is the preset's."""

from __future__ import annotations

import torch

from dcrt.backends.static import GraphRuntime, StaticGraphs
from dcrt.errors import UsageError
from dcrt.families.svd.backend import SVDBackend
from dcrt.families.svd.io_spec import decoder_chunks


class StaticSVDBackend(StaticGraphs, SVDBackend):
    def __init__(self, graphs: GraphRuntime):
        graphs.preset.require_family("svd", "StaticSVDBackend (family_backend picks the family's)")
        super().__init__(graphs)
        specs = graphs.specs
        # frames per decoder call -> graph; the pipeline may ask only for the chunk the graphs were made with
        self._decoders = {specs[name].batch: name for name in decoder_chunks(graphs.preset)}
        self.decode_chunks = (specs["vae_decoder"].batch,)
        self.unet_batches = (1, 2)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._run("image_encoder", p[None]).clone() for p in pixels])

    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._run("vae_encoder", f[None]).clone() for f in frames])

    def unet(
        self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor, added_time_ids: torch.Tensor
    ) -> torch.Tensor:
        if x.shape[0] == 1:  # no guidance: run the batch-2 graph on a duplicate and keep one
            return self._run("unet", *(v.expand(2, *v.shape[1:]) for v in (x, c_noise, context, added_time_ids)))[:1]
        return self._run("unet", x, c_noise, context, added_time_ids)

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        name = self._decoders.get(z.shape[0])
        if name is None:
            raise UsageError(f"the decoder graphs take chunks of {sorted(self._decoders)} frames, not {z.shape[0]}")
        return self._run(name, z)
