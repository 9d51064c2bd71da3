"""The norms: fp32 statistics whatever the activation dtype, with or without an fp32 copy of the input."""

from __future__ import annotations

import io

import onnx
import pytest
import torch
from onnx import TensorProto

from dcrt.models.layers import GroupNorm, LayerNorm


def _spelled_out(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The original's way: the norm on an fp32 copy, cast back."""
    fp32 = {"weight": norm.weight.float(), "bias": norm.bias.float()}
    if isinstance(norm, GroupNorm):
        return torch.nn.functional.group_norm(x.float(), norm.num_groups, eps=norm.eps, **fp32).to(x.dtype)
    return torch.nn.functional.layer_norm(x.float(), norm.normalized_shape, eps=norm.eps, **fp32).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize(
    "norm, shape",
    [
        (GroupNorm(32, 64, eps=1e-6), (4, 64, 16, 16)),  # per frame
        (GroupNorm(32, 64), (1, 64, 6, 8, 8)),  # statistics across frames
        (LayerNorm(64), (2, 77, 64)),
    ],
    ids=["group-4d", "group-5d", "layer"],
)
def test_half_precision_norms_match_the_fp32_copy(norm, shape, dtype):
    torch.manual_seed(0)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    norm = norm.to(dtype)
    # Scaled so that the variance (about 9e6) would overflow fp16 if it were accumulated in fp16.
    x = (torch.randn(shape) * 3000).to(dtype)
    out = norm(x)
    want = _spelled_out(norm, x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    # The same fp32 statistics; the result may round differently in the last bit (fp16's is 1e-3 relative).
    assert ((out.float() - want.float()).norm() / want.float().norm()).item() < 1e-4


def test_fp32_weights_keep_the_fp32_copy_under_autocast():
    """The baseline runs fp32 weights under autocast, as the original: the norm's result is the input's dtype."""
    norm = GroupNorm(32, 64)
    x = torch.randn(2, 64, 8, 8).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, _spelled_out(norm, x))


def test_an_onnx_export_spells_out_the_fp32_island():
    """ORT and TensorRT normalise in the graph's dtype: the export casts to fp32 around the norm."""
    buffer = io.BytesIO()
    torch.onnx.export(
        GroupNorm(32, 64).half(), (torch.randn(1, 64, 8, 8).half(),), buffer, opset_version=17, dynamo=False
    )
    graph = onnx.load_from_string(buffer.getvalue()).graph
    casts = [a.i for n in graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    assert TensorProto.FLOAT in casts and TensorProto.FLOAT16 in casts
