"""The DynamiCrafter family's named presets: the released DynamiCrafter and ToonCrafter models and their tiny twins,
as data (the dataclasses of dcrt.families.dynamicrafter.config filled in). Values follow docs/models.md §1-6."""

from __future__ import annotations

from dataclasses import replace

from dcrt.config import (
    TINY_IMAGE,
    TINY_TEXT,
    TINY_VAE,
    DualRefDecoderConfig,
    ResamplerConfig,
    UNetConfig,
    VAEConfig,
)
from dcrt.families.dynamicrafter.config import MODES, DiffusionConfig, Preset, SamplingDefaults, Seeds

_V_MODEL = DiffusionConfig()
_EPS_MODEL = DiffusionConfig(parameterization="eps", zero_snr=False, dynamic_rescale=False)
_SAMPLING_256 = SamplingDefaults(
    frame_stride=3,
    frame_stride_range=(1, 30),
    frame_stride_is_fps=False,
    timestep_spacing="uniform",
    guidance_rescale=0.0,
)
# ToonCrafter's one script (run.sh, --interp) uses seed 123; its loop mode has no script of its own.
_SAMPLING_TOON = SamplingDefaults(frame_stride=10, seeds=Seeds(interpolate=123, loop=123))
_TOON_VAE = VAEConfig(dual_ref=DualRefDecoderConfig())

# Tiny members of the same family: every code path of the real models (frame folding, 5-D norms,
# two-softmax cross-attention, per-frame image tokens, zero-SNR v-prediction), at widths that build
# and run in well under a second on a CPU. GroupNorm(32) needs channel counts that are multiples of 32.
_TINY_UNET = UNetConfig(model_channels=32, channel_mult=(1, 2, 2, 2), head_channels=16, context_dim=64)
_TINY_RESAMPLER = ResamplerConfig(dim=64, depth=2, dim_head=16, heads=2, embedding_dim=64, output_dim=64)

PRESETS = (
    Preset(
        name="256",
        height=256,
        width=256,
        unet=UNetConfig(learnable_image_attn_scale=True, default_frame_stride=3),
        diffusion=_EPS_MODEL,
        sampling=_SAMPLING_256,
        fs_embed_checkpoint_name="framestride_embed",
        hf_repo="Doubiiu/DynamiCrafter",
        checkpoint_dir_name="dynamicrafter_256_v1",
    ),
    Preset(
        name="512",
        height=320,
        width=512,
        hf_repo="Doubiiu/DynamiCrafter_512",
        checkpoint_dir_name="dynamicrafter_512_v1",
    ),
    Preset(
        name="1024",
        height=576,
        width=1024,
        unet=UNetConfig(default_frame_stride=10),
        diffusion=replace(_V_MODEL, base_scale=0.3),
        sampling=SamplingDefaults(frame_stride=10),
        hf_repo="Doubiiu/DynamiCrafter_1024",
        checkpoint_dir_name="dynamicrafter_1024_v1",
    ),
    Preset(
        name="512-interp",
        height=320,
        width=512,
        unet=UNetConfig(default_frame_stride=10),
        sampling=SamplingDefaults(frame_stride=5),
        hf_repo="Doubiiu/DynamiCrafter_512_Interp",
        checkpoint_dir_name="dynamicrafter_512_interp_v1",
        modes=("interpolate", "loop"),
    ),
    Preset(
        name="tooncrafter",
        height=320,
        width=512,
        vae=_TOON_VAE,
        sampling=_SAMPLING_TOON,
        hf_repo="Doubiiu/ToonCrafter",
        checkpoint_dir_name="tooncrafter_512_interp_v1",
        modes=("interpolate", "loop"),
    ),
    Preset(
        name="tiny",
        height=64,
        width=64,
        unet=_TINY_UNET,
        vae=TINY_VAE,
        text=TINY_TEXT,
        image=TINY_IMAGE,
        resampler=_TINY_RESAMPLER,
        modes=MODES,
    ),
    Preset(
        name="tiny-256",
        height=64,
        width=64,
        unet=replace(_TINY_UNET, learnable_image_attn_scale=True, default_frame_stride=3),
        vae=TINY_VAE,
        text=TINY_TEXT,
        image=TINY_IMAGE,
        resampler=_TINY_RESAMPLER,
        diffusion=_EPS_MODEL,
        sampling=_SAMPLING_256,
        fs_embed_checkpoint_name="framestride_embed",
        modes=MODES,
    ),
    Preset(
        name="tiny-tooncrafter",
        height=64,
        width=64,
        unet=_TINY_UNET,
        vae=replace(TINY_VAE, dual_ref=DualRefDecoderConfig()),
        text=TINY_TEXT,
        image=TINY_IMAGE,
        resampler=_TINY_RESAMPLER,
        sampling=_SAMPLING_TOON,
        modes=("interpolate", "loop"),
    ),
)
