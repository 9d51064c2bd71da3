"""What every model family shares: `PresetBase`, what any family's preset can answer, and `Family`, the one
object through which the rest of dcrt asks a family for what differs (dcrt.families holds the registry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module

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
        host_fields     (preset) -> what an AOTInductor bundle's manifest records for the C++ host (only a family
                        the host runs has it)
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
