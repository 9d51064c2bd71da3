"""The one interface every backend (torch, onnxruntime, tensorrt) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext

import torch

from dcrt.families.dynamicrafter.config import Preset


class Backend(ABC):
    """Runs the networks of one model on one device. Inputs and outputs are torch tensors on `device`.

    Shapes (C = context width, T = 16 frames, h x w = latent size):
        encode_text     tokens [N, 77] int64                      -> [N, 77, C]
        encode_image    CLIP-normalised pixels [N, 3, 224, 224]   -> [N, 256, C] (CLIP tokens + resampler)
        unet            x [B, 8, T, h, w], t [B], context [B, 77 + 16 T, C], frame_stride [B] -> [B, 4, T, h, w]
        encode_latents  frames [N, 3, 8h, 8w] in [-1, 1]          -> [N, 4, h, w] (scaled posterior mean)
        decode_latents  z [N, 4, h, w]                            -> [N, 3, 8h, 8w]

    and for a preset with ToonCrafter's dual-reference decoder (`preset.vae.dual_ref`, docs/models.md §6.2):
        encode_keyframes  key frames [N <= 2, 3, 8h, 8w]          -> (latents [N, 4, h, w], references)
        decode_latents    one whole clip z [T, 4, h, w], references -> [T, 3, 8h, 8w]
    where references are the decoder's reference features of the first and the last key frame, a tuple of
    [2, C_k, H_k, W_k] (`dcrt.models.autoencoder.References`).

    A returned tensor may be a buffer that the next call of the same method overwrites (backends
    that preallocate their outputs do this): copy what you keep.
    """

    preset: Preset
    device: torch.device
    # True when every call only enqueues work on the current CUDA stream (no host synchronisation, no
    # device-to-host copy), so a CUDA graph can capture it. Backends opt in; tests/runners/test_capture.py checks.
    capturable: bool = False
    precision: str = "float32"  # what the networks compute in, in words (reports and the run's one-line summary)
    # Frames decoded per VAE call: bounds peak memory of the full-resolution decoder activations.
    decode_chunk: int = 4
    # The largest batch one `unet` call takes (None: any). Long videos batch their windows up to it.
    max_unet_batch: int | None = None
    # The frames one `unet` call takes (None: any): graphs and engines are built for the model's window.
    unet_frames: int | None = None

    def running(self, *networks: str) -> AbstractContextManager:
        """The named networks kept on the device through the block (the torch backend's offloading profiles copy
        a network in for each call otherwise; dcrt.models.placement). Other backends hold theirs throughout."""
        return nullcontext()

    @abstractmethod
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def unet(
        self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, frame_stride: torch.Tensor
    ) -> torch.Tensor: ...

    @abstractmethod
    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def encode_keyframes(self, frames: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]: ...

    @abstractmethod
    def decode_latents(self, z: torch.Tensor, references: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor: ...

    @abstractmethod
    def schedule_tensors(self) -> dict[str, torch.Tensor]:
        """The checkpoint's noise-schedule tensors (alphas_cumprod, ..., scale_arr), float32."""
