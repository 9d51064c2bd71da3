"""The networks' hyper-parameters: frozen dataclasses of every layer size of the UNets, the VAE, the CLIP towers and
the resampler, their defaults being the 512 model's (docs/models.md §3) and SVD-XT's (§8.2). A family's preset
(dcrt.families.<family>.config) assembles them with what only that family has. Torch-free: the command line reads
presets before it imports torch."""

from __future__ import annotations

from dataclasses import dataclass


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


# The tiny presets' towers, shared by every family's tiny member (dcrt.families.<family>.presets).
TINY_VAE = VAEConfig(ch=32, ch_mult=(1, 1, 2, 2))
TINY_TEXT = TextEncoderConfig(width=64, layers=3, heads=2, projection_dim=32)
TINY_IMAGE = ImageEncoderConfig(width=64, layers=2, heads=2, projection_dim=32)
