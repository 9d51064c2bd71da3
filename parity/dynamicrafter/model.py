"""The ORIGINAL `lvdm.models.ddpm3d.LatentVisualDiffusion`, built from a dcrt preset and strictly loaded.

For parity checks only; never imported by dcrt's runtime. The original class is imported from
$DCRT_REFERENCE_REPO (parity.dynamicrafter.original), never copied. The model is configured as the original
inference yaml configures it (configs/inference_*_v1.0.yaml), with attribute-dicts in place of OmegaConf
objects, and loaded *strictly* from the dcrt checkpoint (the 256 file's `framestride_embed` is renamed to
`fps_embedding`, exactly as the original `load_model_checkpoint` does). `model.device` (a Lightning
attribute the stub lacks) is set to cpu on the built model.
"""

from __future__ import annotations

import contextlib
import io
import types
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from parity.dynamicrafter.components import KeyMismatch, resampler_params, unet_params, vae_params
from parity.dynamicrafter.original import (
    import_reference_sampling,
    open_clip_arch,
    patch_visual_tower,
    quiet_logging,
    reference_repo,
    restore_sequence_first,
    skip_init,
)


class _Cfg(dict):
    """Attribute access on a dict: what the original reads from its OmegaConf configs."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _cfg(obj):
    if isinstance(obj, dict):
        return _Cfg({k: _cfg(v) for k, v in obj.items()})
    return obj


def model_config(preset) -> _Cfg:
    """The `model:` section of the original inference yaml for this preset (512 / 256 structure)."""
    v, d = preset.vae, preset.diffusion
    arch = open_clip_arch(preset)
    unet = unet_params(preset, dropout=0.1)
    params = dict(
        linear_start=d.linear_start,
        linear_end=d.linear_end,
        num_timesteps_cond=1,
        timesteps=d.timesteps,
        first_stage_key="video",
        cond_stage_key="caption",
        cond_stage_trainable=False,
        conditioning_key="hybrid",
        image_size=[preset.latent_height, preset.latent_width],
        channels=v.z_channels,
        scale_by_std=False,
        scale_factor=v.scale_factor,
        use_ema=False,
        uncond_type="empty_seq",
        unet_config={"target": "lvdm.modules.networks.openaimodel3d.UNetModel", "params": unet},
        first_stage_config={
            "target": "lvdm.models.autoencoder."
            + ("AutoencoderKL" if preset.vae.dual_ref is None else "AutoencoderKL_Dualref"),
            "params": dict(vae_params(preset), monitor="val/rec_loss"),
        },
        # version=None: no download (weights come from the checkpoint); device: the yaml default is cuda.
        cond_stage_config={
            "target": "lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder",
            "params": dict(arch=arch, version=None, device="cpu", freeze=True, layer="penultimate"),
        },
        img_cond_stage_config={
            "target": "lvdm.modules.encoders.condition.FrozenOpenCLIPImageEmbedderV2",
            "params": dict(arch=arch, version=None, device="cpu", freeze=True),
        },
        image_proj_stage_config={
            "target": "lvdm.modules.encoders.resampler.Resampler",
            "params": resampler_params(preset),
        },
    )
    if d.parameterization == "v":  # the 512/1024 yaml; the 256 yaml leaves these at their defaults (eps)
        params.update(rescale_betas_zero_snr=d.zero_snr, parameterization="v", fps_condition_type="fps")
    if d.dynamic_rescale:
        params.update(use_dynamic_rescale=True, base_scale=d.base_scale, turning_step=d.turning_step)
    params["perframe_ae"] = d.parameterization == "v"  # run.sh passes --perframe_ae for 512/1024, not 256
    return _cfg({"target": "lvdm.models.ddpm3d.LatentVisualDiffusion", "params": params})


@dataclass
class ReferenceModel:
    model: nn.Module  # lvdm.models.ddpm3d.LatentVisualDiffusion
    ref: types.SimpleNamespace
    schedule_check: dict[str, float] = field(default_factory=dict)  # ref's own buffers vs the checkpoint's


def build_reference_model(preset, state_dict: dict, repo: Path | None = None) -> ReferenceModel:
    """LatentVisualDiffusion for `preset`, strictly loaded from `state_dict` (tensors aliased, not copied)."""
    ref = import_reference_sampling(repo or reference_repo(preset))
    instantiate = ref.inference.instantiate_from_config
    with skip_init(), contextlib.redirect_stdout(io.StringIO()), quiet_logging():
        model = instantiate(model_config(preset))
    # The original loads strictly and, failing that, renames framestride_embed -> fps_embedding (256 file).
    sd = {k.replace("framestride_embed", "fps_embedding"): v for k, v in state_dict.items()}
    expected = model.state_dict()
    # The schedule the original computes itself must equal what dcrt wrote into the checkpoint.
    schedule_check = {}
    for key, value in expected.items():
        if "." not in key and key in sd:
            ours = value.double()
            rel = ((sd[key].double() - ours).norm() / ours.norm().clamp_min(1e-30)).item()
            schedule_check[key] = rel
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    shapes = sorted(k for k in set(sd) & set(expected) if tuple(sd[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or shapes:
        raise KeyMismatch(
            f"checkpoint vs original LatentVisualDiffusion: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape {shapes[:5]}"
        )
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    restore_sequence_first(model.cond_stage_model.model.transformer)
    patch_visual_tower(model.embedder.model.visual)
    model = model.eval().requires_grad_(False)
    model.device = torch.device("cpu")  # a pytorch_lightning attribute; plain attribute with the stub
    return ReferenceModel(model, ref, schedule_check)
