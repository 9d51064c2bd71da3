"""Spatial and temporal transformers of the 3-D UNet (docs/models.md §3.5.4, 3.5.5).

Module and attribute names follow the original checkpoint's keys.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from dcrt.models.layers import ChannelLinear, GroupNorm, LayerNorm, attention


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_out(attention(self.to_q(x), self.to_k(x), self.to_v(x), self.heads))


class CrossAttention(nn.Module):
    """Plain cross-attention: queries from x, keys and values from the context tokens (SVD's image embedding)."""

    def __init__(self, dim: int, context_dim: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.to_out(attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads))


class ImageCrossAttention(nn.Module):
    """Decoupled cross-attention: text and image tokens get two independent softmaxes, then a sum.

    out = Attn(q, K_txt, V_txt) + lambda * Attn(q, K_img, V_img), lambda = 1 or tanh(alpha) + 1.
    """

    def __init__(self, dim: int, context_dim: int, heads: int, head_dim: int, text_tokens: int, learnable_scale: bool):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.text_tokens = text_tokens
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
        self.to_v_ip = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim))
        self.alpha = nn.Parameter(torch.zeros(())) if learnable_scale else None

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # context: [N, text_tokens + image tokens, context_dim]
        text, image = context[:, : self.text_tokens], context[:, self.text_tokens :]
        q = self.to_q(x)
        out = attention(q, self.to_k(text), self.to_v(text), self.heads)
        out_image = attention(q, self.to_k_ip(image), self.to_v_ip(image), self.heads)
        if self.alpha is not None:
            out_image = out_image * (torch.tanh(self.alpha) + 1)
        return self.to_out(out + out_image)


class GEGLU(nn.Module):
    """Linear to [value | gate], value * gelu(gate) (exact erf GELU)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        # Index 1 held a Dropout in the original: kept as Identity so the keys stay `net.0` / `net.2`.
        self.net = nn.Sequential(GEGLU(dim, mult * dim), nn.Identity(), nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def in_token_pieces(
    block: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    x: torch.Tensor,
    context: torch.Tensor | None,
    token_chunk: int | None,
) -> torch.Tensor:
    """`block(x, context)` over pieces of x's batch of sequences [N, L, C] of at most `token_chunk` tokens (at
    least one sequence), written into one output: each sequence is computed alone in a block (attention mixes
    tokens of one sequence only), so the pieces give the whole call's numbers with a fraction of its
    temporaries. `context` [N, ...] is cut with x. None, or a batch that fits: one call."""
    n, length = x.shape[:2]
    per_piece = n if token_chunk is None else max(1, token_chunk // length)
    if per_piece >= n:
        return block(x, context)
    out = torch.empty_like(x)
    for start in range(0, n, per_piece):
        piece = slice(start, start + per_piece)
        out[piece] = block(x[piece], None if context is None else context[piece])
    return out


def set_token_chunk(network: nn.Module, token_chunk: int | None) -> None:
    """Every transformer block of `network` runs in pieces of at most `token_chunk` tokens (None: whole)."""
    for module in network.modules():
        if hasattr(module, "token_chunk"):
            module.token_chunk = token_chunk


class TransformerBlock(nn.Module):
    """Pre-norm block: attn1 (self), attn2 (image cross-attention, or a second self-attention), GEGLU FF.

    `token_chunk` (dcrt.memory): tokens per piece of the batch (`in_token_pieces`); None runs it whole."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross: nn.Module | None):
        super().__init__()
        self.attn1 = SelfAttention(dim, heads, head_dim)
        self.attn2 = cross if cross is not None else SelfAttention(dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.norm1 = LayerNorm(dim)
        self.norm2 = LayerNorm(dim)
        self.norm3 = LayerNorm(dim)
        self.token_chunk: int | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return in_token_pieces(self.block, x, context, self.token_chunk)

    def block(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        y = self.norm2(x)
        x = (self.attn2(y) if context is None else self.attn2(y, context)) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the h*w tokens with text+image cross-attention."""

    def __init__(
        self, channels: int, heads: int, head_dim: int, context_dim: int, text_tokens: int, learnable_scale: bool
    ):
        super().__init__()
        inner = heads * head_dim
        self.norm = GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        cross = ImageCrossAttention(inner, context_dim, heads, head_dim, text_tokens, learnable_scale)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, cross)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # x: [B*T, C, h, w]; context: [B*T, 77 + 16, context_dim]
        _, _, h, w = x.shape
        y = self.proj_in(rearrange(self.norm(x), "n c h w -> n (h w) c"))
        for block in self.transformer_blocks:
            y = block(y, context)
        y = self.proj_out(y)
        return rearrange(y, "n (h w) c -> n c h w", h=h, w=w) + x


class TemporalTransformer(nn.Module):
    """Self-attention over the T frames at every pixel; no positional encoding (docs/models.md §3.5.5).

    `init_attn` stores its projections as kernel-1 Conv1d weights (`conv_proj=True`).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, conv_proj: bool = False):
        super().__init__()
        inner = heads * head_dim
        projection = ChannelLinear if conv_proj else nn.Linear
        self.norm = GroupNorm(32, channels, eps=1e-6)
        self.proj_in = projection(channels, inner)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(inner, heads, head_dim, cross=None)])
        self.proj_out = projection(inner, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C, T, h, w]; GroupNorm statistics are pooled across the frames.
        b, _, t, h, w = x.shape
        y = self.proj_in(rearrange(self.norm(x), "b c t h w -> (b h w) t c"))
        for block in self.transformer_blocks:
            y = block(y)
        y = self.proj_out(y)
        return rearrange(y, "(b h w) t c -> b c t h w", b=b, h=h, w=w) + x
