"""The diffusion noise schedule (spec 1.5, 1.6, 4.3).

`schedule_buffers` reproduces the 12 schedule tensors (and `scale_arr`) that the original registers
and stores in every checkpoint; a loaded checkpoint's own values take precedence over these.
"""

from __future__ import annotations

import numpy as np
import torch

from dcrt.config import DiffusionConfig

# Buffer names in the order the original registers them (they are checkpoint keys without a prefix).
SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


def linear_betas(cfg: DiffusionConfig) -> np.ndarray:
    """Linear in sqrt(beta) ("scaled linear"), float64."""
    return np.linspace(cfg.linear_start**0.5, cfg.linear_end**0.5, cfg.timesteps, dtype=np.float64) ** 2


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Shift and scale sqrt(alpha_bar) so the last step has zero SNR (Lin et al. 2023, alg. 1)."""
    r = np.sqrt(np.cumprod(1.0 - betas))
    r = (r - r[-1]) * r[0] / (r[0] - r[-1])
    alphas_bar = r**2
    alphas = np.concatenate([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1.0 - alphas


def dynamic_rescale_table(cfg: DiffusionConfig) -> np.ndarray:
    """s(t): a ramp from 1 to base_scale over `turning_step` entries, then constant (1400 entries)."""
    ramp = np.linspace(1.0, cfg.base_scale, cfg.turning_step)
    return np.concatenate([ramp, np.full(cfg.timesteps, cfg.base_scale)])


def schedule_buffers(cfg: DiffusionConfig) -> dict[str, torch.Tensor]:
    betas = linear_betas(cfg)
    if cfg.zero_snr:
        betas = rescale_zero_terminal_snr(betas)
    alphas = 1.0 - betas
    ac = np.cumprod(alphas)
    ac_prev = np.append(1.0, ac[:-1])
    with np.errstate(divide="ignore"):
        if cfg.parameterization == "v":  # the original stores zeros: these would be infinite at t = 999
            recip, recipm1 = np.zeros_like(ac), np.zeros_like(ac)
        else:
            recip, recipm1 = np.sqrt(1.0 / ac), np.sqrt(1.0 / ac - 1)
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        values = (
            betas,
            ac,
            ac_prev,
            np.sqrt(ac),
            np.sqrt(1.0 - ac),
            np.log(1.0 - ac),
            recip,
            recipm1,
            post_var,
            np.log(np.maximum(post_var, 1e-20)),
            betas * np.sqrt(ac_prev) / (1.0 - ac),
            (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
        )
    buffers = {name: torch.tensor(v, dtype=torch.float32) for name, v in zip(SCHEDULE_BUFFERS, values)}
    if cfg.dynamic_rescale:
        buffers["scale_arr"] = torch.tensor(dynamic_rescale_table(cfg), dtype=torch.float32)
    return buffers
