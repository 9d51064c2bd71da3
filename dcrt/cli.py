"""The `dcrt` command line. Library errors (DcrtError) and bad arguments become one line on stderr
and a non-zero exit code (2 for bad input); tracebacks are for bugs only.

Only typer is imported here: each command imports torch and the models where it needs them, after its
options and inputs are checked, so help and bad arguments answer at once.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperCommand

from dcrt.batch import Job, read_prompt_dir
from dcrt.config import MODES
from dcrt.errors import INTERRUPTED_EXIT_CODE, INTERRUPTED_MESSAGE, DcrtError, UsageError
from dcrt.options import DEFAULT_SEEDS
from dcrt.video import DEFAULT_FPS, DEFAULT_QUALITY, MAX_FPS, QUALITY_RANGE

app = typer.Typer(
    help="dcrt: fast inference for the DynamiCrafter image-to-video models.",
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Typer >= 0.20 ships its own copy of click with its own exception classes; older ones use click's.
_ARGUMENT_ERRORS = (click.exceptions.ClickException, getattr(typer, "TyperException", click.exceptions.ClickException))
# Help panels of the generating commands, in the order their help lists them.
BATCH, MODEL, SAMPLING, OUTPUT, BACKEND = "Batch", "Model", "Sampling", "Output", "Backend"
_PANELS = ("Arguments", BATCH, MODEL, SAMPLING, OUTPUT, BACKEND, "Other")
DEVICES = ("cpu", "cuda")  # and cuda:N
DTYPES = ("fp32", "fp16", "bf16")  # dcrt.checkpoint.WEIGHT_DTYPES, named without importing torch
_PRESET_HELP = "model preset: 256, 512, 1024, 512-interp, or tiny / tiny-256 (random weights, seconds on a CPU)"
Res = Annotated[str, typer.Option("--res", help=_PRESET_HELP, rich_help_panel=MODEL)]
Ckpt = Annotated[
    Path | None,
    typer.Option(
        help="model.ckpt or .safetensors (default: $DCRT_CHECKPOINT_DIR, then the HF cache)", rich_help_panel=MODEL
    ),
]
RandomWeights = Annotated[
    bool,
    typer.Option("--random-weights", help="seeded random weights instead of a checkpoint", rich_help_panel=MODEL),
]
Steps = Annotated[int, typer.Option(help="DDIM steps (1-1000)", rich_help_panel=SAMPLING)]
Cfg = Annotated[float, typer.Option("--cfg", help="classifier-free guidance scale (1 = off)", rich_help_panel=SAMPLING)]
Eta = Annotated[
    float,
    typer.Option(
        help="DDIM eta (1 = stochastic, as the original scripts; 0 = deterministic)", rich_help_panel=SAMPLING
    ),
]
Fs = Annotated[
    int | None,
    typer.Option(
        help="frame-rate conditioning (default: the preset's; 256: stride 1-6, others: fps)",
        rich_help_panel=SAMPLING,
    ),
]
Seed = Annotated[
    int | None,
    typer.Option(
        help="noise seed, 0 to 2**64-1 (default: the original script's: "
        + ", ".join(f"{mode} {seed}" for mode, seed in DEFAULT_SEEDS.items())
        + ")",
        rich_help_panel=SAMPLING,
    ),
]
Rescale = Annotated[
    float | None,
    typer.Option("--guidance-rescale", help="guidance rescale phi (default: preset's)", rich_help_panel=SAMPLING),
]
Spacing = Annotated[
    str | None,
    typer.Option("--spacing", help="uniform or uniform_trailing (default: preset's)", rich_help_panel=SAMPLING),
]
CfgImg = Annotated[
    float | None,
    typer.Option("--cfg-img", help="image guidance scale: enables 3-way guidance", rich_help_panel=SAMPLING),
]
Height = Annotated[
    int | None, typer.Option(help="output height, a multiple of 64 (default: preset's)", rich_help_panel=SAMPLING)
]
Width = Annotated[
    int | None, typer.Option(help="output width, a multiple of 64 (default: preset's)", rich_help_panel=SAMPLING)
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="output file, or folder of frames for png (default: <image's name>_<command>.<format> in the "
        "current directory, e.g. boat_animate.mp4; interpolate names it after FIRST)",
        rich_help_panel=OUTPUT,
    ),
]
_FORMAT_HELP = "mp4 (H.264), gif, webp or png (a folder of frames)"
Format = Annotated[
    str | None,
    typer.Option("--format", help=f"{_FORMAT_HELP} (default: --out's extension, else mp4)", rich_help_panel=OUTPUT),
]
Quality = Annotated[
    int,
    typer.Option(
        help=f"x264 CRF for mp4, {QUALITY_RANGE[0]}-{QUALITY_RANGE[1]}, lower is better (the original uses 10); "
        "webp quality is 100 - 2 x this",
        rich_help_panel=OUTPUT,
    ),
]
Fps = Annotated[
    int,
    typer.Option(
        help="frames per second of the written video ("
        + ", ".join(f"{fmt}: at most {top}" for fmt, top in MAX_FPS.items())
        + ")",
        rich_help_panel=OUTPUT,
    ),
]
Device = Annotated[
    str | None,
    typer.Option(
        help="cpu or cuda (default: cuda when a GPU is visible and the backend uses one)", rich_help_panel=BACKEND
    ),
]
BackendName = Annotated[
    str,
    typer.Option(
        "--backend",
        help="auto (TensorRT engines, else onnxruntime-gpu, else PyTorch on CUDA, else ONNX Runtime / PyTorch on "
        "the CPU; `dcrt info` says which; an export or engines made from other weights or for another size are "
        "passed over with a notice), trt, ort or torch",
        rich_help_panel=BACKEND,
    ),
]
Engines = Annotated[
    Path,
    typer.Option("--engines", help="root of the TensorRT engine bundles (`dcrt build`)", rich_help_panel=BACKEND),
]
ExportDir = Annotated[
    Path | None,
    typer.Option(help="export directory for --backend ort (default: export/<res>)", rich_help_panel=BACKEND),
]
Dtype = Annotated[
    str | None,
    typer.Option(
        help="torch backend weights: fp32, fp16 or bf16 (default: fp16 on cuda, fp32 on cpu)", rich_help_panel=BACKEND
    ),
]
_IMAGE_NOTE = (
    "Images are resized on the shorter side and centre-cropped to the output size, as the original CLI does: "
    "where the resized image is smaller than the crop (other aspect ratios), the borders are padded with black."
)
_IMAGE_HELP = "image file (png, jpg, or anything PIL reads)"
_PROMPT_HELP = "what should happen in the video, in English (CLIP reads the first 77 tokens)"


class GroupedCommand(TyperCommand):
    """Help in plain text with the options grouped under their panel (typer draws panels only with rich
    markup, which dcrt keeps off), and usage in the common `dcrt animate IMAGE PROMPT [OPTIONS]` order."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        # Every argument is required: plain names (typer >= 0.29 would brace them), then the options.
        arguments = [p.metavar or p.name.upper() for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return [*arguments, self.options_metavar]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {panel: [] for panel in _PANELS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                panel = "Arguments" if param.param_type_name == "argument" else None
                sections[panel or getattr(param, "rich_help_panel", None) or "Other"].append(record)
        for panel, records in sections.items():
            if records:
                with formatter.section(panel if panel == "Arguments" else f"{panel} options"):
                    formatter.write_dl(records)


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


def _version(value: bool) -> None:
    if value:
        from dcrt.version import __version__

        typer.echo(f"dcrt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """dcrt: fast inference for the DynamiCrafter image-to-video models."""


@app.command()
def info(res: Res = "512", export_dir: ExportDir = None, engines: Engines = Path("engines")) -> None:
    """Versions, devices, which backends this machine can use (and why not), and what --backend auto picks."""
    from dcrt.backends.select import choose_backend, describe, probe
    from dcrt.config import get_preset
    from dcrt.info import collect, format_report
    from dcrt.weights import requested_weights

    typer.echo(format_report(collect()))
    preset = get_preset(res)
    export_dir = export_dir or Path("export") / preset.name
    chosen = choose_backend(preset, "auto", engines, export_dir, probe(), weights=requested_weights(preset))
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
    from dcrt.export import PRECISIONS, export_model
    from dcrt.weights import required_weights

    preset = get_preset(res)
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    for name, size in (("height", height), ("width", width)):
        if size is not None and (size <= 0 or size % 64):
            raise UsageError(f"{name} must be a positive multiple of 64, got {size}")
    choice = ModelChoice(res, ckpt, random_weights, "cpu", "fp32")
    weights = required_weights(preset, ckpt, random_weights)
    out = out or Path("export") / preset.name
    request = _export_request(weights, preset, precision, height, width)
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    export_model(_load_model(choice, preset, weights), out, request, force=force, log=log)
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
    from dcrt.config import get_preset
    from dcrt.engine_builder import BuildConfig, build_bundle, console_progress
    from dcrt.engine_bundle import detect_target
    from dcrt.export import export_model, is_up_to_date
    from dcrt.weights import required_weights

    preset = get_preset(res)
    config = BuildConfig(opt_level=opt_level, workspace_gb=workspace, timing_cache=timing_cache)
    target = detect_target()  # no TensorRT or no GPU: one line, before any slow work
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    export_dir = from_ or Path("export") / f"{preset.name}-fp16"
    if from_ is None:
        choice = ModelChoice(res, ckpt, random_weights, "cpu", "fp32")
        weights = required_weights(preset, ckpt, random_weights)
        request = _export_request(weights, preset, "fp16")
        if not is_up_to_date(export_dir, request):
            export_model(_load_model(choice, preset, weights), export_dir, request, log=log)
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
    device: Device = None,
    dtype: Annotated[
        str | None, typer.Option(help="torch backend weights (default: fp16 on cuda, fp32 on cpu)")
    ] = None,
    export_dir: ExportDir = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="directory for the JSON, Markdown and PNG report (file names carry the date and time)"
        ),
    ] = Path("bench-results"),
) -> None:
    """Time each stage of each backend side by side (same inputs, same seed) and write a report.

    On CUDA the torch backend samples with the captured graph and the fused kernels; the baseline never
    does (the original's way: fp32 weights under fp16 autocast, one UNet call per guidance branch)."""
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
    import numpy as np

    rng = np.random.default_rng(0)
    images = [(rng.random((opts.height, opts.width, 3)) * 255).astype(np.uint8) for _ in range(2)]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    choice = ModelChoice(res, ckpt, random_weights, device, "fp32", "torch", export_dir)
    machine = environment(torch.device(_check_device(device)))  # before the runs: the load they meet
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
        environment=machine,
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
        from dcrt.export import export_model
        from dcrt.weights import required_weights

        export_dir = choice.export_dir or Path("export") / preset.name
        cpu_model = (
            model
            if model.device.type == "cpu"
            else _load_model(ModelChoice(choice.res, choice.ckpt, choice.random_weights, "cpu", "fp32"), preset)
        )
        weights = required_weights(preset, choice.ckpt, choice.random_weights)
        request = _export_request(weights, preset, "fp32", opts.height, opts.width)
        export_model(cpu_model, export_dir, request, log=log)
        pipelines["ort"] = Pipeline(OnnxRuntimeBackend(export_dir, choice.device))
    return pipelines


@app.command()
def fetch(res: Res = "512") -> None:
    """Download a released checkpoint into the Hugging Face cache (resumable)."""
    from dcrt.config import get_preset
    from dcrt.hub import fetch_checkpoint

    typer.echo(fetch_checkpoint(get_preset(res)))


def _check_names(choice: ModelChoice) -> None:
    """The backend, device and dtype names: checked before torch is imported or a model is loaded."""
    from dcrt.backends.select import BACKENDS

    if choice.backend not in BACKENDS:
        raise UsageError(f"unknown backend {choice.backend!r}; choose one of {', '.join(BACKENDS)}")
    _check_device_name(choice.device)
    _check_dtype_name(choice.dtype)


def _check_device_name(device: str | None) -> None:
    if device is not None and device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise UsageError(f"unknown device {device!r}; choose cpu or cuda")


def _check_dtype_name(dtype: str | None) -> None:
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}")


def _torch_dtype(name: str | None, device: str):
    from dcrt.checkpoint import WEIGHT_DTYPES

    _check_dtype_name(name)
    return WEIGHT_DTYPES[name or ("fp16" if device.startswith("cuda") else "fp32")]


def _check_device(device: str | None) -> str:
    _check_device_name(device)
    import torch

    device = device or "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is visible (see `dcrt info`)")
    return device


def _load_model(choice: ModelChoice, preset, weights=None):
    """The torch model of `weights` (default: what --ckpt / --random-weights ask for) on the choice's device."""
    from dcrt.checkpoint import load_model, random_model
    from dcrt.weights import RANDOM_SEED, required_weights

    device = _check_device(choice.device)
    dtype = _torch_dtype(choice.dtype, device)
    weights = weights or required_weights(preset, choice.ckpt, choice.random_weights)
    if weights.checkpoint is None:
        return random_model(preset, seed=RANDOM_SEED, device=device, dtype=dtype)
    return load_model(weights.checkpoint, preset=preset, device=device, dtype=dtype)


def _export_request(weights, preset, precision: str, height: int | None = None, width: int | None = None):
    """What an export of `weights` records: the full hash, and the stamp every run compares cheaply."""
    from dcrt.export import ExportRequest

    return ExportRequest(preset, precision, weights.source(), height, width, weights.stamp())


def _notice(message: str) -> None:
    typer.echo(f"dcrt: notice: {message}", err=True)


def _load_backend(choice: ModelChoice, preset, weights, height: int | None = None, width: int | None = None):
    """The backend `--backend` names, or for `auto` the fastest this machine has whose export or engines hold
    the requested weights and size (dcrt.backends.select). Prints which backend and weights it uses."""
    from dataclasses import replace

    from dcrt.backends import TorchBackend
    from dcrt.backends.select import choose_backend, probe
    from dcrt.weights import required_weights

    if choice.device is not None:
        _check_device(choice.device)
    export_dir = choice.export_dir or Path("export") / preset.name
    chosen = choose_backend(
        preset, choice.backend, choice.engines, export_dir, probe(), choice.device, height, width, weights, _notice
    )
    if chosen.name == "trt":
        from dcrt.backends.tensorrt_backend import TensorRTBackend

        backend = TensorRTBackend(chosen.location, "cuda")
    elif chosen.name == "ort":
        from dcrt.backends.onnxruntime_backend import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(chosen.location, chosen.device)
    else:
        weights = weights or required_weights(preset)  # none at hand: says where to get them
        chosen = replace(chosen, weights=str(weights))
        backend = TorchBackend(_load_model(replace(choice, device=chosen.device), preset, weights))
    # Said once the backend is open: a run that fails to load ends with its one error line alone.
    for notice in chosen.notices:
        _notice(notice)
    typer.echo(f"dcrt: {chosen.summary()}", err=True)
    return backend


@contextmanager
def _progress():
    """A denoising progress bar on stderr, closed however the run ends: after Ctrl-C, the message that
    follows starts a line of its own."""
    from tqdm import tqdm

    bars = []

    def on_step(step: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="denoising", unit="step", file=sys.stderr, dynamic_ncols=True))
        bars[0].update(1)

    try:
        yield on_step
    finally:
        for bar in bars:
            bar.close()


def _default_output(job: Job, mode: str, fmt: str, out_dir: Path | None) -> Path:
    """<first image's name>_<mode>.<format> in --out-dir, else in the current directory (png: a folder)."""
    suffix = "" if fmt == "png" else f".{fmt}"
    return (out_dir or Path(".")) / f"{job.name}_{mode}{suffix}"


def _check_out_dir(out_dir: Path) -> None:
    """--out-dir is created before the first video is written; here it only has to be creatable."""
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"output directory {out_dir} cannot be created: {existing} is a file")


def _generate(
    mode: str, jobs: list[Job], model: ModelChoice, output: OutputChoice, sampling: dict, out_dir: Path | None = None
) -> None:
    """Check every option and input first (no torch, no model: a bad one costs well under a second), then
    choose the backend, load once, sample, write."""
    from dcrt.config import get_preset
    from dcrt.images import open_image
    from dcrt.options import resolve_options
    from dcrt.video import check_output_path, check_video_options, format_for
    from dcrt.weights import requested_weights

    preset = get_preset(model.res)
    if mode not in preset.modes:
        raise UsageError(f"preset {preset.name} cannot {mode}; it supports: {', '.join(preset.modes)}")
    opts = resolve_options(preset, **sampling)
    fmt = format_for(output.out or Path(), output.fmt)
    check_video_options(fmt, output.fps, output.quality)
    targets = [output.out or _default_output(job, mode, fmt, out_dir) for job in jobs]
    if out_dir is not None:
        _check_out_dir(out_dir)
    if out_dir is None or out_dir.is_dir():  # a folder still to be created holds nothing to collide with
        for target in targets:
            check_output_path(target, fmt)
    _check_names(model)
    weights = requested_weights(preset, model.ckpt, model.random_weights)
    pictures = [[open_image(p) for p in job.images] for job in jobs]

    # Everything checked: now the slow part (torch, the model, sampling).
    from dcrt.pipeline import pipeline_for
    from dcrt.video import write_video

    pipe = pipeline_for(_load_backend(model, preset, weights, opts.height, opts.width))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for job, images, target in zip(jobs, pictures, targets):
        with _progress() as on_step:
            result = pipe.generate(images, job.prompt, mode, opts, on_step=on_step)
        write_video(result.frames, target, fmt, fps=output.fps, quality=output.quality)
        typer.echo(str(target))


def _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, mode) -> dict:
    return dict(
        steps=steps,
        guidance_scale=cfg,
        eta=eta,
        fs=fs,
        guidance_rescale=guidance_rescale,
        timestep_spacing=spacing,
        cfg_img=cfg_img,
        seed=DEFAULT_SEEDS[mode] if seed is None else seed,
        height=height,
        width=width,
    )


@app.command(cls=GroupedCommand, help=f"Animate IMAGE following PROMPT into a 16-frame video. {_IMAGE_NOTE}")
def animate(
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help=_IMAGE_HELP, show_default=False)],
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help=_PROMPT_HELP, show_default=False)],
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
    quality: Quality = DEFAULT_QUALITY,
    fps: Fps = DEFAULT_FPS,
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
        _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, "animate"),
    )


@app.command(
    cls=GroupedCommand,
    help=f"Generate the 16 frames from FIRST to LAST (the 512-interp model). {_IMAGE_NOTE}",
)
def interpolate(
    first: Annotated[Path, typer.Argument(metavar="FIRST", help=f"first frame: {_IMAGE_HELP}", show_default=False)],
    last: Annotated[Path, typer.Argument(metavar="LAST", help=f"last frame: {_IMAGE_HELP}", show_default=False)],
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help=_PROMPT_HELP, show_default=False)],
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
    quality: Quality = DEFAULT_QUALITY,
    fps: Fps = DEFAULT_FPS,
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
        _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, "interpolate"),
    )


@app.command(
    cls=GroupedCommand,
    help=f"A looping video that starts and ends on IMAGE (the 512-interp model). {_IMAGE_NOTE}",
)
def loop(
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help=_IMAGE_HELP, show_default=False)],
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help=_PROMPT_HELP, show_default=False)],
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
    quality: Quality = DEFAULT_QUALITY,
    fps: Fps = DEFAULT_FPS,
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
        _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, "loop"),
    )


@app.command(
    cls=GroupedCommand,
    help="Run a folder: images sorted by name, prompts one per line in its first .txt file "
    "(interpolate: images 2i, 2i+1 share prompt i). Writes OUT_DIR/<image>_<mode>.<format>, creating OUT_DIR. "
    f"{_IMAGE_NOTE}",
)
def batch(
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIRECTORY", help="folder of .jpg/.jpeg/.png images and a .txt of prompts"),
    ],
    out_dir: Annotated[
        Path,
        typer.Option("--out-dir", help="directory for the videos (created if missing)", rich_help_panel=BATCH),
    ],
    mode: Annotated[str, typer.Option(help=", ".join(MODES), rich_help_panel=BATCH)] = "animate",
    prompts: Annotated[
        Path | None, typer.Option(help="prompt file (default: the folder's first .txt)", rich_help_panel=BATCH)
    ] = None,
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
    format: Annotated[
        str | None, typer.Option("--format", help=f"{_FORMAT_HELP} (default: mp4)", rich_help_panel=OUTPUT)
    ] = None,
    quality: Quality = DEFAULT_QUALITY,
    fps: Fps = DEFAULT_FPS,
    device: Device = None,
    dtype: Dtype = None,
    backend: BackendName = "auto",
    export_dir: ExportDir = None,
    engines: Engines = Path("engines"),
) -> None:
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    _generate(
        mode,
        read_prompt_dir(directory, mode, prompts),
        ModelChoice(res, ckpt, random_weights, device, dtype, backend, export_dir, engines),
        OutputChoice(None, format, quality, fps),
        _sampling(steps, cfg, eta, fs, guidance_rescale, spacing, cfg_img, seed, height, width, mode),
        out_dir=out_dir,
    )


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"dcrt: warning: {message}", err=True)


def main() -> None:
    """Run the command line on sys.argv (the console script, `dcrt.__main__.main`, calls this). Everything slow
    runs inside the `try`: Ctrl-C is one line and exit 130 (outputs are written to temporary files and renamed,
    so none is left half-written)."""
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            code = app(standalone_mode=False, prog_name="dcrt")
    except (typer.Abort, click.exceptions.Abort, KeyboardInterrupt):
        code = INTERRUPTED_EXIT_CODE
    except _ARGUMENT_ERRORS as exc:  # bad arguments: one line, exit 2
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"dcrt: error: {message}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except DcrtError as exc:
        typer.echo(f"dcrt: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if code == INTERRUPTED_EXIT_CODE:  # typer >= 0.2x returns this code for Ctrl-C in a command, silently
        typer.echo(INTERRUPTED_MESSAGE, err=True)
    sys.exit(code or 0)
