"""One request -> a video, or a one-line error for that request alone: what the model in a Triton repository
runs (dcrt.serving.triton_model), importable and testable in any Python process.

A request is a dict of the repository's input tensors (dcrt.serving.repository.INPUTS), each uint8 [1, n].
Everything a caller can get wrong (an image PIL cannot read, text that is not UTF-8, an unknown mode or
option, a value out of range) is a UsageError whose message goes back to that caller; the model stays loaded.
"""

from __future__ import annotations

import json
import tempfile
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from dcrt.errors import DcrtError, UsageError
from dcrt.families.dynamicrafter.config import MODES
from dcrt.families.dynamicrafter.options import SAMPLING_NAMES, SamplingRequest
from dcrt.loading import BackendRequest

Inputs = dict[str, np.ndarray]


class Cancelled(DcrtError):
    """The caller cancelled the request (or its deadline passed) while it ran: its slot is freed."""


@dataclass(frozen=True)
class Outcome:
    outputs: dict[str, np.ndarray] | None  # name -> array with the batch dimension, or None on error
    error: str | None = None


def _text(inputs: Inputs, name: str, default: str) -> str:
    if name not in inputs:
        return default
    try:
        return np.asarray(inputs[name], dtype=np.uint8).tobytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{name} must be UTF-8 text") from None


def _field_types() -> dict[str, tuple[type, ...]]:
    """Each SamplingRequest field's JSON types: int for ints, int or float for floats, str for strings."""
    allowed = {int: (int,), float: (int, float), str: (str,)}
    hints = typing.get_type_hints(SamplingRequest)
    return {
        f.name: next(allowed[a] for a in typing.get_args(hints[f.name]) if a in allowed)
        for f in fields(SamplingRequest)
    }


def sampling_request(text: str) -> SamplingRequest:
    """OPTIONS' JSON object -> SamplingRequest; names and JSON types checked here, values by resolve_options."""
    try:
        asked = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"OPTIONS is not valid JSON: {exc}") from None
    if not isinstance(asked, dict):
        raise UsageError('OPTIONS must be a JSON object, e.g. {"steps": 25}')
    unknown = sorted(set(asked) - set(SAMPLING_NAMES))
    if unknown:
        raise UsageError(f"unknown sampling option(s) {', '.join(unknown)}; choose from {', '.join(SAMPLING_NAMES)}")
    types = _field_types()
    for name, value in asked.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, types[name])):
            wanted = " or ".join(t.__name__ for t in types[name])
            raise UsageError(f"option {name} must be {wanted}, got {value!r}")
    return SamplingRequest(**asked)


class VideoService:
    """A backend opened once; `respond` runs one request on it."""

    def __init__(self, request: BackendRequest, log: Callable[[str], None] | None = None):
        from dcrt.families.dynamicrafter.pipeline import pipeline_for
        from dcrt.loading import open_backend

        preset = request.preset_config()
        self.pipe = pipeline_for(open_backend(request, preset.height, preset.width, log=log))
        self.preset = self.pipe.preset

    def parse(self, inputs: Inputs) -> tuple[list, str, str, SamplingRequest]:
        """Inputs -> (PIL images, prompt, mode, sampling request), every part checked."""
        from dcrt.images import decode_image

        mode = _text(inputs, "MODE", "animate")
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.preset.check_mode(mode)
        if "IMAGE" not in inputs:
            raise UsageError("IMAGE is required")
        names = ["IMAGE", "LAST_IMAGE"] if mode == "interpolate" else ["IMAGE"]
        if mode == "interpolate" and "LAST_IMAGE" not in inputs:
            raise UsageError("interpolate needs LAST_IMAGE, the last frame's image")
        images = [decode_image(np.asarray(inputs[n], dtype=np.uint8).tobytes(), n) for n in names]
        return images, _text(inputs, "PROMPT", ""), mode, sampling_request(_text(inputs, "OPTIONS", ""))

    def run(
        self,
        inputs: Inputs,
        outputs: tuple[str, ...] = ("FRAMES",),
        cancelled: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """One request -> the asked outputs (FRAMES uint8 [1, T, H, W, 3], VIDEO uint8 [1, n] mp4). Raises
        UsageError for a bad request, Cancelled when `cancelled()` turns true between denoising steps.
        `progress(step, total)` hears each step."""
        from dcrt.families.dynamicrafter.options import resolve_options

        images, prompt, mode, request = self.parse(inputs)
        opts = resolve_options(self.preset, mode, request)

        def on_step(step: int, total: int) -> None:
            if cancelled is not None and cancelled():
                raise Cancelled(f"cancelled at step {step} of {total}")
            if progress is not None:
                progress(step, total)

        frames = self.pipe.generate(images, prompt, mode, opts, on_step=on_step).frames
        result = {"FRAMES": frames[None]}
        if "VIDEO" in outputs:
            result["VIDEO"] = np.frombuffer(mp4_bytes(frames), dtype=np.uint8)[None]
        return {name: result[name] for name in outputs}

    def respond(
        self, inputs: Inputs, outputs: tuple[str, ...] = ("FRAMES",), cancelled: Callable[[], bool] | None = None
    ) -> Outcome:
        """`run`, with any failure turned into that request's error message: one request never ends the model."""
        try:
            return Outcome(self.run(inputs, outputs, cancelled))
        except DcrtError as exc:
            return Outcome(None, str(exc))
        except Exception as exc:  # a bug or an unforeseen input: reported to this caller, the model keeps serving
            return Outcome(None, f"internal error: {type(exc).__name__}: {exc}")


def mp4_bytes(frames: np.ndarray) -> bytes:
    """uint8 [T, H, W, 3] -> an mp4 file's bytes, written as `dcrt animate` writes it."""
    from dcrt.video import write_video

    with tempfile.TemporaryDirectory(prefix="dcrt-serve-") as tmp:
        return write_video(frames, Path(tmp) / "video.mp4").read_bytes()
