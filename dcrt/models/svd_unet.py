"""Stable Video Diffusion's spatio-temporal UNet (`model.diffusion_model`, docs/models.md §8.2).

The DynamiCrafter UNet's skeleton (input / middle / output stages, frames folded into the batch), with SVD's
layers: every residual block and every transformer pairs a per-frame (spatial) layer with a temporal one over the
frames and blends the two by a learned factor, out = sigmoid(m) * spatial + (1 - sigmoid(m)) * temporal. The only
cross-attention context is the CLIP image embedding (one token); fps, motion bucket and noise augmentation enter
as sinusoids added to the timestep embedding. Module names follow the original (sgm) checkpoint's keys.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from dcrt.config import SpatioTemporalUNetConfig
from dcrt.models.attention import CrossAttention, FeedForward, SelfAttention, TransformerBlock, in_token_pieces
from dcrt.models.layers import GroupNorm, LayerNorm, timestep_embedding
from dcrt.models.unet3d import EmbResBlock, fold, unet_stages, unfold


class AlphaBlender(nn.Module):
    """sigmoid(mix_factor) * spatial + (1 - sigmoid(mix_factor)) * temporal (sgm `AlphaBlender`, learned)."""

    def __init__(self):
        super().__init__()
        self.mix_factor = nn.Parameter(torch.zeros(1))

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor).to(spatial.dtype)
        return alpha * spatial + (1.0 - alpha) * temporal


class VideoResBlock(EmbResBlock):
    """The 2-D residual block, then `time_stack`, the same block over the frames with (3, 1, 1) convs."""

    def __init__(self, channels: int, out_channels: int, emb_dim: int):
        super().__init__(channels, out_channels, emb_dim)
        self.time_stack = EmbResBlock(out_channels, out_channels, emb_dim, temporal=True)
        self.time_mixer = AlphaBlender()

    def forward(self, x, emb, context, frames):
        s = unfold(self.residual(x, emb), frames)  # [B, C, T, h, w]
        t = self.time_stack.residual(s, rearrange(emb, "(b t) e -> b t e", t=frames))
        return fold(self.time_mixer(s, t), frames)


class VideoTransformerBlock(nn.Module):
    """The temporal block (`time_stack.0`): a GEGLU feed-forward in (residual), then self-attention over the
    frames, cross-attention to the image embedding and a feed-forward, each pre-norm and residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm_in = LayerNorm(dim)
        self.ff_in = FeedForward(dim)
        self.norm1 = LayerNorm(dim)
        self.attn1 = SelfAttention(dim, heads, head_dim)
        self.norm2 = LayerNorm(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, head_dim)
        self.norm3 = LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.token_chunk: int | None = None  # as TransformerBlock's (dcrt.memory)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return in_token_pieces(self.block, x, context, self.token_chunk)

    def block(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # x: [B*h*w, T, dim] (one sequence of frames per pixel); context: [B*h*w, L, context_dim]
        x = self.ff_in(self.norm_in(x)) + x
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialVideoTransformer(nn.Module):
    """Per-frame transformer over the h*w tokens, each block followed by a temporal block over the T frames at
    every token; the temporal branch sees a learned embedding of the frame index."""

    def __init__(self, channels: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.norm = GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        cross = CrossAttention(inner, context_dim, heads, head_dim)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, cross)])
        self.time_stack = nn.ModuleList([VideoTransformerBlock(inner, heads, head_dim, context_dim)])
        self.time_pos_embed = nn.Sequential(
            nn.Linear(channels, 4 * channels), nn.SiLU(), nn.Linear(4 * channels, inner)
        )
        self.time_mixer = AlphaBlender()
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x, emb, context, frames):
        # x: [B*T, C, h, w]; context: [B*T, L, context_dim], the same for every frame of a clip
        _, channels, h, w = x.shape
        y = self.proj_in(rearrange(self.norm(x), "n c h w -> n (h w) c"))
        frame_index = torch.arange(frames, device=x.device)
        position = self.time_pos_embed(timestep_embedding(frame_index, channels).to(y.dtype))  # [T, inner]
        # The temporal cross-attention reads the clip's first frame's context at every pixel.
        time_context = rearrange(context, "(b t) l c -> b t l c", t=frames)[:, 0].repeat_interleave(h * w, dim=0)
        for block, temporal in zip(self.transformer_blocks, self.time_stack):
            y = block(y, context)
            by_pixel = rearrange(y, "(b t) s c -> (b s) t c", t=frames) + position
            z = rearrange(temporal(by_pixel, time_context), "(b s) t c -> (b t) s c", s=h * w)
            y = self.time_mixer(y, z)
        return rearrange(self.proj_out(y), "n (h w) c -> n c h w", h=h, w=w) + x


class SpatioTemporalUNet(nn.Module):
    def __init__(self, cfg: SpatioTemporalUNetConfig):
        super().__init__()
        self.cfg = cfg
        mc, emb_dim = cfg.model_channels, cfg.time_embed_dim
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        added = cfg.added_time_ids * cfg.added_time_dim
        self.label_emb = nn.Sequential(nn.Sequential(nn.Linear(added, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)))

        def attention(ch: int) -> list[nn.Module]:
            return [SpatialVideoTransformer(ch, ch // cfg.head_channels, cfg.head_channels, cfg.context_dim)]

        stages = unet_stages(cfg, lambda c_in, c_out: VideoResBlock(c_in, c_out, emb_dim), attention)
        self.input_blocks, self.middle_block, self.output_blocks = (
            stages.input_blocks, stages.middle_block, stages.output_blocks
        )  # fmt: skip
        ch = stages.channels
        self.out = nn.Sequential(GroupNorm(32, ch, eps=1e-5), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, padding=1))

    def embed(self, c_noise: torch.Tensor, added_time_ids: torch.Tensor) -> torch.Tensor:
        """c_noise [B] (EDM's ln(sigma) / 4), added_time_ids [B, 3] -> [B, time_embed_dim]."""
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(c_noise, self.cfg.model_channels).to(dtype))
        ids = timestep_embedding(added_time_ids.flatten(), self.cfg.added_time_dim)
        return emb + self.label_emb(ids.reshape(added_time_ids.shape[0], -1).to(dtype))

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor, added_time_ids: torch.Tensor
    ) -> torch.Tensor:
        """x [B, 8, T, h, w] (noisy latents scaled by c_in, then the image latent), c_noise [B] float,
        context [B, 1, context_dim] (the CLIP image embedding), added_time_ids [B, 3] float -> [B, 4, T, h, w]."""
        frames = x.shape[2]
        dtype = self.time_embed[0].weight.dtype
        emb = self.embed(c_noise, added_time_ids).repeat_interleave(frames, dim=0)
        context = context.to(dtype).repeat_interleave(frames, dim=0)

        h = fold(x.to(dtype), frames)
        skips = []
        for stage in self.input_blocks:
            h = stage(h, emb, context, frames)
            skips.append(h)
        h = self.middle_block(h, emb, context, frames)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context, frames)
        return unfold(self.out(h), frames)
