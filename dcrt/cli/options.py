"""The library's option types as command-line options.

A command takes whole option types: `@takes(model=BackendRequest, sampling=SamplingRequest)` gives it one
option per field (the field's metadata holds its help, flag and help panel) and calls it with the built
objects. So each option is declared once, in the library type the Python API takes too, and a default
shown in `--help` is read from the table that holds it (`dcrt.families.dynamicrafter.config.SamplingDefaults`).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import typing
from collections.abc import Callable, Collection
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperCommand

from dcrt.director.llm import DIRECTOR
from dcrt.families import family_of
from dcrt.families.base import NOT_TAKEN
from dcrt.families.dynamicrafter.config import MODES, Seeds
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.families.svd.options import SVDRequest
from dcrt.loading import BACKEND, MODEL
from dcrt.presets import DEFAULT_PRESET, PRESETS, default_preset
from dcrt.video import DEFAULT_FPS, DEFAULT_QUALITY, MAX_FPS, QUALITY_RANGE

BATCH, SAMPLING, OUTPUT, SERVER = "Batch", "Sampling", "Output", "Server"
PANELS = ("Arguments", BATCH, MODEL, SAMPLING, OUTPUT, BACKEND, SERVER, DIRECTOR, "Other")


@dataclass(frozen=True)
class OutputOptions:
    """How a generating command writes its video."""

    out: Path | None = field(
        default=None,
        metadata={
            "flags": ("--out", "-o"),
            "help": "output file, or folder of frames for png; one that exists is replaced (default: <image's "
            "name>_<command>.<format> in the current directory, e.g. boat_animate.mp4, interpolate naming it after "
            "FIRST; never replacing a file: boat_animate-2.mp4 follows boat_animate.mp4)",
        },
    )
    format: str | None = field(
        default=None,
        metadata={"help": "mp4 (H.264), gif, webp or png (a folder of frames) (default: --out's extension, else mp4)"},
    )
    quality: int = field(
        default=DEFAULT_QUALITY,
        metadata={
            "help": f"x264 CRF for mp4, {QUALITY_RANGE[0]}-{QUALITY_RANGE[1]}, lower is better (the original uses "
            "10); webp quality is 100 - 2 x this"
        },
    )
    fps: int | None = field(
        default=None,
        metadata={
            "help": "frames per second of the written video ("
            + ", ".join(f"{fmt}: at most {top}" for fmt, top in MAX_FPS.items())
            + "); SVD presets are also conditioned on it"
        },
    )

    audio: Path | None = field(
        default=None,
        metadata={
            "help": "a sound track (wav, mp3, m4a or flac) laid under the mp4 as AAC: cut or looped to the video's "
            "length, with a short fade-out (README: Stories and sound tracks)"
        },
    )
    audio_library: Path | None = field(
        default=None,
        metadata={
            "help": "a folder of sound tracks: the one whose tags (<track>.txt beside it, else its file name) best "
            "match the prompt in the checkpoint's CLIP text space goes under the mp4"
        },
    )
    score: bool = field(
        default=False,
        metadata={
            "help": "also write <video>.scores.json beside the video: its metrics as `dcrt score` measures them, with "
            "the checkpoint's CLIP where there is one (docs/metrics.md)"
        },
    )

    def frame_rate(self, default: int = DEFAULT_FPS) -> int:
        """--fps, else `default` (SVD: the preset's conditioning fps)."""
        return self.fps if self.fps is not None else default


def default_output(name: str, mode: str, fmt: str, out_dir: Path | None = None, taken: Collection[Path] = ()) -> Path:
    """Where a video goes without --out: <name>_<mode>.<format> (name: the first image's) in --out-dir, else in
    the current directory (png: a folder). A default name never replaces anything: when that path exists (or is in
    `taken`, this run's earlier videos) the next free of <name>_<mode>-2, -3, ... is used."""
    suffix = "" if fmt == "png" else f".{fmt}"
    folder = out_dir or Path(".")
    paths = (folder / f"{name}_{mode}{'' if n == 1 else f'-{n}'}{suffix}" for n in itertools.count(1))
    return next(path for path in paths if not path.exists() and path not in taken)


_PANEL_OF = {SamplingRequest: SAMPLING, SVDRequest: SAMPLING, OutputOptions: OUTPUT}


def _shown(value: object) -> str:
    if value is None:
        return "off"
    if isinstance(value, Seeds):
        return ", ".join(f"{mode} {value.for_mode(mode)}" for mode in MODES)
    return str(value)


def preset_defaults_text(name: str) -> str:
    """What `None` means for option `name` (a SamplingRequest or SVDRequest field), per preset: "50", or "3 for
    256, tiny-256; 24 for ..."."""
    by_value: dict[str, list[str]] = {}
    for preset in PRESETS.values():  # each family answers for the options it takes (dcrt.families)
        value = family_of(preset).part("option_default")(preset, name)
        if value is not NOT_TAKEN:
            by_value.setdefault(_shown(value), []).append(preset.name)
    if len(by_value) == 1:
        return next(iter(by_value))
    return "the preset's: " + "; ".join(f"{value} for {', '.join(names)}" for value, names in by_value.items())


# What a `None` default means, where it is not a sampling default.
_DEFAULT_TEXT = {
    "fps": f"{DEFAULT_FPS}; SVD presets: the preset's conditioning fps, " + preset_defaults_text("fps"),
    "preset": f"{DEFAULT_PRESET}; "
    + ", ".join(f"{mode}: {default_preset(mode)}" for mode in MODES if default_preset(mode) != DEFAULT_PRESET),
}


def option(owner: type, spec: Field, annotation, note: str | None = None) -> inspect.Parameter:
    """One dataclass field as a keyword option: `--field-name` unless its metadata names the flags."""
    meta = spec.metadata
    flags = meta.get("flags") or (meta.get("flag") or "--" + spec.name.replace("_", "-"),)
    if note is None and owner in (SamplingRequest, SVDRequest):
        note = preset_defaults_text(spec.name)
    note = note or _DEFAULT_TEXT.get(spec.name)
    help_text = meta.get("help", "") + (f" (default: {note})" if note else "")
    info = typer.Option(
        *flags, help=help_text, rich_help_panel=meta.get("panel", _PANEL_OF.get(owner)), show_default=note is None
    )
    default = spec.default if spec.default is not MISSING else spec.default_factory()
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[annotation, info]
    )


def takes(notes: dict[str, str] | None = None, **groups: type | tuple[type, tuple[str, ...]]) -> Callable:
    """Decorate a command whose parameters named in `groups` are option types: each becomes its fields'
    options (all of them, or the names given as `(type, names)`), and the command receives the built object.
    `notes`: the "(default: ...)" text of a field, where the command resolves its `None` itself."""

    def wrap(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name not in groups]
        chosen: dict[str, tuple[type, list[str]]] = {}
        options = []
        for group, spec in groups.items():
            owner, names = spec if isinstance(spec, tuple) else (spec, None)
            hints = typing.get_type_hints(owner)
            picked = [f for f in fields(owner) if names is None or f.name in names]
            chosen[group] = (owner, [f.name for f in picked])
            options += [option(owner, f, hints[f.name], (notes or {}).get(f.name)) for f in picked]

        @functools.wraps(command)
        def run(**values):
            for group, (owner, names) in chosen.items():
                values[group] = owner(**{name: values.pop(name) for name in names})
            return command(**values)

        run.__signature__ = signature.replace(parameters=[*own, *options])
        return run

    return wrap


class GroupedCommand(TyperCommand):
    """Help in plain text with the options grouped under their panel (typer draws panels only with rich
    markup, which dcrt keeps off), and usage in the common `dcrt animate IMAGE PROMPT [OPTIONS]` order."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        # Every argument is required: plain names (typer >= 0.29 would brace them), then the options.
        arguments = [p.metavar or p.name.upper() for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return [*arguments, self.options_metavar]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {panel: [] for panel in PANELS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                panel = "Arguments" if param.param_type_name == "argument" else None
                # a command's own panel (not in PANELS) goes before "Other"
                sections.setdefault(panel or getattr(param, "rich_help_panel", None) or "Other", []).append(record)
        for panel, records in sorted(sections.items(), key=lambda item: item[0] == "Other"):
            if records:
                with formatter.section(panel if panel == "Arguments" else f"{panel} options"):
                    formatter.write_dl(records)


IMAGE_HELP = "image file (png, jpg, or anything PIL reads)"
PROMPT_HELP = "what should happen in the video, in English (CLIP reads the first 77 tokens)"
IMAGE_NOTE = (
    "Images are resized on the shorter side and centre-cropped to the output size, as the original CLI does: "
    "where the resized image is smaller than the crop (other aspect ratios), the borders are padded with black."
)


def argument(name: str, help_text: str):
    return Annotated[Path, typer.Argument(metavar=name, help=help_text, show_default=False)]


Image = argument("IMAGE", IMAGE_HELP)
KeyframesAndPrompt = Annotated[
    list[str],
    typer.Argument(
        metavar="FIRST LAST [KEYFRAME]... PROMPT",
        help=f"key frames in order ({IMAGE_HELP}), then the prompt (without --prompts or --auto-prompt)",
        show_default=False,
    ),
]
OptionalPrompt = Annotated[
    str | None,
    typer.Argument(
        metavar="[PROMPT]",
        help=PROMPT_HELP + "; left out, DynamiCrafter presets choose one (--auto-prompt); SVD presets take none (no "
        "text conditioning)",
        show_default=False,
    ),
]
# The model options of the commands that make artifacts from weights (fetch, export, build, bench, info).
WEIGHTS = ("preset", "checkpoint", "random_weights")
# The model options of the commands that run a model for others (serve, ui).
SERVED_MODEL = (*WEIGHTS, "backend", "device", "dtype", "export_dir", "memory")
