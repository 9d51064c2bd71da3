"""One request to a `dcrt serve` endpoint through tritonclient's HTTP client (`dcrt client`, `dcrt ui --server`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from urllib.parse import urlparse

import numpy as np

from dcrt.errors import BackendUnavailable, UsageError
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.serving.repository import MODEL_NAME


def _host(url: str) -> str:
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme != "http" or not parsed.hostname:
        raise UsageError(f"server URL must look like http://HOST:PORT, got {url!r}")
    return f"{parsed.hostname}:{parsed.port or 8000}"


def request_inputs(images: list[bytes], prompt: str, mode: str, sampling: SamplingRequest) -> dict[str, np.ndarray]:
    """The repository's inputs (uint8 [1, n]) for one request; options left as None are not sent."""
    options = {k: v for k, v in asdict(sampling).items() if v is not None}
    inputs = {
        "IMAGE": images[0],
        "PROMPT": prompt.encode(),
        "MODE": mode.encode(),
        "OPTIONS": json.dumps(options).encode(),
    }
    if len(images) > 1:
        inputs["LAST_IMAGE"] = images[1]
    return {name: np.frombuffer(data, np.uint8)[None] for name, data in inputs.items()}


def generate_remote(
    url: str,
    images: list[bytes],
    prompt: str,
    mode: str = "animate",
    sampling: SamplingRequest | None = None,
    outputs: tuple[str, ...] = ("FRAMES",),
    timeout_s: float = 600.0,
) -> dict[str, np.ndarray]:
    """Send one request -> {name: array without the batch dimension}. The server's error for this request is a
    UsageError (its message, one line); an unreachable or overloaded server is BackendUnavailable."""
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(_host(url), connection_timeout=timeout_s, network_timeout=timeout_s)
    tensors = []
    for name, array in request_inputs(images, prompt, mode, sampling or SamplingRequest()).items():
        tensor = http.InferInput(name, list(array.shape), "UINT8")
        tensor.set_data_from_numpy(array, binary_data=True)
        tensors.append(tensor)
    wanted = [http.InferRequestedOutput(name, binary_data=True) for name in outputs]
    try:
        result = client.infer(MODEL_NAME, tensors, outputs=wanted)
    except InferenceServerException as exc:
        status = str(exc.status() or "")
        message = (exc.message() or str(exc)).splitlines()[0]
        raise (BackendUnavailable if status in ("503", "429") or "queue" in message else UsageError)(
            f"server {url}: {message}"
        ) from None
    except OSError as exc:
        raise BackendUnavailable(f"server {url} cannot be reached: {exc}") from None
    finally:
        client.close()
    return {name: result.as_numpy(name)[0] for name in outputs}
