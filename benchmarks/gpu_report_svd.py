"""The GPU report's Stable Video Diffusion section (`benchmarks/gpu_report.py --svd svd-xt`; tiny-svd on a dry run):
dcrt's SVD pipeline eager, with the captured Euler runner, and eager under the `low` memory profile (every network
in host memory, on the device only while it runs; the same weights moved to the CPU, the backend given the device;
the decoder's frames per call stay the preset's: a sampling option for SVD), and diffusers'
StableVideoDiffusionPipeline (the baseline of `dcrt bench`), each on seeded random fp16 weights, measured at a few
steps and computed at the preset's 25. The published TensorRT figure for SVD-XT 1.1 on an H100 PCIe is printed
beside them as a reference point (other GPU, other weights' precision path): it is not a claim about dcrt.
"""

from __future__ import annotations

import gc
import importlib.util

import numpy as np
import torch

import dcrt
from dcrt.artifacts.export import relative_error
from dcrt.families.svd.bench import DiffusersBaseline, run_svd_backend, svd_unet_flops
from dcrt.families.svd.options import resolve_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.families.svd.torch_backend import TorchSVDBackend
from dcrt.memory import LOW

# The anchor of issue 18: TensorRT SVD-XT 1.1 on an H100 PCIe, 25 frames at 576x1024, 25 steps.
ANCHOR = {"what": "TensorRT SVD-XT 1.1, H100 PCIe, 25 frames, 25 steps", "end_to_end_s": 22.6, "unet_s": 19.1}
# dcrt eager, dcrt with the captured runner, dcrt eager under `low` (its UNet leaves the device: no graph), diffusers
MODES = ("eager", "graph", "low", "diffusers")


def svd_section(report, preset_name: str, device: torch.device, steps: int, image: np.ndarray) -> None:
    preset = dcrt.get_preset(preset_name)
    dtype = torch.float16 if device.type == "cuda" else torch.float32  # the dry run: fp32 on the CPU
    opts = resolve_svd_options(preset, steps=steps)
    at = preset.sampling.steps
    settings = {"height": preset.height, "width": preset.width, "frames": preset.frames, "steps": steps}
    report.record(preset_name, "kind", value="svd")
    report.record(preset_name, "settings", value=settings | {"computed_at_steps": at, "dtype": str(dtype)})
    report.record(preset_name, "anchor", value=ANCHOR)
    model = dcrt.random_svd_model(preset, seed=0, device=device, dtype=dtype)
    flops = svd_unet_flops(preset)
    latents = {}
    for mode in MODES:
        report.section = f"{preset_name}/{mode}"
        if mode == "diffusers" and not all(importlib.util.find_spec(m) for m in ("diffusers", "transformers")):
            report.record(preset_name, "modes", mode, value="skipped: diffusers / transformers not installed")
            continue
        if mode == "diffusers":
            pipeline = _diffusers(preset, device, dtype)
        elif mode == "low":
            model.place("cpu", dtype)  # the same weights, in host memory (the last dcrt mode: they stay there)
            if device.type == "cuda":  # the graph mode's runner and the device copy, gone before the peak's reset
                gc.collect()
                torch.cuda.empty_cache()
            pipeline = SVDPipeline(TorchSVDBackend(model, LOW, device=device), cuda_graph=False)
        else:
            pipeline = SVDPipeline(TorchSVDBackend(model), cuda_graph=mode == "graph")
        result = run_svd_backend(mode, pipeline, image, opts, warmup=1, repeat=1, log=report.log)
        entry = _entry(result, opts, at, flops)
        if mode != "diffusers":
            entry["memory_profile"] = pipeline.backend.memory.name
        report.record(preset_name, "modes", mode, value=entry)
        if mode != "diffusers":  # the same weights: the runner must not change the numbers
            latents[mode] = pipeline.sample(image, opts).float().cpu()
        del pipeline
    error = relative_error(latents["graph"], latents["eager"])
    report.record(preset_name, "graph_vs_eager_latents_rel_error", value=error)
    report.log(f"graph vs eager latents: {error:.2e}")
    error = relative_error(latents["low"], latents["eager"])  # pieces and one branch a call: fp16 rounding at most
    report.record(preset_name, "low_vs_eager_latents_rel_error", value=error)
    report.log(f"low vs eager latents: {error:.2e}")


def _diffusers(preset, device: torch.device, dtype: torch.dtype) -> DiffusersBaseline:
    from dcrt.families.svd.baseline import load_diffusers_pipeline

    return DiffusersBaseline(load_diffusers_pipeline(preset, None, dtype), preset, device)


def _entry(result, opts, at: int, flops: int) -> dict:
    s = {stage: round(result.median(stage), 4) for stage in ("conditioning", "denoise", "decode", "end_to_end")}
    ms_per_step = s["denoise"] * 1000 / opts.steps
    return {
        "settings": result.settings,
        "seconds": s,
        "ms_per_step": round(ms_per_step, 2),
        f"unet_s_at_{at}_steps": round(ms_per_step * at / 1000, 2),
        f"computed_{at}_step_s": round(s["conditioning"] + ms_per_step * at / 1000 + s["decode"], 2),
        "unet_tflops_effective": round(flops * result.unet_evaluations_per_run / s["denoise"] / 1e12, 2),
        "peak_memory_gib": round(result.peak_memory_bytes / 2**30, 2),
    }


def svd_markdown(name: str, section: dict) -> list[str]:
    settings, anchor = section.get("settings", {}), section.get("anchor", ANCHOR)
    at = settings.get("computed_at_steps")
    lines = [
        "",
        f"## {name} ({settings.get('height')}x{settings.get('width')}, {settings.get('frames')} frames, measured at "
        f"{settings.get('steps')} steps, computed at {at})",
        "",
        f"| mode | ms/step | conditioning s | decode s | UNet s at {at} steps | end-to-end s at {at} steps (computed) "
        "| UNet TFLOP/s | peak GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, m in section.get("modes", {}).items():
        if not isinstance(m, dict):
            lines.append(f"| {mode} | {m} |")
            continue
        s, unet_s, computed = m["seconds"], m[f"unet_s_at_{at}_steps"], m[f"computed_{at}_step_s"]
        lines.append(
            f"| {mode} | {m['ms_per_step']} | {s['conditioning']:.3f} | {s['decode']:.3f} | {unet_s} | {computed} "
            f"| {m['unet_tflops_effective']} | {m['peak_memory_gib']} |"
        )
    lines.append(
        f"| reference: {anchor['what']} (published; not measured here) | - | - | - | {anchor['unet_s']} "
        f"| {anchor['end_to_end_s']} | - | - |"
    )
    if "graph_vs_eager_latents_rel_error" in section:
        lines += ["", f"graph vs eager latents: relative error {section['graph_vs_eager_latents_rel_error']:.2e}"]
    if "low_vs_eager_latents_rel_error" in section:
        lines += ["", f"low vs eager latents: relative error {section['low_vs_eager_latents_rel_error']:.2e}"]
    return lines
