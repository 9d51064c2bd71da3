"""The autoencoder (`first_stage_model`): the KL-f8 encoder with the image decoder (docs/models.md §3.6), for
ToonCrafter the dual-reference video decoder (docs/models.md §6.2), or for SVD the temporal decoder (§8.4)."""

from __future__ import annotations

import torch
from torch import nn

from dcrt.config import VAEConfig
from dcrt.models.vae import Decoder, Encoder
from dcrt.models.vae_dualref import DualRefDecoder
from dcrt.models.vae_video import VideoDecoder

# The dual-ref decoder's reference features: one tensor per decoder level and one for its output, each holding
# the first and the last key frame: [2, C_k, H_k, W_k] (docs/models.md §6.2).
References = tuple[torch.Tensor, ...]


class AutoencoderKL(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = _decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.z_channels, 1)
        if cfg.post_quant_conv:  # the dual-ref decode path never applies it (docs/models.md §6.2)
            self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)

    def _latents(self, h: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(h)[:, : self.cfg.z_channels] * self.cfg.scale_factor

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> scaled posterior mean [N, 4, H/8, W/8].

        The original draws a posterior *sample* from the CPU generator; its std term is tiny and
        not reproducible outside that process (docs/sampling.md §4.8), so the mean is the reference here.
        """
        return self._latents(self.encoder(frames))

    def encode_keyframes(self, frames: torch.Tensor) -> tuple[torch.Tensor, References]:
        """Key frames [N, 3, H, W] -> (latents as `encode`, each frame's reference features), one encoder pass."""
        h, references = self.encoder.forward_with_references(frames)
        return self._latents(h), tuple(references)

    def decode(self, z: torch.Tensor, references: References | None = None) -> torch.Tensor:
        """Scaled latents [N, 4, h, w] -> frames [N, 3, 8h, 8w], roughly in [-1, 1] (not clamped).

        With the dual-ref decoder the N frames are one clip, decoded together, and `references` are required.
        """
        z = z / self.cfg.scale_factor
        if self.cfg.dual_ref is not None:
            return self.decoder(z, references)
        return self.decoder(self.post_quant_conv(z) if self.cfg.post_quant_conv else z)


def _decoder(cfg: VAEConfig) -> nn.Module:
    if cfg.video is not None:
        return VideoDecoder(cfg)
    return Decoder(cfg) if cfg.dual_ref is None else DualRefDecoder(cfg)
