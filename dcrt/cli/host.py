"""tokenize, noise: the inputs of the C++ host (cpp_host) that stay in Python."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcrt.atomic import check_writable
from dcrt.cli.app import app
from dcrt.cli.options import takes
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.presets import DEFAULT_PRESET, get_preset

PRESET = Annotated[str, typer.Option("--res", help="model preset (its context length / latent shape)")]
OUT = Annotated[Path, typer.Option("--out", "-o", help="output .npy file")]


@app.command()
def tokenize(prompt: Annotated[str, typer.Argument(help="the prompt")], out: OUT, res: PRESET = DEFAULT_PRESET) -> None:
    """Write the prompt's CLIP token ids and the empty prompt's, int64 [2, 77], for the C++ host."""
    check_writable(out, "output file")
    from dcrt.families.dynamicrafter.host import prompt_tokens, write_array

    typer.echo(str(write_array(out, prompt_tokens(prompt, get_preset(res)))))


@app.command()
@takes(sampling=(SamplingRequest, ("steps", "eta", "timestep_spacing", "seed")))
def noise(
    sampling: SamplingRequest,
    out: OUT,
    res: PRESET = DEFAULT_PRESET,
    device: Annotated[str, typer.Option(help="draw as a run on this device does: cpu or cuda")] = "cpu",
) -> None:
    """Write the initial latent noise and each step's noise of a seeded animate run, float32, for the C++ host."""
    from dcrt.families.dynamicrafter.host import host_noise, write_array
    from dcrt.families.dynamicrafter.options import resolve_options

    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}; choose cpu or cuda")
    preset = get_preset(res)
    opts = resolve_options(preset, "animate", sampling)
    check_writable(out, "output file")
    typer.echo(str(write_array(out, host_noise(preset, opts, device))))
