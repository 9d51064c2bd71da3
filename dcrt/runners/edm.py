"""The lean Euler runner of Stable Video Diffusion: one EDM step (`dcrt.families.svd.sampler.edm_step`) captured once
as a CUDA graph and replayed `steps` times, as dcrt.runners.ddim does for DDIM.

Everything a step reads lives on the device: the schedule's per-step tensors are indexed by a device-side step
counter (`EDMSchedule.at_device`), the conditioning sits in static buffers, both guidance branches go through the
UNet as one batch, and the per-frame guidance scales are a constant tensor. The sampler draws no noise along
the way, so a step is the same launches every time: captured once, replayed with no host synchronisation until
the end. The step itself is `edm_step`, the eager loop's own function: the runner wraps it, never copies it.

DDIM's fused kernels (dcrt/_kernels: `ddim.cu`, `guidance.cu`) do not apply: the update is Euler's, and the
guidance scale varies per frame. The step's few element-wise ops run as torch kernels inside the graph.

On a CPU (or with `capture=False`) the same body runs eagerly: tests/runners/test_edm_runner.py checks it equals the
eager loop.
"""

from __future__ import annotations

import torch

from dcrt.families.common import StepCallback
from dcrt.families.svd.sampler import EDMDenoiser, EDMInputs, EDMSchedule, FrameGuidance, edm_step
from dcrt.runners.ddim import CapturedLoop


class EDMGraphRunner(CapturedLoop):
    """Static buffers + one captured step for a fixed (schedule, guidance, shapes); `run` may be called for any
    number of videos: each call copies its inputs into the buffers and replays."""

    def __init__(
        self,
        denoise: EDMDenoiser,
        schedule: EDMSchedule,
        guidance: FrameGuidance,
        inputs: EDMInputs,
        noise: torch.Tensor,
        capture: bool | None = None,
    ):
        """`noise`: a tensor of x_T's shape and device (its values are not read). `capture`: record the step as a
        CUDA graph (None: on CUDA devices)."""
        device = noise.device
        n = guidance.branches
        self.denoise, self.steps = denoise, schedule.num_steps
        self.capture = device.type == "cuda" if capture is None else capture
        self.schedule = schedule.to(device)
        sliced = inputs.branches(n, device)
        self.branches = EDMInputs(
            *(torch.empty_like(t) for t in (sliced.image_embeds, sliced.concat, sliced.added_time_ids))
        )
        self.scales = guidance.scales(noise.shape[2], device)
        self.x = torch.empty(noise.shape, dtype=torch.float32, device=device)
        self.step = torch.zeros((1,), dtype=torch.long, device=device)  # position 0: the noisiest step

    def _load(self, inputs: EDMInputs, noise: torch.Tensor) -> None:
        n = self.branches.concat.shape[0]
        self.branches.image_embeds.copy_(inputs.image_embeds[:n])
        self.branches.concat.copy_(inputs.concat[:n])
        self.branches.added_time_ids.copy_(inputs.added_time_ids[:n])
        self.x.copy_(noise.float() * self.schedule.init_scale)
        self._rewind()

    def _step(self) -> None:
        """One step at the device-side position `self.step` (capturable)."""
        c = self.schedule.at_device(self.step)
        self.x.copy_(edm_step(self.denoise, self.x, c, self.branches, self.scales))
        self.step.add_(1)

    def _rewind(self) -> None:
        """Point the step counter at the first step (position 0)."""
        self.step.zero_()

    @torch.inference_mode()
    def run(self, inputs: EDMInputs, noise: torch.Tensor, on_step: StepCallback | None = None) -> torch.Tensor:
        """All steps from unit Gaussian `noise`; returns the final latents [1, 4, T, h, w] (float32, a new tensor)."""
        self._load(inputs, noise)
        return self._loop(on_step)
