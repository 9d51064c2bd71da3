import dataclasses
from dataclasses import replace

import pytest

from dcrt.errors import UsageError
from dcrt.presets import PRESETS, get_preset


def test_released_presets_follow_the_spec_table():
    # docs/models.md §1.2, 1.9: the values that differ between the released models
    p256, p512, p1024, interp = (PRESETS[n] for n in ("256", "512", "1024", "512-interp"))
    assert (p256.height, p256.width, p256.latent_height, p256.latent_width) == (256, 256, 32, 32)
    assert (p512.latent_height, p512.latent_width) == (40, 64)
    assert (p1024.latent_height, p1024.latent_width) == (72, 128)
    assert p256.diffusion.parameterization == "eps" and not p256.diffusion.zero_snr
    assert p256.unet.learnable_image_attn_scale and p256.fs_embed_checkpoint_name == "framestride_embed"
    assert p1024.diffusion.base_scale == 0.3 and p512.diffusion.base_scale == 0.7
    assert [p.sampling.frame_stride for p in (p256, p512, p1024, interp)] == [3, 24, 10, 5]
    assert p256.sampling.timestep_spacing == "uniform" and p512.sampling.timestep_spacing == "uniform_trailing"
    assert interp.unet == p1024.unet  # default_frame_stride 10: the interp model's training yaml
    assert interp.modes == ("interpolate", "loop") and p512.modes == ("animate",)


def test_presets_are_immutable_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["512"].height = 1


def test_group_norm_channels_divide_by_32_in_every_preset():
    for p in PRESETS.values():
        chans = [p.unet.model_channels * m for m in p.unet.channel_mult] + [p.vae.ch * m for m in p.vae.ch_mult]
        assert all(c % 32 == 0 for c in chans), p.name


def test_unknown_preset_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown preset '2048'"):
        get_preset("2048")


def test_tooncrafter_presets():
    # docs/models.md §6.1: the 512-interp model's architecture and sampling but FS 10 and seed 123; §6.2: the
    # dual-ref decoder
    toon, interp, tiny = (PRESETS[n] for n in ("tooncrafter", "512-interp", "tiny-tooncrafter"))
    assert (toon.height, toon.width, toon.frames) == (320, 512, 16)
    assert toon.unet.default_frame_stride == 24 and toon.unet.context_dim == interp.unet.context_dim
    assert toon.diffusion == interp.diffusion
    s = toon.sampling
    assert (s.steps, s.eta, s.guidance_scale, s.frame_stride, s.timestep_spacing, s.guidance_rescale) == (
        50,
        1.0,
        7.5,
        10,
        "uniform_trailing",
        0.7,
    )
    assert s.seeds.for_mode("interpolate") == 123
    assert toon.modes == tiny.modes == ("interpolate", "loop")
    assert toon.hf_repo == "Doubiiu/ToonCrafter" and toon.checkpoint_dir_name == "tooncrafter_512_interp_v1"
    assert toon.vae.dual_ref is not None and tiny.vae.dual_ref == toon.vae.dual_ref
    assert interp.vae.dual_ref is None and tiny.sampling == toon.sampling


def test_svd_presets():
    # docs/models.md §8.1, 8.6: the released model's size and the model card's defaults; tiny-svd shares the
    # structure (levels, attention levels, blocks) and changes widths, frames and the decode chunk only.
    xt, tiny = PRESETS["svd-xt"], PRESETS["tiny-svd"]
    assert (xt.family, tiny.family) == ("svd", "svd")
    assert (xt.height, xt.width, xt.frames, xt.latent_height, xt.latent_width) == (576, 1024, 25, 72, 128)
    s = xt.sampling
    assert (s.steps, s.min_guidance_scale, s.max_guidance_scale, s.fps, s.motion_bucket_id) == (25, 1.0, 3.0, 7, 127)
    assert s.noise_aug_strength == 0.02 and 1 <= s.decode_chunk <= xt.frames
    assert (xt.edm.sigma_min, xt.edm.sigma_max, xt.edm.sigma_data) == (0.002, 700.0, 1.0)
    assert xt.unet.channel_mult == (1, 2, 4, 4) and xt.unet.model_channels == 320 and xt.unet.context_dim == 1024
    assert xt.image == PRESETS["512"].image  # the same OpenCLIP ViT-H/14 config as DynamiCrafter's
    assert xt.vae.video is not None and xt.vae.ch_mult == PRESETS["512"].vae.ch_mult
    assert xt.hf_repo == "stabilityai/stable-video-diffusion-img2vid-xt" and xt.checkpoint_file == "svd_xt.safetensors"
    assert len(tiny.unet.channel_mult) == len(xt.unet.channel_mult)
    for field in ("num_res_blocks", "attention_resolutions", "added_time_ids", "added_time_dim"):
        assert getattr(tiny.unet, field) == getattr(xt.unet, field), field
    assert tiny.unet.context_dim == tiny.image.projection_dim and tiny.hf_repo is None
    assert xt.modes == tiny.modes == ("animate",)
    # The release's second file: the same model with the per-frame image decoder (docs/models.md §8.4).
    image = PRESETS["svd-xt-image-decoder"]
    assert image.vae.video is None and not image.vae.post_quant_conv and not xt.vae.post_quant_conv
    assert replace(image, name=xt.name, vae=xt.vae, checkpoint_file=xt.checkpoint_file) == xt
    assert image.checkpoint_file == "svd_xt_image_decoder.safetensors" and image.hf_repo == xt.hf_repo


def test_dynamicrafter_only_features_refuse_svd_in_one_line():
    from dcrt.models.dynamicrafter import DynamiCrafter

    with pytest.raises(UsageError, match="^svd-xt does not support export, engines"):
        DynamiCrafter(PRESETS["svd-xt"])
