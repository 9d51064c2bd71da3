"""The denoising progress bar of a generating command (animate, interpolate, loop, batch; SVD's animate)."""

from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def progress():
    """A denoising progress bar on stderr, closed however the run ends: after Ctrl-C, the message that
    follows starts a line of its own."""
    from tqdm import tqdm

    bars = []

    def on_step(step: int, total: int) -> None:
        if step == 1:  # a new video or clip: a bar of its own
            if bars:
                bars.pop().close()
            bars.append(tqdm(total=total, desc="denoising", unit="step", file=sys.stderr, dynamic_ncols=True))
        bars[-1].update(1)

    try:
        yield on_step
    finally:
        for bar in bars:
            bar.close()
