"""Stable Video Diffusion's rows of the IO table (dcrt.families.dynamicrafter.io_spec): its graphs' inputs and outputs,
static shapes.

    image_encoder     pixels [1, 3, 224, 224] (CLIP-normalised in torch first)  -> image_embedding [1, 1, D]
    vae_encoder       frames [1, 3, H, W] in [-1, 1]                            -> latents [1, 4, h, w] (unscaled)
    unet              x [2, 8, T, h, w], c_noise [2], context [2, 1, D], added_time_ids [2, 3] -> [2, 4, T, h, w]
    vae_decoder       latents [chunk, 4, h, w] (scaled)                          -> frames [chunk, 3, H, W]
    vae_decoder_tail  the same for the last, shorter chunk: T mod chunk frames (absent when chunk divides T)

The UNet graph runs both guidance branches at once; a run without guidance uses it on a duplicated batch, as
DynamiCrafter's does. The temporal decoder's chunk is its temporal context, so the short last chunk cannot be
padded to the chunk's length (the padding frames would change the real ones): it gets a graph of its own length.
The chunk is the preset's `sampling.decode_chunk`; a run asking for another one is refused by the pipeline.
"""

from __future__ import annotations

import torch

from dcrt.artifacts.graphs import ComponentSpec, TensorSpec
from dcrt.families.svd.config import SVDPreset


def decoder_chunks(preset: SVDPreset) -> dict[str, int]:
    """Decoder graph -> the frames it decodes in one call."""
    chunk, tail = preset.sampling.decode_chunk, preset.frames % preset.sampling.decode_chunk
    return {"vae_decoder": chunk} | ({"vae_decoder_tail": tail} if tail else {})


def io_table(preset: SVDPreset, height: int, width: int) -> dict[str, ComponentSpec]:
    f = preset.vae.downscale
    h, w, frames, z = height // f, width // f, preset.frames, preset.vae.z_channels
    d, size, unet = preset.image.projection_dim, preset.image.image_size, preset.unet

    def decoder(name: str, n: int) -> ComponentSpec:
        return ComponentSpec(
            name,
            inputs=(TensorSpec("latents", "float32", (n, z, h, w)),),
            outputs=(TensorSpec("frames", "float32", (n, 3, height, width)),),
        )

    specs = [
        ComponentSpec(
            "image_encoder",
            inputs=(TensorSpec("pixels", "float32", (1, 3, size, size)),),
            outputs=(TensorSpec("image_embedding", "float32", (1, 1, d)),),
        ),
        ComponentSpec(
            "vae_encoder",
            inputs=(TensorSpec("frames", "float32", (1, 3, height, width)),),
            outputs=(TensorSpec("latents", "float32", (1, z, h, w)),),
        ),
        ComponentSpec(
            "unet",
            inputs=(
                TensorSpec("x", "float32", (2, unet.in_channels, frames, h, w)),
                TensorSpec("c_noise", "float32", (2,)),
                TensorSpec("context", "float32", (2, 1, unet.context_dim)),
                TensorSpec("added_time_ids", "float32", (2, unet.added_time_ids)),
            ),
            outputs=(TensorSpec("model_output", "float32", (2, unet.out_channels, frames, h, w)),),
        ),
        *(decoder(name, n) for name, n in decoder_chunks(preset).items()),
    ]
    return {s.name: s for s in specs}


def realistic_floats(preset: SVDPreset, g: torch.Generator) -> dict:
    """Sample values in the range a run feeds, for the inputs where a unit Gaussian is not: EDM's c_noise over the
    preset's sigma ladder, and the added time ids around the preset's defaults."""
    s, edm = preset.sampling, preset.edm
    lo, hi = torch.tensor([edm.sigma_min, edm.sigma_max]).log() / 4

    def time_ids(shape):
        base = torch.tensor([s.fps - 1.0, float(s.motion_bucket_id), s.noise_aug_strength])
        return base * (1 + 0.5 * torch.rand(shape, generator=g))

    return {"c_noise": lambda shape: lo + (hi - lo) * torch.rand(shape, generator=g), "added_time_ids": time_ids}


def sample_inputs(spec: ComponentSpec, preset: SVDPreset, seed: int = 0) -> list[torch.Tensor]:
    """Realistic random inputs for one graph: noise levels and time ids in range (`realistic_floats`)."""
    g = torch.Generator().manual_seed(seed)
    floats = realistic_floats(preset, g)
    return [floats.get(t.name, lambda shape: torch.randn(shape, generator=g))(t.shape) for t in spec.inputs]
