"""The interface every Stable Video Diffusion backend implements (docs/models.md §8).

SVD's networks take other inputs than DynamiCrafter's (`dcrt.families.dynamicrafter.backend.Backend`): no text encoder,
a one-token image embedding, a float EDM noise level and three added time ids. Shapes (T frames, h x w latent):

    encode_image    CLIP-normalised pixels [N, 3, 224, 224]   -> image embedding [N, 1, D]
    encode_latents  frames [N, 3, 8h, 8w] in [-1, 1]          -> [N, 4, h, w] (unscaled posterior mean)
    unet            x [B, 8, T, h, w], c_noise [B] float, context [B, 1, D], added_time_ids [B, 3] -> [B, 4, T, h, w]
    decode_latents  scaled latents of one chunk [n, 4, h, w]  -> [n, 3, 8h, 8w]; the n frames are the decoder's
                    temporal context, so a chunk is decoded as one call, never split or padded

CLIP's resize and normalisation (`dcrt.models.clip.clip_pixels`) run before `encode_image`, outside any graph,
as for DynamiCrafter: one implementation serves every backend. A returned tensor may be a buffer that the next
call of the same method overwrites: copy what you keep.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext

import torch

from dcrt.families.svd.config import SVDPreset


class SVDBackend(ABC):
    preset: SVDPreset
    device: torch.device
    capturable: bool = False  # as Backend.capturable: every call only enqueues work on the current stream
    precision: str = "float32"
    # The decoder chunk sizes this backend can run (None: any); static graphs take the ones they were made for.
    decode_chunks: tuple[int, ...] | None = None
    # The UNet batches one call takes (None: any): 2 runs both guidance branches at once.
    unet_batches: tuple[int, ...] | None = None

    def running(self, *networks: str) -> AbstractContextManager:
        """The named networks kept on the device through the block (the torch backend's offloading profiles copy
        a network in for each call otherwise; dcrt.models.placement). Other backends hold theirs throughout."""
        return nullcontext()

    @abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def unet(
        self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor, added_time_ids: torch.Tensor
    ) -> torch.Tensor: ...

    @abstractmethod
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor: ...
