"""What fp8 weight storage (dcrt.models.fp8, `--weights fp8`) costs in accuracy, per component, next to fp16 weights.

    python benchmarks/fp8_error.py [--preset 256] [--unet-latent HxW] [--unet-frames T] [--threads 1] [--out DIR]

Builds the preset's seeded random model in fp32 on the CPU and runs each component once on seeded random inputs of
the preset's shapes: the UNet (one call), the VAE decoder (one frame; the dual-reference decoder: the two key
frames with their references), the VAE encoder (one frame), the text encoder (a tokenised prompt), the image
encoder, and the resampler (fed the full-precision image encoder's tokens). Each runs three ways, every time in
fp32 activations so that only the weights differ: the original weights; the linear-like weights stored in fp8
(`store_module_weights_fp8` on a deep copy of the network); and the same weights rounded to fp16 (the error fp16
storage already costs). Per component: the relative RMS error ||y' - y|| / ||y|| and the max abs error.

The weights are seeded random (no checkpoint): trained weights have other distributions (outlier channels, which
the per-channel scale is for), so these numbers say how fp8 compares to fp16 on the same layers, not what a real
checkpoint's video looks like. A second table gives each network's weight bytes before and after in an fp16 model,
counted on fake tensors (no data).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import dcrt
from dcrt.families import family_of
from dcrt.models.fp8 import linear_like_weights, store_module_weights_fp8, store_weights_fp8

MIB = 2**20


@dataclass(frozen=True)
class Component:
    """One network call: `call(network)` runs it on inputs fixed when the component was made."""

    name: str
    network: str  # the CompositeModel attribute it calls
    call: Callable[[nn.Module], torch.Tensor]


@dataclass
class ComponentError:
    component: str
    output_shape: list[int]
    output_rms: float
    fp8_rel_rms: float
    fp8_max_abs: float
    fp16_rel_rms: float
    fp16_max_abs: float
    seconds_fp32: float  # one call with the original weights
    seconds_fp8: float  # one call with fp8 storage (the upcast included)


@dataclass
class NetworkBytes:
    network: str
    fp16_mib: float  # the network's parameters and buffers in an fp16 model
    fp8_mib: float  # the same after store_weights_fp8


def round_weights_to_fp16(network: nn.Module) -> nn.Module:
    """In place: the weights fp8 would store, rounded to fp16 and kept in fp32 (the comparison's baseline)."""
    with torch.no_grad():
        for layer, name in list(linear_like_weights(network)):
            weight = getattr(layer, name)
            weight.copy_(weight.half().float())
    return network


def weights_in_fp8(network: nn.Module) -> nn.Module:
    store_module_weights_fp8(network)
    return network


# How each variant of a network is made from a deep copy of the original ("fp32" uses the original itself).
VARIANTS: dict[str, Callable[[nn.Module], nn.Module]] = {"fp8": weights_in_fp8, "fp16": round_weights_to_fp16}


def dynamicrafter_components(model, unet_latent: tuple[int, int], frames: int, g: torch.Generator) -> list[Component]:
    """The five networks' calls on seeded inputs; the resampler's input is the fp32 image encoder's output."""
    preset = model.preset
    height, width = preset.height, preset.width
    cfg = preset.unet
    x = torch.randn(1, cfg.in_channels, frames, *unet_latent, generator=g)
    context = torch.randn(1, cfg.text_tokens + cfg.image_tokens_per_frame * frames, cfg.context_dim, generator=g)
    timestep, frame_stride = torch.tensor([500]), torch.tensor([cfg.default_frame_stride])
    image = torch.rand(1, 3, height, width, generator=g) * 2 - 1
    tokens = model.tokenizer(["a red fox running through fresh snow, cinematic lighting"])
    image_tokens = model.image_encoder(image)
    return [
        vae_decode_component(model, image, g),
        Component("vae.encode", "vae", lambda vae: vae.encode(image)),
        Component("text_encoder", "text_encoder", lambda text_encoder: text_encoder(tokens)),
        Component("image_encoder", "image_encoder", lambda image_encoder: image_encoder(image)),
        Component("resampler", "resampler", lambda resampler: resampler(image_tokens)),
        Component("unet", "unet", lambda unet: unet(x, timestep, context, frame_stride)),  # last: the largest
    ]


def vae_decode_component(model, image: torch.Tensor, g: torch.Generator) -> Component:
    """One frame's latents decoded; the dual-reference decoder needs its clip's two key frames and their references
    (taken from the fp32 encoder, the same for every variant)."""
    vae_cfg = model.vae.cfg
    h, w = image.shape[-2] // 8, image.shape[-1] // 8
    if vae_cfg.dual_ref is None:
        z = torch.randn(1, vae_cfg.z_channels, h, w, generator=g)
        return Component("vae.decode", "vae", lambda vae: vae.decode(z))
    keyframes = torch.cat([image, image.flip(-1)])
    z, references = model.vae.encode_keyframes(keyframes)
    return Component("vae.decode", "vae", lambda vae: vae.decode(z, references))


def svd_components(model, unet_latent: tuple[int, int], frames: int, g: torch.Generator) -> list[Component]:
    """SVD's three networks: UNet, VAE (decode, encode), CLIP image embedder."""
    preset = model.preset
    cfg = preset.unet
    x = torch.randn(1, cfg.in_channels, frames, *unet_latent, generator=g)
    c_noise = torch.tensor([0.25])  # ln(sigma) / 4 at sigma = e
    context = torch.randn(1, 1, cfg.context_dim, generator=g)
    sampling = preset.sampling
    added_time_ids = torch.tensor([[sampling.fps - 1.0, float(sampling.motion_bucket_id), sampling.noise_aug_strength]])
    image = torch.rand(1, 3, preset.height, preset.width, generator=g) * 2 - 1
    z = torch.randn(1, preset.vae.z_channels, preset.height // 8, preset.width // 8, generator=g)
    return [
        Component("vae.decode", "vae", lambda vae: vae.decode(z)),
        Component("vae.encode", "vae", lambda vae: vae.encode(image)),
        Component("image_encoder", "image_encoder", lambda image_encoder: image_encoder(image)),
        Component("unet", "unet", lambda unet: unet(x, c_noise, context, added_time_ids)),  # last: the largest
    ]


def build(preset_name: str, seed: int):
    """(the fp32 random model, its components' builder) for the preset's family."""
    preset = dcrt.get_preset(preset_name)
    family = family_of(preset).name
    if family == "svd":
        return dcrt.random_svd_model(preset, seed=seed), svd_components
    return dcrt.random_model(preset, seed=seed), dynamicrafter_components


def timed(call: Callable[[nn.Module], torch.Tensor], network: nn.Module) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = call(network)
    return out.float(), time.perf_counter() - start


def run_variants(networks: dict[str, nn.Module], components: list[Component]) -> dict[str, dict]:
    """{variant: {component: (output, seconds)}}, network by network in the components' order. Each network is
    dropped from `networks` once its components ran, so the peak memory is the networks not yet run plus one copy
    of the current one (the UNet last: the UNet and its copy, 11.6 GB at full size, instead of the model and a
    copy, 16 GB)."""
    results: dict[str, dict[str, tuple[torch.Tensor, float]]] = {"fp32": {}, **{v: {} for v in VARIANTS}}
    for network_name in dict.fromkeys(c.network for c in components):
        calls = [c for c in components if c.network == network_name]
        original = networks.pop(network_name)
        for c in calls:
            results["fp32"][c.name] = timed(c.call, original)
        for variant, make in VARIANTS.items():
            network = make(copy.deepcopy(original))
            for c in calls:
                results[variant][c.name] = timed(c.call, network)
            del network
        del original
    return results


def errors(results: dict[str, dict[str, tuple[torch.Tensor, float]]]) -> list[ComponentError]:
    rows = []
    for name, (ref, seconds) in results["fp32"].items():
        fp8, fp8_seconds = results["fp8"][name]
        fp16, _ = results["fp16"][name]
        rows.append(
            ComponentError(
                component=name,
                output_shape=list(ref.shape),
                output_rms=ref.pow(2).mean().sqrt().item(),
                fp8_rel_rms=((fp8 - ref).norm() / ref.norm()).item(),
                fp8_max_abs=(fp8 - ref).abs().max().item(),
                fp16_rel_rms=((fp16 - ref).norm() / ref.norm()).item(),
                fp16_max_abs=(fp16 - ref).abs().max().item(),
                seconds_fp32=round(seconds, 2),
                seconds_fp8=round(fp8_seconds, 2),
            )
        )
    return rows


def storage_in_fp16(preset_name: str) -> list[NetworkBytes]:
    """Each network's bytes in an fp16 model before and after fp8 storage, on fake tensors (no data, no time)."""
    preset = dcrt.get_preset(preset_name)
    network_type = dcrt.StableVideoDiffusion if family_of(preset).name == "svd" else dcrt.DynamiCrafter
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)  # built in the dtype: converting fake parameters afterwards is unsupported
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            model = network_type(preset)
            report = store_weights_fp8(model)
    finally:
        torch.set_default_dtype(default)
    return [
        NetworkBytes(n, round(report[f"{n}.before"] / MIB, 1), round(report[f"{n}.after"] / MIB, 1))
        for n in model.networks
    ]


def error_table(rows: list[ComponentError]) -> str:
    lines = [
        "| component | output shape | output RMS | fp8 rel RMS | fp8 max abs | fp16 rel RMS | fp16 max abs | "
        "s fp32 | s fp8 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        lines.append(
            f"| {r.component} | {shape} | {r.output_rms:.3g} | {r.fp8_rel_rms:.2e} | {r.fp8_max_abs:.2e} | "
            f"{r.fp16_rel_rms:.2e} | {r.fp16_max_abs:.2e} | {r.seconds_fp32} | {r.seconds_fp8} |"
        )
    return "\n".join(lines)


def bytes_table(rows: list[NetworkBytes]) -> str:
    lines = ["| network | fp16 MiB | fp8 storage MiB |", "|---|---|---|"]
    lines += [f"| {r.network} | {r.fp16_mib} | {r.fp8_mib} |" for r in rows]
    total_fp16, total_fp8 = sum(r.fp16_mib for r in rows), sum(r.fp8_mib for r in rows)
    lines.append(f"| all | {total_fp16:.1f} | {total_fp8:.1f} |")
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def main(argv: list[str] | None = None) -> list[ComponentError]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="256", help="a DynamiCrafter or SVD preset (tiny ones too)")
    parser.add_argument("--seed", type=int, default=0, help="the random weights' and inputs' seed")
    parser.add_argument("--unet-latent", type=parse_size, default=None, help="HxW (default: the preset's size / 8)")
    parser.add_argument("--unet-frames", type=int, default=None, help="default: the preset's frames")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=None, help="write fp8-error-<preset>.json and .md here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    preset = dcrt.get_preset(args.preset)
    latent = args.unet_latent or (preset.height // 8, preset.width // 8)
    frames = args.unet_frames or preset.frames

    model, make_components = build(args.preset, args.seed)
    with torch.inference_mode():
        components = make_components(model, latent, frames, torch.Generator().manual_seed(args.seed))
        networks = {c.network: getattr(model, c.network) for c in components}
        del model  # run_variants frees each network once it is done
        rows = errors(run_variants(networks, components))
    storage = storage_in_fp16(args.preset)

    command = "python benchmarks/fp8_error.py " + " ".join(sys.argv[1:] if argv is None else argv)
    full_size = latent == (preset.height // 8, preset.width // 8) and frames == preset.frames
    unet_size = f"{frames}x{latent[0]}x{latent[1]} latents" + ("" if full_size else " (smaller than the preset's)")
    header = (
        f"`{command}`: preset {args.preset}, **seeded random weights (seed {args.seed}), no checkpoint**; fp32 "
        f"activations on the CPU ({args.threads} thread(s)), only the weights differ; UNet on {unet_size}. "
        "fp8 = e4m3 codes with a scale per output channel; fp16 = the same weights rounded to fp16."
    )
    text = f"{header}\n\n{error_table(rows)}\n\nWeight bytes in an fp16 model (fake tensors):\n\n{bytes_table(storage)}"
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"fp8-error-{args.preset}"
        payload = {
            "command": command,
            "environment": {"device": "cpu", "threads": args.threads, "torch": torch.__version__},
            "preset": args.preset,
            "weights": f"seeded random (seed {args.seed}), no checkpoint",
            "unet_latent": {"frames": frames, "height": latent[0], "width": latent[1], "full_size": full_size},
            "components": [asdict(r) for r in rows],
            "storage_fp16_model": [asdict(r) for r in storage],
        }
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        stem.with_suffix(".md").write_text(text + "\n")
    return rows


if __name__ == "__main__":
    main()
