"""A run's sampling settings: what the caller asked for (`SamplingRequest`), then the preset's defaults filled in and
every value checked before any slow work (`resolve_options` -> `SamplingOptions`).

The defaults themselves live in one table, `dcrt.families.dynamicrafter.config.SamplingDefaults` (per preset, seeds
per mode). The Python API (`dcrt.animate` / `interpolate` / `loop`) and the command line both take a
`SamplingRequest`; the command line renders its fields, with their help, as options (dcrt.cli.options). Torch-free,
so that the command line rejects a bad option before it imports torch or loads a model: its checks of a
DynamiCrafter run are `check_animate` and `check_run`, reached through the family registry (dcrt.families).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dcrt.batch import read_prompt_lines
from dcrt.errors import UsageError
from dcrt.families.base import NOT_TAKEN, SEED_RANGE, CheckedRun, refuse_given
from dcrt.families.dynamicrafter.config import MODES, SPACINGS, Preset
from dcrt.families.dynamicrafter.timesteps import ddim_timesteps
from dcrt.families.dynamicrafter.windows import TemporalWindows, plan_windows


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class SamplingRequest:
    """What a caller asks for. `None` is the preset's default
    (`dcrt.families.dynamicrafter.config.SamplingDefaults`)."""

    steps: int | None = field(default=None, metadata=_help("sampling steps, 1-1000 (DDIM; SVD: Euler)"))
    guidance_scale: float | None = field(
        default=None,
        # --cfg: the name the original's demo page and most tools give it
        metadata=_help("classifier-free guidance scale on the prompt (1 = no guidance)")
        | {"flags": ("--guidance-scale", "--cfg")},
    )
    image_guidance_scale: float | None = field(
        default=None, metadata=_help("image guidance scale: turns on three-way guidance (1 = off)")
    )
    guidance_rescale: float | None = field(
        default=None, metadata=_help("guidance rescale phi, 0-1, against the conditional output's std")
    )
    eta: float | None = field(default=None, metadata=_help("DDIM eta: 1 = stochastic, 0 = deterministic"))
    frame_stride: int | None = field(
        default=None, metadata=_help("frame-rate conditioning: the 256 model's frame stride, the others' fps")
    )
    timestep_spacing: str | None = field(default=None, metadata=_help(" or ".join(SPACINGS)))
    seed: int | None = field(default=None, metadata=_help("noise seed, 0 to 2**64-1"))
    height: int | None = field(default=None, metadata=_help("output height, a multiple of 64"))
    width: int | None = field(default=None, metadata=_help("output width, a multiple of 64"))
    frames: int | None = field(
        default=None,
        metadata=_help("frames of the video (a loop shows N - 1); beyond the window, sampled in overlapping windows"),
    )
    window: int | None = field(
        default=None, metadata=_help("frames the UNet sees at once, at most the length the model was trained on")
    )
    overlap: int | None = field(default=None, metadata=_help("frames shared by neighbouring windows"))


@dataclass(frozen=True)
class SamplingOptions:
    """A run's settings, with the preset's defaults filled in (`resolve_options`)."""

    steps: int
    guidance_scale: float
    image_guidance_scale: float | None
    guidance_rescale: float
    eta: float
    frame_stride: int
    timestep_spacing: str
    seed: int
    height: int
    width: int
    frames: int
    window: int
    overlap: int

    def windows(self, mode: str) -> TemporalWindows:
        """The temporal windows of this run (a loop's wrap around its end)."""
        return plan_windows(self.frames, self.window, self.overlap, wrap=mode == "loop")


def preset_default(preset: Preset, name: str, mode: str) -> object:
    """The default of `SamplingRequest` field `name` for `preset` (seed: for `mode`)."""
    if name == "seed":
        return preset.sampling.seeds.for_mode(mode)
    if name in ("height", "width"):
        return getattr(preset, name)
    if name in ("frames", "window"):
        return preset.frames
    return getattr(preset.sampling, name)


def resolve_options(
    preset: Preset, mode: str = "animate", request: SamplingRequest | None = None, **changes
) -> SamplingOptions:
    """`request` (and keyword `changes` to it, e.g. `steps=3`) with every `None` filled from the preset's
    defaults (docs/models.md §1.9); raises UsageError, one line, for a value the sampler cannot use."""
    preset.require_family("dynamicrafter", mode)
    asked = asdict(request or SamplingRequest()) | changes
    unknown = sorted(set(asked) - {f.name for f in fields(SamplingRequest)})
    if unknown:
        raise UsageError(f"unknown sampling option(s) {', '.join(unknown)}; choose from {', '.join(SAMPLING_NAMES)}")
    opts = SamplingOptions(
        **{name: preset_default(preset, name, mode) if value is None else value for name, value in asked.items()}
    )
    _check(opts, preset)
    if opts.window > preset.frames or opts.frames < preset.frames:
        raise UsageError(
            f"preset {preset.name} was trained on {preset.frames} frames: frames must be at least that, and the "
            f"window at most, got frames {opts.frames}, window {opts.window}"
        )
    if preset.vae.dual_ref is not None and opts.frames != preset.frames:
        raise UsageError(
            f"preset {preset.name}'s decoder decodes one {preset.frames}-frame clip at once: for a longer video, "
            "interpolate through more key frames"
        )
    opts.windows(mode)  # frames, window and overlap: a frame count the windows cannot cover is refused here
    return opts


SAMPLING_NAMES = tuple(f.name for f in fields(SamplingRequest))


def _check(opts: SamplingOptions, preset: Preset) -> None:
    lo, hi = preset.sampling.frame_stride_range
    checks = [
        (opts.steps >= 1, f"steps must be at least 1, got {opts.steps}"),
        (opts.steps <= 1000, f"steps must be at most 1000, got {opts.steps}"),
        (_finite(opts.guidance_scale) >= 0, f"guidance scale must be a finite number >= 0, got {opts.guidance_scale}"),
        (
            opts.image_guidance_scale is None or _finite(opts.image_guidance_scale) >= 0,
            f"image guidance scale must be a finite number >= 0, got {opts.image_guidance_scale}",
        ),
        (_finite(opts.eta) >= 0, f"eta must be a finite number >= 0, got {opts.eta}"),
        (0 <= opts.guidance_rescale <= 1, f"guidance rescale must be in [0, 1], got {opts.guidance_rescale}"),
        (
            lo <= opts.frame_stride <= hi,
            f"frame stride {opts.frame_stride} is out of range for preset {preset.name} ({lo}..{hi})",
        ),
        (SEED_RANGE[0] <= opts.seed <= SEED_RANGE[1], f"seed must be an integer from 0 to 2**64 - 1, got {opts.seed}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    check_size(opts.height, opts.width)
    try:  # the spacing's name, and step counts it cannot serve
        ddim_timesteps(opts.steps, opts.timestep_spacing, preset.diffusion.timesteps)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def takes_sampling_options(function: Callable) -> Callable:
    """Show `SamplingRequest`'s fields as `function`'s keyword parameters (in `help()` and editors) where it
    takes them as `**sampling`; the function is unchanged, `resolve_options` checks the names."""
    signature = inspect.signature(function)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=f.type)
        for f in fields(SamplingRequest)
    ]
    function.__signature__ = signature.replace(parameters=[*own, *shared])
    return function


def clip_prompts(prompt: str, extend: int | list[str]) -> list[str]:
    """The prompts of the further clips: `extend` times `prompt`, or the list given."""
    if isinstance(extend, int):
        if extend < 0:
            raise UsageError(f"extend must be a number of clips >= 0, got {extend}")
        return [prompt] * extend
    return list(extend)


def refuse_foreign(preset: Preset, sampling: SamplingRequest, svd) -> None:
    """One line for a Stable Video Diffusion option (the command line declares both families' options)."""
    refuse_given(preset, svd, "Stable Video Diffusion")


def check_animate(
    preset: Preset, prompt: str | None, extend: int, extend_file: Path | None, sampling: SamplingRequest, svd
) -> list[str]:
    """`dcrt animate`'s own checks: no other family's options, a prompt, and the further clips' prompts
    (--extend-prompts' lines, else --extend times the prompt), which it returns."""
    refuse_foreign(preset, sampling, svd)
    if prompt is None:
        raise UsageError(f"missing argument PROMPT: preset {preset.name} animates following a prompt")
    if extend_file is None:
        return clip_prompts(prompt, extend)
    return read_prompt_lines(extend_file, extend or None, "further clip (--extend)")


def check_run(preset: Preset, mode: str, sampling: SamplingRequest, svd, fps: int | None) -> CheckedRun:
    """A generating command's options checked for `mode` (an SVD request has been refused: `check_animate`);
    the video is written at --fps, whatever it is, as the model is not conditioned on it."""
    opts = resolve_options(preset, mode, sampling)
    return CheckedRun(asdict(sampling), size=(opts.height, opts.width))


def option_default(preset: Preset, name: str) -> object:
    """What `None` means for option `name` (--help; the seed: per mode), or NOT_TAKEN for another family's."""
    if name not in SAMPLING_NAMES:
        return NOT_TAKEN
    return preset.sampling.seeds if name == "seed" else preset_default(preset, name, MODES[0])


def check_size(height: int | None, width: int | None) -> None:
    """Output (and export) sizes: positive multiples of 64, the VAE's and the UNet's common stride."""
    if any(size is not None and (size <= 0 or size % 64) for size in (height, width)):
        raise UsageError(f"height and width must be positive multiples of 64, got height {height}, width {width}")


def _finite(value: float) -> float:
    """`value`, or NaN for inf: a non-finite scale fails every range check (and would give a NaN video)."""
    return value if math.isfinite(value) else math.nan
