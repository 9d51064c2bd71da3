"""dcrt's SVD networks vs diffusers' and transformers' (fp32, CPU, seeded random weights at the preset's
architecture), with the reference weights loaded through dcrt's own loader: a wrong key translation, a missing
branch or a different formula shows as an error far above the 1e-4 bound.

Needs the `[parity]` extra (diffusers, transformers). The tiny preset runs by default; `-m full` runs the released
architecture at a small spatial size.
"""

from __future__ import annotations

import pytest
import torch

from dcrt.families.svd.checkpoint import load_svd_model, load_svd_state
from dcrt.families.svd.keys import diffusers_to_original
from dcrt.presets import get_preset
from tests.models.svd_diffusers import (
    diffusers_unet,
    diffusers_vae,
    follow_original_eps,
    save_diffusers_folder,
    transformers_clip,
)

BOUND = 1e-4


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """(dcrt model loaded from a diffusers folder with a sharded UNet, the three reference models)."""
    preset = get_preset("tiny-svd")
    refs = diffusers_unet(preset), diffusers_vae(preset), transformers_clip(preset)
    root = save_diffusers_folder(tmp_path_factory.mktemp("svd-diffusers"), *refs, max_shard_size="200KB")
    return load_svd_model(root), refs


def unet_error(model, ref, frames: int, latent: int) -> float:
    cfg = model.preset.unet
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, frames, cfg.in_channels, latent, latent, generator=g)  # diffusers: [B, T, C, h, w]
    c_noise = torch.tensor([700.0, 0.1]).log() / 4  # EDM's ln(sigma) / 4 at both ends of the schedule
    context = torch.randn(2, 1, cfg.context_dim, generator=g)
    time_ids = torch.tensor([[5.0, 127.0, 0.02], [3.0, 30.0, 0.1]])
    with torch.no_grad():
        expected = ref(x, c_noise, context, time_ids).sample
        ours = model.unet(x.transpose(1, 2), c_noise, context, time_ids).transpose(1, 2)
    return relative_error(ours, expected)


def vae_errors(model, ref, frames: int, size: int) -> tuple[float, float]:
    """(encoder: posterior mean, decoder: a clip decoded in the preset's chunks, as diffusers' pipeline does)."""
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    z = torch.randn(frames, 4, size // 8, size // 8, generator=g)
    chunk = model.preset.sampling.decode_chunk
    with torch.no_grad():
        encoded = relative_error(model.encode_latents(image), ref.encode(image).latent_dist.mode())
        expected = torch.cat([ref.decode(c, num_frames=len(c)).sample for c in z.split(chunk)])
        decoded = relative_error(model.decode_latents(z * model.vae.cfg.scale_factor), expected)
    return encoded, decoded


def clip_error(model, ref) -> float:
    size = model.preset.image.image_size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        return relative_error(model.image_encoder.encode_pixels(pixels), ref(pixels).image_embeds)


def test_tiny_unet_matches_diffusers(tiny_pair):
    model, (unet, _, _) = tiny_pair
    as_released = unet_error(model, unet, frames=model.preset.frames, latent=8)
    follow_original_eps(unet)
    error = unet_error(model, unet, frames=model.preset.frames, latent=8)
    print(f"tiny UNet relative error {error:.2e} ({as_released:.2e} with diffusers' GroupNorm eps)")
    assert error < BOUND


def test_tiny_vae_matches_diffusers(tiny_pair):
    model, (_, vae, _) = tiny_pair
    assert model.preset.frames % model.preset.sampling.decode_chunk  # a short last chunk is exercised
    encoded, decoded = vae_errors(model, vae, model.preset.frames, size=64)
    print(f"tiny VAE relative error: encoder {encoded:.2e}, temporal decoder {decoded:.2e}")
    assert encoded < BOUND and decoded < BOUND


def test_tiny_image_encoder_matches_transformers(tiny_pair):
    model, (_, _, clip) = tiny_pair
    error = clip_error(model, clip)
    print(f"tiny CLIP image embedding relative error {error:.2e}")
    assert error < BOUND


def test_decode_chunk_is_the_temporal_context(tiny_pair):
    # The same latents decoded in one call and in chunks differ: the chunk is what the temporal layers see.
    model, _ = tiny_pair
    z = torch.randn(model.preset.frames, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = model.vae.decode(z)
        chunked = model.decode_latents(z)
    assert relative_error(chunked, whole) > 1e-3


@pytest.mark.full
def test_full_architecture_matches_diffusers():
    """svd-xt's widths and depths (2.25 B parameters, about 9 GB in fp32) at a 64x64 image, 4 frames."""
    preset = get_preset("svd-xt")
    unet, vae, clip = diffusers_unet(preset), diffusers_vae(preset), transformers_clip(preset)
    # From memory, through the same translation and strict check as a folder on disk; the tensors are shared.
    state = diffusers_to_original(unet.state_dict(), vae.state_dict(), clip.state_dict())
    model = load_svd_state(state, "diffusers")
    assert model.preset.name == "svd-xt"
    as_released = unet_error(model, unet, frames=4, latent=8)
    follow_original_eps(unet)
    errors = {
        "unet": unet_error(model, unet, frames=4, latent=8),
        **dict(zip(("vae encoder", "vae decoder"), vae_errors(model, vae, frames=4, size=64))),
        "clip": clip_error(model, clip),
    }
    print("full-architecture relative errors: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    print(f"(UNet {as_released:.2e} with diffusers' GroupNorm eps)")
    assert all(v < BOUND for v in errors.values()), errors
