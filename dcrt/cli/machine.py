"""info and bench: what this machine can run, and how fast (each family times its own pipelines: its `bench`
role, dcrt.families)."""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dcrt.atomic import check_writable
from dcrt.cli.app import app, say
from dcrt.cli.options import WEIGHTS, takes
from dcrt.errors import UsageError
from dcrt.families import family_of
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.loading import BackendRequest

if TYPE_CHECKING:  # dcrt.bench imports torch: the command line loads it only for a command that runs
    from dcrt.bench import BenchReport

BENCH_PRESET = "tiny"  # seconds on a CPU; name a real preset on a GPU


@app.command()
@takes(model=(BackendRequest, ("preset", "export_dir", "engines")))
def info(model: BackendRequest) -> None:
    """Versions, devices, which backends this machine can use (and why not), and what --backend auto picks."""
    from dcrt.backends.machine_facts import probe
    from dcrt.backends.select import choose_backend, describe
    from dcrt.info import collect, format_report

    typer.echo(format_report(collect()))
    preset = model.preset_config()
    chosen = choose_backend(
        preset, "auto", model.engines, model.export_location(), probe(), weights=model.requested_weights()
    )
    typer.echo(f"for preset {preset.name}: {describe(chosen)}")


@app.command()
@takes(
    notes={"preset": BENCH_PRESET},
    model=(BackendRequest, (*WEIGHTS, "device", "dtype", "export_dir", "engines", "verify", "memory")),
    sampling=(SamplingRequest, ("steps", "height", "width", "frames", "overlap")),
)
def bench(
    model: BackendRequest,
    sampling: SamplingRequest,
    backends: Annotated[
        str,
        typer.Option(help="comma-separated: baseline, torch, ort, trt, aoti (trt, aoti: bundles from `dcrt build`)"),
    ] = "baseline,torch,ort",
    repeat: Annotated[int, typer.Option(help="timed runs per backend")] = 3,
    warmup: Annotated[int, typer.Option(help="untimed runs per backend first")] = 1,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="directory for the JSON, Markdown and PNG report (file names carry the date and time)"
        ),
    ] = Path("bench-results"),
) -> None:
    """Time each stage of each backend side by side (same inputs, same seed) and write a report.

    On CUDA the torch and trt backends sample with the captured graph and the fused kernels; the baseline
    never does (the original's way: fp32 weights under fp16 autocast, one UNet call per guidance branch). For an
    SVD preset (svd-xt, tiny-svd) the baseline is diffusers' StableVideoDiffusionPipeline."""
    check_writable(out, "report folder")
    from dcrt.bench import BENCH_BACKENDS

    names = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = [b for b in names if b not in BENCH_BACKENDS]
    if unknown or not names:
        choose = ", ".join(BENCH_BACKENDS)
        raise UsageError(f"unknown backend(s) {', '.join(unknown) or '(none)'}; choose from {choose}")
    if repeat < 1 or warmup < 0:
        raise UsageError("--repeat must be >= 1 and --warmup >= 0")
    model = replace(model, preset=model.preset or BENCH_PRESET)
    model.check_names()
    import torch

    from dcrt.bench import BenchReport, environment
    from dcrt.loading import usable_device

    model = replace(model, device=model.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # The fields both families share; the machine is read before the runs, as the load they meet.
    report = partial(
        BenchReport,
        repeat=repeat,
        warmup=warmup,
        command=" ".join(["dcrt", *sys.argv[1:]]),
        environment=environment(torch.device(usable_device(model.device))),
    )
    preset = model.preset_config()
    run = family_of(preset).part("bench")
    publish(run(model, sampling, names, repeat, warmup, report, say), out)


def publish(report: BenchReport, out: Path) -> None:
    """Print the report's table, write its files under `out`, and print their paths."""
    from dcrt.bench import markdown, write_report

    typer.echo(markdown(report))
    for path in write_report(report, out):
        typer.echo(str(path))
