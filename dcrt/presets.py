"""Every named preset, of every model family (each family's own are in dcrt.families.<family>.presets), and the
preset a command uses when none is named."""

from __future__ import annotations

from dcrt.errors import UsageError
from dcrt.families import FAMILIES, family_of
from dcrt.families.base import PresetBase

# The preset a command uses when none is named; a mode this preset cannot do takes the first released preset
# that can (`default_preset`).
DEFAULT_PRESET = "512"

PRESETS: dict[str, PresetBase] = {p.name: p for family in FAMILIES.values() for p in family.part("presets")}


def get_preset(name: str | PresetBase) -> PresetBase:
    if isinstance(name, PresetBase):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def default_preset(mode: str) -> str:
    """`DEFAULT_PRESET`, or for a mode it cannot do, the first released preset that can (interpolate: 512-interp)."""
    if mode in PRESETS[DEFAULT_PRESET].modes:
        return DEFAULT_PRESET
    return next(
        p.name
        for p in PRESETS.values()
        if family_of(p) is family_of(PRESETS[DEFAULT_PRESET]) and mode in p.modes and p.hf_repo is not None
    )
