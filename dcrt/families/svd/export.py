"""Stable Video Diffusion's graphs for `dcrt.artifacts.export`: each IO-table component (dcrt.families.svd.io_spec) in
terms of the reference modules, as a dcrt.artifacts.graph_module.GraphModule. Export, its ONNX Runtime check and the
manifest are dcrt.artifacts.export's, shared with DynamiCrafter."""

from __future__ import annotations

import torch

from dcrt.artifacts.graph_module import GraphModule
from dcrt.families.svd.io_spec import decoder_chunks
from dcrt.models.svd import StableVideoDiffusion


def graph_modules(model: StableVideoDiffusion, dtype: torch.dtype) -> dict[str, GraphModule]:
    m = model
    decoder = GraphModule(lambda z: m.vae.decode(z), {"vae": m.vae}, dtype)
    return {
        "image_encoder": GraphModule(
            lambda pixels: m.image_encoder.encode_pixels(pixels)[:, None], {"image": m.image_encoder}, dtype
        ),
        # The unscaled posterior mean (docs/models.md §8.6), as the pipeline concatenates it.
        "vae_encoder": GraphModule(lambda frames: m.encode_latents(frames), {"vae": m.vae}, dtype),
        "unet": GraphModule(lambda x, c, ctx, ids: m.unet(x, c, ctx, ids), {"unet": m.unet}, dtype),
    } | {name: decoder for name in decoder_chunks(m.preset)}
