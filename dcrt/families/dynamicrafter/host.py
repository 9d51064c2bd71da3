"""What the C++ host (cpp_host) reads from a bundle's manifest (`host_fields`: its settings and vocabulary file), and
the prompt's token ids and a seeded run's noise as .npy files (`dcrt tokenize`, `dcrt noise`): the host makes both
itself since issue 32 (its own tokenizer, libtorch's generator), so the arrays serve debugging and comparisons.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcrt.atomic import atomic_file
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.config import Preset
from dcrt.families.dynamicrafter.options import SamplingOptions, resolve_options
from dcrt.families.dynamicrafter.timesteps import ddim_timesteps
from dcrt.video import DEFAULT_FPS


def prompt_tokens(prompt: str, preset: Preset) -> np.ndarray:
    """int64 [2, L]: the prompt's CLIP token ids, then the empty prompt's (the unconditional branch)."""
    from dcrt.models.tokenizer import Tokenizer

    return Tokenizer(preset.text.context_length)([prompt, ""]).numpy().astype(np.int64)


def host_noise(preset: Preset, opts: SamplingOptions, device: str = "cpu") -> np.ndarray:
    """float32 [1 + S, 1, C, T, h, w] (eta > 0) or [1, ...] (eta = 0): x_T, then one draw per step, in the order
    `dcrt.families.dynamicrafter.pipeline.Pipeline.sample` draws them from `opts.seed` on `device` (CPU and CUDA
    generators differ), so the host's video is the pipeline's on that device."""
    import torch

    from dcrt.families.common import NoiseSource

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda draws with a CUDA generator: it needs a CUDA GPU")
    if opts.frames != preset.frames:
        raise UsageError(f"the C++ host samples {preset.frames} frames (one window), not {opts.frames}")
    shape = (1, preset.vae.z_channels, opts.frames, opts.height // 8, opts.width // 8)
    noise = NoiseSource(opts.seed, device)
    draws = [noise.draw_initial(shape, opts.windows("animate"), opts.seed)]
    if opts.eta > 0:
        steps = len(ddim_timesteps(opts.steps, opts.timestep_spacing, preset.diffusion.timesteps))
        draws += [noise.draw(shape) for _ in range(steps)]
    return np.stack([d.cpu().numpy() for d in draws])


def write_array(path: Path, array: np.ndarray) -> Path:
    """Write `array` as .npy, through a temporary file (no half-written file on failure)."""
    path = Path(path)
    if path.suffix != ".npy":
        raise UsageError(f"{path}: the host reads .npy files; name the output <name>.npy")
    with atomic_file(path, ".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array))
    return path


# What a host needs for `animate` (dcrt.families.dynamicrafter.options.SamplingOptions' names); the seed stays with the
# noise file.
HOST_SAMPLING = (
    "steps", "guidance_scale", "image_guidance_scale", "guidance_rescale", "eta", "frame_stride", "timestep_spacing",
)  # fmt: skip


# The CLIP BPE vocabulary in a bundle (dcrt.models.tokenizer.vocabulary_file, uncompressed), for the C++ host's
# tokenizer; the manifest's `tokenizer` names it.
TOKENIZER_FILE = "clip_bpe_vocab.txt"


def host_fields(preset: Preset) -> dict:
    """The manifest's `parameterization`, `sampling` (the preset's animate defaults, and `fps`: the frame rate
    `dcrt animate` writes a DynamiCrafter video at; None without an animate mode), `modes` (the same for its other
    modes, interpolate and loop) and `tokenizer` (the vocabulary file the build writes beside the packages): what the
    C++ host (cpp_host/) reads instead of keeping copies."""

    def defaults(mode: str) -> dict:
        options = resolve_options(preset, mode)
        return {name: getattr(options, name) for name in HOST_SAMPLING} | {"fps": DEFAULT_FPS}

    return {
        "parameterization": preset.diffusion.parameterization,
        "sampling": defaults("animate") if "animate" in preset.modes else None,
        "modes": {mode: defaults(mode) for mode in preset.modes if mode != "animate"},
        "tokenizer": TOKENIZER_FILE,
    }
