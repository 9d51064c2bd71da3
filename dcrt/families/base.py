"""What every model family shares: `PresetBase`, what any family's preset can answer, and `Family`, the one
object through which the rest of dcrt asks a family for what differs (dcrt.families holds the registry)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from importlib import import_module
from typing import Protocol

from dcrt.errors import UsageError


class PresetBase:
    """What every family's preset can answer: its modes, its family's code, its latent size."""

    def check_mode(self, mode: str) -> None:
        """One line naming what this preset can do, for a mode it was not trained for."""
        if mode not in self.modes:
            raise UsageError(f"preset {self.name} cannot {mode}; it supports: {', '.join(self.modes)}")

    def require_family(self, family: str, what: str) -> None:
        """One line for a feature that exists only for another model family so far."""
        if self.family != family:
            raise UsageError(f"{self.name} does not support {what} yet (model family {self.family}; {family} has it)")

    @property
    def latent_height(self) -> int:
        return self.height // self.vae.downscale

    @property
    def latent_width(self) -> int:
        return self.width // self.vae.downscale


@dataclass(frozen=True)
class Family:
    """One model family: what the rest of dcrt asks it for, by role. Each role names a `module:attribute` inside the
    family's package, imported on first use (the registry and the command line's checks stay torch-free). Every
    family's package has the same module names (config, presets, options, checkpoint, pipeline, io_spec, export,
    ...), so the roles read alike across families.

    Roles (what each family's attribute is):
        presets         tuple of its presets (`Preset`-like frozen dataclasses whose `family` is `name`)
        load_model      (path, preset=, device=, dtype=) -> its torch model, strictly loaded
        random_model    (preset, seed=, device=, dtype=) -> its torch model with seeded random weights
        torch_backend   class: its backend over a torch model
        static_backend  class: its backend over a runtime that runs named graphs of static shapes
        pipeline_for    (model, backend or pipeline) -> its pipeline
        io_table        (preset, height, width) -> {graph name: ComponentSpec}, its exported graphs' static shapes
        graph_modules   (model, dtype) -> {graph name: GraphModule}, what each graph is traced from
        sample_inputs   (spec, preset, seed) -> realistic random inputs of one graph
        host_fields     (preset) -> what a bundle's manifest (AOTInductor or TensorRT) records for the C++ host
                        (only a family the host runs has it)
        animate         dcrt.animate for its models: (model, image, prompt, extend=, x_T=, on_step=, **sampling)
        stream          (model, mode, images, prompt, on_step, sampling) -> (uint8 frame chunks as decoded, fps)
        check_animate   (preset, prompt, extend, extend file, sampling request, SVD request) -> further clips'
                        prompts: `dcrt animate`'s own checks (options of another family, prompt, --extend)
        check_run       (preset, mode, sampling request, SVD request, --fps) -> CheckedRun: a generating
                        command's sampling options, checked before torch is imported
        option_default  (preset, option name) -> what None means for it, or NOT_TAKEN (--help's defaults)
        bench           (request, sampling request, backends, repeat, warmup, report, log) -> BenchReport
    """

    name: str
    package: str  # its modules are <package>.<module>
    roles: dict[str, str] = field(default_factory=dict)  # role -> "module:attribute"
    # Whether exports and engines may be made at another size than the preset's (--height / --width).
    custom_size: bool = True
    # A checkpoint may be a folder holding this subfolder (SVD's diffusers layout: unet/, vae/, ...); None: files only.
    checkpoint_folder_marker: str | None = None

    def has(self, role: str) -> bool:
        return role in self.roles

    def part(self, role: str):
        """The attribute playing `role` for this family (imported now)."""
        if role not in self.roles:
            raise UsageError(f"model family {self.name} has no {role.replace('_', ' ')} yet")
        module, _, attribute = self.roles[role].partition(":")
        return getattr(import_module(f"{self.package}.{module}"), attribute)


# A seed, in every family: what torch.Generator.manual_seed accepts without remapping (a 64-bit unsigned integer).
SEED_RANGE = (0, 2**64 - 1)


class CommandSampling(Protocol):
    """What every family reads of the command line's sampling options (its `SamplingRequest`, the DynamiCrafter
    family's request type, declares them all): the shared steps and seed, and the size and length that a family of
    fixed size refuses."""

    steps: int | None
    seed: int | None
    height: int | None
    width: int | None
    frames: int | None
    overlap: int | None


# The options each family's request shares with the other's on the command line (steps and seed among the
# sampling options, fps among the output options): one flag each, so never another family's.
SHARED_NAMES = ("steps", "seed", "fps")
# `option_default`'s answer for an option the family does not take.
NOT_TAKEN = object()


@dataclass(frozen=True)
class CheckedRun:
    """A generating command's run, checked before torch is imported (a family's `check_run`): what it hands
    to dcrt.api and how it opens the backend and writes the video."""

    sampling: dict[str, object]  # dcrt.api's sampling keywords
    fps: int | None = None  # the video's frame rate, where the family is conditioned on it (None: --fps or 8)
    size: tuple[int | None, int | None] = (None, None)  # the backend's height and width (None: the preset's)
    prompt_warning: str | None = None  # for a family without text conditioning: what a given prompt gets


def refuse_given(preset, request, theirs: str) -> None:
    """One line naming the flags set in `request`, another family's options (beyond the shared ones)."""
    given = [f for f in fields(request) if getattr(request, f.name) is not None and f.name not in SHARED_NAMES]
    if given:
        flags = ", ".join(f.metadata.get("flag") or "--" + f.name.replace("_", "-") for f in given)
        raise UsageError(
            f"{flags}: {theirs} option(s), which preset {preset.name} (model family {preset.family}) does not take"
        )
