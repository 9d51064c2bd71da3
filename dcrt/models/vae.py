"""The KL-f8 autoencoder's networks (`first_stage_model`, docs/models.md §3.6). Purely per-frame: frames are the
batch. `dcrt.models.autoencoder` assembles them (and ToonCrafter's video decoder, `vae_dualref`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcrt.config import VAEConfig
from dcrt.models.layers import GroupNorm


def group_norm(channels: int) -> GroupNorm:
    return GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(channels)
        self.conv1 = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(channels, out_channels, 1) if channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # SiLU in place on the norm's fresh output: one activation-sized temporary fewer (the decoders' peak).
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions, 1x1-conv projections, scale C^-1/2."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
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
        self.norm_out = group_norm(chans[-1])
        self.conv_out = nn.Conv2d(chans[-1], 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self._out(h)

    def forward_with_references(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the encoder output, the dual-ref decoder's reference features of each frame): the output of every
        level before its downsample (full resolution first), then `conv_in`'s output (docs/models.md §6.2)."""
        first = h = self.conv_in(x)
        references = []
        for level in self.down:
            for block in level.block:
                h = block(h)
            references.append(h)
            if level.resample_name is not None:
                h = level.downsample(h)
        return self._out(h), [*references, first]

    def _out(self, h: torch.Tensor) -> torch.Tensor:
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
        self.norm_out = group_norm(chans[0])
        self.conv_out = nn.Conv2d(chans[0], cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))
