"""`dcrt bench` for a Stable Video Diffusion preset (dcrt.families.svd.bench): the same report as DynamiCrafter's, handed
back to `dcrt bench` (dcrt.cli.machine), which publishes both."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dcrt.cli.app import say
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.loading import BackendRequest

if (
    TYPE_CHECKING
):  # dcrt.families.dynamicrafter.bench imports torch: the command line loads it only for a command that runs
    from dcrt.families.dynamicrafter.bench import BenchReport


def bench_svd(
    model: BackendRequest,
    sampling: SamplingRequest,
    names: list[str],
    repeat: int,
    warmup: int,
    report: Callable[..., BenchReport],
) -> BenchReport:
    """Time each stage of each backend in `names` on one random image, at the preset's size and frame count."""
    preset = model.preset_config()
    fixed = [f"--{n}" for n in ("height", "width", "frames", "overlap") if getattr(sampling, n) is not None]
    if fixed:
        raise UsageError(f"{', '.join(fixed)}: preset {preset.name} runs at its own size and frame count")
    import numpy as np

    from dcrt.families.svd.bench import open_svd_pipelines, run_svd_backend, svd_unet_flops
    from dcrt.families.svd.options import resolve_svd_options

    opts = resolve_svd_options(preset, steps=sampling.steps)
    image = (np.random.default_rng(0).random((preset.height, preset.width, 3)) * 255).astype(np.uint8)
    pipelines = open_svd_pipelines(names, model, say)
    results = [run_svd_backend(name, pipelines[name], image, opts, warmup, repeat, say) for name in names]
    return report(
        preset=preset.name,
        height=preset.height,
        width=preset.width,
        steps=opts.steps,
        unet_flops_per_sample=svd_unet_flops(preset),
        results=results,
        frames=preset.frames,
    )
