"""The base of a whole model (DynamiCrafter, Stable Video Diffusion): named networks kept on one device and dtype."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

Model = TypeVar("Model", bound="CompositeModel")


class CompositeModel(nn.Module):
    """Networks named by `networks`, one of them `unet`, whose first time-embedding weight states the device and
    dtype of them all."""

    networks: tuple[str, ...]

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.time_embed[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.time_embed[0].weight.device

    def device_of(self, network: str) -> torch.device:
        """Where the named network is now (an offloaded one moves: dcrt.models.placement)."""
        return next(getattr(self, network).parameters()).device

    def place(self: Model, device: str | torch.device, dtype: torch.dtype) -> Model:
        for name in self.networks:
            getattr(self, name).to(device=device, dtype=dtype)
        return self
