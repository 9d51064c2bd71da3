"""fp8 weight storage (dcrt.models.fp8): codes and scales, the e4m3 rounding bound, converted layers against the
originals, a whole tiny model, the fake-tensor byte count, and benchmarks/fp8_error.py end to end."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import dcrt
from dcrt.models.fp8 import (
    FP8,
    FP8_MAX,
    quantize_per_output_channel,
    storage_bytes,
    store_module_weights_fp8,
    store_weights_fp8,
)

REPO = Path(__file__).resolve().parents[2]
# Appended, not prepended: benchmarks/parity.py must not shadow the top-level parity package.
sys.path.append(str(REPO / "benchmarks"))

import fp8_error  # noqa: E402

# e4m3 keeps 3 explicit mantissa bits: round-to-nearest moves a normal value by at most half a unit in the last place,
# 2^-3 / 2 = 2^-4 of the value's power of two, so by at most 2^-4 of the value itself (OCP 8-bit floating point
# specification, E4M3: exponent bias 7, normals from 2^-6 to 448).
E4M3_RELATIVE_BOUND = 2.0**-4
E4M3_MIN_NORMAL = 2.0**-6

# A layer's output error with per-element weight errors of relative size at most 2^-4, uniformly spread and
# independent, is about 2^-4 / sqrt(3) = 3.6% RMS of the weights' contribution; measured 2.4-2.5% for random layers.
LAYER_OUTPUT_TOLERANCE = 0.04


def test_codes_are_fp8_and_scales_per_output_channel():
    layer = nn.Conv2d(6, 10, 3)
    store_module_weights_fp8(layer)
    codes = layer.parametrizations.weight.original0
    scale = layer.parametrizations.weight.original1
    assert codes.dtype == FP8 and codes.shape == (10, 6, 3, 3)
    assert scale.dtype == torch.float32 and scale.shape == (10, 1, 1, 1)
    # each channel's largest code is the e4m3 maximum: the scale maps that channel's amax to 448
    assert torch.equal(codes.float().abs().amax(dim=(1, 2, 3)), torch.full((10,), FP8_MAX))
    assert layer.weight.dtype == torch.float32 and layer.weight.shape == (10, 6, 3, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dequantised_weight_is_within_the_e4m3_rounding_bound(dtype):
    weight = (torch.randn(64, 128) * torch.logspace(-3, 0, 64)[:, None]).to(dtype)
    codes, scale = quantize_per_output_channel(weight)
    dequantised = codes.to(dtype) * scale
    # normal as a code and as a number of the weight's dtype (fp16 subnormals below 6.1e-5 round absolutely)
    normal = (codes.float().abs() >= E4M3_MIN_NORMAL) & (weight.float().abs() >= torch.finfo(dtype).tiny)
    relative = ((dequantised.float() - weight.float()).abs() / weight.float().abs())[normal]
    # plus one rounding of the product in the weight's dtype (2^-8 for bf16's 8 significant bits)
    product_rounding = torch.finfo(dtype).eps / 2
    assert relative.max() <= E4M3_RELATIVE_BOUND + product_rounding
    assert normal.float().mean() > 0.97  # nearly every element is normal: the bound speaks for the whole tensor


def test_zero_channel_is_safe():
    weight = torch.randn(4, 8)
    weight[2] = 0.0
    codes, scale = quantize_per_output_channel(weight)
    assert torch.isfinite(scale).all() and (scale > 0).all()
    assert torch.equal(codes[2].float(), torch.zeros(8))
    assert torch.isfinite(codes.float()).all()


def test_per_channel_scale_keeps_a_small_channel_that_a_tensor_scale_loses():
    """Why per output channel: one channel 2^-20 of the others' magnitude underflows to zero under a single scale."""
    weight = torch.randn(4, 256)
    weight[3] *= 2.0**-20
    codes, scale = quantize_per_output_channel(weight)
    per_channel_error = ((codes.float() * scale - weight)[3].norm() / weight[3].norm()).item()
    tensor_scale = weight.abs().amax() / FP8_MAX
    per_tensor = (weight / tensor_scale).to(FP8).float() * tensor_scale
    per_tensor_error = ((per_tensor - weight)[3].norm() / weight[3].norm()).item()
    assert per_channel_error < LAYER_OUTPUT_TOLERANCE
    assert per_tensor_error == pytest.approx(1.0)  # all zero


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


LAYERS = {
    "linear": (lambda: nn.Linear(96, 48), (5, 96)),
    "conv2d": (lambda: nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), (2, 8, 12, 12)),
    "conv3d": (lambda: nn.Conv3d(8, 8, (3, 1, 1), padding=(1, 0, 0), dilation=(2, 1, 1)), (1, 8, 6, 5, 5)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_converted_layer_is_close_to_the_original(kind, dtype):
    make, input_shape = LAYERS[kind]
    original = make().to(dtype)
    converted = copy.deepcopy(original)
    assert store_module_weights_fp8(converted) == 1
    x = torch.randn(input_shape).to(dtype)
    with torch.no_grad():
        error = _relative_error(converted(x), original(x))
    assert 0 < error < LAYER_OUTPUT_TOLERANCE
    assert converted.weight.dtype == dtype  # the dequantised weight is in the activation (model) dtype


def test_converting_twice_converts_nothing_the_second_time():
    layer = nn.Linear(8, 8)
    assert store_module_weights_fp8(layer) == 1
    assert store_module_weights_fp8(layer) == 0


def test_tiny_model_converts_and_runs_a_unet_call(tiny_model):
    model = copy.deepcopy(tiny_model)
    report = store_weights_fp8(model)
    assert set(report) == {f"{n}.{when}" for n in model.networks for when in ("before", "after")}
    assert all(report[f"{n}.after"] < report[f"{n}.before"] for n in model.networks)
    fp8_weights = [p for p in model.unet.parameters() if p.dtype == FP8]
    assert sum(p.numel() for p in fp8_weights) > 0.9 * sum(p.numel() for p in tiny_model.unet.parameters())
    assert model.dtype == torch.float32  # CompositeModel reads a (now parametrized) weight's dtype
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 4, 8, 8, generator=g)
    context = torch.randn(1, 77 + 16 * 4, tiny_model.preset.unet.context_dim, generator=g)
    t, frame_stride = torch.tensor([500]), torch.tensor([3])
    with torch.inference_mode():
        ref = tiny_model.unet(x, t, context, frame_stride)
        out = model.unet(x, t, context, frame_stride)
    assert torch.isfinite(out).all()
    # many layers deep, each about 2.5% off: the errors add up but do not compound into noise
    assert _relative_error(out, ref) < 0.2


def test_fake_tensors_count_one_byte_per_stored_weight():
    with FakeTensorMode():
        module = nn.Sequential(nn.Linear(128, 64), nn.LayerNorm(64), nn.Conv2d(64, 32, 3))
        before = storage_bytes(module)
        store_module_weights_fp8(module)
        after = storage_bytes(module)
        codes = [p for p in module.parameters() if p.dtype == FP8]
    weights, channels = 128 * 64 + 64 * 32 * 9, 64 + 32
    biases_and_norm = 64 + 2 * 64 + 32
    assert before == 4 * (weights + biases_and_norm)
    assert after == weights + 4 * channels + 4 * biases_and_norm  # 1 byte per weight, an fp32 scale per channel
    assert len(codes) == 2


def test_fp8_error_benchmark_runs_on_tiny(tmp_path):
    rows = fp8_error.main(["--preset", "tiny", "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "fp8-error-tiny.json").read_text())
    assert payload["command"].startswith("python benchmarks/fp8_error.py")
    components = [r["component"] for r in payload["components"]]
    assert components == [r.component for r in rows]
    assert {"unet", "vae.decode", "vae.encode", "text_encoder", "image_encoder", "resampler"} <= set(components)
    for row in payload["components"]:
        assert 0 < row["fp16_rel_rms"] < row["fp8_rel_rms"] < 0.5


def test_store_weights_fp8_on_named_networks_only():
    model = dcrt.random_model("tiny", seed=0)
    report = store_weights_fp8(model, ("vae",))
    assert set(report) == {"vae.before", "vae.after"}
    assert not any(p.dtype == FP8 for p in model.unet.parameters())
    assert any(p.dtype == FP8 for p in model.vae.parameters())


def test_dequantised_weight_lives_only_during_the_call():
    """The point of fp8 storage: between calls only the codes stay; the estimator's live-tensor count says so."""
    import memory

    layer = nn.Linear(256, 128)
    store_module_weights_fp8(layer)
    x = torch.randn(2, 256)
    with torch.no_grad(), memory.LiveTensors() as live:
        with live.stage() as call:
            y = layer(x)
    dequantised_bytes = 128 * 256 * 4
    assert call["peak"] - call["held"] >= dequantised_bytes
    assert call["after"] - call["held"] == y.untyped_storage().nbytes()
