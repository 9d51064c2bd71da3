"""An IO-table component (dcrt.families.dynamicrafter.io_spec) as the one module its graph is traced from: float inputs
cast to the compute dtype, float outputs back to float32, so every graph takes and returns float32 whatever its
precision. What each component computes is its family's: dcrt.artifacts.export.graph_modules (DynamiCrafter, and the
dispatch), dcrt.families.svd.export (Stable Video Diffusion)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class GraphModule(nn.Module):
    """A component as one graph: float inputs cast to the compute dtype, float outputs back to fp32."""

    def __init__(self, forward: Callable, modules: dict[str, nn.Module], dtype: torch.dtype):
        super().__init__()
        self.parts = nn.ModuleDict(modules)
        self.run = forward
        self.dtype = dtype

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        cast = [x.to(self.dtype) if x.is_floating_point() else x for x in inputs]
        out = self.run(*cast)
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()
