"""The diffusion noise schedule (docs/models.md §1.5, 1.6; docs/sampling.md §4.3).

`schedule_tensors` reproduces the 12 schedule tensors (and `scale_arr`) that the original registers
and stores in every checkpoint; a loaded checkpoint's own values take precedence over these.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from dcrt.families.dynamicrafter.config import DiffusionConfig
from dcrt.families.dynamicrafter.timesteps import ddim_timesteps

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


def schedule_tensors(cfg: DiffusionConfig) -> dict[str, torch.Tensor]:
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


# --- DDIM sampling schedule (docs/sampling.md §4.4-4.6) -----------------------------------------------------


@dataclass(frozen=True)
class DDIMCoefficients:
    """The coefficients of a DDIM step, float32 tensors: [S] for a whole run (`DDIMSchedule.coefficients`),
    or shaped to broadcast against x for one step (`DDIMSchedule.at`, `at_device_step`).

    One step, for model output m (see `dcrt.families.dynamicrafter.sampler.ddim_step`, the one implementation):
        eps = eps_from_m * m + eps_from_x * x
        x0  = (x0_from_x * x - x0_from_m * m) * x0_rescale
        x'  = sqrt_alpha_prev * x0 + direction * eps + sigma * noise
    v-models: eps = sqrt(a_t) m + sqrt(1 - a_t) x and x0 = sqrt(a_t) x - sqrt(1 - a_t) m; eps-models:
    eps = m and x0 = (x - sqrt(1 - a_t) m) / sqrt(a_t). `x0_rescale` is the dynamic-rescale ratio
    s(t_{i-1}) / s(t_i) (1 at i = 0 and for models without it).

    The field order is the row order of `DDIMSchedule.table()` and of kernels/dcrt_kernels.h (DCRT_DDIM_*).
    """

    eps_from_m: torch.Tensor
    eps_from_x: torch.Tensor
    x0_from_x: torch.Tensor
    x0_from_m: torch.Tensor
    x0_rescale: torch.Tensor
    sqrt_alpha_prev: torch.Tensor
    direction: torch.Tensor
    sigma: torch.Tensor

    @classmethod
    def at_device_step(cls, table: torch.Tensor, step: torch.Tensor, ndim: int) -> DDIMCoefficients:
        """Column `step` ([1] int32/int64 on the table's device) of a [8, S] table, each shaped [1] * ndim.

        A device-side gather, so a CUDA graph can replay it for every step with no host synchronisation.
        """
        column = table.index_select(1, step).reshape(len(COEFFICIENT_ROWS), *([1] * ndim))
        return cls(*column)


COEFFICIENT_ROWS = tuple(f.name for f in fields(DDIMCoefficients))


@dataclass(frozen=True)
class DDIMSchedule:
    """One DDIM run: the timesteps it visits and its per-step coefficients, indexed by step position i.

    Steps run from i = S-1 (most noise) down to 0.
    """

    timesteps: torch.Tensor  # int64 [S]
    coefficients: DDIMCoefficients  # each float32 [S]

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])

    def at(self, i: int) -> DDIMCoefficients:
        """The coefficients of step position i (0-d tensors)."""
        return DDIMCoefficients(*(getattr(self.coefficients, name)[i] for name in COEFFICIENT_ROWS))

    def table(self) -> torch.Tensor:
        """The coefficients as one float32 [8, S] tensor, rows in COEFFICIENT_ROWS order."""
        return torch.stack([getattr(self.coefficients, name).float() for name in COEFFICIENT_ROWS]).contiguous()

    def to(self, device: str | torch.device) -> DDIMSchedule:
        moved = DDIMCoefficients(*(getattr(self.coefficients, name).to(device) for name in COEFFICIENT_ROWS))
        return DDIMSchedule(self.timesteps.to(device), moved)


def build_ddim_schedule(
    buffers: dict[str, torch.Tensor], cfg: DiffusionConfig, steps: int, spacing: str, eta: float
) -> DDIMSchedule:
    """Coefficients from the checkpoint's schedule tensors, in the original's precisions (docs/sampling.md §4.5).

    A_i and A'_i are float32 values (A'_0 = alpha_bar[0], not 1); sigma is computed in float64 from
    them and rounded to float32; the direction coefficient sqrt(1 - A' - sigma^2) is evaluated in
    float32 as the original does, which makes it 2.44e-4 rather than 0 at t = 999 for zero-SNR models.
    """
    ts = ddim_timesteps(steps, spacing, cfg.timesteps)
    ac = buffers["alphas_cumprod"].detach().cpu().float()
    a = ac[ts]
    a_prev = torch.cat([ac[:1], ac[ts[:-1]]])
    a64, a_prev64 = a.double(), a_prev.double()
    sigma = (eta * torch.sqrt((1 - a_prev64) / (1 - a64) * (1 - a64 / a_prev64))).float()
    direction = (1.0 - a_prev - sigma**2).sqrt()
    if cfg.parameterization == "v":
        sqrt_a = buffers["sqrt_alphas_cumprod"].detach().cpu().float()[ts]
        sqrt_1ma = buffers["sqrt_one_minus_alphas_cumprod"].detach().cpu().float()[ts]
        eps_from_m, eps_from_x, x0_from_x, x0_from_m = sqrt_a, sqrt_1ma, sqrt_a, sqrt_1ma
    else:
        sqrt_a, sqrt_1ma = a.sqrt(), (1.0 - a).sqrt()
        eps_from_m, eps_from_x = torch.ones_like(a), torch.zeros_like(a)
        x0_from_x, x0_from_m = 1.0 / sqrt_a, sqrt_1ma / sqrt_a
    if cfg.dynamic_rescale:
        s = buffers["scale_arr"].detach().cpu().float()[ts]
        x0_rescale = torch.cat([s[:1], s[:-1]]) / s
    else:
        x0_rescale = torch.ones_like(a)
    coefficients = DDIMCoefficients(
        eps_from_m=eps_from_m,
        eps_from_x=eps_from_x,
        x0_from_x=x0_from_x,
        x0_from_m=x0_from_m,
        x0_rescale=x0_rescale,
        sqrt_alpha_prev=a_prev.sqrt(),
        direction=direction,
        sigma=sigma,
    )
    return DDIMSchedule(timesteps=torch.from_numpy(ts.copy()), coefficients=coefficients)
