"""gpu_report's torch side (benchmarks/gpu_report.py imports it only after its first JSON is written, so that an
import failure is recorded, never lost): the fused kernels' compile and load, every sampling mode per preset
(`MODES`, `pipeline_for_mode`, `measure_mode`, `preset_section`), their comparisons (`COMPARISONS`), the long
video, the SVD and aoti sections' entry points, and the Markdown table.

Per preset, seeded random weights are drawn on the device, and every mode samples the same image, prompt
and noise: the fp32 reference (TF32 off), the baseline (the original's way), dcrt eager fp16, the captured
graph, graph + fused kernels, the same with whole transformer blocks (no token pieces: what `fast`'s pieces
cost), the `balanced` and `low` memory profiles (dcrt.memory), and bf16 graph + fused kernels. An offloading
profile's mode takes the same weights moved to host memory (drawn on the device: CUDA's generator draws other
values than the CPU's), with its backend given the device. Each mode runs once to warm up (and capture)
and once timed (the dry run: once), at `--steps` steps: conditioning, denoising (ms per step) and decoding
are measured; the 50-step time is computed from those measured parts and labelled so. Then the modes are
compared: relative error of the final latents and PSNR of the decoded frames.
"""

from __future__ import annotations

import gc
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from gpu_report_aoti import aoti_markdown, aoti_section
from gpu_report_svd import svd_markdown, svd_section

import dcrt
from dcrt.artifacts.export import relative_error
from dcrt.bench import StageClock, environment, peak_memory_bytes, peak_memory_reset, synchronize
from dcrt.errors import DcrtError
from dcrt.families.dynamicrafter.baseline import BaselineBackend
from dcrt.families.dynamicrafter.flops import unet_flops
from dcrt.families.dynamicrafter.options import resolve_options
from dcrt.families.dynamicrafter.pipeline import Pipeline, guidance_for
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.families.state_dicts import WEIGHT_DTYPES
from dcrt.memory import BALANCED, FAST, LOW, PROFILES, MemoryProfile
from dcrt.runners import kernel_compile, kernels

if TYPE_CHECKING:
    from gpu_report import Report

PROMPT = "a boat sailing on a calm sea at sunset"
STEPS_COMPUTED = 50  # the released models' default: the figure computed from the measured parts


@dataclass(frozen=True)
class Mode:
    name: str
    dtype: str  # key of WEIGHT_DTYPES: the weights
    baseline: bool = False  # BaselineBackend: the original's way of running the same weights
    cuda_graph: bool = False
    fused_kernels: bool = False
    reference: bool = False  # fp32 with TF32 off: what the other modes are checked against
    memory: MemoryProfile = field(default=FAST)  # the TorchBackend's profile (the baseline runs its own way)
    # Skipped by --dry-run: at the tiny preset's size no transformer block is large enough to split, so the
    # unchunked mode is graph-fused-fp16 again (a CPU minute for nothing).
    gpu_only: bool = False

    @property
    def offloads(self) -> bool:
        """Whether its model lives in host memory (loaded on the CPU, the backend given the device)."""
        return self.memory.offload or self.memory.offload_unet


# FAST without its token pieces: every transformer block over its whole batch at once (not a profile of dcrt's).
WHOLE_BLOCKS = replace(FAST, name="whole-blocks", token_chunk=None, summary="fast, transformer blocks unchunked")

# Grouped by weights, so one model per dtype is resident at a time; the offloading modes last among the fp16 ones.
MODES = (
    Mode("fp32-reference", "fp32", reference=True),
    Mode("baseline", "fp32", baseline=True),
    Mode("eager-fp16", "fp16"),
    Mode("graph-fp16", "fp16", cuda_graph=True),
    Mode("graph-fused-fp16", "fp16", cuda_graph=True, fused_kernels=True),
    Mode("whole-blocks-fp16", "fp16", cuda_graph=True, fused_kernels=True, memory=WHOLE_BLOCKS, gpu_only=True),
    # balanced keeps the UNet on the device: graphs work. low moves it off after sampling: eager.
    Mode("balanced-fp16", "fp16", cuda_graph=True, fused_kernels=True, memory=BALANCED),
    Mode("low-fp16", "fp16", memory=LOW),
    Mode("graph-fused-bf16", "bf16", cuda_graph=True, fused_kernels=True),
)
# (mode, against): what each comparison shows.
COMPARISONS = (
    ("graph-fp16", "eager-fp16"),  # capture changes nothing
    ("graph-fused-fp16", "graph-fp16"),  # the fused kernels change (almost) nothing
    ("baseline", "fp32-reference"),  # fp16 autocast, the original's way
    ("eager-fp16", "fp32-reference"),  # fp16 weights
    ("graph-fused-fp16", "fp32-reference"),
    ("graph-fused-bf16", "fp32-reference"),  # bf16 weights
    # The profiles change no picture: identical, or within fp16 rounding where low's UNet batch of 1 changes the
    # kernels' batch sizes.
    ("whole-blocks-fp16", "graph-fused-fp16"),
    ("balanced-fp16", "graph-fused-fp16"),
    ("low-fp16", "graph-fused-fp16"),
)
LONG_VIDEO_MODE = "graph-fused-fp16"
# Peak-memory targets (GB, 1e9 bytes) that the half-precision modes are held to; issue 16 set ToonCrafter's.
# `python benchmarks/memory.py` estimates the same figure without a GPU.
MEMORY_TARGETS_GB = {"tooncrafter": 10}


# --- sections -----------------------------------------------------------------------------------


def device_for(dry_run: bool) -> torch.device | None:
    """The dry run's CPU, else the GPU; None where no CUDA GPU is visible."""
    if dry_run:
        return torch.device("cpu")
    return torch.device("cuda") if torch.cuda.is_available() else None


def record_environment(report: Report, device: torch.device) -> None:
    """The conditions the report states (device, versions, commit, load), before the first section."""
    report.data["environment"] = environment(device)
    report.save()
    report.log(f"{report.data['environment']['device']}, budget {report.budget_s:.0f} s")


def preset_error(args) -> str | None:
    """Why a preset of the command line cannot serve its section, in one line; None when all can."""
    named = [(name, "dynamicrafter", "--presets (SVD goes to --svd)") for name in {*args.presets, args.long_video}]
    named += [(args.svd, "svd", "--svd"), (args.aoti_preset, "dynamicrafter", "--aoti-preset")]
    for name, family, what in named:
        try:
            dcrt.get_preset(name).require_family(family, what)
        except DcrtError as exc:
            return str(exc)
    return None


def section_bodies(report: Report, args, device: torch.device, work: Path) -> dict[str, Callable[[], None]]:
    """The torch side's sections by name (gpu_report.section_names orders them and adds the pytest children)."""
    steps, dry_run, svd = args.steps, args.dry_run, dcrt.get_preset(args.svd)
    bodies = {"kernels": lambda: kernels_section(report, device)}
    for name in args.presets:
        bodies[name] = lambda name=name: preset_section(report, name, device, steps, dry_run)
    bodies["long-video"] = lambda: long_video_section(
        report, args.long_video, args.long_video_frames, device, steps, dry_run
    )
    bodies[svd.name] = lambda: svd_section(report, svd.name, device, steps, test_image(svd.height, svd.width))
    bodies["aoti"] = lambda: aoti_section(report, args.aoti_preset, device, dry_run, work)
    return bodies


def kernels_section(report: Report, device: torch.device) -> None:
    arch = "sm_90"
    if device.type == "cuda":
        arch = kernel_compile.arch_for_capability(*torch.cuda.get_device_capability(device))
    start = time.perf_counter()
    kernel_compile.compile_cubin(arch, cache=False)
    report.record("kernels", "nvrtc", value={"version": kernel_compile.nvrtc_version(), "arch": arch})
    report.record("kernels", "compile_s", value=round(time.perf_counter() - start, 2))
    if device.type == "cuda":
        start = time.perf_counter()
        kernels.load_kernels(device)
        report.record("kernels", "load_s", value=round(time.perf_counter() - start, 2))


@dataclass
class ModeResult:
    latents: torch.Tensor  # float32, on the CPU
    frames: np.ndarray  # uint8 [T, H, W, 3]


def test_image(height: int, width: int) -> np.ndarray:
    """A smooth seeded picture (gradients and a disc): the same input for every mode."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05).astype(np.float64)
    image = np.stack([x, y, 0.5 * disc + 0.25 * (1 - x)], axis=-1)
    return (image * 255).clip(0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def pipeline_for_mode(model, mode: Mode, dry_run: bool, device: torch.device | None = None) -> Pipeline:
    """`device`: where the mode runs (default: where the model is; an offloading mode's model is in host memory)."""
    backend = BaselineBackend(model) if mode.baseline else TorchBackend(model, memory=mode.memory, device=device)
    if mode.cuda_graph and not backend.capturable:  # on the CPU too, where the Pipeline captures nothing
        raise ValueError(f"mode {mode.name}: its {mode.memory.name} profile's backend is not capturable")
    fused = mode.fused_kernels
    if fused and dry_run:  # no CUDA: the kernels' torch reference runs the same fused wiring
        fused = kernels.ReferenceKernels()
    return Pipeline(backend, cache_unconditional=not mode.baseline, cuda_graph=mode.cuda_graph, fused_kernels=fused)


def measure_mode(
    report: Report,
    preset_name: str,
    mode: Mode,
    model,
    opts,
    image,
    dry_run: bool,
    label: str | None = None,
    device: torch.device | None = None,
) -> ModeResult:
    """Warm up, then time one run of `mode` on `device` (default: the model's); recorded as `label` (default: the
    mode's name) in `preset_name`. The preset's first task: animate, or interpolate (the same image at both ends)
    for interpolation models. Peak memory and time are the run's device's, not where an offloaded model lives."""
    task = model.preset.modes[0]
    images = [image, image] if task == "interpolate" else [image]
    pipeline = pipeline_for_mode(model, mode, dry_run, device)
    device = pipeline.backend.device
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if mode.reference:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        peak_memory_reset(device)
        runs = []
        # A warm-up (lazy init, cuDNN plans, graph capture), then timed. The dry run checks wiring, not speed, and
        # its CPU captures nothing: one run (fp16 on a CPU is slow enough to take the test suite past its timeout).
        for _ in range(1 if dry_run else 2):
            clock = StageClock(device)
            with clock("end_to_end"):
                result = pipeline.generate(images, PROMPT, task, opts, timer=clock)
            runs.append(clock.seconds)
        peak = peak_memory_bytes(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    timed = runs[-1]
    ms_per_step = timed["denoise"] * 1000 / opts.steps
    evaluations = opts.steps * guidance_for(opts).branches * opts.windows(task).count
    latents = result.latents.float().cpu()
    entry = {
        "precision": pipeline.backend.precision,
        "memory_profile": "baseline" if mode.baseline else mode.memory.name,
        "token_chunk": None if mode.baseline else mode.memory.token_chunk,
        "offloaded": list(getattr(getattr(pipeline.backend, "placement", None), "offloaded", ())),
        "cuda_graph": pipeline.capture,
        "fused_kernels": type(pipeline.kernels).__name__ if pipeline.kernels is not None else None,
        "seconds": {stage: round(s, 4) for stage, s in timed.items()},
        "warmup_end_to_end_s": round(runs[0]["end_to_end"], 3) if len(runs) > 1 else None,
        "ms_per_step": round(ms_per_step, 2),
        f"computed_{STEPS_COMPUTED}_step_s": round(
            timed["conditioning"] + ms_per_step * STEPS_COMPUTED / 1000 + timed["decode"], 2
        ),
        "ms_per_frame": round(timed["end_to_end"] * 1000 / opts.frames, 2),
        "unet_tflops_effective": round(
            unet_flops(model.preset, 1, opts.height, opts.width) * evaluations / timed["denoise"] / 1e12, 2
        ),
        "peak_memory_gib": round(peak / 2**30, 2),
        "latents_finite": bool(torch.isfinite(latents).all()),
        "black_frames": int((result.frames.reshape(len(result.frames), -1).max(axis=1) < 8).sum()),
    }
    report.record(preset_name, "modes", label or mode.name, value=entry)
    report.log(
        f"{label or mode.name}: {ms_per_step:.1f} ms/step, conditioning {timed['conditioning']:.2f} s, "
        f"decode {timed['decode']:.2f} s, peak {entry['peak_memory_gib']} GiB"
    )
    return ModeResult(latents, result.frames)


def decoder_check(report: Report, preset_name: str, model, latents: torch.Tensor) -> None:
    """The fp16 VAE decode of real latents: no NaN/Inf in its float output, no black frames."""
    backend = TorchBackend(model)
    z = latents.to(model.device)[0].transpose(0, 1)  # [T, 4, h, w]
    with torch.inference_mode():
        video = torch.cat([backend.decode_latents(c).float().cpu() for c in z.split(backend.decode_chunk)])
    frame_max = video.flatten(1).amax(dim=1)
    report.record(
        preset_name,
        f"vae_decode_{str(model.dtype).removeprefix('torch.')}",
        value={
            "finite": bool(torch.isfinite(video).all()),
            "black_frames": int((frame_max <= -1 + 2 * 8 / 255).sum()),  # every pixel under 8 of 255
            "min": float(video.min()),
            "max": float(video.max()),
        },
    )


def compare(report: Report, preset_name: str, results: dict[str, ModeResult]) -> None:
    for mode, against in COMPARISONS:
        if mode in results and against in results:
            a, b = results[mode], results[against]
            decibels = psnr(a.frames, b.frames)
            entry = {
                "latents_rel_error": relative_error(a.latents, b.latents),
                "frames_psnr_db": round(decibels, 2) if math.isfinite(decibels) else "identical",
            }
            report.record(preset_name, "comparisons", f"{mode} vs {against}", value=entry)
            report.log(
                f"{mode} vs {against}: rel. error {entry['latents_rel_error']:.2e}, {entry['frames_psnr_db']} dB"
            )


def preset_section(report: Report, preset_name: str, device: torch.device, steps: int, dry_run: bool) -> None:
    preset = dcrt.get_preset(preset_name)
    opts = resolve_options(preset, steps=steps, seed=123)
    image = test_image(opts.height, opts.width)
    report.record(preset_name, "settings", value={"height": opts.height, "width": opts.width, "steps": steps})
    results: dict[str, ModeResult] = {}
    model, model_dtype = None, None
    for mode in MODES:
        report.section = f"{preset_name}/{mode.name}"
        if report.left() < report.reserve_s(preset_name) / len(MODES):
            report.record(preset_name, "modes", mode.name, value="skipped (budget)")
            continue
        if dry_run and mode.gpu_only:
            report.record(preset_name, "modes", mode.name, value="not run on --dry-run (no block splits at tiny sizes)")
            continue
        try:
            if mode.dtype != model_dtype:
                model = None  # one model resident at a time
                _empty_cache(device)
                start = time.perf_counter()
                model, model_dtype = (
                    dcrt.random_model(preset, seed=0, device=device, dtype=WEIGHT_DTYPES[mode.dtype]),
                    mode.dtype,
                )
                report.log(f"random {mode.dtype} weights on {device} in {time.perf_counter() - start:.1f} s")
            place_for_mode(report, model, mode, device)
            results[mode.name] = measure_mode(report, preset_name, mode, model, opts, image, dry_run, device=device)
            if mode.name == "eager-fp16" and preset.vae.dual_ref is None:  # a clip decoder needs its references
                decoder_check(report, preset_name, model, results[mode.name].latents)
        except Exception as exc:
            report.log("FAILED:\n" + traceback.format_exc())
            report.record(preset_name, "modes", mode.name, value=f"failed: {type(exc).__name__}: {exc}"[:500])
        _empty_cache(device)
    report.section = preset_name
    compare(report, preset_name, results)
    memory_target(report, preset_name)
    failed = [m.name for m in MODES if str(report.data["sections"][preset_name]["modes"][m.name]).startswith("failed")]
    if failed:
        raise RuntimeError(f"modes failed: {', '.join(failed)}")


def place_for_mode(report: Report, model, mode: Mode, device: torch.device) -> None:
    """The model where `mode` keeps it: on `device`, or in host memory for an offloading profile. The same weights
    move (drawn once per dtype, on the device); placing every network also undoes what the last mode's placement
    left (balanced leaves the UNet on the device, where low needs it in host memory)."""
    home = torch.device("cpu") if mode.offloads else device
    where = {model.device_of(name).type for name in model.networks}
    if where != {home.type} or mode.offloads:
        start = time.perf_counter()
        model.place(home, WEIGHT_DTYPES[mode.dtype])
        _empty_cache(device)
        report.log(f"{mode.dtype} weights placed on {home} in {time.perf_counter() - start:.1f} s")


def memory_target(report: Report, preset_name: str) -> None:
    """The half-precision modes' peak memory against the preset's target, if it has one."""
    if preset_name not in MEMORY_TARGETS_GB:
        return
    target = MEMORY_TARGETS_GB[preset_name]
    modes = report.data["sections"][preset_name]["modes"]
    # dcrt's own profiles only: whole-blocks-fp16 measures what fast's token pieces save, it is no way to run
    half = {m.name for m in MODES if m.dtype != "fp32" and m.memory in PROFILES.values()}
    peaks = {
        name: round(entry["peak_memory_gib"] * 2**30 / 1e9, 2)
        for name, entry in modes.items()
        if name in half and isinstance(entry, dict)  # measured, not skipped or failed
    }
    entry = {"target_gb": target, "peak_gb": peaks, "met": bool(peaks) and max(peaks.values()) <= target}
    report.record(preset_name, "memory_target", value=entry)
    report.log(f"peak memory of the half-precision modes {peaks} GB, target {target} GB: met {entry['met']}")


def long_video_section(
    report: Report, preset_name: str, long_frames: int, device: torch.device, steps: int, dry_run: bool
) -> None:
    """The fastest mode at 16 and at `long_frames` frames (one sampling pass over overlapping 16-frame windows), side
    by side: ms per step and per frame grow with the number of windows (docs/sampling.md §4.10), and the long video
    stays finite."""
    preset = dcrt.get_preset(preset_name)
    mode = next(m for m in MODES if m.name == LONG_VIDEO_MODE)
    model = dcrt.random_model(preset, seed=0, device=device, dtype=WEIGHT_DTYPES[mode.dtype])
    sizes = {"height": preset.height, "width": preset.width, "steps": steps}
    report.record("long-video", "settings", value=sizes | {"preset": preset_name, "frames": f"16, {long_frames}"})
    for frames in (preset.frames, long_frames):
        opts = resolve_options(preset, steps=steps, seed=123, frames=frames)
        label = f"{mode.name}, {frames} frames ({opts.windows('animate').count} windows)"
        report.section = f"long-video/{label}"
        measure_mode(report, "long-video", mode, model, opts, test_image(opts.height, opts.width), dry_run, label)
        _empty_cache(device)


def _empty_cache(device: torch.device) -> None:
    synchronize(device)
    if device.type == "cuda":
        gc.collect()  # a finished mode's pipeline and graphs, so that the next mode's peak starts from its own
        torch.cuda.empty_cache()


# --- the table ----------------------------------------------------------------------------------


def markdown(data: dict) -> str:
    env = data.get("environment", {})
    lines = [
        f"# GPU report: {env.get('device', '?')}",
        "",
        f"torch {env.get('torch')}, CUDA {env.get('cuda')}, driver {env.get('driver')}, "
        f"commit {env.get('git_commit')}; {data.get('elapsed_s')} s, status {data.get('status')}",
        "",
        "| section | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s.get('status')} | {s.get('seconds', '-')} |" for name, s in data["sections"].items()]
    for name, section in data["sections"].items():  # the pytest children's tests that did not pass, each named
        if section.get("not_passed"):
            lines += ["", f"{name}, not passed:", "", *(f"- `{line}`" for line in section["not_passed"])]
    computed = f"computed_{STEPS_COMPUTED}_step_s"
    for name, section in data["sections"].items():
        if section.get("kind") == "svd":
            lines += svd_markdown(name, section)
            continue
        modes = section.get("modes")
        if not isinstance(modes, dict):
            continue
        settings = section.get("settings", {})
        lines += [
            "",
            f"## {name} ({settings.get('height')}x{settings.get('width')}, {settings.get('frames', 16)} frames, "
            f"measured at {settings.get('steps')} steps)",
            "",
            f"| mode | memory | ms/step | ms/frame | conditioning s | decode s | measured end-to-end s "
            f"| {computed} (computed) | UNet TFLOP/s | peak GiB | finite | black frames |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for mode, m in modes.items():
            if not isinstance(m, dict):
                lines.append(f"| {mode} | {m} |")
                continue
            s = m["seconds"]
            lines.append(
                f"| {mode} | {_memory_cell(m)} | {m['ms_per_step']} | {m.get('ms_per_frame', '-')} "
                f"| {s['conditioning']:.3f} "
                f"| {s['decode']:.3f} | {s['end_to_end']:.3f} "
                f"| {m[computed]} | {m['unet_tflops_effective']} | {m['peak_memory_gib']} | {m['latents_finite']} "
                f"| {m['black_frames']} |"
            )
        comparisons = section.get("comparisons", {})
        if comparisons:
            lines += ["", "| comparison | latents rel. error | frames PSNR dB |", "|---|---|---|"]
            lines += [f"| {k} | {v['latents_rel_error']:.2e} | {v['frames_psnr_db']} |" for k, v in comparisons.items()]
        if "memory_target" in section:
            t = section["memory_target"]
            lines += ["", f"Peak memory target {t['target_gb']} GB: met {t['met']} (GB per mode: {t['peak_gb']})"]
    lines += aoti_markdown(data["sections"].get("aoti", {}))
    return "\n".join(lines) + "\n"


def _memory_cell(m: dict) -> str:
    """The mode's memory profile, its token pieces and what it keeps in host memory, in a few words."""
    profile = m.get("memory_profile", "-")
    if profile in ("-", "baseline"):
        return profile
    chunk = m.get("token_chunk")
    words = [profile, f"pieces of {chunk} tokens" if chunk else "whole blocks"]
    if m.get("offloaded"):
        words.append("host: " + ", ".join(m["offloaded"]))
    return "; ".join(words)
