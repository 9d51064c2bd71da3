"""Loading Stable Video Diffusion weights in both released layouts, strictly, from files the tests write."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

import dcrt
from dcrt.errors import CheckpointError, UsageError
from dcrt.families.dynamicrafter.checkpoint import save_checkpoint
from dcrt.families.svd.checkpoint import (
    detect_svd_preset,
    expected_shapes,
    load_svd_model,
    random_svd_model,
    save_svd_checkpoint,
    unused_tensor_shapes,
)
from dcrt.families.svd.keys import diffusers_to_original
from dcrt.presets import get_preset
from tests.models.svd_diffusers import diffusers_unet, diffusers_vae, save_diffusers_folder, transformers_clip


@pytest.fixture(scope="module")
def tiny_svd():
    return dcrt.random_svd_model("tiny-svd", seed=0)  # the package's API names the SVD loaders too


@pytest.fixture(scope="module")
def original_file(tiny_svd, tmp_path_factory):
    return save_svd_checkpoint(tiny_svd, tmp_path_factory.mktemp("svd") / "svd_xt.safetensors")


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory):
    preset = get_preset("tiny-svd")
    refs = diffusers_unet(preset), diffusers_vae(preset), transformers_clip(preset)
    return save_diffusers_folder(tmp_path_factory.mktemp("svd-diffusers"), *refs)


def one_line_error(kind, match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(kind, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_original_layout_round_trip_detects_the_preset(tiny_svd, original_file):
    loaded = load_svd_model(original_file)
    assert loaded.preset.name == "tiny-svd"
    for name in ("unet", "vae", "image_encoder"):
        ours, theirs = getattr(tiny_svd, name).state_dict(), getattr(loaded, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert loaded.unused.keys() == unused_tensor_shapes(loaded.preset).keys()


def test_the_original_file_keys_are_stabilitys():
    # Names the released svd_xt.safetensors uses (sgm's modules), as diffusers' conversion script and other loaders
    # of the original file read them; every one is a key of dcrt's expected layout.
    shapes = expected_shapes(get_preset("svd-xt"))
    unet = "model.diffusion_model."
    assert shapes[unet + "label_emb.0.0.weight"] == (1280, 768)  # fps, motion bucket, noise aug: 3 x 256
    assert shapes[unet + "input_blocks.1.0.time_stack.in_layers.2.weight"] == (320, 320, 3, 1, 1)
    assert shapes[unet + "input_blocks.1.0.time_mixer.mix_factor"] == (1,)
    assert shapes[unet + "input_blocks.1.1.time_stack.0.ff_in.net.0.proj.weight"] == (2560, 320)
    assert shapes[unet + "input_blocks.1.1.time_pos_embed.0.weight"] == (1280, 320)
    assert shapes[unet + "middle_block.1.transformer_blocks.0.attn2.to_k.weight"] == (1280, 1024)
    assert shapes[unet + "output_blocks.2.1.conv.weight"] == (1280, 1280, 3, 3)  # upsample, level without attention
    assert shapes[unet + "output_blocks.5.2.conv.weight"] == (1280, 1280, 3, 3)
    assert shapes["first_stage_model.decoder.conv_out.time_mix_conv.weight"] == (3, 3, 3, 1, 1)
    assert shapes["first_stage_model.decoder.mid.block_1.time_stack.out_layers.3.weight"] == (512, 512, 3, 1, 1)
    assert shapes["first_stage_model.decoder.up.0.block.0.mix_factor"] == (1,)
    assert shapes["conditioner.embedders.3.encoder.encoder.conv_in.weight"] == (128, 3, 3, 3)
    assert shapes["conditioner.embedders.3.encoder.quant_conv.weight"] == (8, 8, 1, 1)
    assert shapes["conditioner.embedders.0.open_clip.model.visual.proj"] == (1280, 1024)
    assert shapes["conditioner.embedders.0.open_clip.model.visual.transformer.resblocks.31.attn.in_proj_weight"] == (
        3840,
        1280,
    )


def test_full_size_diffusers_keys_translate_to_the_original_layout():
    # The released architecture built on the meta device (no memory): every diffusers key maps to one original key of
    # the same shape, and nothing is left over.
    preset = get_preset("svd-xt")
    with torch.device("meta"):
        models = diffusers_unet(preset, None), diffusers_vae(preset, None), transformers_clip(preset, None)
    parts = [m.state_dict() for m in models]
    translated = {k: tuple(v.shape) for k, v in diffusers_to_original(*parts).items()}
    assert translated == expected_shapes(preset, "diffusers")


def test_diffusers_folder_is_detected_and_loaded(diffusers_folder):
    model = load_svd_model(diffusers_folder, dtype=torch.bfloat16)
    assert model.preset.name == "tiny-svd" and model.dtype == torch.bfloat16 and model.unused == {}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_files_load(tiny_svd, original_file, tmp_path, dtype):
    path = tmp_path / "half.safetensors"
    save_file({k: v.to(dtype) for k, v in load_file(original_file).items()}, path)
    model = load_svd_model(path, "tiny-svd")
    expected = tiny_svd.unet.time_embed[0].weight.to(dtype).float()
    assert model.dtype == torch.float32 and torch.equal(model.unet.time_embed[0].weight, expected)


def _rewrite(original_file, tmp_path, change) -> str:
    state = dict(load_file(original_file))
    change(state)
    path = tmp_path / "changed.safetensors"
    save_file(state, path)
    return path


def test_wrong_or_broken_original_files_are_one_line_errors(original_file, tmp_path):
    key = "model.diffusion_model.input_blocks.1.0.time_mixer.mix_factor"
    cases = {
        "1 missing: " + key: lambda s: s.pop(key),
        "1 unexpected: extra.weight": lambda s: s.update({"extra.weight": torch.zeros(1)}),
        "1 shape mismatch: " + key: lambda s: s.update({key: torch.zeros(2)}),
    }
    for message, change in cases.items():
        path = _rewrite(original_file, tmp_path, change)
        one_line_error(
            CheckpointError, "does not match preset 'tiny-svd'.*" + message, load_svd_model, path, "tiny-svd"
        )
    path = _rewrite(original_file, tmp_path, lambda s: s.update({key: torch.zeros(1, dtype=torch.int32)}))
    one_line_error(CheckpointError, "must be fp32, fp16 or bf16", load_svd_model, path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(original_file.read_bytes()[:1000])
    one_line_error(CheckpointError, "cannot read safetensors file", load_svd_model, truncated)
    pickle = tmp_path / "svd.ckpt"
    pickle.write_bytes(b"not read")
    one_line_error(CheckpointError, "safetensors files or diffusers folders only", load_svd_model, pickle)
    one_line_error(UsageError, "does not exist", load_svd_model, tmp_path / "absent.safetensors")


def test_a_dynamicrafter_checkpoint_is_not_svd(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "dc.safetensors")
    one_line_error(CheckpointError, "matches no SVD preset", load_svd_model, path)
    one_line_error(CheckpointError, "does not match preset 'tiny-svd'", load_svd_model, path, "tiny-svd")
    one_line_error(UsageError, "^tiny does not support loading Stable Video", load_svd_model, path, "tiny")


def test_broken_diffusers_folders_are_one_line_errors(diffusers_folder, tmp_path):
    import shutil

    folder = shutil.copytree(diffusers_folder, tmp_path / "copy")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = dict(load_file(weights))
    save_file(state | {"down_blocks.0.resnets.0.extra": torch.zeros(1)}, weights)
    unexpected = "unexpected: <not a diffusers SVD key>/unet/down_blocks.0.resnets.0.extra"
    one_line_error(CheckpointError, unexpected, load_svd_model, folder, "tiny-svd")
    weights.unlink()
    index = folder / "unet" / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"conv_in.weight": "../../escape.safetensors"}}))
    one_line_error(CheckpointError, "names files outside its folder", load_svd_model, folder)
    index.write_text("{not json")
    one_line_error(CheckpointError, "cannot read shard index", load_svd_model, folder)
    index.unlink()
    save_file(state, weights)
    shutil.rmtree(folder / "image_encoder")
    one_line_error(CheckpointError, "image_encoder has no model.safetensors", load_svd_model, folder)


def test_presets_are_told_apart_by_their_keys():
    for name in ("svd-xt", "svd-xt-image-decoder", "tiny-svd"):
        assert detect_svd_preset(expected_shapes(get_preset(name)), "original").name == name
    assert detect_svd_preset(expected_shapes(get_preset("svd-xt"), "diffusers"), "diffusers").name == "svd-xt"


def test_image_decoder_file_round_trip_decodes_frame_by_frame(tmp_path):
    # svd_xt_image_decoder.safetensors: the first stage's decoder is the per-frame image decoder (no temporal
    # layers, no post_quant_conv), so frames decode the same alone as together.
    tiny = get_preset("tiny-svd")
    preset = replace(tiny, name="tiny-svd-image-decoder", vae=replace(tiny.vae, video=None))
    path = save_svd_checkpoint(random_svd_model(preset), tmp_path / "svd_xt_image_decoder.safetensors")
    assert "first_stage_model.decoder.up.0.block.0.norm1.weight" in load_file(path)
    model = load_svd_model(path, preset)
    one_line_error(CheckpointError, "does not match preset 'tiny-svd'.*missing.*mix_factor", load_svd_model, path, tiny)
    z = torch.randn(tiny.frames, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        together = model.decode_latents(z)
        alone = torch.cat([model.decode_latents(frame[None]) for frame in z])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
