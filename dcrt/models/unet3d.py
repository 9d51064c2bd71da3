"""The DynamiCrafter 3-D UNet (`model.diffusion_model`, docs/models.md §3.5).

2-D layers run on frames folded into the batch ([B*T, C, h, w], batch-major); temporal layers unfold
to [B, C, T, h, w]. Every layer of a stage takes the same arguments, so a stage is a plain loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dcrt.config import UNetConfig
from dcrt.models.attention import SpatialTransformer, TemporalTransformer
from dcrt.models.layers import GroupNorm, timestep_embedding


def fold(x: torch.Tensor, frames: int) -> torch.Tensor:
    return rearrange(x, "b c t h w -> (b t) c h w", t=frames)


def unfold(x: torch.Tensor, frames: int) -> torch.Tensor:
    return rearrange(x, "(b t) c h w -> b c t h w", t=frames)


class TemporalConvBlock(nn.Module):
    """Four (GroupNorm over 5-D -> SiLU -> Conv3d (3,1,1)) stages plus a residual (`temopral_conv`)."""

    def __init__(self, channels: int):
        super().__init__()

        def stage(with_dropout_slot: bool) -> nn.Sequential:
            layers = [GroupNorm(32, channels, eps=1e-5), nn.SiLU()]
            if with_dropout_slot:  # the original's Dropout position, kept for the key indices
                layers.append(nn.Identity())
            layers.append(nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0)))
            return nn.Sequential(*layers)

        self.conv1 = stage(False)
        self.conv2 = stage(True)
        self.conv3 = stage(True)
        self.conv4 = stage(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class EmbResBlock(nn.Module):
    """The LDM residual block with the timestep embedding added between its two convs (`ResBlock` of
    openaimodel). 2-D ([N, C, h, w], 3x3 convs), or 3-D over frames only ([B, C, T, h, w], (3, 1, 1) convs:
    SVD's temporal `time_stack`)."""

    def __init__(self, channels: int, out_channels: int, emb_dim: int, temporal: bool = False):
        super().__init__()

        def conv(c_in: int) -> nn.Module:
            if temporal:
                return nn.Conv3d(c_in, out_channels, (3, 1, 1), padding=(1, 0, 0))
            return nn.Conv2d(c_in, out_channels, 3, padding=1)

        self.in_layers = nn.Sequential(GroupNorm(32, channels, eps=1e-5), nn.SiLU(), conv(channels))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm(32, out_channels, eps=1e-5),
            nn.SiLU(),
            nn.Identity(),  # dropout slot
            conv(out_channels),
        )
        self.skip_connection = nn.Conv2d(channels, out_channels, 1) if channels != out_channels else nn.Identity()

    def residual(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x [N, C, h, w], emb [N, emb_dim]; 3-D: x [B, C, T, h, w], emb [B, T, emb_dim] (one per frame)."""
        e = self.emb_layers(emb).to(x.dtype)
        e = e[..., None, None] if x.dim() == 4 else rearrange(e, "b t c -> b c t 1 1")
        h = self.in_layers(x) + e
        return self.skip_connection(x) + self.out_layers(h)


class ResBlock(EmbResBlock):
    """2-D residual block with the timestep embedding added, then the temporal conv block."""

    def __init__(self, channels: int, out_channels: int, emb_dim: int):
        super().__init__(channels, out_channels, emb_dim)
        self.temopral_conv = TemporalConvBlock(out_channels)  # sic: the checkpoint's spelling

    def forward(self, x, emb, context, frames):
        return fold(self.temopral_conv(unfold(self.residual(x, emb), frames)), frames)


class InputConv(nn.Conv2d):
    def forward(self, x, emb, context, frames):
        return super().forward(x)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb, context, frames):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb, context, frames):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class SpatialLayer(SpatialTransformer):
    def forward(self, x, emb, context, frames):
        return super().forward(x, context)


class TemporalLayer(TemporalTransformer):
    def forward(self, x, emb, context, frames):
        return fold(super().forward(unfold(x, frames)), frames)


class Stage(nn.Sequential):
    """One `input_blocks[i]` / `middle_block` / `output_blocks[i]`: layers applied in order."""

    def forward(self, x, emb, context, frames):
        for layer in self:
            x = layer(x, emb, context, frames)
        return x


@dataclass
class UNetStages:
    input_blocks: nn.ModuleList
    middle_block: Stage
    output_blocks: nn.ModuleList
    channels: int  # of the last output block


def unet_stages(cfg, res_block: Callable[[int, int], nn.Module], attention: Callable[[int], list]) -> UNetStages:
    """The encoder-decoder skeleton DynamiCrafter's and SVD's UNets share (docs/models.md §3.5, §8.2): per level
    `num_res_blocks` residual blocks (with attention at `attention_resolutions`) and a downsample, the middle
    block, then the mirror image with skip connections and upsamples. `cfg` needs in_channels, model_channels,
    channel_mult, num_res_blocks and attention_resolutions; `res_block(c_in, c_out)` and `attention(channels)`
    make the family's layers."""
    mc = cfg.model_channels
    input_blocks = nn.ModuleList([Stage(InputConv(cfg.in_channels, mc, 3, padding=1))])
    skip_channels, ch, ds = [mc], mc, 1
    for level, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_res_blocks):
            layers = [res_block(ch, mult * mc)]
            ch = mult * mc
            if ds in cfg.attention_resolutions:
                layers += attention(ch)
            input_blocks.append(Stage(*layers))
            skip_channels.append(ch)
        if level != len(cfg.channel_mult) - 1:
            input_blocks.append(Stage(Downsample(ch)))
            skip_channels.append(ch)
            ds *= 2
    middle_block = Stage(res_block(ch, ch), *attention(ch), res_block(ch, ch))
    output_blocks = nn.ModuleList()
    for level, mult in reversed(list(enumerate(cfg.channel_mult))):
        for i in range(cfg.num_res_blocks + 1):
            layers = [res_block(ch + skip_channels.pop(), mult * mc)]
            ch = mult * mc
            if ds in cfg.attention_resolutions:
                layers += attention(ch)
            if level and i == cfg.num_res_blocks:
                layers.append(Upsample(ch))
                ds //= 2
            output_blocks.append(Stage(*layers))
    return UNetStages(input_blocks, middle_block, output_blocks, ch)


class UNet3D(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        mc, emb_dim = cfg.model_channels, cfg.time_embed_dim
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.fps_embedding = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def attention_layers(ch: int) -> list[nn.Module]:
            heads = ch // cfg.head_channels
            spatial = SpatialLayer(
                ch, heads, cfg.head_channels, cfg.context_dim, cfg.text_tokens, cfg.learnable_image_attn_scale
            )
            return [spatial, TemporalLayer(ch, heads, cfg.head_channels)]

        stages = unet_stages(cfg, lambda c_in, c_out: ResBlock(c_in, c_out, emb_dim), attention_layers)
        self.input_blocks = stages.input_blocks
        self.init_attn = Stage(TemporalLayer(mc, cfg.init_attn_heads, cfg.head_channels, conv_proj=True))
        self.middle_block, self.output_blocks = stages.middle_block, stages.output_blocks
        ch = stages.channels
        self.out = nn.Sequential(GroupNorm(32, ch, eps=1e-5), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, padding=1))

    def frame_context(self, context: torch.Tensor, frames: int) -> torch.Tensor:
        """[B, L, C] -> [B*T, L', C]: text tokens repeated per frame, image tokens split per frame.

        The original splits only when L == 77 + 16*T (hard-coded 16); otherwise every frame sees all tokens.
        """
        text_tokens, per_frame = self.cfg.text_tokens, self.cfg.image_tokens_per_frame
        if context.shape[1] != text_tokens + per_frame * frames:
            return context.repeat_interleave(frames, dim=0)
        text = context[:, :text_tokens].repeat_interleave(frames, dim=0)
        image = rearrange(context[:, text_tokens:], "b (t l) c -> (b t) l c", t=frames)
        return torch.cat([text, image], dim=1)

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, frame_stride: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, 8, T, h, w], timesteps [B] int64, context [B, 77 + 16*T, C], frame_stride [B] int64 (the original's
        `fs`) -> [B, 4, T, h, w]."""
        b, _, frames, _, _ = x.shape
        dtype = self.time_embed[0].weight.dtype
        if frame_stride is None:
            frame_stride = torch.full((b,), self.cfg.default_frame_stride, dtype=torch.long, device=x.device)
        mc = self.cfg.model_channels
        emb = self.time_embed(timestep_embedding(timesteps, mc).to(dtype))
        emb = emb + self.fps_embedding(timestep_embedding(frame_stride, mc).to(dtype))
        emb = emb.repeat_interleave(frames, dim=0)
        context = self.frame_context(context.to(dtype), frames)

        h = fold(x.to(dtype), frames)
        skips = []
        for i, stage in enumerate(self.input_blocks):
            h = stage(h, emb, context, frames)
            if i == 0:
                h = self.init_attn(h, emb, context, frames)
            skips.append(h)
        h = self.middle_block(h, emb, context, frames)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context, frames)
        return unfold(self.out(h), frames)
