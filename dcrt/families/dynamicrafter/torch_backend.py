"""PyTorch backend: the reference modules themselves, in the model's dtype, under inference mode, placed and
chunked as a memory profile says (dcrt.memory)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from dcrt.families.common import in_batches
from dcrt.families.dynamicrafter.backend import Backend
from dcrt.memory import FAST, MemoryProfile
from dcrt.models.attention import set_token_chunk
from dcrt.models.autoencoder import References
from dcrt.models.dynamicrafter import DynamiCrafter
from dcrt.models.placement import Placement
from dcrt.models.vae_dualref import set_frame_pieces


class TorchBackend(Backend):
    def __init__(self, model: DynamiCrafter, memory: MemoryProfile = FAST, device: torch.device | str | None = None):
        """`device`: where the networks run (default: where the model is). An offloading profile keeps the
        model's networks in host memory, so such a model is loaded on the CPU and given its `device` here."""
        self.model = model
        self.preset = model.preset
        self.device = torch.device(device) if device is not None else model.device
        self.memory = memory
        self.placement = Placement(model, self.device, memory.offloaded_networks(model.networks))
        set_token_chunk(model.unet, memory.token_chunk)
        set_frame_pieces(model.vae, memory.frame_pieces)
        self.decode_chunk = memory.decode_chunk
        self.max_unet_batch = memory.unet_batch
        # PyTorch ops enqueue on the current stream; a UNet that leaves the device after each video would leave
        # a captured graph reading freed memory.
        self.capturable = "unet" not in self.placement.offloaded
        self.precision = str(model.dtype).removeprefix("torch.")

    def running(self, *networks: str) -> AbstractContextManager:
        return self.placement.running(*networks)

    @torch.inference_mode()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        with self.running("text_encoder"):
            return self.model.text_encoder(tokens.to(self.device))

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        with self.running("image_encoder", "resampler"):
            return self.model.resampler(self.model.image_encoder.encode_pixels(pixels.to(self.device)))

    @torch.inference_mode()
    def unet(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, frame_stride: torch.Tensor) -> torch.Tensor:
        with self.running("unet"):
            return in_batches(self.model.unet, self.max_unet_batch, x, t, context, frame_stride)

    @torch.inference_mode()
    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        with self.running("vae"):
            return self.model.encode_latents(frames)

    @torch.inference_mode()
    def encode_keyframes(self, frames: torch.Tensor) -> tuple[torch.Tensor, References]:
        with self.running("vae"):
            return self.model.encode_keyframes(frames)

    @torch.inference_mode()
    def decode_latents(self, z: torch.Tensor, references: References | None = None) -> torch.Tensor:
        with self.running("vae"):
            return self.model.decode_latents(z, references)

    def schedule_tensors(self) -> dict[str, torch.Tensor]:
        return {name: t.to(self.device) for name, t in self.model.schedule.named_buffers()}
