"""OpenCLIP ViT-H-14 text and image towers, as DynamiCrafter uses them (docs/models.md §3.2, 3.3).

Re-implemented rather than taken from open_clip: newer open_clip changed the transformer's layout
(batch-first), its fused attention fast path does not export to ONNX, and only parts of each tower
run. Parameter names follow open_clip, so checkpoint keys load unchanged. open_clip still provides
the tokenizer (its BPE vocabulary ships in the wheel).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from dcrt.config import ImageEncoderConfig, TextEncoderConfig
from dcrt.models.layers import LayerNorm, attention


class MultiheadSelfAttention(nn.Module):
    """nn.MultiheadAttention's parameter layout (packed in_proj), computed with SDPA."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        return self.out_proj(attention(q, k, v, self.heads, mask))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = MultiheadSelfAttention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, mlp_ratio * width), gelu=nn.GELU(), c_proj=nn.Linear(mlp_ratio * width, width)
            )
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class TextEncoder(nn.Module):
    """Tokens [N, 77] -> [N, 77, width]: blocks 0..L-2 ("penultimate"), then ln_final; no projection.

    Only the blocks that run are built; the checkpoint's last block is declared unused (checkpoint.py).
    """

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.transformer = Transformer(cfg.width, cfg.used_layers, cfg.heads, cfg.mlp_ratio)
        self.ln_final = LayerNorm(cfg.width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = self.cfg.context_length
        causal = torch.full((n, n), float("-inf"), device=tokens.device).triu(1)
        x = self.token_embedding(tokens) + self.positional_embedding
        return self.ln_final(self.transformer(x, causal.to(x.dtype)))


def _gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    k = torch.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


def _blur_axis(x: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """Depthwise 1-D convolution along H (dim=2) or W (dim=3) with reflect padding."""
    c, pad = x.shape[1], kernel.numel() // 2
    shape = (c, 1, kernel.numel(), 1) if dim == 2 else (c, 1, 1, kernel.numel())
    padding = (0, 0, pad, pad) if dim == 2 else (pad, pad, 0, 0)
    weight = kernel.to(x.dtype).reshape(shape[2:]).expand(c, 1, *shape[2:])
    return F.conv2d(F.pad(x, padding, mode="reflect"), weight, groups=c)


def antialiased_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """kornia.geometry.resize(bicubic, align_corners=True, antialias=True), which the original uses.

    When shrinking an axis by f > 1 it first blurs with a Gaussian of sigma = max((f - 1) / 2, 0.001)
    and odd kernel size int(max(4 sigma, 3)); then PyTorch bicubic interpolation.
    """
    h, w = x.shape[-2:]
    factors = (h / size[0], w / size[1])
    if max(factors) > 1:
        for dim, (f, extent) in zip((2, 3), zip(factors, (h, w))):
            sigma = max((f - 1.0) / 2.0, 0.001)
            k = int(max(4.0 * sigma, 3))
            k = k if k % 2 else k + 1
            if extent > 1:
                x = _blur_axis(x, _gaussian_kernel(k, sigma).to(x.device), dim)
    return F.interpolate(x, size=size, mode="bicubic", align_corners=True)


def clip_normalize(x: torch.Tensor, cfg: ImageEncoderConfig) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1], already resized -> (x + 1) / 2, then (x - mean[c]) / std[c] per channel.

    The reference of kernels/preprocess.cu `clip_normalize_f32` (the same operations, in the same order).
    """
    x = (x + 1.0) / 2.0
    mean = torch.tensor(cfg.mean, device=x.device).reshape(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=x.device).reshape(1, 3, 1, 1)
    return (x - mean) / std


def clip_pixels(image: torch.Tensor, cfg: ImageEncoderConfig) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] at any size -> the CLIP input: `antialiased_resize` to image_size x image_size
    (aspect ratio not preserved), then `clip_normalize` (docs/models.md §3.3). Runs on the image's device."""
    return clip_normalize(antialiased_resize(image.float(), (cfg.image_size, cfg.image_size)), cfg)


class VisionTransformer(nn.Module):
    """Patchify, class token, positional embedding, ln_pre, transformer. (ln_post / proj are unused.)"""

    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(cfg.width))
        self.positional_embedding = nn.Parameter(torch.empty(cfg.num_tokens, cfg.width))
        self.ln_pre = LayerNorm(cfg.width)
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels).flatten(2).transpose(1, 2)  # [N, grid*grid, width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.transformer(self.ln_pre(x))


class ImageEncoder(nn.Module):
    """Image [N, 3, H, W] in [-1, 1] -> all CLIP tokens of the last block [N, 257, width]."""

    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.visual = VisionTransformer(cfg)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encode_pixels(clip_pixels(image, self.cfg))

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels.to(self.visual.conv1.weight.dtype))


class ProjectedVisionTransformer(VisionTransformer):
    """The visual tower with the parts DynamiCrafter leaves unused: `ln_post` and the projection `proj`."""

    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__(cfg)
        self.ln_post = LayerNorm(cfg.width)
        self.proj = nn.Parameter(torch.empty(cfg.width, cfg.projection_dim))


class ImageEmbedder(ImageEncoder):
    """Image [N, 3, H, W] in [-1, 1] -> CLIP's image embedding [N, projection_dim]: the class token of the last
    block through `ln_post`, projected (SVD's only conditioning, docs/models.md §8.5)."""

    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__(cfg)
        self.visual = ProjectedVisionTransformer(cfg)

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = super().encode_pixels(pixels)  # [N, 257, width]
        return self.visual.ln_post(tokens[:, 0]) @ self.visual.proj.to(tokens.dtype)
