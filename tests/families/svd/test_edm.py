"""dcrt.families.svd.sampler (SVD's sampler) against the diffusers scheduler and pipeline loop it must match
(docs/sampling.md §5).

diffusers comes with the [parity] extra, which CI installs.
"""

import pytest
import torch

from dcrt.families.svd.sampler import (
    EDMInputs,
    FrameGuidance,
    build_edm_schedule,
    combine_frame_guidance,
    euler_step,
    sample_edm,
)
from dcrt.presets import get_preset

SVD = get_preset("svd-xt")

# The scheduler configuration published with stabilityai/stable-video-diffusion-img2vid-xt.
SVD_XT_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
}


def reference_scheduler(steps):
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config(SVD_XT_SCHEDULER)
    scheduler.set_timesteps(steps)
    return scheduler


@pytest.mark.parametrize("steps", [1, 5, 25])
def test_sigmas_timesteps_and_initial_scale_match_the_reference_scheduler(steps):
    ref = reference_scheduler(steps)
    schedule = build_edm_schedule(SVD.edm, steps)
    assert schedule.num_steps == steps
    torch.testing.assert_close(schedule.sigmas, ref.sigmas, rtol=1e-6, atol=0)
    assert schedule.sigmas[-1] == 0 and schedule.sigmas[0] == pytest.approx(700.0)
    torch.testing.assert_close(schedule.c_noise, ref.timesteps.float(), rtol=1e-6, atol=1e-7)
    assert float(schedule.init_scale) == pytest.approx(float(ref.init_noise_sigma), rel=1e-6)


def test_preconditioning_and_euler_step_match_the_reference_step():
    steps = 6
    ref = reference_scheduler(steps)
    schedule = build_edm_schedule(SVD.edm, steps)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 5, 6, generator=gen) * float(ref.init_noise_sigma)
    for i, t in enumerate(ref.timesteps):
        c = schedule.at(i)
        torch.testing.assert_close(x * c.c_in, ref.scale_model_input(x, t), rtol=1e-6, atol=1e-7)
        model_out = torch.randn(x.shape, generator=gen)
        expected = ref.step(model_out, t, x).prev_sample
        x_next = euler_step(x, model_out, c)
        torch.testing.assert_close(x_next, expected, rtol=1e-5, atol=1e-5)
        x = expected


def test_frame_guidance_rises_linearly_and_drops_the_unconditional_branch_at_scale_one():
    g = FrameGuidance(SVD.sampling.min_guidance_scale, SVD.sampling.max_guidance_scale)
    torch.testing.assert_close(g.scales(5).flatten(), torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]))
    assert g.branches == 2 and FrameGuidance(1.0, 1.0).branches == 1
    cond, uncond = torch.full((1, 2, 5, 1, 1), 2.0), torch.ones(1, 2, 5, 1, 1)
    guided = combine_frame_guidance(torch.cat([cond, uncond]), g.scales(5), 2)
    torch.testing.assert_close(guided[0, 0].flatten(), torch.tensor([2.0, 2.5, 3.0, 3.5, 4.0]))


class LinearDenoiser(torch.nn.Module):
    """A fixed random function of every input, so a wrong input anywhere changes the output."""

    def __init__(self, channels, frames, embed, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.mix = torch.randn(4, channels, generator=gen) * 0.3
        self.frame = torch.randn(frames, generator=gen)
        self.embed = torch.randn(embed, generator=gen)
        self.time = torch.randn(3, generator=gen)

    def forward(self, x, c_noise, image_embeds, time_ids):
        """x [n, C, T, h, w] (dcrt's layout)."""
        bias = c_noise * 0.1 + image_embeds.flatten(1) @ self.embed * 0.01 + time_ids @ self.time * 0.01
        out = torch.einsum("oc,nct...->not...", self.mix, x) * self.frame.view(1, 1, -1, 1, 1)
        return out + bias.view(-1, 1, 1, 1, 1)


def reference_loop(denoiser, noise, image_latents, embeds, time_ids, steps, min_scale, max_scale):
    """diffusers' StableVideoDiffusionPipeline loop body, in its [B, F, C, H, W] layout, unconditional first."""
    scheduler = reference_scheduler(steps)
    frames = noise.shape[1]
    latents = noise * scheduler.init_noise_sigma
    image = torch.cat([torch.zeros_like(image_latents), image_latents])
    embeds = torch.cat([torch.zeros_like(embeds), embeds])
    time_ids = torch.cat([time_ids, time_ids])
    scale = torch.linspace(min_scale, max_scale, frames).view(1, frames, 1, 1, 1)
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        model_in = torch.cat([model_in, image], dim=2)
        out = denoiser(model_in.transpose(1, 2), t.expand(2), embeds, time_ids).transpose(1, 2)
        uncond, cond = out.chunk(2)
        latents = scheduler.step(uncond + scale * (cond - uncond), t, latents).prev_sample
    return latents


def test_the_sampling_loop_matches_the_reference_pipeline_loop():
    frames, steps = 5, 5
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(1, frames, 4, 6, 8, generator=gen)  # diffusers' layout
    image_latents = torch.randn(1, frames, 4, 6, 8, generator=gen)
    embeds = torch.randn(1, 1, 16, generator=gen)
    time_ids = torch.tensor([[6.0, 127.0, 0.02]])
    denoiser = LinearDenoiser(8, frames, 16)
    scales = SVD.sampling.min_guidance_scale, SVD.sampling.max_guidance_scale
    expected = reference_loop(denoiser, noise, image_latents, embeds, time_ids, steps, *scales)

    inputs = EDMInputs(
        image_embeds=torch.cat([embeds, torch.zeros_like(embeds)]),
        concat=torch.cat([image_latents, torch.zeros_like(image_latents)]).transpose(1, 2),
        added_time_ids=torch.cat([time_ids, time_ids]),
    )
    seen = []
    latents = sample_edm(
        denoiser,
        inputs,
        build_edm_schedule(SVD.edm, steps),
        FrameGuidance(*scales),
        noise.transpose(1, 2),
        on_step=lambda i, n: seen.append((i, n)),
    )
    assert seen == [(i + 1, steps) for i in range(steps)]
    rel = (latents.transpose(1, 2) - expected).norm() / expected.norm()
    assert rel < 1e-5, f"relative error {rel:.2e}"
