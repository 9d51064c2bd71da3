"""PyTorch backend of Stable Video Diffusion: the reference modules themselves, under inference mode, placed and
chunked as a memory profile says (dcrt.memory; SVD's decoder chunk is a sampling option, since it changes the
picture)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from dcrt.families.common import in_batches
from dcrt.families.svd.backend import SVDBackend
from dcrt.memory import FAST, MemoryProfile
from dcrt.models.attention import set_token_chunk
from dcrt.models.placement import Placement
from dcrt.models.svd import StableVideoDiffusion
from dcrt.models.vae_dualref import set_frame_pieces


class TorchSVDBackend(SVDBackend):
    def __init__(
        self, model: StableVideoDiffusion, memory: MemoryProfile = FAST, device: torch.device | str | None = None
    ):
        """As dcrt.families.dynamicrafter.torch_backend.TorchBackend's."""
        self.model = model
        self.preset = model.preset
        self.device = torch.device(device) if device is not None else model.device
        self.memory = memory
        self.placement = Placement(model, self.device, memory.offloaded_networks(model.networks))
        set_token_chunk(model.unet, memory.token_chunk)
        set_frame_pieces(model.vae, memory.frame_pieces)
        self.capturable = "unet" not in self.placement.offloaded  # as TorchBackend's
        self.precision = str(model.dtype).removeprefix("torch.")

    def running(self, *networks: str) -> AbstractContextManager:
        return self.placement.running(*networks)

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        with self.running("image_encoder"):
            return self.model.image_encoder.encode_pixels(pixels.to(self.device))[:, None]

    @torch.inference_mode()
    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        with self.running("vae"):
            return self.model.encode_latents(frames)

    @torch.inference_mode()
    def unet(
        self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor, added_time_ids: torch.Tensor
    ) -> torch.Tensor:
        with self.running("unet"):
            return in_batches(self.model.unet, self.memory.unet_batch, x, c_noise, context, added_time_ids)

    @torch.inference_mode()
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        with self.running("vae"):
            return self.model.vae.decode(z.to(self.device, self.model.dtype))
