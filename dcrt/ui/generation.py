"""Where the page's videos are made: in this process (`VideoService`) or on a `dcrt serve` endpoint (`--server`).
Both take the same request, so the page cannot tell them apart."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.serving.client import request_inputs

# (image bytes, prompt, mode, sampling request, progress(step, total)) -> uint8 frames [T, H, W, 3]
Generate = Callable[[list[bytes], str, str, SamplingRequest, Callable[[int, int], None]], np.ndarray]


def in_process(service) -> Generate:
    """Run requests on a `dcrt.serving.service.VideoService` in this process."""

    def generate(images, prompt, mode, sampling, progress):
        return service.run(request_inputs(images, prompt, mode, sampling), progress=progress)["FRAMES"][0]

    return generate


def remote(url: str) -> Generate:
    """Send requests to a `dcrt serve` endpoint (no per-step progress: Triton answers once)."""
    from dcrt.serving.client import generate_remote

    def generate(images, prompt, mode, sampling, progress):
        return generate_remote(url, images, prompt, mode, sampling)["FRAMES"]

    return generate


def png(image) -> bytes:
    """A PIL image as PNG bytes: how the page's images travel in a request."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
