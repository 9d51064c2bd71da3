"""Per-component parity: dcrt's modules against the ORIGINAL DynamiCrafter modules, on the same weights.

For parity checks only; never imported by dcrt's runtime. The original code is never copied: it is imported
from $DCRT_REFERENCE_REPO (parity.dynamicrafter.original, which lists every stub and patch applied to it).

Flow: `dcrt.save_checkpoint(model, path)` writes the original checkpoint layout; every reference module
is built from the same dcrt `Preset` and loaded *strictly* from its prefix of that state dict; both sides
then run on identical seeded inputs and we report ||dcrt - ref|| / ||ref|| per component.
"""

from __future__ import annotations

import contextlib
import gc
import io
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from parity.dynamicrafter import dual_ref
from parity.dynamicrafter.original import (
    import_reference,
    open_clip_arch,
    patch_visual_tower,
    quiet_logging,
    reference_repo,
    restore_sequence_first,
    skip_init,
)

PROMPTS = ("a corgi running on the beach at sunset, cinematic", "", "fireworks over a city at night")


# ------------------------------------------------------------------------------------------------
# Building reference modules from a dcrt preset


def _slice(state_dict: dict, prefix: str, rename: dict[str, str] | None = None) -> dict:
    out = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            key = key[len(prefix) :]
            for old, new in (rename or {}).items():
                key = key.replace(old, new)
            out[key] = value
    return out


class KeyMismatch(AssertionError):
    pass


def _load_strict(module: nn.Module, state_dict: dict, prefix: str, rename=None) -> None:
    sub = _slice(state_dict, prefix, rename)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(sub))
    unexpected = sorted(set(sub) - set(expected))
    shapes = sorted(k for k in set(sub) & set(expected) if tuple(sub[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or shapes:
        lines = [f"checkpoint slice {prefix!r} does not match the original {type(module).__name__}:"]
        lines += [f"  missing    {prefix}{k} {tuple(expected[k].shape)}" for k in missing]
        lines += [f"  unexpected {prefix}{k} {tuple(sub[k].shape)}" for k in unexpected]
        lines += [f"  shape      {prefix}{k} ckpt {tuple(sub[k].shape)} ref {tuple(expected[k].shape)}" for k in shapes]
        raise KeyMismatch("\n".join(lines))
    # assign=True: parameters alias the (memory-mapped) checkpoint tensors instead of copying them, so a
    # reference part costs page cache rather than another ~6 GB of anonymous memory for a full UNet.
    module.load_state_dict({k: v.float() for k, v in sub.items()}, strict=True, assign=True)


def unet_params(preset, dropout: float = 0.0) -> dict:
    """The original `UNetModel` keyword arguments for this preset (the inference yaml's `unet_config`)."""
    u = preset.unet
    return dict(
        in_channels=u.in_channels,
        model_channels=u.model_channels,
        out_channels=u.out_channels,
        num_res_blocks=u.num_res_blocks,
        attention_resolutions=list(u.attention_resolutions),
        dropout=dropout,
        channel_mult=list(u.channel_mult),
        num_head_channels=u.head_channels,
        transformer_depth=1,
        context_dim=u.context_dim,
        use_linear=True,
        use_checkpoint=False,
        temporal_conv=True,
        temporal_attention=True,
        temporal_selfatt_only=True,
        use_relative_position=False,
        use_causal_attention=False,
        temporal_length=preset.frames,
        addition_attention=True,
        image_cross_attention=True,
        image_cross_attention_scale_learnable=u.learnable_image_attn_scale,
        default_fs=u.default_frame_stride,
        fs_condition=True,
    )


def vae_params(preset) -> dict:
    """The original `AutoencoderKL` keyword arguments for this preset (the yaml's `first_stage_config`)."""
    v = preset.vae
    ddconfig = dict(
        double_z=True,
        z_channels=v.z_channels,
        resolution=256,
        in_channels=v.in_channels,
        out_ch=v.out_channels,
        ch=v.ch,
        ch_mult=list(v.ch_mult),
        num_res_blocks=v.num_res_blocks,
        attn_resolutions=[],
        dropout=0.0,
    )
    return dict(embed_dim=v.z_channels, lossconfig={"target": "torch.nn.Identity"}, ddconfig=ddconfig)


def resampler_params(preset) -> dict:
    """The original `Resampler` keyword arguments for this preset (the yaml's `image_proj_stage_config`)."""
    r = preset.resampler
    return dict(
        dim=r.dim,
        depth=r.depth,
        dim_head=r.dim_head,
        heads=r.heads,
        num_queries=r.num_queries,
        embedding_dim=r.embedding_dim,
        output_dim=r.output_dim,
        ff_mult=r.ff_mult,
        video_length=r.video_length,
    )


def _ref_unet(ref, preset):
    return ref.UNetModel(**unet_params(preset))


def _ref_vae(ref, preset):
    if preset.vae.dual_ref is None:
        return ref.AutoencoderKL(**vae_params(preset))
    return dual_ref.build_reference_vae(ref, preset, vae_params(preset))


def _ref_text(ref, preset):
    m = ref.FrozenOpenCLIPEmbedder(arch=open_clip_arch(preset), version=None, device="cpu", layer="penultimate")
    restore_sequence_first(m.model.transformer)
    return m


def _ref_image(ref, preset):
    m = ref.FrozenOpenCLIPImageEmbedderV2(arch=open_clip_arch(preset), version=None, device="cpu")
    patch_visual_tower(m.model.visual)
    return m


def _ref_resampler(ref, preset):
    return ref.Resampler(**resampler_params(preset))


@dataclass(frozen=True)
class _Part:
    build: object
    prefix: str
    target: str = ""  # sub-module of the built object that owns the checkpoint slice


PARTS = {
    "unet": _Part(_ref_unet, "model.diffusion_model."),
    "vae": _Part(_ref_vae, "first_stage_model."),
    "text": _Part(_ref_text, "cond_stage_model.model.", "model"),
    "image": _Part(_ref_image, "embedder.model.", "model"),
    "resampler": _Part(_ref_resampler, "image_proj_model."),
}


def build_reference_components(
    preset, state_dict: dict | None, parts=tuple(PARTS), repo: Path | None = None
) -> dict[str, nn.Module]:
    """Original modules for `preset` (eval, fp32), strictly loaded from a checkpoint in the original layout.

    `state_dict=None` builds without loading (only for inspecting key layouts; weights are then garbage).
    """
    ref = import_reference(repo or reference_repo(preset))
    out = {}
    for name in parts:
        part = PARTS[name]
        # The original constructors print shapes and open_clip warns about random init; keep output clean.
        with skip_init(), contextlib.redirect_stdout(io.StringIO()), quiet_logging():
            module = part.build(ref, preset)
        if state_dict is not None:
            # The 256 checkpoints store the fs MLP under its older name (docs/models.md §1.8).
            rename = {preset.fs_embed_checkpoint_name + ".": "fps_embedding."} if name == "unet" else None
            target = getattr(module, part.target) if part.target else module
            _load_strict(target, state_dict, part.prefix, rename)
        out[name] = module.eval().float().requires_grad_(False)
    return out


def reference_checkpoint_shapes(preset, repo: Path | None = None) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the original model's checkpoint sections that dcrt writes (schedule buffers excluded),
    using the preset's fs-MLP name. Cheap even for full presets: built without init, pages never touched."""
    comps = build_reference_components(preset, None, repo=repo)
    shapes = {}
    for name, module in comps.items():
        part = PARTS[name]
        target = getattr(module, part.target) if part.target else module
        for key, value in target.state_dict().items():
            if name == "unet":
                key = key.replace("fps_embedding.", preset.fs_embed_checkpoint_name + ".")
            shapes[part.prefix + key] = tuple(value.shape)
    return shapes


# ------------------------------------------------------------------------------------------------
# Comparing


@dataclass(frozen=True)
class ParitySizes:
    """Input sizes; small spatial sizes keep full presets affordable on a CPU."""

    batch: int = 1
    latent_hw: tuple[int, int] = (16, 16)
    timesteps: tuple[int, ...] = (999, 399, 19)
    image_hw: tuple[tuple[int, int], ...] = ((320, 512), (256, 256))  # both exercise the antialias blur
    vae_hw: tuple[int, int] = (64, 64)
    seed: int = 0


@dataclass(frozen=True)
class Diff:
    rel: float  # ||out - ref|| / ||ref||
    max_abs: float
    shape: tuple[int, ...]
    inputs: dict = field(default_factory=dict)


def diff(out: torch.Tensor, ref: torch.Tensor, **inputs) -> Diff:
    if out.shape != ref.shape:
        raise AssertionError(f"shape mismatch: dcrt {tuple(out.shape)} vs ref {tuple(ref.shape)}")
    out, ref = out.double(), ref.double()
    rel = ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()
    return Diff(rel, (out - ref).abs().max().item(), tuple(ref.shape), inputs)


def _randn(gen, *shape):
    return torch.randn(*shape, generator=gen)


def _rand_pm1(gen, *shape):
    return torch.rand(*shape, generator=gen) * 2 - 1


@torch.no_grad()
def measure_components(model, ref: dict[str, nn.Module], sizes: ParitySizes = ParitySizes()) -> dict[str, Diff]:
    """Run dcrt and reference on identical seeded inputs, for every part present in `ref`."""
    import open_clip

    p = model.preset
    gen = torch.Generator().manual_seed(sizes.seed)
    res: dict[str, Diff] = {}
    if "text" in ref:
        tokens = open_clip.tokenize(list(PROMPTS))
        res["text_encoder"] = diff(
            model.text_encoder(tokens), ref["text"].encode_with_transformer(tokens), tokens=list(tokens.shape)
        )
        res["encode_text"] = diff(model.encode_text(list(PROMPTS)), ref["text"](list(PROMPTS)), prompts=len(PROMPTS))
    if "image" in ref:
        for h, w in sizes.image_hw:
            image = _rand_pm1(gen, sizes.batch, 3, h, w)
            res[f"image_encoder@{h}x{w}"] = diff(
                model.image_encoder(image), ref["image"](image), image=[sizes.batch, 3, h, w]
            )
    if "resampler" in ref:
        tokens = _randn(gen, sizes.batch, p.image.num_tokens, p.resampler.embedding_dim)
        res["resampler"] = diff(model.resampler(tokens), ref["resampler"](tokens), tokens=list(tokens.shape))
    if "unet" in ref:
        (h, w), b = sizes.latent_hw, sizes.batch
        context_len = p.unet.text_tokens + p.frames * p.unet.image_tokens_per_frame
        x = _randn(gen, b, p.unet.in_channels, p.frames, h, w)
        context = _randn(gen, b, context_len, p.unet.context_dim)
        fs = torch.full((b,), p.sampling.frame_stride, dtype=torch.long)
        for t in sizes.timesteps:
            tt = torch.full((b,), t, dtype=torch.long)
            res[f"unet@t={t}"] = diff(
                model.unet(x, tt, context, fs),
                ref["unet"](x, tt, context=context, fs=fs),
                x=list(x.shape),
                context=list(context.shape),
                fs=p.sampling.frame_stride,
            )
    if "vae" in ref and p.vae.dual_ref is not None:
        res.update(dual_ref.measure_vae(model, ref["vae"], _rand_pm1(gen, 2, p.vae.in_channels, *sizes.vae_hw), diff))
    elif "vae" in ref:
        (h, w), n, f = sizes.vae_hw, max(sizes.batch, 2), p.vae.scale_factor
        frames = _rand_pm1(gen, n, p.vae.in_channels, h, w)
        res["vae_encoder"] = diff(
            model.encode_latents(frames), ref["vae"].encode(frames).mean * f, frames=list(frames.shape)
        )
        z = _randn(gen, n, p.vae.z_channels, h // p.vae.downscale, w // p.vae.downscale)
        res["vae_decoder"] = diff(model.decode_latents(z), ref["vae"].decode(z / f), z=list(z.shape))
    return res


def compare_components(model, ref: dict[str, nn.Module], sizes: ParitySizes = ParitySizes()) -> dict[str, float]:
    """Relative error ||dcrt - ref|| / ||ref|| per component (see `measure_components`)."""
    return {name: d.rel for name, d in measure_components(model, ref, sizes).items()}


def load_checkpoint_state_dict(path: Path) -> dict:
    """State dict of a dcrt checkpoint, memory-mapped so a 10 GB file costs no resident memory."""
    return torch.load(path, map_location="cpu", mmap=True, weights_only=True)["state_dict"]


def run_parity(
    model,
    state_dict: dict,
    sizes: ParitySizes = ParitySizes(),
    parts=tuple(PARTS),
    repo: Path | None = None,
    on_result=None,
) -> dict[str, Diff]:
    """Build one reference part at a time, compare it, free it: peak memory is dcrt + one ref part."""
    results: dict[str, Diff] = {}
    for part in parts:
        ref = build_reference_components(model.preset, state_dict, parts=(part,), repo=repo)
        new = measure_components(model, ref, sizes)
        del ref
        gc.collect()
        results.update(new)
        if on_result is not None:
            on_result(part, new)
    return results


@torch.no_grad()
def divergence_by_module(
    dcrt_module: nn.Module, ref_module: nn.Module, run_dcrt, run_ref
) -> list[tuple[str, float | None]]:
    """Diagnose a mismatch: hook every sub-module whose qualified name exists on both sides, run both, and
    return (name, rel error of its first output) in the reference's execution order; None = shapes differ.
    The first entry above tolerance points at the sub-module that differs (dcrt mirrors the original names).

        components.divergence_by_module(model.unet, ref["unet"], lambda: model.unet(x, t, c, fs),
                                        lambda: ref["unet"](x, t, context=c, fs=fs))
    """

    def record(module, store):
        handles = []
        for name, sub in module.named_modules():

            def hook(_m, _inp, out, name=name):
                out = out[0] if isinstance(out, (tuple, list)) else out
                if name not in store and isinstance(out, torch.Tensor):
                    store[name] = out.detach().clone()

            handles.append(sub.register_forward_hook(hook))
        return handles

    outs_dcrt, outs_ref = {}, {}
    handles = record(dcrt_module, outs_dcrt) + record(ref_module, outs_ref)
    try:
        run_dcrt()
        run_ref()
    finally:
        for h in handles:
            h.remove()
    report = []
    for name, ref_out in outs_ref.items():  # dicts keep insertion = execution order
        if name in outs_dcrt:
            out = outs_dcrt[name]
            report.append((name or "<root>", diff(out, ref_out).rel if out.shape == ref_out.shape else None))
    return report
