"""`dcrt animate` for a Stable Video Diffusion preset: the same order as dcrt.cli.generate (every option and the
image checked before torch is imported, then one backend, then sample and stream the frames to the writer),
with SVD's options (dcrt.families.svd.options)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import typer

from dcrt.cli.app import log
from dcrt.cli.options import OutputOptions, default_output
from dcrt.cli.progress import progress
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.families.svd.options import SVDRequest
from dcrt.loading import BackendRequest


def animate_svd(
    image: Path,
    prompt: str | None,
    model: BackendRequest,
    sampling: SamplingRequest,
    svd: SVDRequest,
    output: OutputOptions,
) -> None:
    """`sampling` holds only the options both families share (steps, seed; dcrt.families.svd.options.refuse_foreign has
    refused the others), `output.fps` is SVD's fps too."""
    from dcrt.families.svd.options import resolve_svd_options
    from dcrt.images import open_image
    from dcrt.video import check_output_path, check_video_options, format_for

    preset = model.preset_config()
    opts = resolve_svd_options(preset, replace(svd, steps=sampling.steps, seed=sampling.seed, fps=output.fps))
    fmt = format_for(output.out or Path(), output.format)
    check_video_options(fmt, opts.fps, output.quality)
    target = output.out or default_output(image.stem, "animate", fmt)
    check_output_path(target, fmt)
    model.check_names()
    model.requested_weights()  # a missing --ckpt fails here, before the image is read
    picture = open_image(image)
    if prompt:
        warnings.warn("SVD has no text conditioning; the prompt is ignored", stacklevel=1)

    # Everything checked: now the slow part (torch, the model, sampling).
    from dcrt.families.svd.pipeline import svd_pipeline_for
    from dcrt.loading import open_backend
    from dcrt.video import write_video

    pipe = svd_pipeline_for(open_backend(model, log=log))
    with progress() as on_step:
        latents = pipe.sample(picture, opts, on_step=on_step)
        write_video(pipe.decoded_chunks(latents, opts), target, fmt, fps=opts.fps, quality=output.quality)
    typer.echo(str(target))
