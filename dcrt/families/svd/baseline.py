"""The baseline `dcrt bench` times SVD against (dcrt.families.svd.bench), as dcrt.families.dynamicrafter.baseline is
DynamiCrafter's: diffusers' Stable Video Diffusion pipeline at an SVD preset's architecture. It stays in the package
because the installed `dcrt bench --backends baseline` builds it; the SVD parity tests (tests/models/svd_diffusers.py)
and benchmarks/gpu_report_svd.py build their reference with it too. Needs diffusers and transformers (the `[parity]`
extra), imported only when a pipeline is built.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcrt.errors import UsageError
from dcrt.families.svd.config import SVDPreset


def diffusers_unet(preset: SVDPreset):
    from diffusers import UNetSpatioTemporalConditionModel

    cfg = preset.unet
    chans = tuple(cfg.model_channels * m for m in cfg.channel_mult)
    return UNetSpatioTemporalConditionModel(
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        block_out_channels=chans,
        layers_per_block=cfg.num_res_blocks,
        num_attention_heads=tuple(c // cfg.head_channels for c in chans),
        cross_attention_dim=cfg.context_dim,
        addition_time_embed_dim=cfg.added_time_dim,
        projection_class_embeddings_input_dim=cfg.added_time_ids * cfg.added_time_dim,
        num_frames=preset.frames,
    )


def diffusers_vae(preset: SVDPreset):
    from diffusers import AutoencoderKLTemporalDecoder

    cfg = preset.vae
    return AutoencoderKLTemporalDecoder(
        block_out_channels=tuple(cfg.ch * m for m in cfg.ch_mult),
        down_block_types=("DownEncoderBlock2D",) * len(cfg.ch_mult),
        layers_per_block=cfg.num_res_blocks,
        latent_channels=cfg.z_channels,
        scaling_factor=cfg.scale_factor,
    )


def transformers_clip(preset: SVDPreset):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = preset.image
    config = CLIPVisionConfig(
        hidden_size=cfg.width,
        intermediate_size=cfg.mlp_ratio * cfg.width,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.projection_dim,
        hidden_act="gelu",  # ViT-H/14's exact GELU (transformers' default is quick_gelu)
        layer_norm_eps=1e-5,
    )
    return CLIPVisionModelWithProjection(config)


def euler_scheduler(preset: SVDPreset):
    """diffusers' Euler scheduler as the release configures it, with the preset's EDM sigmas."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        interpolation_type="linear",
        use_karras_sigmas=True,
        sigma_min=preset.edm.sigma_min,
        sigma_max=preset.edm.sigma_max,
        timestep_spacing="leading",
        timestep_type="continuous",
        steps_offset=1,
    )


def diffusers_pipeline(preset: SVDPreset, unet, vae, clip):
    from diffusers import StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    # CLIPImageProcessor's defaults are OpenAI CLIP's mean and std, as released.
    return StableVideoDiffusionPipeline(vae, clip, unet, euler_scheduler(preset), CLIPImageProcessor())


def load_diffusers_pipeline(preset: SVDPreset, checkpoint: Path | None, dtype: torch.dtype):
    """The release's diffusers folder, or (`checkpoint` None) the preset's architecture with the libraries' own
    seeded initialisation: a timing baseline, not the same numbers as dcrt's random weights."""
    if checkpoint is None:
        torch.manual_seed(0)
        parts = (diffusers_unet(preset), diffusers_vae(preset), transformers_clip(preset))
        return diffusers_pipeline(preset, *parts).to(dtype=dtype)
    if not (Path(checkpoint) / "unet").is_dir():
        raise UsageError(
            f"diffusers' pipeline reads the release's diffusers folder (unet/, vae/, image_encoder/), "
            f"not {checkpoint}: pass --ckpt <that folder>"
        )
    from diffusers import StableVideoDiffusionPipeline

    return StableVideoDiffusionPipeline.from_pretrained(str(checkpoint), torch_dtype=dtype)
