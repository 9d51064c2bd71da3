import pytest
import torch

from dcrt.families.common import NoiseSource
from dcrt.families.dynamicrafter.sampler import Guidance, SamplerInputs, combine_guidance, ddim_step, sample
from dcrt.families.dynamicrafter.schedule import build_ddim_schedule, schedule_tensors
from dcrt.presets import get_preset


def test_two_way_guidance_with_rescale():
    cond, uncond = torch.randn(1, 4, 16, 4, 4), torch.randn(1, 4, 16, 4, 4)
    g = Guidance(guidance_scale=7.5, guidance_rescale=0.7)
    guided = uncond + 7.5 * (cond - uncond)
    ratio = cond.std(unbiased=True) / guided.std(unbiased=True)
    want = 0.7 * guided * ratio + 0.3 * guided
    torch.testing.assert_close(combine_guidance(torch.cat([cond, uncond]), g), want)


def test_three_way_guidance():
    c, u, ui = (torch.randn(1, 4, 2, 3, 3) for _ in range(3))
    g = Guidance(guidance_scale=5.0, image_guidance_scale=2.0)
    assert g.branches == 3
    torch.testing.assert_close(combine_guidance(torch.cat([c, u, ui]), g), u + 2.0 * (ui - u) + 5.0 * (c - ui))


def test_scale_one_means_one_branch():
    assert (
        Guidance(guidance_scale=1.0).branches == 1
        and Guidance(guidance_scale=1.0, image_guidance_scale=3.0).branches == 1
    )


def test_rescale_std_is_per_sample():
    cond = torch.cat([torch.randn(1, 8), 10 * torch.randn(1, 8)])
    uncond = torch.randn(2, 8)
    out = combine_guidance(torch.cat([cond, uncond]), Guidance(guidance_scale=3.0, guidance_rescale=1.0))
    torch.testing.assert_close(out.std(dim=1), cond.std(dim=1))


def test_v_update_at_t999_uses_x0_equal_minus_v():
    p = get_preset("512")
    s = build_ddim_schedule(schedule_tensors(p.diffusion), p.diffusion, 50, "uniform_trailing", 0.0)
    x, v = torch.randn(10), torch.randn(10)
    a_prev = s.coefficients.sqrt_alpha_prev[49]
    want = a_prev * (-v) + s.coefficients.direction[49] * x
    torch.testing.assert_close(ddim_step(x, v, None, s.at(49)), want)


def _setup(tiny_model, steps=4, eta=1.0):
    p = tiny_model.preset
    schedule = build_ddim_schedule(
        dict(tiny_model.schedule.named_buffers()), p.diffusion, steps, "uniform_trailing", eta
    )
    inputs = SamplerInputs(context=torch.randn(2, 333, 64), concat=torch.randn(1, 4, 16, 8, 8), frame_stride=24)
    return schedule, inputs


def test_batched_guidance_equals_two_calls(tiny_model):
    # One step: the two forms differ only by float reassociation (~4e-6 per UNet call); over many steps
    # a random-weight UNet under 7.5x guidance amplifies that, which says nothing about batching.
    schedule, inputs = _setup(tiny_model, steps=1)
    unet = tiny_model.unet

    def separate(x, t, context, frame_stride):
        return torch.cat(
            [unet(x[i : i + 1], t[i : i + 1], context[i : i + 1], frame_stride[i : i + 1]) for i in range(len(x))]
        )

    g = Guidance(guidance_scale=7.5, guidance_rescale=0.7)
    x_T = torch.randn(1, 4, 16, 8, 8)
    with torch.inference_mode():
        batched = sample(unet, inputs, schedule, g, x_T, NoiseSource(5, "cpu"))
        two_calls = sample(separate, inputs, schedule, g, x_T, NoiseSource(5, "cpu"))
    torch.testing.assert_close(batched, two_calls, rtol=1e-4, atol=1e-4)


def test_noise_order_is_x_T_then_one_draw_per_step(tiny_model):
    schedule, inputs = _setup(tiny_model, steps=3)
    calls = []

    def record(x, t, context, frame_stride):
        calls.append(t[0].item())
        return torch.zeros(x.shape[0], 4, *x.shape[2:])

    src = NoiseSource(7, "cpu")
    x_T = src.draw((1, 4, 16, 8, 8))
    out = sample(record, inputs, schedule, Guidance(guidance_scale=7.5), x_T, src)
    # replay by hand: same generator, x_T first, then one draw after each model call
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 4, 16, 8, 8, generator=g)
    for i in reversed(range(3)):
        x = ddim_step(x, torch.zeros_like(x), torch.randn(x.shape, generator=g), schedule.at(i))
    torch.testing.assert_close(out, x)
    assert calls == sorted(calls, reverse=True) and calls[0] == 999


def test_eta_zero_ignores_the_noise_source(tiny_model):
    schedule, inputs = _setup(tiny_model, steps=2, eta=0.0)
    x_T = torch.randn(1, 4, 16, 8, 8)
    with torch.inference_mode():
        a = sample(tiny_model.unet, inputs, schedule, Guidance(), x_T, None)
        b = sample(tiny_model.unet, inputs, schedule, Guidance(), x_T, NoiseSource(1, "cpu"))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("branches", [1, 2, 3])
def test_context_is_cut_to_the_branches_used(tiny_model, branches):
    schedule, _ = _setup(tiny_model, steps=1)
    seen = []

    def record(x, t, context, frame_stride):
        seen.append((x.shape[0], context.shape[0], frame_stride.shape[0]))
        return torch.zeros(x.shape[0], 4, *x.shape[2:])

    g = {1: Guidance(guidance_scale=1.0), 2: Guidance(), 3: Guidance(image_guidance_scale=2.0)}[branches]
    inputs = SamplerInputs(context=torch.randn(3, 333, 64), concat=torch.randn(1, 4, 16, 8, 8), frame_stride=3)
    sample(record, inputs, schedule, g, torch.randn(1, 4, 16, 8, 8), None)
    assert seen == [(branches, branches, branches)]
