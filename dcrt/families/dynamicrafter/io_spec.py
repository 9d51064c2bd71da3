"""DynamiCrafter's IO table: every exported graph's inputs and outputs (names, dtypes, static shapes), and realistic
inputs for each. Readers get it through dcrt.artifacts.graphs.io_table, which asks the preset's family."""

from __future__ import annotations

import torch

from dcrt.artifacts.graphs import ComponentSpec, TensorSpec
from dcrt.families.dynamicrafter.clip_decode import second_pass_frames
from dcrt.families.dynamicrafter.config import Preset

# Frames per VAE-decoder call. 4 frames of the 1024 preset's full-resolution 128-channel activations
# are ~1.2 GB in fp16 per tensor; 16 at once is what produced out-of-memory and black videos upstream.
VAE_DECODE_CHUNK = 4
# The encoder graph takes two frames: interpolation's key frames; image-to-video pads with a copy.
VAE_ENCODE_FRAMES = 2


def io_table(preset: Preset, height: int, width: int) -> dict[str, ComponentSpec]:
    """The graphs of one preset at one resolution."""
    f = preset.vae.downscale
    h, w, frames = height // f, width // f, preset.frames
    c, z = preset.unet.context_dim, preset.vae.z_channels
    ctx_len = preset.unet.text_tokens + preset.unet.image_tokens_per_frame * frames
    image_tokens = preset.resampler.num_queries * preset.resampler.video_length
    size = preset.image.image_size

    def unet(name: str, batch: int) -> ComponentSpec:
        return ComponentSpec(
            name,
            inputs=(
                TensorSpec("x", "float32", (batch, preset.unet.in_channels, frames, h, w)),
                TensorSpec("timestep", "int64", (batch,)),
                TensorSpec("context", "float32", (batch, ctx_len, c)),
                TensorSpec("frame_stride", "int64", (batch,)),
            ),
            outputs=(TensorSpec("model_output", "float32", (batch, preset.unet.out_channels, frames, h, w)),),
        )

    specs = [
        ComponentSpec(
            "text_encoder",
            inputs=(TensorSpec("tokens", "int64", (1, preset.text.context_length)),),
            outputs=(TensorSpec("text_embedding", "float32", (1, preset.text.context_length, c)),),
        ),
        ComponentSpec(
            "image_encoder",
            inputs=(TensorSpec("pixels", "float32", (1, 3, size, size)),),
            outputs=(TensorSpec("image_embedding", "float32", (1, image_tokens, c)),),
        ),
        unet("unet", 2),  # conditional + unconditional guidance branches
        unet("unet_image_guidance", 3),  # + the image-only branch of multi-condition guidance
    ]
    if preset.vae.dual_ref is None:
        specs += [
            ComponentSpec(
                "vae_encoder",
                inputs=(TensorSpec("frames", "float32", (VAE_ENCODE_FRAMES, 3, height, width)),),
                outputs=(TensorSpec("latents", "float32", (VAE_ENCODE_FRAMES, z, h, w)),),
            ),
            ComponentSpec(
                "vae_decoder",
                inputs=(TensorSpec("latents", "float32", (VAE_DECODE_CHUNK, z, h, w)),),
                outputs=(TensorSpec("frames", "float32", (VAE_DECODE_CHUNK, 3, height, width)),),
            ),
        ]
    else:
        specs += _dual_ref_vae(preset, height, width)
    return {s.name: s for s in specs}


def _dual_ref_vae(preset: Preset, height: int, width: int) -> list[ComponentSpec]:
    """ToonCrafter's VAE graphs (docs/models.md §6.2, 6.3): the encoder also returns the two key frames' reference
    features; the decoder takes a whole clip and the references, at the two clip lengths the decode visits."""
    vae, f = preset.vae, preset.vae.downscale
    h, w, z = height // f, width // f, vae.z_channels
    # one per decoder level (full resolution first), then conv_in's output: [2 key frames, C, H_k, W_k]
    shapes = [(vae.ch * m, height // 2**level, width // 2**level) for level, m in enumerate(vae.ch_mult)]
    references = tuple(
        TensorSpec(f"reference_{i}", "float32", (VAE_ENCODE_FRAMES, *shape))
        for i, shape in enumerate([*shapes, (vae.ch, height, width)])
    )

    def decoder(name: str, frames: int) -> ComponentSpec:
        return ComponentSpec(
            name,
            inputs=(TensorSpec("latents", "float32", (frames, z, h, w)), *references),
            outputs=(TensorSpec("frames", "float32", (frames, 3, height, width)),),
        )

    return [
        ComponentSpec(
            "vae_encoder",
            inputs=(TensorSpec("frames", "float32", (VAE_ENCODE_FRAMES, 3, height, width)),),
            outputs=(TensorSpec("latents", "float32", (VAE_ENCODE_FRAMES, z, h, w)), *references),
        ),
        decoder("vae_decoder", preset.frames),
        decoder("vae_decoder_second_pass", len(second_pass_frames(preset.frames))),
    ]


def sample_inputs(spec: ComponentSpec, preset: Preset, seed: int = 0) -> list[torch.Tensor]:
    """Realistic random inputs for a graph: tokens in the vocabulary, timesteps and frame_stride in range."""
    g = torch.Generator().manual_seed(seed)
    ranges = {
        "tokens": (0, preset.text.vocab_size),
        "timestep": (0, preset.diffusion.timesteps),
        "frame_stride": (preset.sampling.frame_stride_range[0], preset.sampling.frame_stride_range[1] + 1),
    }
    tensors = []
    for t in spec.inputs:
        if t.dtype == "int64":
            lo, hi = ranges[t.name]
            tensors.append(torch.randint(lo, hi, t.shape, generator=g))
        else:
            tensors.append(torch.randn(t.shape, generator=g))
    return tensors
