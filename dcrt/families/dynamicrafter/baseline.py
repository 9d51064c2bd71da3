"""The baseline: the same networks run the way the original implementation runs them.

fp32 weights under fp16 autocast (on CUDA; plain fp32 on a CPU, as the original there), the guidance
branches as separate sequential UNet calls, all 16 frames of the conditioning video VAE-encoded one
by one, frames decoded one at a time. With `Pipeline(..., cache_unconditional=False)` the
unconditional context is also recomputed every generation. Same numbers, none of dcrt's savings:
what `dcrt bench` compares against.
"""

from __future__ import annotations

import contextlib

import torch

from dcrt.families.dynamicrafter.backend import Backend
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.models.autoencoder import References
from dcrt.models.dynamicrafter import DynamiCrafter


class BaselineBackend(Backend):
    decode_chunk = 1  # perframe_ae
    capturable = False  # the original samples eagerly: never a CUDA graph, never the fused kernels

    def __init__(self, model: DynamiCrafter):
        self.inner = TorchBackend(model)
        self.preset = model.preset
        self.device = model.device
        self.precision = "float32 weights, float16 autocast" if self.device.type == "cuda" else "float32"

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.inner.encode_text(tokens).float()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.inner.encode_image(pixels).float()

    def unet(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, frame_stride: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            outs = [
                self.inner.unet(x[i : i + 1], t[i : i + 1], context[i : i + 1], frame_stride[i : i + 1])
                for i in range(len(x))
            ]
        return torch.cat(outs)

    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        """The original encodes the whole conditioning video (first image x 8, last image x 8; or x 16)."""
        video_frames = self.preset.frames
        video = frames.repeat_interleave(video_frames // frames.shape[0], dim=0)
        with self._autocast():
            z = torch.cat([self.inner.encode_latents(f[None]).float() for f in video])
        return z[[0, -1]] if frames.shape[0] == 2 else z[:1]

    def encode_keyframes(self, frames: torch.Tensor) -> tuple[torch.Tensor, References]:
        """ToonCrafter's original encodes its whole conditioning video in one batch and keeps frames 0 and 15."""
        video = frames.repeat_interleave(self.preset.frames // frames.shape[0], dim=0)
        with self._autocast():
            z, references = self.inner.encode_keyframes(video)
        keep = [0, -1] if frames.shape[0] == 2 else [0]
        return z[keep].float(), tuple(r[keep] for r in references)

    def decode_latents(self, z: torch.Tensor, references: References | None = None) -> torch.Tensor:
        with self._autocast():
            return self.inner.decode_latents(z, references).float()

    def schedule_tensors(self) -> dict[str, torch.Tensor]:
        return self.inner.schedule_tensors()
