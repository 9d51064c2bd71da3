"""PyTorch backend of Stable Video Diffusion: the reference modules themselves, under inference mode."""

from __future__ import annotations

import torch

from dcrt.families.svd.backend import SVDBackend
from dcrt.models.svd import StableVideoDiffusion


class TorchSVDBackend(SVDBackend):
    capturable = True  # PyTorch ops enqueue on the current stream

    def __init__(self, model: StableVideoDiffusion):
        self.model = model
        self.preset = model.preset
        self.device = model.device
        self.precision = str(model.dtype).removeprefix("torch.")

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.image_encoder.encode_pixels(pixels.to(self.device))[:, None]

    @torch.inference_mode()
    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.encode_latents(frames)

    @torch.inference_mode()
    def unet(
        self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor, added_time_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.model.unet(x, c_noise, context, added_time_ids)

    @torch.inference_mode()
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.vae.decode(z.to(self.device, self.model.dtype))
