"""The KL-f8 autoencoder (`first_stage_model`, docs/models.md §3.6). Purely per-frame: frames are the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcrt.config import VAEConfig
from dcrt.models.layers import GroupNorm


def _norm(channels: int) -> GroupNorm:
    return GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _norm(channels)
        self.conv1 = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(channels, out_channels, 1) if channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions, 1x1-conv projections, scale C^-1/2."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (proj(y).reshape(b, 1, c, h * w).transpose(2, 3) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad right/bottom by one, then a stride-2 3x3 conv without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: `block` list, then an optional `downsample` / `upsample` (keys of the checkpoint)."""

    def __init__(self, blocks: list[ResnetBlock], resample_name: str | None, resample: nn.Module | None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.resample_name = resample_name
        if resample_name is not None:
            self.add_module(resample_name, resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return x if self.resample_name is None else getattr(self, self.resample_name)(x)


class Mid(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans = [cfg.ch * m for m in cfg.ch_mult]
        last = len(chans) - 1
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        c_in = cfg.ch
        for level, c_out in enumerate(chans):
            blocks = [ResnetBlock(c_in if i == 0 else c_out, c_out) for i in range(cfg.num_res_blocks)]
            down = (None, None) if level == last else ("downsample", Downsample(c_out))
            self.down.append(Level(blocks, *down))
            c_in = c_out
        self.mid = Mid(chans[-1])
        self.norm_out = _norm(chans[-1])
        self.conv_out = nn.Conv2d(chans[-1], 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(cfg.z_channels, chans[-1], 3, padding=1)
        self.mid = Mid(chans[-1])
        # `up[0]` is the full-resolution level; levels run from the last (lowest resolution) to 0.
        levels = {}
        c_in = chans[-1]
        for level in reversed(range(len(chans))):
            c_out = chans[level]
            blocks = [ResnetBlock(c_in if i == 0 else c_out, c_out) for i in range(cfg.num_res_blocks + 1)]
            up = (None, None) if level == 0 else ("upsample", Upsample(c_out))
            levels[level] = Level(blocks, *up)
            c_in = c_out
        self.up = nn.ModuleList([levels[i] for i in range(len(chans))])
        self.norm_out = _norm(chans[0])
        self.conv_out = nn.Conv2d(chans[0], cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.z_channels, 1)
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> scaled posterior mean [N, 4, H/8, W/8].

        The original draws a posterior *sample* from the CPU generator; its std term is tiny and
        not reproducible outside that process (docs/sampling.md §4.8), so the mean is the reference here.
        """
        moments = self.quant_conv(self.encoder(frames))
        return moments[:, : self.cfg.z_channels] * self.cfg.scale_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents [N, 4, h, w] -> frames [N, 3, 8h, 8w], roughly in [-1, 1] (not clamped)."""
        return self.decoder(self.post_quant_conv(z / self.cfg.scale_factor))
