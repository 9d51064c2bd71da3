"""`dcrt bench` for a DynamiCrafter preset (`bench_report`): each backend's `Pipeline.generate` timed by stage with
dcrt.bench's clock, on one random image and prompt, beside the original's way (the `baseline` backend)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dcrt.bench import (
    BackendResult,
    BenchReport,
    backend_class,
    timed_runs,
)
from dcrt.families.dynamicrafter.flops import unet_flops
from dcrt.families.dynamicrafter.options import SamplingRequest, resolve_options
from dcrt.families.dynamicrafter.pipeline import Pipeline, SamplingOptions, guidance_for
from dcrt.loading import BackendRequest


def pipeline_settings(pipeline: Pipeline) -> dict:
    """How a pipeline samples: what the report states beside each backend's numbers."""
    backend = pipeline.backend
    return {
        "backend_class": backend_class(backend),
        "device": str(backend.device),
        "precision": backend.precision,
        "capturable": backend.capturable,
        "cuda_graph": pipeline.capture,
        "fused_kernels": pipeline.kernels is not None,
        "kernels": type(pipeline.kernels).__name__ if pipeline.kernels is not None else None,
    }


def open_pipelines(
    names: list[str], request: BackendRequest, opts: SamplingOptions, log: Callable[[str], None]
) -> dict[str, Pipeline]:
    """One pipeline per backend name, each opened the way `dcrt animate --backend <name>` opens it (ort: the
    export is made first if it is missing or stale); the baseline runs the fp32 torch model the original's way."""
    from dcrt.families.dynamicrafter.baseline import BaselineBackend
    from dcrt.loading import ensure_export, load_torch_model, open_backend, with_backend

    preset = request.preset_config()
    pipelines = {}
    for name in names:
        if name == "baseline":
            model = load_torch_model(preset, request.required_weights(), request.device, "fp32")
            pipelines[name] = Pipeline(BaselineBackend(model), cache_unconditional=False)
            continue
        if name == "ort":
            weights = request.required_weights()
            ensure_export(preset, weights, request.export_location(), "fp32", opts.height, opts.width, log=log)
        backend = open_backend(
            with_backend(request, name), opts.height, opts.width, lambda m: log(f"dcrt: {m}"), opts.frames
        )
        pipelines[name] = Pipeline(backend)
    return pipelines


def run_backend(
    name: str,
    pipeline: Pipeline,
    images: list[np.ndarray],
    prompt: str,
    opts: SamplingOptions,
    warmup: int,
    repeat: int,
    log: Callable[[str], None],
) -> BackendResult:
    """Time `warmup + repeat` generations (the preset's first mode: animate, or interpolate for interp models)."""
    mode = pipeline.preset.modes[0]
    device = pipeline.backend.device
    result = BackendResult(name, pipeline_settings(pipeline))
    windows = opts.windows(mode).count  # a longer video runs the UNet on each window every step
    result.unet_evaluations_per_run = opts.steps * guidance_for(opts).branches * windows
    images = images[: 2 if mode == "interpolate" else 1]
    return timed_runs(
        result, device, lambda clock: pipeline.generate(images, prompt, mode, opts, timer=clock), warmup, repeat, log
    )


def bench_report(
    request: BackendRequest,
    sampling: SamplingRequest,
    names: list[str],
    repeat: int,
    warmup: int,
    report: Callable[..., BenchReport],
    log: Callable[[str], None],
) -> BenchReport:
    """`dcrt bench` for a DynamiCrafter preset: each backend in `names` timed on two random images at the preset's
    (or the given) size; `report` makes the report from the fields that differ by family."""
    preset = request.preset_config()
    opts = resolve_options(preset, preset.modes[0], sampling)
    rng = np.random.default_rng(0)
    images = [(rng.random((opts.height, opts.width, 3)) * 255).astype(np.uint8) for _ in range(2)]
    pipelines = open_pipelines(names, request, opts, log)
    results = [
        run_backend(name, pipelines[name], images, "a boat sailing on a calm sea", opts, warmup, repeat, log)
        for name in names
    ]
    return report(
        preset=preset.name,
        height=opts.height,
        width=opts.width,
        steps=opts.steps,
        unet_flops_per_sample=unet_flops(preset, 1, opts.height, opts.width),
        results=results,
        frames=opts.frames,
    )
