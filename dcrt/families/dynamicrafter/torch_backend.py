"""PyTorch backend: the reference modules themselves, in the model's dtype, under inference mode."""

from __future__ import annotations

import torch

from dcrt.families.dynamicrafter.backend import Backend
from dcrt.models.autoencoder import References
from dcrt.models.dynamicrafter import DynamiCrafter


class TorchBackend(Backend):
    capturable = True  # PyTorch ops enqueue on the current stream

    def __init__(self, model: DynamiCrafter, decode_chunk: int = 4):
        self.model = model
        self.preset = model.preset
        self.device = model.device
        self.decode_chunk = decode_chunk
        self.precision = str(model.dtype).removeprefix("torch.")

    @torch.inference_mode()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.text_encoder(tokens.to(self.device))

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.resampler(self.model.image_encoder.encode_pixels(pixels.to(self.device)))

    @torch.inference_mode()
    def unet(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, frame_stride: torch.Tensor) -> torch.Tensor:
        return self.model.unet(x, t, context, frame_stride)

    @torch.inference_mode()
    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.encode_latents(frames)

    @torch.inference_mode()
    def encode_keyframes(self, frames: torch.Tensor) -> tuple[torch.Tensor, References]:
        return self.model.encode_keyframes(frames)

    @torch.inference_mode()
    def decode_latents(self, z: torch.Tensor, references: References | None = None) -> torch.Tensor:
        return self.model.decode_latents(z, references)

    def schedule_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.model.schedule.named_buffers())
