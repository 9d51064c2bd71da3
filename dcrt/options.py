"""A run's sampling settings: the preset's defaults filled in, every value checked before any slow work.

Torch-free, so that the command line rejects a bad option before it imports torch or loads a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dcrt.config import Preset
from dcrt.errors import UsageError
from dcrt.timesteps import ddim_timesteps

# What torch.Generator.manual_seed accepts without remapping: a 64-bit unsigned integer.
SEED_RANGE = (0, 2**64 - 1)
DEFAULT_SEEDS = {"animate": 123, "interpolate": 12306, "loop": 234}  # the original scripts' seed per mode


@dataclass(frozen=True)
class SamplingOptions:
    """A run's settings, with the preset's defaults filled in (`resolve_options`)."""

    steps: int
    guidance_scale: float
    eta: float
    fs: int
    guidance_rescale: float
    timestep_spacing: str
    cfg_img: float | None
    seed: int
    height: int
    width: int


def resolve_options(
    preset: Preset,
    steps: int = 50,
    guidance_scale: float = 7.5,
    eta: float = 1.0,
    fs: int | None = None,
    guidance_rescale: float | None = None,
    timestep_spacing: str | None = None,
    cfg_img: float | None = None,
    seed: int = DEFAULT_SEEDS["animate"],
    height: int | None = None,
    width: int | None = None,
) -> SamplingOptions:
    """Fill `None` with the preset's defaults (docs/models.md §1.9) and reject values the sampler cannot use."""
    d = preset.sampling
    opts = SamplingOptions(
        steps=steps,
        guidance_scale=guidance_scale,
        eta=eta,
        fs=d.fs if fs is None else fs,
        guidance_rescale=d.guidance_rescale if guidance_rescale is None else guidance_rescale,
        timestep_spacing=timestep_spacing or d.timestep_spacing,
        cfg_img=cfg_img,
        seed=seed,
        height=height or preset.height,
        width=width or preset.width,
    )
    lo, hi = d.fs_range
    checks = [
        (opts.steps >= 1, f"steps must be at least 1, got {opts.steps}"),
        (opts.steps <= 1000, f"steps must be at most 1000, got {opts.steps}"),
        (
            _finite(opts.guidance_scale) >= 0,
            f"guidance scale (cfg) must be a finite number >= 0, got {opts.guidance_scale}",
        ),
        (
            opts.cfg_img is None or _finite(opts.cfg_img) >= 0,
            f"image guidance scale (cfg-img) must be a finite number >= 0, got {opts.cfg_img}",
        ),
        (_finite(opts.eta) >= 0, f"eta must be a finite number >= 0, got {opts.eta}"),
        (0 <= opts.guidance_rescale <= 1, f"guidance rescale must be in [0, 1], got {opts.guidance_rescale}"),
        (lo <= opts.fs <= hi, f"fs {opts.fs} is out of range for preset {preset.name} ({lo}..{hi})"),
        (
            opts.height % 64 == 0 and opts.width % 64 == 0 and opts.height > 0 and opts.width > 0,
            f"height and width must be positive multiples of 64, got {opts.height}x{opts.width}",
        ),
        (
            SEED_RANGE[0] <= opts.seed <= SEED_RANGE[1],
            f"seed must be an integer from {SEED_RANGE[0]} to 2**64 - 1, got {opts.seed}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    try:  # the spacing's name, and step counts it cannot serve
        ddim_timesteps(opts.steps, opts.timestep_spacing, preset.diffusion.timesteps)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return opts


def _finite(value: float) -> float:
    """`value`, or NaN for inf: a non-finite scale fails every range check (and would give a NaN video)."""
    return value if math.isfinite(value) else math.nan
