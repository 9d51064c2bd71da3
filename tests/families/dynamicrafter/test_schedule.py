"""Schedule variants against the closed-form and worked values of docs/models.md §1.5; docs/sampling.md §4.3-4.5."""

import numpy as np
import pytest
import torch

from dcrt.families.dynamicrafter.schedule import build_ddim_schedule, dynamic_rescale_table, schedule_tensors
from dcrt.families.dynamicrafter.timesteps import ddim_timesteps
from dcrt.presets import get_preset


def _schedule(preset: str, steps=50, spacing=None, eta=1.0):
    p = get_preset(preset)
    return build_ddim_schedule(
        schedule_tensors(p.diffusion), p.diffusion, steps, spacing or p.sampling.timestep_spacing, eta
    )


def test_training_schedules():
    v, eps = schedule_tensors(get_preset("512").diffusion), schedule_tensors(get_preset("256").diffusion)
    assert v["alphas_cumprod"][999] == 0 and v["betas"][999] == 1.0
    assert v["alphas_cumprod"][0].item() == pytest.approx(0.99915, abs=1e-5)
    assert eps["alphas_cumprod"][0].item() == pytest.approx(0.99915, abs=1e-5)
    assert eps["alphas_cumprod"][999].item() == pytest.approx(0.0046601, rel=1e-4)
    assert torch.count_nonzero(v["sqrt_recip_alphas_cumprod"]) == 0  # stored as zeros for v models
    assert "scale_arr" in v and "scale_arr" not in eps


def test_dynamic_rescale_table():
    s = dynamic_rescale_table(get_preset("512").diffusion)
    assert len(s) == 1400 and s[0] == 1.0 and s[1] == pytest.approx(1 - 0.3 / 399, abs=1e-12)
    assert s[399] == pytest.approx(0.7) and s[400] == pytest.approx(0.7) and s[1399] == pytest.approx(0.7)


def test_uniform_timesteps():
    assert ddim_timesteps(50, "uniform").tolist() == list(range(1, 1000, 20))
    assert len(ddim_timesteps(16, "uniform")) == 17  # the original's step count, not S
    assert len(ddim_timesteps(30, "uniform")) == 31 and len(ddim_timesteps(60, "uniform")) == 63
    assert all(len(ddim_timesteps(s, "uniform")) == s for s in (10, 20, 25, 50))


def test_trailing_timesteps():
    assert ddim_timesteps(50, "uniform_trailing").tolist() == list(range(19, 1000, 20))
    ts = ddim_timesteps(16, "uniform_trailing").tolist()
    assert ts[:3] == [61, 124, 187] and ts[-2:] == [937, 999]
    assert 811 in ts and 937 in ts  # 812.5 -> 812 and 937.5 -> 938 (half to even), minus one


def test_bad_spacing_and_steps():
    with pytest.raises(ValueError, match="unknown timestep spacing"):
        ddim_timesteps(10, "quad")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ddim_timesteps(0, "uniform")


@pytest.mark.parametrize("steps", [3, 9, 27, 36, 37, 101, 111, 251, 333, 501, 1000])
def test_uniform_step_counts_that_would_visit_t_1000_are_refused(steps):
    # c = 1000 // S divides 999: arange(0, 1000, c) + 1 ends at 1000 (the original fails with an IndexError)
    with pytest.raises(ValueError, match="would visit t = 1000"):
        ddim_timesteps(steps, "uniform")
    assert ddim_timesteps(steps, "uniform_trailing")[-1] == 999


def test_every_other_uniform_step_count_stays_inside_the_schedule():
    served = [s for s in range(1, 1001) if 999 % (1000 // s) != 0]
    assert all(ddim_timesteps(s, "uniform").max() <= 999 for s in served)


# (preset, position i, t, A_i, A'_i, sigma_i, x0 factor) from docs/sampling.md §4.5, S = 50, eta = 1
WORKED = [
    ("512", 49, 999, 0.0, 8.5788e-5, 0.99996, 1.0),
    ("512", 48, 979, 8.5788e-5, 3.7515e-4, 0.87812, 1.0),
    ("512", 19, 399, 0.39354, 0.42706, 0.27229, 1.02148),
    ("512", 1, 39, 0.96026, 0.98101, 0.10053, 1.01549),
    ("512", 0, 19, 0.98101, 0.99915, 0.02851, 1.0),
    ("1024", 19, 399, 0.39354, 0.42706, 0.27229, 1.11696),
    ("1024", 0, 19, 0.98101, 0.99915, 0.02851, 1.0),
    ("256", 49, 981, 5.7755e-3, 7.2817e-3, 0.45446, 1.0),
    ("256", 0, 1, 0.99830, 0.99915, 0.02065, 1.0),
]


@pytest.mark.parametrize("preset, i, t, a, a_prev, sigma, factor", WORKED)
def test_worked_values(preset, i, t, a, a_prev, sigma, factor):
    s = _schedule(preset)
    assert s.timesteps[i].item() == t
    assert s.coefficients.sigma[i].item() == pytest.approx(sigma, abs=1e-5)
    assert s.coefficients.sqrt_alpha_prev[i].item() ** 2 == pytest.approx(a_prev, rel=1e-3, abs=1e-8)
    assert s.coefficients.x0_rescale[i].item() == pytest.approx(factor, abs=1e-5)
    if get_preset(preset).diffusion.parameterization == "v":
        assert s.coefficients.eps_from_m[i].item() ** 2 == pytest.approx(a, rel=1e-3, abs=1e-8)
    else:
        assert 1.0 / s.coefficients.x0_from_x[i].item() ** 2 == pytest.approx(a, rel=1e-3)


def test_zero_snr_first_step_quirks():
    s = _schedule("512")
    # alpha_bar = 0 at t = 999: eps = x and x0 = -v; direction is sqrt(5.96e-8) in float32, not 0
    assert (
        s.coefficients.eps_from_m[49] == 0
        and s.coefficients.eps_from_x[49] == 1
        and s.coefficients.x0_from_x[49] == 0
        and s.coefficients.x0_from_m[49] == 1
    )
    assert s.coefficients.direction[49].item() == pytest.approx(2.44e-4, rel=1e-2)


def test_eta_zero_is_deterministic_ddim():
    s = _schedule("512", eta=0.0)
    assert torch.count_nonzero(s.coefficients.sigma) == 0
    a_prev = s.coefficients.sqrt_alpha_prev**2
    torch.testing.assert_close(s.coefficients.direction, (1 - a_prev).sqrt())


def test_eps_conversion_matches_the_closed_form():
    s = _schedule("256")
    x, m = torch.randn(100), torch.randn(100)
    a = 1.0 / s.coefficients.x0_from_x[10] ** 2
    torch.testing.assert_close(
        s.coefficients.x0_from_x[10] * x - s.coefficients.x0_from_m[10] * m, (x - (1 - a).sqrt() * m) / a.sqrt()
    )


def test_checkpoint_buffers_are_the_source(tiny_model):
    buffers = dict(tiny_model.schedule.named_buffers())
    buffers["alphas_cumprod"] = buffers["alphas_cumprod"] * 0.5
    p = tiny_model.preset
    a = build_ddim_schedule(buffers, p.diffusion, 10, "uniform_trailing", 1.0)
    b = build_ddim_schedule(dict(tiny_model.schedule.named_buffers()), p.diffusion, 10, "uniform_trailing", 1.0)
    assert not torch.equal(a.coefficients.sigma, b.coefficients.sigma)
    assert np.isclose(
        a.coefficients.sqrt_alpha_prev[0].item() ** 2, 0.5 * b.coefficients.sqrt_alpha_prev[0].item() ** 2, rtol=1e-5
    )
