"""Parity of ToonCrafter's dual-reference VAE (docs/models.md §6.2) against the ORIGINAL `AutoencoderKL_Dualref`.

For parity checks only; never imported by dcrt's runtime. The original is imported from $DCRT_TOONCRAFTER_REPO
(parity.dynamicrafter.original, which lists the stubs), never copied.
"""

from __future__ import annotations

import torch

from dcrt.config import DualRefDecoderConfig


def build_reference_vae(ref, preset, params: dict):
    """The original `AutoencoderKL_Dualref`. Its decoder hard-codes what `DualRefDecoderConfig` describes
    (fusion at levels 2 and 3, 8 heads of 64, temporal kernel 3), so only that configuration can be compared."""
    if ref.AutoencoderKL_Dualref is None:
        raise FileNotFoundError(f"{ref.repo} has no AutoencoderKL_Dualref: name a ToonCrafter checkout")
    if preset.vae.dual_ref != DualRefDecoderConfig():
        raise ValueError(f"the original dual-ref decoder is fixed at {DualRefDecoderConfig()}")
    return ref.AutoencoderKL_Dualref(**params)


@torch.no_grad()
def measure_vae(model, ref_vae, keyframes: torch.Tensor, diff) -> dict:
    """keyframes [2, 3, H, W] in [-1, 1] -> {name: Diff}: latents, each reference feature, and the decoder at the
    two clip lengths of the two-pass decode (both sides given the original's references)."""
    p = model.preset
    f, frames = p.vae.scale_factor, p.frames
    # The original encodes its conditioning video (the first image T/2 times, then the last) in one batch and
    # keeps frames 0 and T-1 of the latents and of every hidden state.
    video = keyframes.repeat_interleave(frames // 2, dim=0)
    posterior, hidden = ref_vae.encode(video, return_hidden_states=True)
    ends = [0, frames - 1]
    z, references = model.encode_keyframes(keyframes)
    res = {"vae_encoder": diff(z, posterior.mean[ends] * f, frames=list(keyframes.shape))}
    ref_references = tuple(hid[ends] for hid in hidden)
    for i, (ours, theirs) in enumerate(zip(references, ref_references, strict=True)):
        res[f"vae_reference_{i}"] = diff(ours, theirs)
    ref_context = [r.transpose(0, 1)[None] for r in ref_references]  # [1, C, 2, H_k, W_k] as the original takes
    gen = torch.Generator().manual_seed(1)
    h, w = keyframes.shape[2] // p.vae.downscale, keyframes.shape[3] // p.vae.downscale
    for t in (frames, frames - 2):
        latents = torch.randn(t, p.vae.z_channels, h, w, generator=gen)
        res[f"vae_decoder@{t}_frames"] = diff(
            model.decode_latents(latents, ref_references),
            ref_vae.decode(latents / f, ref_context=ref_context, timesteps=t),
            z=list(latents.shape),
        )
    return res
