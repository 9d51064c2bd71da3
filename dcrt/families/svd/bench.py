"""`dcrt bench` for a Stable Video Diffusion preset: dcrt's SVD pipeline on each backend against diffusers'
StableVideoDiffusionPipeline (the `baseline`, built by dcrt.families.svd.baseline), the same image, seed and
settings, timed by stage with dcrt.bench's clock and written as its report (table + JSON).

The baseline is the diffusers pipeline as its documentation runs it: fp16 weights on CUDA (fp32 on a CPU), both
guidance branches in one UNet call, no CUDA graph. Its stages are timed by wrapping its CLIP and VAE encodes
(conditioning) and its decoder (decode); its denoise is the rest of the call (the Euler loop and the little set-up
around it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dcrt.bench import (
    BackendResult,
    BenchReport,
    StageClock,
    backend_class,
    timed_runs,
)
from dcrt.errors import UsageError
from dcrt.families.base import CommandSampling
from dcrt.families.svd.config import SVDPreset
from dcrt.families.svd.options import SVDOptions, resolve_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.loading import BackendRequest


def svd_unet_flops(preset: SVDPreset) -> int:
    """FLOPs of one UNet call on one sample (batch 1), counted by PyTorch's FLOP counter on the meta device: exact
    for the module as built, and free (no weights, no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    from dcrt.models.svd_unet import SpatioTemporalUNet

    cfg = preset.unet
    with torch.device("meta"):
        unet = SpatioTemporalUNet(cfg)
        x = torch.empty(1, cfg.in_channels, preset.frames, preset.latent_height, preset.latent_width)
        inputs = (x, torch.empty(1), torch.empty(1, 1, cfg.context_dim), torch.empty(1, cfg.added_time_ids))
        with FlopCounterMode(display=False) as counter:
            unet(*inputs)
    return counter.get_total_flops()


class DiffusersBaseline:
    """diffusers' pipeline behind `SVDPipeline.generate`'s signature, its stages timed (module docstring)."""

    def __init__(self, pipe, preset: SVDPreset, device: torch.device):
        self.pipe, self.preset, self.device = pipe.to(device), preset, device
        pipe.set_progress_bar_config(disable=True)  # dcrt's log says how each run went
        self._timer: Callable | None = None
        for name, stage in (("_encode_image", "conditioning"), ("_encode_vae_image", "conditioning")):
            setattr(pipe, name, self._timed(getattr(pipe, name), stage))
        pipe.decode_latents = self._timed(pipe.decode_latents, "decode")

    def _timed(self, method: Callable, stage: str) -> Callable:
        def run(*args, **kwargs):
            with self._timer(stage):
                return method(*args, **kwargs)

        return run

    def settings(self) -> dict:
        return {
            "backend_class": "diffusers.StableVideoDiffusionPipeline",
            "device": str(self.device),
            "precision": str(self.pipe.unet.dtype).removeprefix("torch."),
            "cuda_graph": False,
            "fused_kernels": False,
        }

    @torch.inference_mode()
    def generate(self, image: np.ndarray, opts: SVDOptions, timer: StageClock) -> None:
        from PIL import Image

        self._timer = timer
        p = self.preset
        self.pipe(
            Image.fromarray(image),
            height=p.height,
            width=p.width,
            num_frames=p.frames,
            num_inference_steps=opts.steps,
            min_guidance_scale=opts.min_guidance_scale,
            max_guidance_scale=opts.max_guidance_scale,
            fps=opts.fps,
            motion_bucket_id=opts.motion_bucket_id,
            noise_aug_strength=opts.noise_aug_strength,
            decode_chunk_size=opts.decode_chunk,
            generator=torch.Generator(self.device).manual_seed(opts.seed),
            output_type="np",
        )


def open_svd_pipelines(names: list[str], request: BackendRequest, log: Callable[[str], None]) -> dict:
    """One pipeline per backend name, opened as `dcrt animate --backend <name>` opens it (ort: exported first if
    missing or stale); `baseline`: diffusers' pipeline on the same weights where it can read them."""
    from dcrt.loading import ensure_export, open_backend, usable_device, with_backend

    preset = request.preset_config()
    pipelines = {}
    for name in names:
        if name == "baseline":
            from dcrt.families.svd.baseline import load_diffusers_pipeline

            device = torch.device(usable_device(request.device))
            dtype = torch.float16 if device.type == "cuda" else torch.float32
            pipe = load_diffusers_pipeline(preset, request.required_weights().checkpoint, dtype)
            pipelines[name] = DiffusersBaseline(pipe, preset, device)
            continue
        if name == "ort":
            ensure_export(preset, request.required_weights(), request.export_location(), "fp32", log=log)
        pipelines[name] = SVDPipeline(open_backend(with_backend(request, name), log=lambda m: log(f"dcrt: {m}")))
    return pipelines


def _settings(pipeline) -> dict:
    if isinstance(pipeline, DiffusersBaseline):
        return pipeline.settings()
    backend = pipeline.backend
    capture = pipeline.cuda_graph and backend.device.type == "cuda"
    return {
        "backend_class": backend_class(backend),
        "device": str(backend.device),
        "precision": backend.precision,
        "capturable": backend.capturable,
        "cuda_graph": capture,
        "fused_kernels": False,  # DDIM's kernels do not fit SVD's step (dcrt.runners.edm)
    }


def run_svd_backend(
    name: str, pipeline, image: np.ndarray, opts: SVDOptions, warmup: int, repeat: int, log: Callable[[str], None]
) -> BackendResult:
    """Time `warmup + repeat` generations of one backend (or the baseline)."""
    device = pipeline.device if isinstance(pipeline, DiffusersBaseline) else pipeline.backend.device
    branches = 2 if max(opts.min_guidance_scale, opts.max_guidance_scale) > 1.0 else 1
    result = BackendResult(name, _settings(pipeline), unet_evaluations_per_run=opts.steps * branches)

    def rest_is_denoise(seconds: dict[str, float]) -> None:
        """The baseline's denoise is the rest of its call (module docstring)."""
        seconds["denoise"] = seconds["end_to_end"] - (seconds.get("conditioning", 0.0) + seconds.get("decode", 0.0))

    def run(clock: StageClock) -> None:
        pipeline.generate(image, opts, timer=clock)

    derive = rest_is_denoise if isinstance(pipeline, DiffusersBaseline) else lambda seconds: None
    return timed_runs(result, device, run, warmup, repeat, log, derive)


def bench_report(
    request: BackendRequest,
    sampling: CommandSampling,
    names: list[str],
    repeat: int,
    warmup: int,
    report: Callable[..., BenchReport],
    log: Callable[[str], None],
) -> BenchReport:
    """`dcrt bench` for an SVD preset: each backend in `names` timed on one random image, at the preset's size and
    frame count (the only ones its graphs take: another is one line); `report` as DynamiCrafter's."""
    preset = request.preset_config()
    fixed = [f"--{n}" for n in ("height", "width", "frames", "overlap") if getattr(sampling, n) is not None]
    if fixed:
        raise UsageError(f"{', '.join(fixed)}: preset {preset.name} runs at its own size and frame count")
    opts = resolve_svd_options(preset, steps=sampling.steps)
    image = (np.random.default_rng(0).random((preset.height, preset.width, 3)) * 255).astype(np.uint8)
    pipelines = open_svd_pipelines(names, request, log)
    results = [run_svd_backend(name, pipelines[name], image, opts, warmup, repeat, log) for name in names]
    return report(
        preset=preset.name,
        height=preset.height,
        width=preset.width,
        steps=opts.steps,
        unet_flops_per_sample=svd_unet_flops(preset),
        results=results,
        frames=preset.frames,
    )
