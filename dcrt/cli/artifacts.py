"""fetch, export, build: the files a run loads (a checkpoint, an ONNX export, TensorRT engine bundles)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcrt.cli.app import app, say
from dcrt.cli.options import WEIGHTS, takes
from dcrt.errors import UsageError
from dcrt.loading import BackendRequest
from dcrt.options import SamplingRequest, check_size

SIZE = ("height", "width")


@app.command()
@takes(model=(BackendRequest, ("preset",)))
def fetch(model: BackendRequest) -> None:
    """Download a released checkpoint into the Hugging Face cache (resumable)."""
    from dcrt.hub import fetch_checkpoint

    typer.echo(fetch_checkpoint(model.preset_config()))


@app.command("export")
@takes(model=(BackendRequest, WEIGHTS), size=(SamplingRequest, SIZE))
def export_command(
    model: BackendRequest,
    size: SamplingRequest,
    precision: Annotated[str, typer.Option(help="fp32 or fp16 graphs (inputs and outputs stay fp32)")] = "fp32",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory (default: export/<res>)")] = None,
    force: Annotated[bool, typer.Option(help="export again even if an identical export exists")] = False,
) -> None:
    """Export every component to ONNX, check each in ONNX Runtime against PyTorch, write manifest.json."""
    from dcrt.export import PRECISIONS
    from dcrt.loading import ensure_export

    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    check_size(size.height, size.width)
    model.check_names()
    preset = model.preset_config()
    if preset.family == "svd" and (size.height, size.width) != (None, None):
        raise UsageError(f"{preset.name} is exported at its own size, {preset.height}x{preset.width}")
    out = out or model.export_location()
    ensure_export(preset, model.required_weights(), out, precision, size.height, size.width, force, say)
    typer.echo(str(out))


@app.command()
@takes(model=(BackendRequest, WEIGHTS))
def build(
    model: BackendRequest,
    from_: Annotated[
        Path | None,
        typer.Option("--from", help="an fp16 export directory (default: export to export/<res>-fp16 first)"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="root of the engine bundles")] = Path("engines"),
    opt_level: Annotated[int, typer.Option("--opt-level", help="TensorRT builder optimisation level 0-5")] = 3,
    timing_cache: Annotated[Path | None, typer.Option("--timing-cache", help="persistent timing cache file")] = None,
    workspace: Annotated[float | None, typer.Option("--workspace", help="builder workspace limit, GB")] = None,
    verify: Annotated[bool, typer.Option(help="re-hash the export's files and the plans already built")] = False,
) -> None:
    """Build FP16 TensorRT engines (static shapes) for every component; skips what is up to date."""
    from dcrt.engine_builder import BuildConfig, build_bundle, console_progress
    from dcrt.engine_bundle import detect_target
    from dcrt.loading import ensure_export

    config = BuildConfig(opt_level=opt_level, workspace_gb=workspace, timing_cache=timing_cache)
    model.check_names()
    preset = model.preset_config()
    target = detect_target()  # no TensorRT or no GPU: one line, before any slow work
    export_dir = from_ or Path("export") / f"{preset.name}-fp16"
    if from_ is None:
        ensure_export(preset, model.required_weights(), export_dir, "fp16", log=say)
    report = build_bundle(export_dir, out, config, target, progress=console_progress(), log=say, verify=verify)
    typer.echo(str(report.directory))
