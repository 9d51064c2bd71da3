"""Stable Video Diffusion's two weight layouts (docs/models.md §8.3): the original (Stability's sgm) key names,
which dcrt's modules use, and the diffusers folders' names, translated here into the original ones.

Translation is by rule, not by a stored table: the block indices of one layout follow from the other's through
the network's shape (levels, residual blocks per level, where attention is), read off the diffusers keys. A key no
rule knows is kept under `UNKNOWN` so that the strict check reports it as unexpected instead of dropping it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

# dcrt component -> (prefix in the original file, prefix inside the component), longest first where they nest.
ORIGINAL_PREFIXES = {
    "unet": (("model.diffusion_model.", ""),),
    # The conditioner's encoder (with its quant_conv) makes the image latent; the first stage's decoder decodes.
    "vae": (
        ("conditioner.embedders.3.encoder.encoder.", "encoder."),
        ("conditioner.embedders.3.encoder.quant_conv.", "quant_conv."),
        ("first_stage_model.decoder.", "decoder."),
    ),
    "image_encoder": (("conditioner.embedders.0.open_clip.model.visual.", "visual."),),
}
UNKNOWN = "<not a diffusers SVD key>/"  # prefix of untranslatable keys; never a real key

# Inside a residual block: diffusers name -> original name.
_UNET_RESNET = (
    ("spatial_res_block.norm1.", "in_layers.0."),
    ("spatial_res_block.conv1.", "in_layers.2."),
    ("spatial_res_block.time_emb_proj.", "emb_layers.1."),
    ("spatial_res_block.norm2.", "out_layers.0."),
    ("spatial_res_block.conv2.", "out_layers.3."),
    ("spatial_res_block.conv_shortcut.", "skip_connection."),
    ("temporal_res_block.norm1.", "time_stack.in_layers.0."),
    ("temporal_res_block.conv1.", "time_stack.in_layers.2."),
    ("temporal_res_block.time_emb_proj.", "time_stack.emb_layers.1."),
    ("temporal_res_block.norm2.", "time_stack.out_layers.0."),
    ("temporal_res_block.conv2.", "time_stack.out_layers.3."),
    ("time_mixer.", "time_mixer."),
)
_UNET_ATTENTION = (
    ("temporal_transformer_blocks.", "time_stack."),
    ("time_pos_embed.linear_1.", "time_pos_embed.0."),
    ("time_pos_embed.linear_2.", "time_pos_embed.2."),
    ("", ""),  # norm, proj_in, proj_out, transformer_blocks, time_mixer: the same names
)
_UNET_TOP = (
    ("time_embedding.linear_1.", "time_embed.0."),
    ("time_embedding.linear_2.", "time_embed.2."),
    ("add_embedding.linear_1.", "label_emb.0.0."),
    ("add_embedding.linear_2.", "label_emb.0.2."),
    ("conv_in.", "input_blocks.0.0."),
    ("conv_norm_out.", "out.0."),
    ("conv_out.", "out.2."),
)
_VAE_RESNET = (
    ("spatial_res_block.conv_shortcut.", "nin_shortcut."),
    ("spatial_res_block.", ""),
    ("temporal_res_block.norm1.", "time_stack.in_layers.0."),
    ("temporal_res_block.conv1.", "time_stack.in_layers.2."),
    ("temporal_res_block.norm2.", "time_stack.out_layers.0."),
    ("temporal_res_block.conv2.", "time_stack.out_layers.3."),
    ("time_mixer.mix_factor", "mix_factor"),
    ("conv_shortcut.", "nin_shortcut."),  # the encoder's plain ResnetBlock2D
    ("", ""),
)
_VAE_TOP = (
    ("conv_norm_out.", "norm_out."),
    ("time_conv_out.", "conv_out.time_mix_conv."),
    ("conv_in.", "conv_in."),
    ("conv_out.", "conv_out."),
)
_VAE_ATTENTION = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def _rename(rest: str, table) -> str | None:
    return next((new + rest[len(old) :] for old, new in table if rest.startswith(old)), None)


@dataclass(frozen=True)
class _UNetShape:
    levels: int
    res_blocks: int  # per down level; the up levels have one more
    attention_levels: frozenset[int]  # down-level indices, full resolution = 0

    @classmethod
    def of(cls, keys) -> _UNetShape:
        down = [m.groups() for k in keys if (m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.", k))]
        return cls(
            levels=len({level for level, _, _ in down}),
            res_blocks=len({j for level, kind, j in down if level == "0" and kind == "resnets"}),
            attention_levels=frozenset(int(level) for level, kind, _ in down if kind == "attentions"),
        )


def _unet_key(key: str, shape: _UNetShape) -> str | None:
    """One diffusers UNet key -> its original name. Original stages: `input_blocks.0` is conv_in, then per level
    `res_blocks` stages (residual block `.0`, attention `.1`) and a downsampling stage; `output_blocks` run from
    the lowest resolution with `res_blocks + 1` stages per level, the last also upsampling (after the attention)."""
    top = _rename(key, _UNET_TOP)
    if top is not None:
        return top
    if (m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)) is not None:
        kind, j, rest = m.groups()
        return _inner(f"middle_block.{2 * int(j) if kind == 'resnets' else 1}.", kind, rest)
    m = re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)", key)
    if m is None:
        return None
    side, level, kind, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
    per_level = shape.res_blocks + 1
    if side == "down":
        if kind == "downsamplers":
            return f"input_blocks.{(level + 1) * per_level}.0.op.{rest.removeprefix('conv.')}"
        return _inner(f"input_blocks.{1 + level * per_level + j}.{0 if kind == 'resnets' else 1}.", kind, rest)
    if kind == "upsamplers":
        has_attention = shape.levels - 1 - level in shape.attention_levels
        return f"output_blocks.{level * per_level + shape.res_blocks}.{2 if has_attention else 1}.{rest}"
    return _inner(f"output_blocks.{level * per_level + j}.{0 if kind == 'resnets' else 1}.", kind, rest)


def _inner(stage: str, kind: str, rest: str) -> str | None:
    renamed = _rename(rest, _UNET_RESNET if kind == "resnets" else _UNET_ATTENTION)
    return None if renamed is None else stage + renamed


def _vae_key(key: str, levels: int) -> str | None:
    if key.startswith("quant_conv."):
        return "conditioner.embedders.3.encoder." + key
    part, _, rest = key.partition(".")
    prefix = {"encoder": "conditioner.embedders.3.encoder.encoder.", "decoder": "first_stage_model.decoder."}.get(part)
    if prefix is None:
        return None
    top = _rename(rest, _VAE_TOP)
    if top is not None:
        return prefix + top
    blocks = r"(down|up)_blocks\.(\d+)\.(resnets|downsamplers|upsamplers)\.(\d+)\.(.+)"
    m = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", rest)
    if m is not None:
        kind, j, inner = m.groups()
        stage = "mid.attn_1." if kind == "attentions" else f"mid.block_{int(j) + 1}."
    elif (m := re.fullmatch(blocks, rest)) is not None:
        side, level, kind, j, inner = m.groups()
        # diffusers counts the decoder's levels from the lowest resolution, the original from the highest.
        original_level = int(level) if side == "down" else levels - 1 - int(level)
        if kind != "resnets":
            return f"{prefix}{side}.{original_level}.{side}sample.{inner}"
        stage = f"{side}.{original_level}.block.{j}."
    else:
        return None
    renamed = _rename(inner, _VAE_ATTENTION if kind == "attentions" else _VAE_RESNET)
    return None if renamed is None else prefix + stage + renamed


_CLIP_LAYER = (
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
)
_CLIP_TOP = {
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "positional_embedding",
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
    "vision_model.post_layernorm.weight": "ln_post.weight",
    "vision_model.post_layernorm.bias": "ln_post.bias",
    "visual_projection.weight": "proj",
}
_CLIP_PREFIX = "conditioner.embedders.0.open_clip.model.visual."


def _clip_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' CLIPVisionModelWithProjection -> open_clip's visual tower: q, k and v packed into
    `in_proj_*` (in that order), and the projection stored as [width, projection_dim] (x @ proj)."""
    out, packs = {}, {}
    for key, tensor in state.items():
        if key in _CLIP_TOP:
            out[_CLIP_PREFIX + _CLIP_TOP[key]] = tensor.T if key == "visual_projection.weight" else tensor
            continue
        m = re.fullmatch(r"vision_model\.encoder\.layers\.(\d+)\.(.+)", key)
        q = m and re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", m.group(2))
        if q:
            packs.setdefault((m.group(1), q.group(2)), {})[q.group(1)] = (key, tensor)
            continue
        renamed = m and _rename(m.group(2), _CLIP_LAYER)
        out[f"{_CLIP_PREFIX}transformer.resblocks.{m.group(1)}.{renamed}" if renamed else UNKNOWN + key] = tensor
    for (layer, kind), parts in packs.items():
        if set(parts) == {"q", "k", "v"}:
            packed = torch.cat([parts[p][1] for p in "qkv"])
            out[f"{_CLIP_PREFIX}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = packed
        else:  # an incomplete triple: report its parts as unexpected and the packed tensor as missing
            out |= {UNKNOWN + key: tensor for key, tensor in parts.values()}
    return out


def diffusers_to_original(
    unet: dict[str, torch.Tensor], vae: dict[str, torch.Tensor], image_encoder: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The three diffusers state dicts -> one state dict in the original layout (components only)."""
    out, shape = {}, _UNetShape.of(unet)
    vae_levels = len({key.split(".")[2] for key in vae if key.startswith("decoder.up_blocks.")})
    for key, tensor in unet.items():
        new = _unet_key(key, shape)
        out[UNKNOWN + "unet/" + key if new is None else "model.diffusion_model." + new] = tensor
    for key, tensor in vae.items():
        new = _vae_key(key, vae_levels)
        if new is not None and ".mid.attn_1." in new and new.endswith(".weight") and tensor.dim() == 2:
            tensor = tensor[:, :, None, None]  # the original's 1x1 convs
        out[UNKNOWN + "vae/" + key if new is None else new] = tensor
    return out | _clip_tensors(image_encoder)
