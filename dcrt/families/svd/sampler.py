"""Stable Video Diffusion's sampler: EDM preconditioning, Karras sigmas, Euler steps, per-frame guidance
(docs/sampling.md §5).

The DynamiCrafter family samples with DDIM over discrete timesteps (dcrt.families.dynamicrafter.sampler); SVD is
trained as an EDM denoiser (Karras et al. 2022, arXiv:2206.00364) with v-prediction, and samples by Euler steps over a
continuous sigma ladder. As in dcrt.families.dynamicrafter.sampler, every per-step quantity is a tensor indexed by step
position, so a step has no host-side branching on data and can be captured as a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch

from dcrt.families.common import StepCallback
from dcrt.families.svd.config import EDMConfig

# denoise(model_in [n, 8, T, h, w], c_noise [n], image_embeds [n, 1, D], added_time_ids [n, 3]) -> [n, 4, T, h, w]
EDMDenoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def karras_sigmas(cfg: EDMConfig, steps: int) -> torch.Tensor:
    """The noise levels the sampler visits: `steps` values from `sigma_max` down to `sigma_min`, evenly spaced in
    sigma^(1/rho) (EDM eq. 5), then 0. [steps + 1] float32, computed in float64 and rounded once (as the
    reference scheduler does)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    ramp = np.linspace(0.0, 1.0, steps)
    lo, hi = cfg.sigma_min ** (1.0 / cfg.rho), cfg.sigma_max ** (1.0 / cfg.rho)
    sigmas = (hi + ramp * (lo - hi)) ** cfg.rho
    return torch.from_numpy(np.append(sigmas, 0.0).astype(np.float32))


@dataclass(frozen=True)
class EDMStep:
    """One step's scalars (0-d tensors, or [1] slices on the device for the graph runner)."""

    c_in: torch.Tensor  # scales x into the network: 1 / sqrt(sigma^2 + 1)
    c_noise: torch.Tensor  # the network's timestep input: log(sigma) / 4
    c_skip: torch.Tensor  # the denoised estimate D = c_skip x + c_out F(c_in x)
    c_out: torch.Tensor
    sigma: torch.Tensor
    sigma_next: torch.Tensor


@dataclass(frozen=True)
class EDMSchedule:
    """The per-step preconditioning of a v-prediction EDM denoiser (EDM table 1), float32.

    Element i belongs to step position i: step 0 runs at the largest sigma. `init_scale` turns unit Gaussian
    noise into x at sigma_0 (the sampler starts from N(0, sigma_0^2 + 1), the variance of a noised unit-variance
    latent)."""

    sigmas: torch.Tensor  # [S + 1], the last one 0
    c_in: torch.Tensor  # [S]
    c_noise: torch.Tensor  # [S]
    c_skip: torch.Tensor  # [S]
    c_out: torch.Tensor  # [S]
    init_scale: torch.Tensor  # 0-d

    @property
    def num_steps(self) -> int:
        return self.c_in.shape[0]

    def at(self, i: int) -> EDMStep:
        return EDMStep(self.c_in[i], self.c_noise[i], self.c_skip[i], self.c_out[i], self.sigmas[i], self.sigmas[i + 1])

    def at_device(self, step: torch.Tensor) -> EDMStep:
        """Step `step` ([1] integer tensor on the schedule's device) as [1] slices: no host read, so a step
        that uses it can be captured once and replayed for every position (dcrt.runners.edm)."""

        def pick(values: torch.Tensor) -> torch.Tensor:
            return values.index_select(0, step)

        return EDMStep(
            pick(self.c_in),
            pick(self.c_noise),
            pick(self.c_skip),
            pick(self.c_out),
            pick(self.sigmas),
            self.sigmas.index_select(0, step + 1),
        )

    def to(self, device: torch.device | str) -> EDMSchedule:
        return EDMSchedule(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def build_edm_schedule(cfg: EDMConfig, steps: int) -> EDMSchedule:
    """`cfg`: the preset's (`preset.edm`), the one home of sigma_min, sigma_max, sigma_data and rho."""
    sigmas = karras_sigmas(cfg, steps)
    s, data = sigmas[:-1], cfg.sigma_data
    return EDMSchedule(
        sigmas=sigmas,
        c_in=1.0 / (s**2 + data**2) ** 0.5,
        c_noise=0.25 * s.log(),
        c_skip=data**2 / (s**2 + data**2),
        c_out=-s * data / (s**2 + data**2) ** 0.5,
        init_scale=(sigmas[0] ** 2 + 1.0) ** 0.5,
    )


def euler_step(x: torch.Tensor, model_out: torch.Tensor, c: EDMStep) -> torch.Tensor:
    """One Euler step of the probability-flow ODE dx/dsigma = (x - D) / sigma from sigma to sigma_next, float32:
    the only implementation of it in dcrt."""
    denoised = model_out * c.c_out + x * c.c_skip
    return x + (x - denoised) / c.sigma * (c.sigma_next - c.sigma)


@dataclass(frozen=True)
class FrameGuidance:
    """Classifier-free guidance whose scale rises linearly from `min_scale` at the first frame to `max_scale` at
    the last (the preset's `sampling.min_guidance_scale`, `max_guidance_scale`): the first frame is pinned by the
    image latents anyway, later frames need more pull. Branch order
    in the batch: conditional, unconditional (zero image embedding and zero image latents)."""

    min_scale: float
    max_scale: float

    @property
    def branches(self) -> int:
        # With every frame's scale at most 1 the reference skips the unconditional branch.
        return 2 if max(self.min_scale, self.max_scale) > 1.0 else 1

    def scales(self, frames: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """[1, 1, T, 1, 1] float32, broadcast over [B, C, T, h, w]."""
        return torch.linspace(self.min_scale, self.max_scale, frames, device=device).view(1, 1, frames, 1, 1)


def combine_frame_guidance(out: torch.Tensor, scales: torch.Tensor, branches: int) -> torch.Tensor:
    """[branches * B, C, T, h, w] model outputs -> guided [B, C, T, h, w] (float32)."""
    out = out.float()
    if branches == 1:
        return out
    cond, uncond = out.chunk(2)
    return uncond + scales * (cond - uncond)


@dataclass
class EDMInputs:
    """What an SVD run conditions on, with the guidance branches stacked (conditional first)."""

    image_embeds: torch.Tensor  # [branches, 1, D] CLIP image embedding; zeros for the unconditional branch
    concat: torch.Tensor  # [branches, 4, T, h, w] the image latents beside x; zeros for the unconditional branch
    added_time_ids: torch.Tensor  # [branches, 3] (fps id, motion bucket id, noise augmentation strength)

    def branches(self, n: int, device: torch.device | str) -> EDMInputs:
        """The first `n` branches (conditional first) on `device`, the image latents in float32."""
        return EDMInputs(
            self.image_embeds[:n].to(device),
            self.concat[:n].to(device=device, dtype=torch.float32),
            self.added_time_ids[:n].to(device),
        )


def edm_step(
    denoise: EDMDenoiser, x: torch.Tensor, c: EDMStep, branches: EDMInputs, scales: torch.Tensor
) -> torch.Tensor:
    """One whole step from x [1, 4, T, h, w]: the network on every guidance branch in one call (`branches`: the
    inputs cut to the guidance's branch count, on x's device), the per-frame guidance, the Euler update. The eager
    loop (`sample_edm`) and the graph runner (dcrt.runners.edm) both call it."""
    n = branches.concat.shape[0]
    model_in = torch.cat([(x * c.c_in).expand(n, -1, -1, -1, -1), branches.concat], dim=1)
    out = denoise(model_in, c.c_noise.expand(n), branches.image_embeds, branches.added_time_ids)
    return euler_step(x, combine_frame_guidance(out, scales, n), c)


def sample_edm(
    denoise: EDMDenoiser,
    inputs: EDMInputs,
    schedule: EDMSchedule,
    guidance: FrameGuidance,
    noise: torch.Tensor,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Euler-sample from unit Gaussian `noise` [1, 4, T, h, w] to the final latents (float32)."""
    device = noise.device
    schedule = schedule.to(device)
    branches = inputs.branches(guidance.branches, device)
    scales = guidance.scales(noise.shape[2], device)
    x = noise.to(torch.float32) * schedule.init_scale
    total = schedule.num_steps
    for i in range(total):
        x = edm_step(denoise, x, schedule.at(i), branches, scales)
        if on_step is not None:
            on_step(i + 1, total)
    return x
