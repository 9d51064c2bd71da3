"""Frame-wise Perceiver resampler (`image_proj_model`, docs/models.md §3.4).

257 CLIP tokens -> 16 tokens x 16 frames."""

from __future__ import annotations

import torch
from torch import nn

from dcrt.config import ResamplerConfig
from dcrt.models.layers import LayerNorm, attention


class PerceiverAttention(nn.Module):
    """Latents attend to [image tokens ; latents], each side layer-normalised separately."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm1 = LayerNorm(dim)
        self.norm2 = LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        # The original scales q and k by d^-1/4 each for fp16 range; SDPA's d^-1/2 is the same product.
        return self.to_out(attention(self.to_q(latents), k, v, self.heads))


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    return nn.Sequential(
        LayerNorm(dim), nn.Linear(dim, mult * dim, bias=False), nn.GELU(), nn.Linear(mult * dim, dim, bias=False)
    )


class Resampler(nn.Module):
    def __init__(self, cfg: ResamplerConfig):
        super().__init__()
        self.latents = nn.Parameter(torch.empty(1, cfg.num_queries * cfg.video_length, cfg.dim))
        self.proj_in = nn.Linear(cfg.embedding_dim, cfg.dim)
        self.proj_out = nn.Linear(cfg.dim, cfg.output_dim)
        self.norm_out = LayerNorm(cfg.output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(cfg.dim, cfg.dim_head, cfg.heads), feed_forward(cfg.dim, cfg.ff_mult)])
            for _ in range(cfg.depth)
        )

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """[N, 257, embedding_dim] -> [N, num_queries * video_length, output_dim]; frame f owns tokens 16f..16f+15."""
        x = self.proj_in(image_tokens.to(self.proj_in.weight.dtype))
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))
