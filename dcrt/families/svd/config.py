"""What a Stable Video Diffusion preset is (docs/models.md §8): image-only conditioning, EDM sampling. The networks'
configs are dcrt.config's; the named presets are dcrt.families.svd.presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from dcrt.config import (
    ImageEncoderConfig,
    SpatioTemporalUNetConfig,
    TextEncoderConfig,
    VAEConfig,
    VideoDecoderConfig,
)
from dcrt.families.base import PresetBase


@dataclass(frozen=True)
class EDMConfig:
    """EDM preconditioning with a Karras sigma schedule (docs/models.md §8.6, docs/sampling.md §5): v-prediction."""

    sigma_min: float = 0.002
    sigma_max: float = 700.0
    sigma_data: float = 1.0
    rho: float = 7.0


@dataclass(frozen=True)
class SVDSamplingDefaults:
    """The model card's defaults (docs/models.md §8.6): Euler steps, a guidance scale that rises linearly from the
    first frame to the last, and the three added time ids."""

    steps: int = 25
    min_guidance_scale: float = 1.0
    max_guidance_scale: float = 3.0
    # Frames per second of the video. The UNet is given fps - 1 = 6, as both released pipelines do by default: the
    # original script's `fps_id` 6 (which it writes at fps_id + 1), diffusers' `fps` 7.
    fps: int = 7
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    # Frames per VAE decoder call. The temporal layers see only the frames of one call; 14 is the original
    # sampling script's `decoding_t`, which fits a 24 GB GPU at 576x1024.
    decode_chunk: int = 14
    seed: int = 23  # the original sampling script's default seed


# SVD's first stage (docs/models.md §8.4); dcrt.presets' image-decoder preset swaps its decoder.
SVD_VAE = VAEConfig(video=VideoDecoderConfig(), post_quant_conv=False)


@dataclass(frozen=True)
class SVDPreset(PresetBase):
    """A Stable Video Diffusion model (docs/models.md §8): image-only conditioning, EDM sampling."""

    name: str
    height: int
    width: int
    frames: int = 25
    unet: SpatioTemporalUNetConfig = field(default_factory=SpatioTemporalUNetConfig)
    # The temporal decoder; the encoder is the KL-f8 one of every other preset.
    vae: VAEConfig = field(default_factory=lambda: SVD_VAE)
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)  # its projected class token conditions
    # Only the shapes of the text-tower remnants the original file keeps beside the image tower (§8.3).
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    sampling: SVDSamplingDefaults = field(default_factory=SVDSamplingDefaults)
    hf_repo: str | None = None  # Hugging Face repository holding both layouts (§8.1)
    checkpoint_file: str = "svd_xt.safetensors"  # the original layout's single file, what `dcrt fetch` downloads
    checkpoint_dir_name: str | None = None
    modes: tuple[str, ...] = ("animate",)
    family: str = "svd"
    carries_schedule: ClassVar[bool] = False  # its EDM schedule is the preset's (Preset.carries_schedule)
