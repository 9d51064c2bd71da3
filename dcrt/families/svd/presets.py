"""The Stable Video Diffusion family's named presets (docs/models.md §8): SVD-XT in its two released files, and a
tiny twin."""

from __future__ import annotations

from dataclasses import replace

from dcrt.config import TINY_IMAGE, TINY_TEXT, TINY_VAE, SpatioTemporalUNetConfig, VideoDecoderConfig
from dcrt.families.svd.config import SVD_VAE, SVDPreset, SVDSamplingDefaults

# Stable Video Diffusion's tiny member: four levels, attention at three, every temporal layer, a 6-frame clip
# decoded in chunks of 4 (so chunking is exercised), at widths that run a whole sample in about a second.
_TINY_SVD_UNET = SpatioTemporalUNetConfig(
    model_channels=32, channel_mult=(1, 2, 2, 2), head_channels=16, context_dim=32
)
_TINY_SVD_SAMPLING = SVDSamplingDefaults(decode_chunk=4)

PRESETS = (
    SVDPreset(name="svd-xt", height=576, width=1024, hf_repo="stabilityai/stable-video-diffusion-img2vid-xt"),
    # The same release's second file: the same weights but a per-frame image decoder (docs/models.md §8.4).
    SVDPreset(
        name="svd-xt-image-decoder",
        height=576,
        width=1024,
        vae=replace(SVD_VAE, video=None),
        hf_repo="stabilityai/stable-video-diffusion-img2vid-xt",
        checkpoint_file="svd_xt_image_decoder.safetensors",
    ),
    SVDPreset(
        name="tiny-svd",
        height=64,
        width=64,
        frames=6,
        unet=_TINY_SVD_UNET,
        vae=replace(TINY_VAE, video=VideoDecoderConfig(), post_quant_conv=False),
        image=TINY_IMAGE,
        text=TINY_TEXT,
        sampling=_TINY_SVD_SAMPLING,
    ),
)
