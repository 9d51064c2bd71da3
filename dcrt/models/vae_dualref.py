"""ToonCrafter's dual-reference video decoder (the original's `AutoencoderKL_Dualref` decoder, docs/models.md §6.2).

The image decoder of docs/models.md §3.6 with three changes: every ResnetBlock mixes in a temporal residual
block over the clip's frames, the output conv is followed by a temporal conv, and each level receives the two
key frames' encoder features (`references`): by cross-attention at `fusion_levels`, elsewhere by adding a 1x1
conv of them to the clip's first and last frame. Frames are the batch, as in the image decoder, but a batch
is one clip: the frames are decoded together, never in chunks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dcrt.config import VAEConfig
from dcrt.errors import UsageError
from dcrt.models.layers import GroupNorm, attention
from dcrt.models.vae import AttnBlock, ResnetBlock, Upsample, group_norm


def _to_clip(x: torch.Tensor) -> torch.Tensor:
    """Frames [T, C, H, W] -> one clip [1, C, T, H, W] for the temporal layers."""
    return x.transpose(0, 1)[None]


def _to_frames(x: torch.Tensor) -> torch.Tensor:
    return x[0].transpose(0, 1)


class TemporalResBlock(nn.Module):
    """`time_stack`: GN, SiLU, Conv3d over frames only, twice, plus the input. The Sequential indices are the
    checkpoint's (the original holds a dropout at `out_layers.2`)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()

        def conv() -> nn.Conv3d:
            return nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0))

        # GroupNorm eps 1e-5 here (the UNet-style norm), 1e-6 in the rest of the VAE.
        self.in_layers = nn.Sequential(GroupNorm(32, channels), nn.SiLU(), conv())
        self.out_layers = nn.Sequential(GroupNorm(32, channels), nn.SiLU(), nn.Identity(), conv())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [1, C, T, H, W]. One layer at a time: nesting the two Sequentials would keep the first's output
        # alive through all of the second (a call holds its argument), one more clip-sized tensor at the peak.
        # SiLU and the residual sum run in place on tensors made here (the same numbers: x + h is h + x).
        in_place = not torch.onnx.is_in_onnx_export()
        h = x
        for layer in (*self.in_layers, *self.out_layers):
            h = F.silu(h, inplace=in_place and h is not x) if isinstance(layer, nn.SiLU) else layer(h)
        return h.add_(x) if in_place and h is not x else x + h


def in_frame_pieces(layer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, frames: int | None) -> torch.Tensor:
    """`layer(x)` for a per-frame layer (frames are its batch) over pieces of `frames` frames, written into one
    output: the layer's temporaries are a piece's, not the clip's (dcrt.memory's `decoder_frames`). None, or a clip
    that fits: one call."""
    if frames is None or frames >= x.shape[0]:
        return layer(x)
    first = layer(x[:frames])
    out = first.new_empty((x.shape[0], *first.shape[1:]))
    out[:frames] = first
    del first
    for start in range(frames, x.shape[0], frames):
        out[start : start + frames] = layer(x[start : start + frames])
    return out


def set_frame_pieces(network: nn.Module, frames: int | None) -> None:
    """Every video decoder block of `network` runs its per-frame part (and the upsample after its level) over
    pieces of `frames` frames (None: the clip at once)."""
    for module in network.modules():
        if isinstance(module, VideoResnetBlock):
            module.frame_pieces = frames


class VideoResnetBlock(ResnetBlock):
    """The per-frame ResnetBlock, then a learned blend with a temporal block over its output:
    sigmoid(mix_factor) * time_stack(s) + (1 - sigmoid(mix_factor)) * s.

    `frame_pieces` (dcrt.memory): frames per pass of the per-frame part (None: the clip at once)."""

    def __init__(self, channels: int, out_channels: int, kernel: int):
        super().__init__(channels, out_channels)
        self.time_stack = TemporalResBlock(out_channels, kernel)
        self.mix_factor = nn.Parameter(torch.zeros(1))
        self.frame_pieces: int | None = None

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """x [T, C, H, W], or a list holding it, handed over: the block drops it once the per-frame part has read
        it, so a caller that hands over its only reference (`run_up_levels`) frees the input before the temporal
        part runs; at full resolution each such tensor is 2 GiB for SVD's 14 frames in fp16."""
        s = in_frame_pieces(super().forward, x.pop() if isinstance(x, list) else x, self.frame_pieces)
        alpha = torch.sigmoid(self.mix_factor)
        # The original's `alpha * s + (1 - alpha) * x_mix` computes in the promoted dtype: float32 under autocast
        # (float16 activations, float32 weight), where lerp itself refuses the mix. Otherwise the dtypes agree and
        # lerp blends in one pass, in place on s (made here), without the two scaled copies as temporaries.
        dtype = torch.promote_types(s.dtype, alpha.dtype)
        mixed = _to_frames(self.time_stack(_to_clip(s))).to(dtype)
        if dtype == s.dtype and not torch.onnx.is_in_onnx_export():
            return s.lerp_(mixed, alpha.to(dtype))
        return torch.lerp(s.to(dtype), mixed, alpha.to(dtype))


class VideoConv(nn.Conv2d):
    """The output conv: a per-frame 3x3 Conv2d, then `time_mix_conv`, a Conv3d over frames only."""

    def __init__(self, channels: int, out_channels: int, kernel: int):
        super().__init__(channels, out_channels, 3, padding=1)
        self.time_mix_conv = nn.Conv3d(out_channels, out_channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _to_frames(self.time_mix_conv(_to_clip(super().forward(x))))


class ReferenceCombiner(nn.Module):
    """A 1x1 conv of the two key frames' features, added to the clip's first and last frame only."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        # x: [T, C, H, W]; references: [2, C, H, W] (first, last key frame)
        r = self.conv(references)
        return torch.cat([x[:1] + r[:1], x[1:-1], x[-1:] + r[1:]])


class ReferenceFusion(nn.Module):
    """Cross-attention of every frame to both key frames: queries from the normalised frame's h*w positions,
    keys and values from the un-normalised features of the two key frames (2*h*w tokens), scale 1/sqrt(64)."""

    def __init__(self, channels: int, heads: int, head_channels: int):
        super().__init__()
        inner = heads * head_channels
        self.heads = heads
        self.norm = group_norm(channels)
        self.to_q = nn.Linear(channels, inner, bias=False)
        self.to_k = nn.Linear(channels, inner, bias=False)
        self.to_v = nn.Linear(channels, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, channels))

    def forward(self, x: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        t, c, h, w = x.shape
        q = self.to_q(self.norm(x).flatten(2).transpose(1, 2))  # [T, h*w, inner]
        keys = references.flatten(2).transpose(1, 2).reshape(1, 2 * h * w, c)  # first's tokens, then last's
        k, v = self.to_k(keys).expand(t, -1, -1), self.to_v(keys).expand(t, -1, -1)
        out = self.to_out(attention(q, k, v, self.heads))  # [T, h*w, C]
        return x + out.transpose(1, 2).reshape(t, c, h, w)


class UpLevel(nn.Module):
    """One decoder level: `block` list and an optional `upsample` (the checkpoint's keys)."""

    def __init__(self, blocks: list[VideoResnetBlock], upsample: Upsample | None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if upsample is not None:
            self.upsample = upsample


def video_up_levels(chans: list[int], num_res_blocks: int, kernel: int) -> nn.ModuleList:
    """The up path of both video decoders (this one and dcrt.models.vae_video's): `up[level]` holds
    num_res_blocks + 1 VideoResnetBlocks and, above level 0 (full resolution), an Upsample. Built from the lowest
    resolution up, as the original builds it: default initialisation draws from the RNG in that order."""
    levels, c_in = {}, chans[-1]
    for level in reversed(range(len(chans))):
        c_out = chans[level]
        blocks = [VideoResnetBlock(c_in if i == 0 else c_out, c_out, kernel) for i in range(num_res_blocks + 1)]
        levels[level] = UpLevel(blocks, Upsample(c_out) if level > 0 else None)
        c_in = c_out
    return nn.ModuleList([levels[i] for i in range(len(chans))])


def run_up_levels(
    decoder: nn.Module, z: torch.Tensor, refine: Callable[[int, torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """A video decoder's `conv_in` and `mid`, then its `up` levels (`video_up_levels`) from the lowest resolution
    up: each level's blocks, then `refine(level, h)` where given (the dual-ref decoder's key-frame features), then
    the level's upsample. Takes z rather than mid's output so that no caller's frame holds that tensor through the
    levels; a function rather than a module's forward so exported graphs keep the decoders' own module scopes."""
    h = decoder.mid(decoder.conv_in(z))
    for level in reversed(range(len(decoder.up))):
        for block in decoder.up[level].block:
            held, h = [h], None  # handed over: the block frees it once read (VideoResnetBlock.forward)
            h = block(held)
        if refine is not None:
            h = refine(level, h)
        if level > 0:
            h = in_frame_pieces(decoder.up[level].upsample, h, decoder.up[level].block[0].frame_pieces)
    return h


class Mid(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.block_1 = VideoResnetBlock(channels, channels, kernel)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = VideoResnetBlock(channels, channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class DualRefDecoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ref, k = cfg.dual_ref, cfg.dual_ref.temporal_kernel
        chans = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(cfg.z_channels, chans[-1], 3, padding=1)
        self.mid = Mid(chans[-1], k)
        self.up = video_up_levels(chans, cfg.num_res_blocks, k)
        # One refinement per level (index = level), then one after `norm_out` at full resolution.
        self.attn_refinement = nn.ModuleList(
            [
                ReferenceFusion(c, ref.fusion_heads, ref.fusion_head_channels)
                if level in ref.fusion_levels
                else ReferenceCombiner(c)
                for level, c in enumerate(chans)
            ]
            + [ReferenceCombiner(chans[0])]
        )
        self.norm_out = group_norm(chans[0])
        self.conv_out = VideoConv(chans[0], cfg.out_channels, k)

    def forward(self, z: torch.Tensor, references: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """z [T, 4, h, w] (unscaled latents of one clip, no post_quant_conv), references as
        `dcrt.models.autoencoder.References` -> frames [T, 3, 8h, 8w]."""
        if references is None or len(references) != len(self.attn_refinement):
            raise UsageError(f"the dual-ref decoder needs {len(self.attn_refinement)} reference features")
        h = run_up_levels(self, z, lambda level, h: self.attn_refinement[level](h, references[level]))
        h = self.attn_refinement[-1](F.silu(self.norm_out(h)), references[-1])
        return self.conv_out(h)
