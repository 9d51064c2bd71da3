"""What a DynamiCrafter preset is (docs/models.md §1): the networks' configs (dcrt.config), the noise
schedule and the original scripts' sampling defaults, their defaults being the 512 model's. The named presets are
dcrt.families.dynamicrafter.presets. Code never branches on a preset's name, only on its fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from dcrt.config import (
    ImageEncoderConfig,
    ResamplerConfig,
    TextEncoderConfig,
    UNetConfig,
    VAEConfig,
)
from dcrt.families.base import PresetBase


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule and parameterisation (docs/models.md §1.2, 1.5, 1.6; docs/sampling.md §4.3)."""

    timesteps: int = 1000
    linear_start: float = 0.00085
    linear_end: float = 0.012
    parameterization: str = "v"  # "eps" or "v"
    zero_snr: bool = True
    dynamic_rescale: bool = True
    base_scale: float = 0.7
    turning_step: int = 400


# DDIM timestep spacings (dcrt.families.dynamicrafter.timesteps.ddim_timesteps) and what a preset can be asked to do.
SPACINGS = ("uniform", "uniform_trailing")
MODES = ("animate", "interpolate", "loop")


@dataclass(frozen=True)
class Seeds:
    """The original scripts' noise seed for each mode."""

    animate: int = 123
    interpolate: int = 12306
    loop: int = 234

    def for_mode(self, mode: str) -> int:
        return getattr(self, mode)


@dataclass(frozen=True)
class SamplingDefaults:
    """What the original scripts pass for this model (docs/models.md §1.9): the only home of every sampling
    default. `dcrt.families.dynamicrafter.options.resolve_options` reads it for the Python API and the command line
    alike."""

    steps: int = 50
    guidance_scale: float = 7.5
    image_guidance_scale: float | None = None  # None: two-way guidance; a scale turns on three-way guidance
    guidance_rescale: float = 0.7
    eta: float = 1.0
    frame_stride: int = 24  # the 256 model: a real frame stride; the others: frames per second
    frame_stride_range: tuple[int, int] = (1, 60)
    # What frame_stride conditions: frames per second (fewer: more motion between frames), or (the 256 model) a
    # real stride between the training clip's frames (larger: more motion). The correction loop moves it by this.
    frame_stride_is_fps: bool = True
    timestep_spacing: str = "uniform_trailing"
    seeds: Seeds = field(default_factory=Seeds)
    # Longer videos (dcrt.families.dynamicrafter.windows): frames shared by neighbouring windows. Half a window: every
    # inner frame is seen by two windows (twice the UNet work of the frames), and every multiple of 8 from 16 on is
    # reachable.
    overlap: int = 8


@dataclass(frozen=True)
class Preset(PresetBase):
    name: str
    height: int
    width: int
    frames: int = 16
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    # The released 256 file stores the frame-stride MLP as `framestride_embed` (older module name, docs/models.md §1.8).
    fs_embed_checkpoint_name: str = "fps_embedding"
    hf_repo: str | None = None  # Hugging Face repository holding `checkpoint_file`
    checkpoint_file: str = "model.ckpt"
    checkpoint_dir_name: str | None = None  # the original scripts' `checkpoints/<name>/model.ckpt`
    # What the checkpoint was trained for: image-to-video, or (the interp model) interpolation and loops.
    modes: tuple[str, ...] = ("animate",)
    family: str = "dynamicrafter"
    # Whether exports and bundles carry the checkpoint's noise schedule (schedule.safetensors): the one home of
    # that rule. SVD's EDM schedule is computed from the preset (dcrt.families.svd.sampler) instead.
    carries_schedule: ClassVar[bool] = True
