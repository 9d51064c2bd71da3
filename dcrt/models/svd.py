"""The whole Stable Video Diffusion model (docs/models.md §8): three networks and the encode/decode seam.

The API the SVD sampler and tests use:

    model.encode_image(image)         # [N, 3, H, W] in [-1, 1] -> CLIP image embedding [N, 1, 1024]
    model.encode_latents(frames)      # [N, 3, H, W] in [-1, 1] -> unscaled posterior mean [N, 4, H/8, W/8]
    model.unet(x, c_noise, context, added_time_ids)   # [B, 8, T, h, w] -> [B, 4, T, h, w]
    model.decode_latents(z)           # scaled latents of one clip [T, 4, h, w] -> [T, 3, H, W], in chunks
"""

from __future__ import annotations

import torch

from dcrt.families.svd.config import SVDPreset
from dcrt.models.autoencoder import AutoencoderKL
from dcrt.models.clip import ImageEmbedder
from dcrt.models.composite import CompositeModel
from dcrt.models.svd_unet import SpatioTemporalUNet

NETWORKS = ("unet", "vae", "image_encoder")


class StableVideoDiffusion(CompositeModel):
    networks = NETWORKS

    def __init__(self, preset: SVDPreset):
        super().__init__()
        preset.require_family("svd", "the Stable Video Diffusion model")
        self.preset = preset
        self.unet = SpatioTemporalUNet(preset.unet)
        self.vae = AutoencoderKL(preset.vae)
        self.image_encoder = ImageEmbedder(preset.image)
        # Checkpoint tensors inference never reads (docs/models.md §8.3), by original name, kept on the CPU.
        self.unused: dict[str, torch.Tensor] = {}

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image.to(self.device_of("image_encoder")))[:, None]

    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        """Unscaled, unlike DynamiCrafter's: SVD concatenates the posterior mean itself to every frame (§8.6)."""
        return self.vae.encode(frames.to(self.device_of("vae"), self.dtype)) / self.vae.cfg.scale_factor

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """One clip, `preset.sampling.decode_chunk` frames per decoder call (the chunk is the temporal context)."""
        chunks = z.to(self.device_of("vae"), self.dtype).split(self.preset.sampling.decode_chunk)
        return torch.cat([self.vae.decode(chunk) for chunk in chunks])
