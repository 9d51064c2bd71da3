"""What a preset is: the frozen dataclasses of every hyper-parameter of the DynamiCrafter models and of Stable
Video Diffusion (SVD), their defaults being the 512 model's and SVD-XT's. The named presets are dcrt.presets' table.

Values follow docs/models.md §1 (DynamiCrafter) and §8 (SVD). A preset is a frozen tree of dataclasses; code
never branches on a preset's name, only on its fields (`family` says which model family's code runs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from dcrt.errors import UsageError
from dcrt.families.svd.config import EDMConfig, SpatioTemporalUNetConfig, SVDSamplingDefaults


@dataclass(frozen=True)
class UNetConfig:
    """`UNetModel` of openaimodel3d (docs/models.md §3.5). Head width is fixed, head count = channels / width."""

    in_channels: int = 8
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    head_channels: int = 64
    init_attn_heads: int = 8
    context_dim: int = 1024
    text_tokens: int = 77
    image_tokens_per_frame: int = 16
    # 256 model: every spatial cross-attention scales its image branch by tanh(alpha) + 1.
    learnable_image_attn_scale: bool = False
    # Used only when the UNet is called without `frame_stride`; every script passes it explicitly.
    default_frame_stride: int = 24

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels


@dataclass(frozen=True)
class DualRefDecoderConfig:
    """ToonCrafter's video decoder (docs/models.md §6.2): temporal mixing in every ResnetBlock and the output
    conv, and the two key frames' encoder features fed into each level, by cross-attention at
    `fusion_levels` and by an added 1x1 conv elsewhere. The original fixes the attention at 8 heads of 64."""

    fusion_levels: tuple[int, ...] = (2, 3)
    fusion_heads: int = 8
    fusion_head_channels: int = 64
    temporal_kernel: int = 3  # frames seen by each temporal conv


@dataclass(frozen=True)
class VideoDecoderConfig:
    """SVD's `VideoDecoder` (docs/models.md §8.4): the image decoder with a temporal residual block blended into
    every ResnetBlock and a temporal conv after the output conv."""

    temporal_kernel: int = 3  # frames seen by each temporal conv


@dataclass(frozen=True)
class VAEConfig:
    """SD-2.x KL-f8 `AutoencoderKL` (docs/models.md §3.6), with ToonCrafter's decoder when `dual_ref` is set."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    out_channels: int = 3
    z_channels: int = 4
    scale_factor: float = 0.18215
    dual_ref: DualRefDecoderConfig | None = None
    # SVD's temporally fine-tuned decoder (docs/models.md §8.4): the frame count is the chunk decoded at once.
    video: VideoDecoderConfig | None = None
    # A 1x1 conv before the decoder: every DynamiCrafter checkpoint has one (the dual-ref path never applies it);
    # SVD's first stage has none (§8.4).
    post_quant_conv: bool = True

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class TextEncoderConfig:
    """OpenCLIP ViT-H-14 text tower, run to its penultimate block then `ln_final` (docs/models.md §3.2)."""

    vocab_size: int = 49408
    context_length: int = 77
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_ratio: int = 4
    projection_dim: int = 1024  # text_projection: stored, never used

    @property
    def used_layers(self) -> int:
        return self.layers - 1


@dataclass(frozen=True)
class ImageEncoderConfig:
    """OpenCLIP ViT-H-14 visual tower; output = all tokens of the last block, before `ln_post`."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1280
    layers: int = 32
    heads: int = 16
    mlp_ratio: int = 4
    projection_dim: int = 1024  # visual.proj: stored, never used
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1


@dataclass(frozen=True)
class ResamplerConfig:
    """Frame-wise Perceiver resampler (`image_proj_model`, docs/models.md §3.4)."""

    dim: int = 1024
    depth: int = 4
    dim_head: int = 64
    heads: int = 12
    num_queries: int = 16
    embedding_dim: int = 1280
    output_dim: int = 1024
    ff_mult: int = 4
    video_length: int = 16


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
    default. `dcrt.families.dynamicrafter.options.resolve_options` reads it for the Python API and the command line alike."""

    steps: int = 50
    guidance_scale: float = 7.5
    image_guidance_scale: float | None = None  # None: two-way guidance; a scale turns on three-way guidance
    guidance_rescale: float = 0.7
    eta: float = 1.0
    frame_stride: int = 24  # the 256 model: a real frame stride; the others: frames per second
    frame_stride_range: tuple[int, int] = (1, 60)
    timestep_spacing: str = "uniform_trailing"
    seeds: Seeds = field(default_factory=Seeds)
    # Longer videos (dcrt.families.dynamicrafter.windows): frames shared by neighbouring windows. Half a window: every inner frame is
    # seen by two windows (twice the UNet work of the frames), and every multiple of 8 from 16 on is reachable.
    overlap: int = 8


class _PresetBehaviour:
    """What every family's preset can answer: its modes, its family's code, its latent size."""

    def check_mode(self, mode: str) -> None:
        """One line naming what this preset can do, for a mode it was not trained for."""
        if mode not in self.modes:
            raise UsageError(f"preset {self.name} cannot {mode}; it supports: {', '.join(self.modes)}")

    def require_family(self, family: str, what: str) -> None:
        """One line for a feature that exists only for another model family so far."""
        if self.family != family:
            raise UsageError(f"{self.name} does not support {what} yet (model family {self.family}; {family} has it)")

    @property
    def latent_height(self) -> int:
        return self.height // self.vae.downscale

    @property
    def latent_width(self) -> int:
        return self.width // self.vae.downscale


@dataclass(frozen=True)
class Preset(_PresetBehaviour):
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


# SVD's first stage (docs/models.md §8.4); dcrt.presets' image-decoder preset swaps its decoder.
SVD_VAE = VAEConfig(video=VideoDecoderConfig(), post_quant_conv=False)


@dataclass(frozen=True)
class SVDPreset(_PresetBehaviour):
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
