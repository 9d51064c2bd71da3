"""The whole DynamiCrafter model: five networks, the schedule tensors, and the encode/decode seam.

This is the API every backend and test uses:

    model.encode_text(["a prompt", ""])   # -> [N, 77, C]
    model.encode_image(image)             # [N, 3, H, W] in [-1, 1] -> [N, 256, C]
    model.unet(x, t, context, frame_stride)         # [B, 8, T, h, w] -> [B, 4, T, h, w]
    model.encode_latents(frames)          # [N, 3, H, W] in [-1, 1] -> [N, 4, H/8, W/8]
    model.decode_latents(z)               # [N, 4, h, w] -> [N, 3, H, W]

and, for a preset with ToonCrafter's dual-reference decoder (docs/models.md §6.2):

    model.encode_keyframes(frames)        # [2, 3, H, W] -> (latents [2, 4, h, w], references)
    model.decode_latents(z, references)   # one clip [T, 4, h, w] -> [T, 3, H, W]
"""

from __future__ import annotations

import torch
from torch import nn

from dcrt.families.dynamicrafter.config import Preset
from dcrt.families.dynamicrafter.schedule import schedule_tensors
from dcrt.models.autoencoder import AutoencoderKL, References
from dcrt.models.clip import ImageEncoder, TextEncoder
from dcrt.models.composite import CompositeModel
from dcrt.models.resampler import Resampler
from dcrt.models.tokenizer import Tokenizer
from dcrt.models.unet3d import UNet3D

NETWORKS = ("unet", "vae", "text_encoder", "image_encoder", "resampler")


class ScheduleBuffers(nn.Module):
    """The checkpoint's 12 schedule tensors (+ `scale_arr`), always kept in fp32."""

    def __init__(self, preset: Preset):
        super().__init__()
        for name, value in schedule_tensors(preset.diffusion).items():
            self.register_buffer(name, value)


class DynamiCrafter(CompositeModel):
    networks = NETWORKS

    def __init__(self, preset: Preset):
        super().__init__()
        preset.require_family("dynamicrafter", "export, engines, benchmarks or the DynamiCrafter runtime")
        self.preset = preset
        self.unet = UNet3D(preset.unet)
        self.vae = AutoencoderKL(preset.vae)
        self.text_encoder = TextEncoder(preset.text)
        self.image_encoder = ImageEncoder(preset.image)
        self.resampler = Resampler(preset.resampler)
        self.schedule = ScheduleBuffers(preset)
        # Checkpoint tensors the inference path never reads (docs/models.md §2.3), keyed by their original names.
        # Kept on the CPU (memory-mapped when loaded) so that a saved checkpoint is complete.
        self.unused: dict[str, torch.Tensor] = {}
        self.tokenizer = Tokenizer(preset.text.context_length)

    def place(self, device: str | torch.device, dtype: torch.dtype) -> DynamiCrafter:
        """Move the networks to (device, dtype); the schedule follows the device but stays fp32."""
        super().place(device, dtype)
        self.schedule.to(device=device)
        return self

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts).to(self.device_of("text_encoder"))
        return self.text_encoder(tokens)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.resampler(self.image_encoder(image.to(self.device_of("image_encoder"))))

    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(frames.to(self.device_of("vae"), self.dtype))

    def encode_keyframes(self, frames: torch.Tensor) -> tuple[torch.Tensor, References]:
        return self.vae.encode_keyframes(frames.to(self.device_of("vae"), self.dtype))

    def decode_latents(self, z: torch.Tensor, references: References | None = None) -> torch.Tensor:
        return self.vae.decode(z.to(self.device_of("vae"), self.dtype), references)
