"""serve, client, ui: dcrt behind Triton Inference Server, a client for it, and the Gradio page."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from dcrt.atomic import check_writable
from dcrt.batch import read_prompt_dir
from dcrt.cli.app import app, log, say
from dcrt.cli.options import (
    SERVED_MODEL,
    SERVER,
    GroupedCommand,
    KeyframesAndPrompt,
    OutputOptions,
    default_output,
    takes,
)
from dcrt.director.llm import LLMRequest
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.config import MODES
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.loading import BackendRequest
from dcrt.presets import DEFAULT_PRESET

HOST_HELP = "address to bind (default: loopback only; 0.0.0.0 serves every interface: put it behind your own auth)"


def _dcrt_root() -> str:
    """The folder that holds the running dcrt package: the server's model runs the same dcrt."""
    import dcrt.version as version

    return str(Path(version.__file__).resolve().parent.parent)


@app.command(cls=GroupedCommand)
@takes(model=(BackendRequest, SERVED_MODEL))
def serve(
    model: BackendRequest,
    write_repo: Annotated[
        Path | None,
        typer.Option(help="only write the Triton model repository into this folder (for a Triton container)"),
    ] = None,
    host: Annotated[str, typer.Option(help=HOST_HELP, rich_help_panel=SERVER)] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port; gRPC is PORT+1, metrics PORT+2", rich_help_panel=SERVER)] = 8000,
    instances: Annotated[int, typer.Option(help="model instances (per GPU on a GPU)", rich_help_panel=SERVER)] = 1,
    max_batch: Annotated[int, typer.Option(help="requests Triton hands over at once", rich_help_panel=SERVER)] = 4,
    max_queue: Annotated[
        int, typer.Option(help="waiting requests beyond this are refused at once", rich_help_panel=SERVER)
    ] = 16,
    queue_timeout: Annotated[
        float, typer.Option(help="seconds a request may wait before it is refused", rich_help_panel=SERVER)
    ] = 600.0,
) -> None:
    """Serve animate / interpolate / loop with NVIDIA Triton Inference Server: writes a model repository
    (config.pbtxt with dynamic batching and a bounded queue, 1/model.py running dcrt) and starts tritonserver on
    it, or with --write-repo only writes it. Health, readiness and Prometheus metrics are Triton's own."""
    from dcrt.serving.repository import ServeOptions, write_repository

    options = ServeOptions(instances, max_batch, max_queue, queue_timeout)
    options.check()
    model = replace(model, preset=model.preset or DEFAULT_PRESET)
    model.preset_config().require_family("dynamicrafter", "serve")
    model.check_names()
    if not 0 < port < 65534:
        raise UsageError(f"--port must be from 1 to 65533, got {port}")
    if write_repo is not None:
        check_writable(write_repo, "repository folder")
        typer.echo(str(write_repository(write_repo, model, options)))
        return
    model.required_weights()  # a missing checkpoint fails here, not inside the server
    _run_server(model, options, host, port)


def _run_server(model: BackendRequest, options, host: str, port: int) -> None:
    import signal
    import sys
    import tempfile

    from dcrt.serving.repository import write_repository
    from dcrt.serving.server import start_server

    with tempfile.TemporaryDirectory(prefix="dcrt-repo-") as repo:
        write_repository(Path(repo), model, options, python_path=[_dcrt_root()])
        server = start_server(Path(repo), host, port)
        # SIGTERM (a service manager, `kill PID`) ends this process through `finally`: the server goes with it.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        try:
            server.wait_ready()
            log(f"serving {model.preset} on {server.url} (model 'dcrt'); Ctrl-C stops")
            server.process.wait()
        finally:
            server.stop()


@app.command(cls=GroupedCommand)
# The output options it writes with; --score is the generating commands' (`dcrt score` scores what this writes).
@takes(sampling=SamplingRequest, output=(OutputOptions, ("out", "format", "quality", "fps")))
def client(
    url: Annotated[str, typer.Argument(metavar="URL", help="a `dcrt serve` endpoint, e.g. http://127.0.0.1:8000")],
    inputs: KeyframesAndPrompt,
    sampling: SamplingRequest,
    output: OutputOptions,
    mode: Annotated[str, typer.Option(help=", ".join(MODES))] = "animate",
) -> None:
    """Send IMAGE PROMPT (interpolate: FIRST LAST PROMPT) to a `dcrt serve` endpoint and write the video."""
    from dcrt.serving.client import generate_remote
    from dcrt.video import check_output_path, check_video_options, format_for, write_video

    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    images, prompt = [Path(p) for p in inputs[:-1]], inputs[-1]
    if len(images) != (2 if mode == "interpolate" else 1):
        raise UsageError(f"{mode} takes {'FIRST LAST' if mode == 'interpolate' else 'IMAGE'} PROMPT")
    for image in images:
        if not image.is_file():
            raise UsageError(f"image {image} does not exist")
    fmt = format_for(output.out or Path(), output.format)
    target = output.out or default_output(images[0].stem, mode, fmt)
    check_video_options(fmt, output.frame_rate(), output.quality)
    check_output_path(target, fmt)
    say(f"dcrt: sending to {url}")
    frames = generate_remote(url, [p.read_bytes() for p in images], prompt, mode, sampling)["FRAMES"]
    write_video(frames, target, fmt, fps=output.frame_rate(), quality=output.quality)
    typer.echo(str(target))


@app.command(cls=GroupedCommand)
@takes(model=(BackendRequest, SERVED_MODEL), llm=LLMRequest)
def ui(
    model: BackendRequest,
    llm: LLMRequest,
    server: Annotated[
        str | None,
        typer.Option(help="a `dcrt serve` URL to send the work to (default: run it in this process)"),
    ] = None,
    host: Annotated[str, typer.Option(help=HOST_HELP, rich_help_panel=SERVER)] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the page's port", rich_help_panel=SERVER)] = 7860,
    examples: Annotated[
        Path | None,
        typer.Option(
            help="a folder of example inputs in the original's prompts/ layout: images sorted by name and a .txt "
            "with one prompt per line (pairs of images for an interpolation model), e.g. DynamiCrafter/prompts/512"
        ),
    ] = None,
    audio_library: Annotated[
        Path | None,
        typer.Option(
            help="a folder of sound tracks (wav, mp3, m4a, flac) the Magic Animator tab offers by name, or picks by "
            "matching their tags (<track>.txt, else the file name) against the prompt"
        ),
    ] = None,
) -> None:
    """The DynamiCrafter demo page (Gradio): image to video, interpolation / loop with two images, and the Magic
    Animator (describe a photo, animate it, score the video, add a sound track). Runs the pipeline in this process,
    or on a `dcrt serve` endpoint with --server (then --res names the server's preset, for the controls'
    defaults; describing and scoring still run here, with the checkpoint found here). Analytics are off."""
    model = replace(model, preset=model.preset or DEFAULT_PRESET)
    preset = model.preset_config()
    preset.require_family("dynamicrafter", "the demo page")
    model.check_names()
    chat = llm.resolved()  # a bad URL or a missing model name: one line, before anything loads
    jobs = read_prompt_dir(examples, preset.modes[0]) if examples is not None else []
    if audio_library is not None:
        from dcrt.director.sound import check_sound

        check_sound(None, audio_library, "mp4")  # every track probed: a bad one is named now
    if server is None:
        model.required_weights()
    from dcrt.ui import Director, build_ui, in_process, remote

    if server is not None:
        generate = remote(server)
    else:
        from dcrt.serving.service import VideoService

        generate = in_process(VideoService(model, log=log))
    log(f"the page: http://{host}:{port} (Ctrl-C stops)")
    director = Director(model, chat, audio_library)
    build_ui(generate, preset, jobs, director).queue().launch(
        server_name=host, server_port=port, share=False, quiet=True
    )
