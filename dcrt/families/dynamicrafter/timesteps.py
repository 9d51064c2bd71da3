"""Which DDPM timesteps a DDIM run of S steps visits (docs/sampling.md §4.4). numpy only, no torch:
the command line checks a step count against it before it loads anything."""

from __future__ import annotations

import numpy as np

from dcrt.families.dynamicrafter.config import SPACINGS


def ddim_timesteps(steps: int, spacing: str, num_train_steps: int = 1000) -> np.ndarray:
    """DDPM timesteps visited by DDIM, ascending (position 0 = least noisy), int64.

    `uniform`: every c = 1000 // S steps from 0, plus one; yields ceil(1000 / c) steps, which is not
    always S (S = 16 gives 17). `uniform_trailing`: 1000, 1000 - c, ... (c = 1000 / S) rounded half
    to even, reversed, minus one; always S steps, starting from t = 999. Both quirks are the original's.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if spacing == "uniform":
        c = num_train_steps // steps
        if c == 0:
            raise ValueError(f"uniform spacing supports at most {num_train_steps} steps, got {steps}")
        if (num_train_steps - 1) % c == 0:  # the last visit would be t = num_train_steps: no such timestep
            raise ValueError(
                f"uniform spacing with {steps} steps would visit t = {num_train_steps}, which does not exist "
                "(the original fails there too): choose another step count or uniform_trailing"
            )
        return np.arange(0, num_train_steps, c, dtype=np.int64) + 1
    if spacing == "uniform_trailing":
        c = num_train_steps / steps
        return np.flip(np.round(np.arange(num_train_steps, 0, -c))).astype(np.int64) - 1
    raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
