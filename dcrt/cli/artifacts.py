"""fetch, export, build: the files a run loads (a checkpoint, an ONNX export, TensorRT engine bundles)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcrt.atomic import check_writable
from dcrt.cli.app import app, say
from dcrt.cli.options import WEIGHTS, takes
from dcrt.errors import UsageError
from dcrt.families import family_of
from dcrt.families.dynamicrafter.options import SamplingRequest, check_size
from dcrt.loading import BackendRequest

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
    check_size(size.height, size.width)
    model.check_names()
    preset = model.preset_config()
    check_own_size(preset, size, "exported")
    out = out or model.export_location()
    check_writable(out, "export folder")
    from dcrt.artifacts.export import PRECISIONS
    from dcrt.loading import ensure_export

    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    ensure_export(preset, model.required_weights(), out, precision, size.height, size.width, force, say)
    typer.echo(str(out))


ENGINES = ("trt", "aoti")


def check_own_size(preset, size, verb: str) -> None:
    """Some families' graphs are made at the preset's size only (SVD's pipeline runs there): another size is one
    line."""
    if not family_of(preset).custom_size and (size.height, size.width) != (None, None):
        raise UsageError(f"{preset.name} is {verb} at its own size, {preset.height}x{preset.width}")


@app.command()
@takes(model=(BackendRequest, WEIGHTS), size=(SamplingRequest, SIZE))
def build(
    model: BackendRequest,
    size: SamplingRequest,
    engine: Annotated[
        str, typer.Option(help="trt: FP16 TensorRT engines (GPU); aoti: AOTInductor packages (CPU or CUDA)")
    ] = "trt",
    from_: Annotated[
        Path | None,
        typer.Option("--from", help="trt: an fp16 export directory (default: export to export/<res>-fp16 first)"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="root of the engine bundles")] = Path("engines"),
    opt_level: Annotated[int, typer.Option("--opt-level", help="trt: TensorRT builder optimisation level 0-5")] = 3,
    timing_cache: Annotated[
        Path | None, typer.Option("--timing-cache", help="trt: persistent timing cache file")
    ] = None,
    workspace: Annotated[float | None, typer.Option("--workspace", help="trt: builder workspace limit, GB")] = None,
    device: Annotated[str, typer.Option(help="aoti: cpu or cuda, where the packages run")] = "cpu",
    native: Annotated[
        bool, typer.Option(help="aoti on cpu: compile for this CPU (AVX-512/AMX) instead of portable AVX2")
    ] = False,
    precision: Annotated[
        str | None, typer.Option(help="aoti: fp32 or fp16 inside the packages (default: fp32 on cpu, fp16 on cuda)")
    ] = None,
    jobs: Annotated[
        int, typer.Option(help="aoti on cpu: packages built at once, a process each (memory: one model per job)")
    ] = 1,
    verify: Annotated[bool, typer.Option(help="re-hash the export's files and the plans already built")] = False,
) -> None:
    """Build static-shape engines for every component (TensorRT plans, or AOTInductor packages with --engine
    aoti); skips what is up to date."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    check_size(size.height, size.width)
    model.check_names()
    check_own_size(model.preset_config(), size, "built")
    check_writable(out, "engines folder")
    if engine == "aoti":
        trt_only = {"--from": from_, "--opt-level": opt_level != 3, "--timing-cache": timing_cache}
        given = [flag for flag, value in (trt_only | {"--workspace": workspace}).items() if value]
        if given:
            raise UsageError(f"{', '.join(given)} {'is a' if len(given) == 1 else 'are'} TensorRT option: not for aoti")
        _build_aoti(model, size, out, (device, native, precision, jobs), verify)
        return
    if device != "cpu" or native or precision is not None or jobs != 1:
        raise UsageError(
            "--device, --native, --precision and --jobs are for --engine aoti (TensorRT builds FP16 on CUDA)"
        )
    _build_trt(model, size, from_, out, opt_level, timing_cache, workspace, verify)


def _build_trt(model, size, from_, out, opt_level, timing_cache, workspace, verify) -> None:
    from dcrt.artifacts.engine_bundle import detect_target
    from dcrt.artifacts.tensorrt_build import BuildConfig, build_bundle, console_progress
    from dcrt.loading import ensure_export

    config = BuildConfig(opt_level=opt_level, workspace_gb=workspace, timing_cache=timing_cache)
    preset = model.preset_config()
    target = detect_target()  # no TensorRT or no GPU: one line, before any slow work
    export_dir = from_ or Path("export") / f"{preset.name}-fp16"
    if from_ is None:
        check_writable(export_dir, "export folder")
        ensure_export(preset, model.required_weights(), export_dir, "fp16", size.height, size.width, log=say)
    report = build_bundle(export_dir, out, config, target, progress=console_progress(), log=say, verify=verify)
    typer.echo(str(report.directory))


def _build_aoti(model, size, out, options: tuple, verify) -> None:
    """`options`: AotiConfig's device, native, precision and jobs, checked there."""
    from dcrt.artifacts.aoti_build import AotiConfig, build_aoti_bundle
    from dcrt.artifacts.aoti_bundle import detect_aoti_target

    config = AotiConfig(*options)
    target = detect_aoti_target(config.device, config.native)  # --device cuda without a GPU: one line, before work
    preset = model.preset_config()
    report = build_aoti_bundle(
        preset, model.required_weights(), out, config, target, size.height, size.width, log=say, verify=verify
    )
    typer.echo(str(report.directory))
