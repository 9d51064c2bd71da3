"""The configuration pieces only Stable Video Diffusion has (docs/models.md §8); `dcrt.config` assembles them with
the shared VAE and CLIP configs into `SVDPreset`, and `dcrt.presets` names the `svd` family's presets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpatioTemporalUNetConfig:
    """The spatio-temporal UNet (sgm `VideoUNet`, diffusers `UNetSpatioTemporalConditionModel`, docs/models.md §8.2).

    Head width is fixed, head count = channels / width (5, 10, 20, 20 heads at full size)."""

    in_channels: int = 8  # noisy latent + the conditioning image's latent, concatenated per frame
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    head_channels: int = 64
    context_dim: int = 1024  # the CLIP image embedding: one token per frame
    added_time_ids: int = 3  # fps - 1, motion bucket id, noise augmentation strength
    added_time_dim: int = 256  # sinusoid width of each added time id

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels


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
