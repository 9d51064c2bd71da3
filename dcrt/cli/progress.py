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
        if step < total:
            bars[-1].update(1)
            return
        # The last step: counted without a redraw, then closed, which draws the full bar once. (A bar closed after
        # decoding drew 100% twice, the second time with the decode's seconds in its rate.)
        bars[-1].n = total
        bars.pop().close()

    try:
        yield on_step
    finally:
        for bar in bars:
            bar.close()
