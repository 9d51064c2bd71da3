"""Weights stored as float8 e4m3 codes with one scale per output channel, upcast layer by layer at call time.

    store_weights_fp8(model)                 # in place; every network of a CompositeModel
    store_weights_fp8(model, ("unet",))      # only the UNet

Every linear-like weight (nn.Linear, nn.Conv1d/2d/3d and their dcrt subclasses, `ChannelLinear`, CLIP's packed
`in_proj_weight`) becomes a torch parametrization: the module keeps `codes` (torch.float8_e4m3fn, 1 byte per weight) and
`scale` (model dtype, one per output channel), and `module.weight` is computed on access as `codes.to(dtype) * scale`.
The module's own forward is unchanged (F.linear / F.conv*d with its stride, padding, dilation and groups), so the math
is the original layer's with a dequantised weight. The weight comes back in the scale's dtype, which is the model's and
so the activations' (dcrt casts inputs to the model dtype); code that reads `layer.weight.dtype` still gets the model
dtype, at the price of one dequantisation per read. The dequantised weight is a temporary of the call: it is freed when
the forward returns, so device memory holds 1 byte per weight plus one layer's weight in the activation dtype while that
layer runs.

Why one scale per output channel: e4m3 keeps 3 mantissa bits, the same relative step (2^-4 at worst) for every value
inside its normal range, which spans about 2^15 (2^-6 to 448); below it the subnormals step by 2^-9. A single scale for
the tensor pins that range to the tensor's largest |w|, so a channel far below it loses its precision or vanishes: one
2^12 smaller tops out at 0.11 in code units, and its weights under a seventh of its maximum are subnormal, rounded in
steps of 2% of that maximum; one 2^20 smaller rounds to zero altogether (the test shows it). Trained checkpoints do have
channels of very different magnitude. With a scale per output channel each channel's own largest |w| maps to 448, the
floor moves to 2^-15 of that channel's maximum, and the cost is one number per channel. It is also the layout of row-
wise scaled fp8 GEMMs (cuBLASLt, TensorRT), should a kernel ever read the codes directly.

What the upcast costs: every call of a layer reads its codes (1 byte per weight) and writes the dequantised
weight (2 bytes in fp16/bf16), which the matmul or convolution then reads again, instead of reading a stored
fp16 weight once: about 2.5x the weight traffic of the layer, a memory-bound elementwise kernel per layer and
call. Where activations dominate (large latents) it is noise; where weights dominate (small latents, batch 1) a
UNet call gets slower. The matmuls themselves still run in the activation dtype (no fp8 tensor-core math).

Convert after the model has its device and dtype (`CompositeModel.place`, loading): `nn.Module.to(dtype)` casts
every floating-point tensor, fp8 codes included, back up to the new dtype (the layers still compute the same
numbers, but the memory saving is gone). The state dict holds
`<layer>.parametrizations.<name>.original0` (codes) and `.original1` (scales) in place of `<layer>.<name>`,
so checkpoints load into the unconverted model, which is converted afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.nn.utils import parametrize

from dcrt.models.clip import MultiheadSelfAttention
from dcrt.models.layers import ChannelLinear

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448: the largest finite e4m3fn value (the format has no infinities)

# (module type, name of its weight whose first axis is the output channel and which feeds F.linear / F.conv*d).
# Subclasses count (InputConv, VideoConv are nn.Conv2d). Embeddings, norms, biases, positional tensors and CLIP's
# `proj` (stored [in, out], used as x @ proj, small) keep the model dtype.
LINEAR_LIKE_WEIGHTS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Linear, "weight"),
    (nn.Conv1d, "weight"),
    (nn.Conv2d, "weight"),
    (nn.Conv3d, "weight"),
    (ChannelLinear, "weight"),
    (MultiheadSelfAttention, "in_proj_weight"),
)


def quantize_per_output_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes in e4m3, scale in weight.dtype shaped [out, 1, ...]) with codes * scale ~= weight.

    The scale is each output channel's amax / 448, rounded to the weight's dtype *before* the codes are computed,
    so that the codes absorb the scale's own rounding (an fp16 scale can be far from amax / 448 when it is tiny).
    It is clamped to the dtype's smallest normal number: an all-zero channel gets codes 0 and a harmless scale,
    and an fp16 scale never underflows to a subnormal with few significant bits.
    """
    w = weight.detach().float()
    reduce_dims = tuple(range(1, w.ndim))
    amax = w.abs().amax(dim=reduce_dims, keepdim=True) if reduce_dims else w.abs()
    scale = (amax / FP8_MAX).clamp(min=torch.finfo(weight.dtype).tiny).to(weight.dtype)
    codes = (w / scale.float()).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return codes, scale


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """codes * scale in the scale's dtype (the model's): e4m3 values are exact in fp16, bf16 and fp32, so the
    product is rounded once."""
    return codes.to(scale.dtype) * scale


class Fp8PerChannelWeight(nn.Module):
    """The parametrization: stores (codes, scale) from a weight (`right_inverse`), gives the weight back (`forward`).

    Stateless; torch keeps the two tensors as `parametrizations.<name>.original0` and `.original1`."""

    def forward(self, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return dequantize(codes, scale)

    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return quantize_per_output_channel(weight)


def linear_like_weights(module: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """(layer, weight name) of every linear-like weight under `module` (itself included) not yet stored in fp8."""
    for layer in module.modules():
        for layer_type, name in LINEAR_LIKE_WEIGHTS:
            if isinstance(layer, layer_type) and not parametrize.is_parametrized(layer, name):
                weight = getattr(layer, name, None)
                if isinstance(weight, torch.Tensor) and weight.is_floating_point() and weight.dtype != FP8:
                    yield layer, name


def store_module_weights_fp8(module: nn.Module) -> int:
    """In place: every linear-like weight under `module` (itself included) kept as fp8 codes and per-channel scales.
    Returns how many weights it converted; converting twice converts nothing the second time."""
    converted = 0
    for layer, name in list(linear_like_weights(module)):
        parametrize.register_parametrization(layer, name, Fp8PerChannelWeight())
        converted += 1
    return converted


def storage_bytes(module: nn.Module) -> int:
    """Bytes of the parameters and buffers under `module`, each storage counted once (fake tensors too: their
    storages know their size)."""
    sizes = {}
    for t in [*module.parameters(), *module.buffers()]:
        storage = t.untyped_storage()
        sizes[StorageWeakRef(storage).cdata] = storage.nbytes()
    return sum(sizes.values())


def store_weights_fp8(model: nn.Module, networks: tuple[str, ...] | None = None) -> dict[str, int]:
    """In place: the linear-like weights of the named networks of a CompositeModel (default: all of
    `model.networks`) stored as fp8 e4m3 codes with a scale per output channel (see the module docstring).

    Returns the bytes of each network's parameters and buffers before and after, keyed `<network>.before` and
    `<network>.after` (for reports: `benchmarks/fp8_error.py`, the memory estimate).
    """
    report: dict[str, int] = {}
    for name in model.networks if networks is None else networks:
        network = getattr(model, name)
        report[f"{name}.before"] = storage_bytes(network)
        store_module_weights_fp8(network)
        report[f"{name}.after"] = storage_bytes(network)
    return report
