"""Small building blocks shared by the reference modules."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _spell_out_fp32(x: torch.Tensor, weight: torch.Tensor | None) -> bool:
    """Whether a norm computes on an explicit fp32 copy of `x` (docs/numerics.md §7.1).

    PyTorch's own kernels (eager and inductor) accumulate the statistics of fp16 and bf16 inputs in fp32
    already, so a norm whose weights share the activations' dtype runs on them directly: the same numbers
    without fp32 copies of its input and output (at 320x512 they raise the dual-ref decoder's peak from 3.4
    to 6.5 GiB: benchmarks/memory.py). An ONNX export spells the fp32 island out, since ORT and TensorRT would
    otherwise normalise in fp16. fp32 weights (an fp32 model, or autocast as the original runs) keep the
    original's upcast."""
    return torch.onnx.is_in_onnx_export() or (weight is not None and weight.dtype != x.dtype)


class GroupNorm(nn.GroupNorm):
    """GroupNorm with statistics in fp32 whatever the activation dtype (fp16 variance overflows).

    Works on 4-D (per frame) and 5-D (statistics pooled across frames) inputs alike.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _spell_out_fp32(x, self.weight):
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm with statistics in fp32, result in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _spell_out_fp32(x, self.weight):
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class ChannelLinear(nn.Module):
    """A kernel-1 Conv1d over channels, i.e. a Linear on the last axis.

    The checkpoint stores it with the Conv1d weight shape [out, in, 1] (the UNet's `init_attn`).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features, 1))
        self.bias = nn.Parameter(torch.empty(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[..., 0], self.bias)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoid of integer timesteps (or frame_stride values), cosine half first, in fp32: [N] -> [N, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


# CUDA's fused attention kernels (flash, memory-efficient) put the batch on a grid dimension of at most 65535
# blocks and fail beyond it with "invalid configuration argument" (pytorch/pytorch#146704). The temporal
# attention's batch is every pixel of every clip in the UNet call: a long video at 1024 passes it (8 windows and
# guidance branches x 9216 pixels), so a larger batch runs in slices of this size.
MAX_ATTENTION_BATCH = 65535


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor | None = None):
    """Multi-head softmax attention on [B, N, heads*d] tensors, scale 1/sqrt(d); `mask` broadcasts over B."""
    b, n, inner = q.shape
    d = inner // heads
    q, k, v = (x.reshape(b, x.shape[1], heads, d).transpose(1, 2) for x in (q, k, v))
    if b <= MAX_ATTENTION_BATCH:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:  # each sample attends only to itself: slices give the same numbers
        slices = range(0, b, MAX_ATTENTION_BATCH)
        sliced = [tuple(x[i : i + MAX_ATTENTION_BATCH] for x in (q, k, v)) for i in slices]
        out = torch.cat([F.scaled_dot_product_attention(*qkv, attn_mask=mask) for qkv in sliced])
    return out.transpose(1, 2).reshape(b, n, inner)
