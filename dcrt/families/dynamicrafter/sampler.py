"""The DDIM sampling loop with classifier-free guidance (docs/sampling.md §4.6, 4.7).

It knows no networks: it calls a `denoise(x, t, context, frame_stride)` function (any backend's UNet) once per
step on the stacked guidance branches. Every per-step quantity is a tensor indexed by step position,
so one step has no host-side branching on data and can be captured as a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dcrt.families.common import NoiseSource, StepCallback
from dcrt.families.dynamicrafter.schedule import DDIMCoefficients, DDIMSchedule
from dcrt.families.dynamicrafter.windows import TemporalWindows

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance. Branch order in the batch: conditional, unconditional[, image-only].

    `image_guidance_scale` set -> three-way multi-condition guidance (the prompt's scale `guidance_scale`, the
    image's `image_guidance_scale`); `guidance_rescale` > 0 -> rescale against the conditional output's std.
    The names are `SamplingOptions`' (dcrt.families.dynamicrafter.options): one name per idea from the command line to
    the kernel.
    """

    guidance_scale: float = 7.5
    image_guidance_scale: float | None = None
    guidance_rescale: float = 0.0

    @property
    def branches(self) -> int:
        if self.guidance_scale == 1.0:
            return 1
        return 3 if self.image_guidance_scale is not None else 2


def combine_guidance(out: torch.Tensor, guidance: Guidance) -> torch.Tensor:
    """[branches * B, ...] model outputs -> guided [B, ...] output (float32)."""
    out = out.float()
    if guidance.branches == 1:
        return out
    parts = out.chunk(guidance.branches)
    cond, uncond = parts[0], parts[1]
    if guidance.branches == 2:
        guided = uncond + guidance.guidance_scale * (cond - uncond)
    else:
        image_only = parts[2]
        guided = (
            uncond
            + guidance.image_guidance_scale * (image_only - uncond)
            + guidance.guidance_scale * (cond - image_only)
        )
    if guidance.guidance_rescale > 0.0:
        dims = list(range(1, cond.ndim))
        ratio = cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)  # unbiased, per sample
        guided = guidance.guidance_rescale * guided * ratio + (1.0 - guidance.guidance_rescale) * guided
    return guided


def ddim_step(
    x: torch.Tensor, model_out: torch.Tensor, noise: torch.Tensor | None, c: DDIMCoefficients
) -> torch.Tensor:
    """One DDIM step (DDIM eq. 12, docs/sampling.md §4.6), float32: the only implementation of it in dcrt.

    The eager loop calls it with `DDIMSchedule.at(i)`, the graph runner with the device-side
    `DDIMCoefficients.at_device_step`, and kernels/ddim.cu names it as its reference: the kernel performs
    these operations in this order, each rounded as a separate float32 op.
    """
    eps = c.eps_from_m * model_out + c.eps_from_x * x
    x0 = (c.x0_from_x * x - c.x0_from_m * model_out) * c.x0_rescale
    x_prev = c.sqrt_alpha_prev * x0 + c.direction * eps
    return x_prev if noise is None else x_prev + c.sigma * noise


@dataclass
class SamplerInputs:
    """Everything a run conditions on. `context` stacks the guidance branches in `Guidance` order."""

    context: torch.Tensor  # [branches, 77 + 16 T, C]
    concat: torch.Tensor  # [1, 4, T, h, w] the image latents the UNet sees beside x
    frame_stride: int


class WindowedDenoiser:
    """A `Denoiser` over N > window latent frames: the wrapped UNet runs on each window of `windows`
    (dcrt.families.dynamicrafter.windows; windows of one step batched `windows_per_call` at a time), and the outputs
    are fused with the windows' weights before guidance and the DDIM update (docs/sampling.md §4.10). Static
    shapes and torch ops only, so a step that calls it can be captured as a CUDA graph."""

    def __init__(
        self,
        denoise: Denoiser,
        windows: TemporalWindows,
        context_tokens: int,
        windows_per_call: int | None,
        device: torch.device | str,
    ):
        """`context_tokens`: the context rows a window reads (text + the image tokens of `windows.window` frames)."""
        self.denoise, self.windows, self.context_tokens = denoise, windows, context_tokens
        self.indices = torch.tensor(windows.frame_indices(), dtype=torch.long, device=device)  # [K, W]
        self.weights = torch.tensor(windows.weights(), dtype=torch.float32, device=device)  # [K, W]
        per_call = windows.count if windows_per_call is None else max(1, windows_per_call)
        self.groups = [list(range(k, min(k + per_call, windows.count))) for k in range(0, windows.count, per_call)]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, frame_stride: torch.Tensor):
        """x [n, C, N, h, w] (n guidance branches) -> fused model output [n, C_out, N, h, w], float32."""
        n = x.shape[0]
        context = context[:, : self.context_tokens]
        fused = None
        for group in self.groups:
            k = len(group)  # the call's batch: window-major, each window's n branches together
            x_in = torch.cat([x.index_select(2, self.indices[w]) for w in group])
            out = self.denoise(x_in, t.repeat(k), context.repeat(k, 1, 1), frame_stride.repeat(k)).float()
            out = out.view(k, n, *out.shape[1:])  # [k, n, C_out, W, h, w]
            if fused is None:
                fused = torch.zeros((n, out.shape[2], x.shape[2], *out.shape[4:]), device=x.device)
            for j, w in enumerate(group):
                fused.index_add_(2, self.indices[w], out[j] * self.weights[w].view(1, 1, -1, 1, 1))
        return fused


def sample(
    denoise: Denoiser,
    inputs: SamplerInputs,
    schedule: DDIMSchedule,
    guidance: Guidance,
    x_T: torch.Tensor,
    noise: NoiseSource | None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Run DDIM from x_T [1, 4, T, h, w] (float32) to the final latents. `noise=None` means eta = 0."""
    device = x_T.device
    schedule = schedule.to(device)
    n = guidance.branches
    context = inputs.context[:n].to(device)
    concat = inputs.concat.to(device=device, dtype=torch.float32).expand(n, -1, -1, -1, -1)
    frame_stride = torch.full((n,), inputs.frame_stride, dtype=torch.long, device=device)
    x = x_T.to(torch.float32)
    total = schedule.num_steps
    for step, i in enumerate(reversed(range(total))):
        t = schedule.timesteps[i].expand(n)
        model_in = torch.cat([x.expand(n, -1, -1, -1, -1), concat], dim=1)
        model_out = combine_guidance(denoise(model_in, t, context, frame_stride), guidance)
        step_noise = noise.draw(tuple(x.shape)) if noise is not None else None
        x = ddim_step(x, model_out, step_noise, schedule.at(i))
        if on_step is not None:
            on_step(step + 1, total)
    return x
