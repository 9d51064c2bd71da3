"""DynamiCrafter's graphs for export and the builders: each IO-table component (dcrt.families.dynamicrafter.io_spec)
in terms of the reference modules, as the `GraphModule` it is traced from."""

from __future__ import annotations

import torch

from dcrt.artifacts.graph_module import GraphModule
from dcrt.models.dynamicrafter import DynamiCrafter


def graph_modules(model: DynamiCrafter, dtype: torch.dtype) -> dict[str, GraphModule]:
    """The computation of each IO-table component, in terms of the reference modules."""
    m = model
    unet = GraphModule(lambda x, t, c, frame_stride: m.unet(x, t, c, frame_stride), {"unet": m.unet}, dtype)
    graphs = {
        "text_encoder": GraphModule(lambda tokens: m.text_encoder(tokens), {"text": m.text_encoder}, dtype),
        "image_encoder": GraphModule(
            lambda pixels: m.resampler(m.image_encoder.encode_pixels(pixels)),
            {"image": m.image_encoder, "resampler": m.resampler},
            dtype,
        ),
        "unet": unet,
        "unet_image_guidance": unet,
    }
    if m.preset.vae.dual_ref is None:
        return graphs | {
            "vae_encoder": GraphModule(lambda frames: m.vae.encode(frames), {"vae": m.vae}, dtype),
            "vae_decoder": GraphModule(lambda z: m.vae.decode(z), {"vae": m.vae}, dtype),
        }
    # docs/models.md §6.2: latents and references in one encoder pass; a whole clip per decoder call, two lengths
    decoder = GraphModule(lambda z, *references: m.vae.decode(z, references), {"vae": m.vae}, dtype)
    return graphs | {
        "vae_encoder": GraphModule(lambda frames: _flat(m.vae.encode_keyframes(frames)), {"vae": m.vae}, dtype),
        "vae_decoder": decoder,
        "vae_decoder_second_pass": decoder,
    }


def _flat(encoded: tuple[torch.Tensor, tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """(latents, references) -> the encoder graph's outputs: latents, reference_0, reference_1, ..."""
    return (encoded[0], *encoded[1])
