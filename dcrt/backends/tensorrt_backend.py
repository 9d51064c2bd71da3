"""TensorRT backend: the `Backend` interface over an `EngineSet` (dcrt.backends.tensorrt_runtime) whose static IO
buffers are torch tensors, so the pipeline copies into inputs and reads outputs without any conversion.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcrt.backends.base import Backend
from dcrt.backends.tensorrt_runtime import EngineSet
from dcrt.errors import BackendUnavailable, UsageError
from dcrt.io_spec import TensorSpec


def _torch_cuda_device(device):
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        raise UsageError("the TensorRT backend runs on CUDA only (use --device cuda)")
    if not torch.cuda.is_available():
        raise BackendUnavailable("the TensorRT backend needs a CUDA GPU, and none is visible (see `dcrt info`)")
    return torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())


class TensorRTBackend(Backend):
    """`Backend` over an `EngineSet` whose static IO buffers are torch tensors. All work is queued on torch's
    current stream of the device (the caller's), so it orders with the pipeline's own kernels; nothing syncs."""

    capturable = True  # copies and execute_async_v3 on the current stream (warmed up before capture)
    precision = "float16 engines"

    def __init__(self, bundle_dir: str | Path, device="cuda", verify: bool = True):
        self.device = _torch_cuda_device(device)
        self.io: dict[tuple[str, str], torch.Tensor] = {}  # (component, tensor) -> its bound static buffer
        self.engines = EngineSet(bundle_dir, self.device.index, buffer=self._allocate, verify=verify)
        self.preset = self.engines.preset
        self.decode_chunk = self.engines.specs["vae_decoder"].batch
        self.encode_frames = self.engines.specs["vae_encoder"].batch
        from safetensors.torch import load_file

        schedule = self.engines.manifest.schedule
        self._schedule = {k: v for f in schedule for k, v in load_file(self.engines.directory / f).items()}

    def _allocate(self, component: str, t: TensorSpec) -> int:
        tensor = torch.empty(t.shape, dtype=t.torch_dtype, device=self.device)
        self.io[(component, t.name)] = tensor
        return tensor.data_ptr()

    def _run(self, component: str, *inputs: torch.Tensor) -> torch.Tensor:
        """Copy inputs into the bound buffers and enqueue, all on the caller's current stream; returns the
        output buffer (overwritten by the next call of the same component)."""
        runner = self.engines[component]
        for t, x in zip(runner.spec.inputs, inputs):
            if tuple(x.shape) != t.shape:
                raise UsageError(f"{component}: input {t.name} must be {list(t.shape)}, got {list(x.shape)}")
            self.io[(component, t.name)].copy_(x, non_blocking=True)  # casts dtype / moves device if needed
        runner.enqueue(torch.cuda.current_stream(self.device).cuda_stream)
        return self.io[(component, runner.spec.outputs[0].name)]

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._run("text_encoder", row[None]).clone() for row in tokens])

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._run("image_encoder", p[None]).clone() for p in pixels])

    def unet(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if batch == 3:
            return self._run("unet_b3", x, t, context, fs)
        if batch == 1:  # no guidance: run the batch-2 engine on a duplicate and keep one
            return self._run("unet", *(v.expand(2, *v.shape[1:]) for v in (x, t, context, fs)))[:1]
        return self._run("unet", x, t, context, fs)

    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        n = frames.shape[0]
        padded = torch.cat([frames, frames[-1:].expand(self.encode_frames - n, -1, -1, -1)])
        return self._run("vae_encoder", padded)[:n].clone()

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        padded = torch.cat([z, z[-1:].expand(self.decode_chunk - n, -1, -1, -1)])
        return self._run("vae_decoder", padded)[:n]

    def schedule_buffers(self) -> dict[str, torch.Tensor]:
        return self._schedule
