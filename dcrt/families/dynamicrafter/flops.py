"""Analytic FLOP count of one UNet forward, from the preset alone (2 FLOPs per multiply-add).

Counts what dominates: convolutions, linear layers and attention matmuls. Norms, activations and
element-wise work are O(activations), well under 1% at these widths. tests/families/dynamicrafter/test_flops.py checks
the total against PyTorch's per-module counter on the real module.
"""

from __future__ import annotations

from dcrt.families.dynamicrafter.config import Preset


def _linear(tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * tokens * fan_in * fan_out


def _attention(queries: int, keys: int, width: int) -> int:
    return 2 * 2 * queries * keys * width  # Q K^T and P V


def _transformer_block(tokens: int, seq: int, width: int, cross: tuple[int, int, int] | None) -> int:
    """`tokens` rows in all, in sequences of `seq`; cross = (context tokens, image tokens, context width)."""
    flops = 4 * _linear(tokens, width, width) + _attention(tokens, seq, width)  # attn1: q, k, v, out
    if cross is None:  # temporal: attn2 is a second self-attention
        flops += 4 * _linear(tokens, width, width) + _attention(tokens, seq, width)
    else:
        text, image, context_width = cross
        sequences = tokens // seq
        flops += 2 * _linear(tokens, width, width)  # q, out
        flops += 2 * _linear(sequences * (text + image), context_width, width)  # k, v (text and image)
        flops += _attention(tokens, text, width) + _attention(tokens, image, width)
    return flops + _linear(tokens, width, 8 * width) + _linear(tokens, 4 * width, width)  # GEGLU FF


def _conv(pixels: int, c_in: int, c_out: int, taps: int) -> int:
    return 2 * pixels * c_in * c_out * taps


def unet_flops(preset: Preset, batch: int = 1, height: int | None = None, width: int | None = None) -> int:
    cfg, frames = preset.unet, preset.frames
    h, w = (height or preset.height) // preset.vae.downscale, (width or preset.width) // preset.vae.downscale
    n = batch * frames  # frames folded into the batch
    cross = (cfg.text_tokens, cfg.image_tokens_per_frame, cfg.context_dim)

    def res_block(pix: int, c_in: int, c_out: int) -> int:
        skip = _conv(pix, c_in, c_out, 1) if c_in != c_out else 0
        temporal = 4 * _conv(pix, c_out, c_out, 3)
        return _conv(pix, c_in, c_out, 9) + _conv(pix, c_out, c_out, 9) + skip + temporal

    def attention_pair(pix: int, c: int) -> int:
        spatial = 2 * _linear(pix, c, c) + _transformer_block(pix, pix // n, c, cross)
        temporal = 2 * _linear(pix, c, c) + _transformer_block(pix, frames, c, None)
        return spatial + temporal

    mc = cfg.model_channels
    pix = n * h * w
    inner = cfg.init_attn_heads * cfg.head_channels
    flops = _conv(pix, cfg.in_channels, mc, 9)
    flops += 2 * _linear(pix, mc, inner) + _transformer_block(pix, frames, inner, None)  # init_attn
    skips, ch, ds = [mc], mc, 1
    for level, mult in enumerate(cfg.channel_mult):
        pix = n * (h // ds) * (w // ds)
        for _ in range(cfg.num_res_blocks):
            flops += res_block(pix, ch, mult * mc)
            ch = mult * mc
            flops += attention_pair(pix, ch) if ds in cfg.attention_resolutions else 0
            skips.append(ch)
        if level != len(cfg.channel_mult) - 1:
            ds *= 2
            flops += _conv(n * (h // ds) * (w // ds), ch, ch, 9)  # stride-2 conv: output pixels
            skips.append(ch)
    pix = n * (h // ds) * (w // ds)
    flops += 2 * res_block(pix, ch, ch) + attention_pair(pix, ch)  # middle block
    for level, mult in reversed(list(enumerate(cfg.channel_mult))):
        pix = n * (h // ds) * (w // ds)
        for i in range(cfg.num_res_blocks + 1):
            flops += res_block(pix, ch + skips.pop(), mult * mc)
            ch = mult * mc
            flops += attention_pair(pix, ch) if ds in cfg.attention_resolutions else 0
            if level and i == cfg.num_res_blocks:
                ds //= 2
                flops += _conv(n * (h // ds) * (w // ds), ch, ch, 9)  # upsample conv at the new size
    return flops + _conv(n * h * w, mc, cfg.out_channels, 9)
