"""The `dcrt` command line. Library errors (DcrtError) and bad arguments become one line on stderr
and a non-zero exit code (2 for bad input); tracebacks are for bugs only."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import click
import numpy as np
import typer

from dcrt.batch import Job, read_prompt_dir
from dcrt.errors import DcrtError, UsageError

app = typer.Typer(
    help="dcrt: fast inference for the DynamiCrafter image-to-video models.",
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

# Typer >= 0.20 ships its own copy of click with its own exception classes; older ones use click's.
_ARGUMENT_ERRORS = (click.exceptions.ClickException, getattr(typer, "TyperException", click.exceptions.ClickException))
_PRESET_HELP = "model preset: 256, 512, 1024, 512-interp, or tiny / tiny-256 (random weights, seconds on a CPU)"
Res = Annotated[str, typer.Option("--res", help=_PRESET_HELP)]
Ckpt = Annotated[
    Path | None, typer.Option(help="model.ckpt or .safetensors (default: $DCRT_CHECKPOINT_DIR, then the HF cache)")
]
RandomWeights = Annotated[bool, typer.Option("--random-weights", help="seeded random weights instead of a checkpoint")]
Steps = Annotated[int, typer.Option(help="DDIM steps")]
Cfg = Annotated[float, typer.Option("--cfg", help="classifier-free guidance scale (1 = off)")]
Eta = Annotated[float, typer.Option(help="DDIM eta (1 = stochastic, as the original scripts; 0 = deterministic)")]
Fs = Annotated[
    int | None, typer.Option(help="frame-rate conditioning (default: the preset's; 256: stride 1-6, others: fps)")
]
Seed = Annotated[int | None, typer.Option(help="noise seed (default: the original script's for the mode)")]
Rescale = Annotated[float | None, typer.Option("--guidance-rescale", help="guidance rescale phi (default: preset's)")]
Spacing = Annotated[str | None, typer.Option("--spacing", help="uniform or uniform_trailing (default: preset's)")]
CfgImg = Annotated[float | None, typer.Option("--cfg-img", help="image guidance scale: enables 3-way guidance")]
Height = Annotated[int | None, typer.Option(help="output height, a multiple of 64 (default: preset's)")]
Width = Annotated[int | None, typer.Option(help="output width, a multiple of 64 (default: preset's)")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="output file (png: a folder of frames)")]
Format = Annotated[
    str | None, typer.Option("--format", help="mp4 (H.264), gif, webp or png (default: from --out, else mp4)")
]
Quality = Annotated[int, typer.Option(help="x264 CRF for mp4, lower is better (the original uses 10)")]
Fps = Annotated[int, typer.Option(help="frames per second of the written video")]
Device = Annotated[
    str | None, typer.Option(help="cpu or cuda (default: cuda when a GPU is visible and the backend uses one)")
]
BackendName = Annotated[
    str,
    typer.Option(
        "--backend",
        help="auto (TensorRT engines, else onnxruntime-gpu, else PyTorch on CUDA, else ONNX Runtime / PyTorch on "
        "the CPU; `dcrt info` says which), trt, ort or torch",
    ),
]
Engines = Annotated[Path, typer.Option("--engines", help="root of the TensorRT engine bundles (`dcrt build`)")]
ExportDir = Annotated[Path | None, typer.Option(help="export directory for --backend ort (default: export/<res>)")]
Dtype = Annotated[
    str | None, typer.Option(help="torch backend weights: fp32, fp16 or bf16 (default: fp16 on cuda, fp32 on cpu)")
]
_IMAGE_NOTE = (
    "Images are resized on the shorter side and centre-cropped to the output size, as the original CLI does: "
    "where the resized image is smaller than the crop (other aspect ratios), the borders are padded with black."
)


@dataclass(frozen=True)
class ModelChoice:
    res: str
    ckpt: Path | None
    random_weights: bool
    device: str | None
    dtype: str | None
    backend: str = "torch"
    export_dir: Path | None = None
    engines: Path = Path("engines")


@dataclass(frozen=True)
class OutputChoice:
    out: Path | None
    fmt: str | None
    quality: int
    fps: int


@app.callback()
def _root() -> None:
    """dcrt: fast inference for the DynamiCrafter image-to-video models."""


@app.command()
def info(res: Res = "512", export_dir: ExportDir = None, engines: Engines = Path("engines")) -> None:
    """Versions, devices, which backends this machine can use (and why not), and what --backend auto picks."""
    from dcrt.backends.select import choose_backend, describe, probe
    from dcrt.config import get_preset
    from dcrt.info import collect, format_report

    typer.echo(format_report(collect()))
    preset = get_preset(res)
    chosen = choose_backend(preset, "auto", engines, export_dir or Path("export") / preset.name, probe())
    typer.echo(f"for preset {preset.name}: {describe(chosen)}")


@app.command("export")
def export_command(
    res: Res = "512",
    ckpt: Ckpt = None,
    random_weights: RandomWeights = False,
    precision: Annotated[str, typer.Option(help="fp32 or fp16 graphs (inputs and outputs stay fp32)")] = "fp32",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory (default: export/<res>)")] = None,
    height: Height = None,
    width: Width = None,
    force: Annotated[bool, typer.Option(help="export again even if an identical export exists")] = False,
) -> None:
    """Export every component to ONNX, check each in ONNX Runtime against PyTorch, write manifest.json."""
    from dcrt.config import get_preset
    from dcrt.export import PRECISIONS, ExportRequest, export_model

    preset = get_preset(res)
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    for name, size in (("height", height), ("width", width)):
        if size is not None and (size <= 0 or size % 64):
            raise UsageError(f"{name} must be a positive multiple of 64, got {size}")
    choice = ModelChoice(res, ckpt, random_weights, "cpu", "fp32")
    out = out or Path("export") / preset.name
    request = ExportRequest(preset, precision, _source(choice, preset), height, width)
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    export_model(_load_model(choice, preset), out, request, force=force, log=log)
    typer.echo(str(out))


@app.command()
def build(
    res: Res = "512",
    ckpt: Ckpt = None,
    random_weights: RandomWeights = False,
    from_: Annotated[
        Path | None,
        typer.Option("--from", help="an fp16 export directory (default: export to export/<res>-fp16 first)"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="root of the engine bundles")] = Path("engines"),
    opt_level: Annotated[int, typer.Option("--opt-level", help="TensorRT builder optimisation level 0-5")] = 3,
    timing_cache: Annotated[Path | None, typer.Option("--timing-cache", help="persistent timing cache file")] = None,
    workspace: Annotated[float | None, typer.Option("--workspace", help="builder workspace limit, GB")] = None,
) -> None:
    """Build FP16 TensorRT engines (static shapes) for every component; skips what is up to date."""
    from dcrt.build import BuildConfig, build_bundle, console_progress, detect_target
    from dcrt.config import get_preset
    from dcrt.export import ExportRequest, export_model, is_up_to_date

    preset = get_preset(res)
    config = BuildConfig(opt_level=opt_level, workspace_gb=workspace, timing_cache=timing_cache)
    target = detect_target()  # no TensorRT or no GPU: one line, before any slow work
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    export_dir = from_ or Path("export") / f"{preset.name}-fp16"
    if from_ is None:
        choice = ModelChoice(res, ckpt, random_weights, "cpu", "fp32")
        request = ExportRequest(preset, "fp16", _source(choice, preset))
        if not is_up_to_date(export_dir, request):
            export_model(_load_model(choice, preset), export_dir, request, log=log)
    report = build_bundle(export_dir, out, config, target, progress=console_progress(), log=log)
    typer.echo(str(report.directory))


@app.command()
def bench(
    res: Res = "tiny",
    backends: Annotated[str, typer.Option(help="comma-separated: baseline, torch, ort")] = "baseline,torch,ort",
    steps: Steps = 50,
    repeat: Annotated[int, typer.Option(help="timed runs per backend")] = 3,
    warmup: Annotated[int, typer.Option(help="untimed runs per backend first")] = 1,
    ckpt: Ckpt = None,
    random_weights: RandomWeights = False,
    height: Height = None,
    width: Width = None,
    device: Device = "cpu",
    dtype: Annotated[
        str | None, typer.Option(help="torch backend weights (default: fp16 on cuda, fp32 on cpu)")
    ] = None,
    export_dir: ExportDir = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for the JSON, Markdown and PNG report")] = Path(
        "benchmarks/results"
    ),
) -> None:
    """Time each stage of each backend side by side (same inputs, same seed) and write a report."""
    import torch

    from dcrt.bench import BenchReport, environment, markdown, run_backend, write_report
    from dcrt.config import get_preset
    from dcrt.flops import unet_flops
    from dcrt.pipeline import resolve_options

    preset = get_preset(res)
    names = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = [b for b in names if b not in ("baseline", "torch", "ort")]
    if unknown or not names:
        raise UsageError(f"unknown backend(s) {', '.join(unknown) or '(none)'}; choose from baseline, torch, ort")
    if repeat < 1 or warmup < 0:
        raise UsageError("--repeat must be >= 1 and --warmup >= 0")
    opts = resolve_options(preset, steps=steps, seed=123, height=height, width=width)
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    rng = np.random.default_rng(0)
    images = [(rng.random((opts.height, opts.width, 3)) * 255).astype(np.uint8) for _ in range(2)]
    choice = ModelChoice(res, ckpt, random_weights, device, "fp32", "torch", export_dir)
    pipelines = _bench_pipelines(names, choice, preset, dtype, opts, log)
    results = [
        run_backend(name, pipelines[name], images, "a boat sailing on a calm sea", opts, warmup, repeat, log)
        for name in names
    ]
    report = BenchReport(
        preset=preset.name,
        height=opts.height,
        width=opts.width,
        steps=steps,
        repeat=repeat,
        warmup=warmup,
        command=" ".join(["dcrt", *sys.argv[1:]]),
        environment=environment(torch.device(_check_device(device))),
        unet_flops_per_sample=unet_flops(preset, 1, opts.height, opts.width),
        results=results,
    )
    typer.echo(markdown(report))
    for path in write_report(report, out):
        typer.echo(str(path))


def _bench_pipelines(names, choice: ModelChoice, preset, dtype: str | None, opts, log) -> dict:
    """One pipeline per backend; the fp32 model is shared by baseline (and torch on a CPU)."""
    from dcrt.backends import TorchBackend
    from dcrt.backends.baseline import BaselineBackend
    from dcrt.pipeline import Pipeline

    torch_dtype = dtype or ("fp16" if choice.device.startswith("cuda") else "fp32")
    model = _load_model(choice, preset)
    pipelines = {}
    if "baseline" in names:
        pipelines["baseline"] = Pipeline(BaselineBackend(model), cache_unconditional=False)
    if "torch" in names:
        fast = (
            model
            if torch_dtype == "fp32"
            else _load_model(
                ModelChoice(choice.res, choice.ckpt, choice.random_weights, choice.device, torch_dtype), preset
            )
        )
        pipelines["torch"] = Pipeline(TorchBackend(fast))
    if "ort" in names:
        from dcrt.backends.onnxruntime_backend import OnnxRuntimeBackend
        from dcrt.export import ExportRequest, export_model

        export_dir = choice.export_dir or Path("export") / preset.name
        cpu_model = (
            model
            if model.device.type == "cpu"
            else _load_model(ModelChoice(choice.res, choice.ckpt, choice.random_weights, "cpu", "fp32"), preset)
        )
        request = ExportRequest(preset, "fp32", _source(choice, preset), opts.height, opts.width)
        export_model(cpu_model, export_dir, request, log=log)
        pipelines["ort"] = Pipeline(OnnxRuntimeBackend(export_dir, choice.device))
    return pipelines


@app.command()
def fetch(res: Res = "512") -> None:
    """Download a released checkpoint into the Hugging Face cache (resumable)."""
    from dcrt.config import get_preset
    from dcrt.hub import fetch_checkpoint

    typer.echo(fetch_checkpoint(get_preset(res)))


def _torch_dtype(name: str | None, device: str):
    import torch

    name = name or ("fp16" if device.startswith("cuda") else "fp32")
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name not in dtypes:
        raise UsageError(f"unknown dtype {name!r}; choose fp32, fp16 or bf16")
    return dtypes[name]


def _check_device(device: str | None) -> str:
    import torch

    device = device or "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"unknown device {device!r}; choose cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is visible (see `dcrt info`)")
    return device


def _load_model(choice: ModelChoice, preset):
    import dcrt
    from dcrt.hub import find_checkpoint

    device = _check_device(choice.device)
    dtype = _torch_dtype(choice.dtype, device)
    if choice.random_weights or (preset.hf_repo is None and choice.ckpt is None):
        return dcrt.random_model(preset, seed=0, device=device, dtype=dtype)
    return dcrt.load_model(find_checkpoint(preset, choice.ckpt), preset=preset, device=device, dtype=dtype)


def _source(choice: ModelChoice, preset) -> str:
    """The checkpoint fingerprint recorded in an export's manifest."""
    from dcrt.hub import find_checkpoint
    from dcrt.manifest import sha256_file

    if choice.random_weights or (preset.hf_repo is None and choice.ckpt is None):
        return f"random:{preset.name}:seed0"
    return "sha256:" + sha256_file(find_checkpoint(preset, choice.ckpt))


def _load_backend(choice: ModelChoice, preset, height: int | None = None, width: int | None = None):
    """The backend `--backend` names, or for `auto` the fastest this machine has (dcrt.backends.select)."""
    from dcrt.backends import TorchBackend
    from dcrt.backends.select import choose_backend, probe

    if choice.device is not None:
        _check_device(choice.device)
    export_dir = choice.export_dir or Path("export") / preset.name
    chosen = choose_backend(preset, choice.backend, choice.engines, export_dir, probe(), choice.device, height, width)
    if chosen.name == "trt":
        from dcrt.backends.tensorrt_backend import TensorRTBackend

        backend = TensorRTBackend(chosen.location, "cuda")
    elif chosen.name == "ort":
        from dcrt.backends.onnxruntime_backend import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(chosen.location, chosen.device)
    else:
        return TorchBackend(_load_model(replace(choice, device=chosen.device), preset))
    if backend.preset.name != preset.name:
        raise UsageError(f"{chosen.location} holds preset {backend.preset.name}, not {preset.name}")
    return backend


def _progress():
    from tqdm import tqdm

    bar = None

    def on_step(step: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="denoising", unit="step", file=sys.stderr, dynamic_ncols=True)
        bar.update(1)
        if step == total:
            bar.close()

    return on_step


def _generate(
    mode: str, jobs: list[Job], model: ModelChoice, output: OutputChoice, sampling: dict, out_dir: Path | None = None
) -> None:
    """Validate everything cheap first (options, images, output paths), then load once, sample, write."""
    from dcrt.config import get_preset
    from dcrt.images import open_image
    from dcrt.pipeline import pipeline_for, resolve_options
    from dcrt.video import check_output_path, check_video_options, format_for, write_video

    preset = get_preset(model.res)
    if mode not in preset.modes:
        raise UsageError(f"preset {preset.name} cannot {mode}; it supports: {', '.join(preset.modes)}")
    opts = resolve_options(preset, **sampling)
    fmt = format_for(output.out or Path("video"), output.fmt)
    check_video_options(fmt, output.fps, output.quality)
    suffix = "" if fmt == "png" else f".{fmt}"
    if out_dir is not None and not out_dir.is_dir():
        raise UsageError(f"output directory {out_dir} does not exist")
    targets = [output.out or (out_dir or Path(".")) / f"{job.name}_{mode}{suffix}" for job in jobs]
    for target in targets:
        check_output_path(target, fmt)
    pictures = [[open_image(p) for p in job.images] for job in jobs]
    pipe = pipeline_for(_load_backend(model, preset, opts.height, opts.width))
    for job, images, target in zip(jobs, pictures, targets):
        result = pipe.generate(images, job.prompt, mode, opts, on_step=_progress())
        write_video(result.frames, target, fmt, fps=output.fps, quality=output.quality)
        typer.echo(str(target))


def _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, default_seed) -> dict:
    return dict(
        steps=steps,
        guidance_scale=cfg,
        eta=eta,
        fs=fs,
        guidance_rescale=guidance_rescale,
        timestep_spacing=spacing,
        cfg_img=cfg_img,
        seed=default_seed if seed is None else seed,
        height=height,
        width=width,
    )


@app.command(help=f"Animate IMAGE following PROMPT into a 16-frame video. {_IMAGE_NOTE}")
def animate(
    image: Path,
    prompt: str,
    res: Res = "512",
    ckpt: Ckpt = None,
    random_weights: RandomWeights = False,
    steps: Steps = 50,
    cfg: Cfg = 7.5,
    eta: Eta = 1.0,
    fs: Fs = None,
    guidance_rescale: Rescale = None,
    spacing: Spacing = None,
    cfg_img: CfgImg = None,
    seed: Seed = None,
    height: Height = None,
    width: Width = None,
    out: Out = None,
    format: Format = None,
    quality: Quality = 10,
    fps: Fps = 8,
    device: Device = None,
    dtype: Dtype = None,
    backend: BackendName = "auto",
    export_dir: ExportDir = None,
    engines: Engines = Path("engines"),
) -> None:
    _generate(
        "animate",
        [Job([image], prompt, image.stem)],
        ModelChoice(res, ckpt, random_weights, device, dtype, backend, export_dir, engines),
        OutputChoice(out, format, quality, fps),
        _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, 123),
    )


@app.command(help=f"Generate the 16 frames from FIRST to LAST (the 512-interp model). {_IMAGE_NOTE}")
def interpolate(
    first: Path,
    last: Path,
    prompt: str,
    res: Res = "512-interp",
    ckpt: Ckpt = None,
    random_weights: RandomWeights = False,
    steps: Steps = 50,
    cfg: Cfg = 7.5,
    eta: Eta = 1.0,
    fs: Fs = None,
    guidance_rescale: Rescale = None,
    spacing: Spacing = None,
    cfg_img: CfgImg = None,
    seed: Seed = None,
    height: Height = None,
    width: Width = None,
    out: Out = None,
    format: Format = None,
    quality: Quality = 10,
    fps: Fps = 8,
    device: Device = None,
    dtype: Dtype = None,
    backend: BackendName = "auto",
    export_dir: ExportDir = None,
    engines: Engines = Path("engines"),
) -> None:
    _generate(
        "interpolate",
        [Job([first, last], prompt, first.stem)],
        ModelChoice(res, ckpt, random_weights, device, dtype, backend, export_dir, engines),
        OutputChoice(out, format, quality, fps),
        _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, 12306),
    )


@app.command(help=f"A looping video that starts and ends on IMAGE (the 512-interp model). {_IMAGE_NOTE}")
def loop(
    image: Path,
    prompt: str,
    res: Res = "512-interp",
    ckpt: Ckpt = None,
    random_weights: RandomWeights = False,
    steps: Steps = 50,
    cfg: Cfg = 7.5,
    eta: Eta = 1.0,
    fs: Fs = None,
    guidance_rescale: Rescale = None,
    spacing: Spacing = None,
    cfg_img: CfgImg = None,
    seed: Seed = None,
    height: Height = None,
    width: Width = None,
    out: Out = None,
    format: Format = None,
    quality: Quality = 10,
    fps: Fps = 8,
    device: Device = None,
    dtype: Dtype = None,
    backend: BackendName = "auto",
    export_dir: ExportDir = None,
    engines: Engines = Path("engines"),
) -> None:
    _generate(
        "loop",
        [Job([image], prompt, image.stem)],
        ModelChoice(res, ckpt, random_weights, device, dtype, backend, export_dir, engines),
        OutputChoice(out, format, quality, fps),
        _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, 234),
    )


@app.command(
    help=f"Run a folder: images sorted by name, prompts one per line in its first .txt file "
    f"(interpolate: images 2i, 2i+1 share prompt i). Writes OUT_DIR/<image>_<mode>.<format>. {_IMAGE_NOTE}"
)
def batch(
    directory: Path,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="existing directory for the videos")],
    mode: Annotated[str, typer.Option(help="animate, interpolate or loop")] = "animate",
    prompts: Annotated[Path | None, typer.Option(help="prompt file (default: the folder's first .txt)")] = None,
    res: Res = "512",
    ckpt: Ckpt = None,
    random_weights: RandomWeights = False,
    steps: Steps = 50,
    cfg: Cfg = 7.5,
    eta: Eta = 1.0,
    fs: Fs = None,
    guidance_rescale: Rescale = None,
    spacing: Spacing = None,
    cfg_img: CfgImg = None,
    seed: Seed = None,
    height: Height = None,
    width: Width = None,
    format: Format = None,
    quality: Quality = 10,
    fps: Fps = 8,
    device: Device = None,
    dtype: Dtype = None,
    backend: BackendName = "auto",
    export_dir: ExportDir = None,
    engines: Engines = Path("engines"),
) -> None:
    from dcrt.config import MODES

    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    default_seed = {"animate": 123, "interpolate": 12306, "loop": 234}[mode]
    _generate(
        mode,
        read_prompt_dir(directory, mode, prompts),
        ModelChoice(res, ckpt, random_weights, device, dtype, backend, export_dir, engines),
        OutputChoice(None, format, quality, fps),
        _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, default_seed),
        out_dir=out_dir,
    )


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"dcrt: warning: {message}", err=True)


def main() -> None:
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            code = app(standalone_mode=False)
    except (typer.Abort, click.exceptions.Abort, KeyboardInterrupt):
        typer.echo("dcrt: interrupted", err=True)
        sys.exit(130)
    except _ARGUMENT_ERRORS as exc:  # bad arguments: one line, exit 2
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"dcrt: error: {message}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except DcrtError as exc:
        typer.echo(f"dcrt: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code or 0)
