"""Stable Video Diffusion's temporally fine-tuned decoder (sgm `VideoDecoder`, docs/models.md §8.4).

The image decoder of docs/models.md §3.6 with ToonCrafter's temporal blocks (`dcrt.models.vae_dualref`, which were
derived from this decoder) and without its key-frame references: every ResnetBlock blends in a temporal residual
block over the clip's frames, and the output conv is followed by a temporal conv. Frames are the batch and one
call is one clip; a longer video is decoded in chunks, and the temporal layers see only the frames of a chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcrt.config import VAEConfig
from dcrt.models.vae import group_norm
from dcrt.models.vae_dualref import Mid, VideoConv, run_up_levels, video_up_levels


class VideoDecoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        k = cfg.video.temporal_kernel
        chans = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(cfg.z_channels, chans[-1], 3, padding=1)
        self.mid = Mid(chans[-1], k)
        self.up = video_up_levels(chans, cfg.num_res_blocks, k)  # up[0]: full resolution
        self.norm_out = group_norm(chans[0])
        self.conv_out = VideoConv(chans[0], cfg.out_channels, k)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [T, 4, h, w] (unscaled latents of one clip) -> frames [T, 3, 8h, 8w]."""
        h = run_up_levels(self, z)
        return self.conv_out(F.silu(self.norm_out(h)))
