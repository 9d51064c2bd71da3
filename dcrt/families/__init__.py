"""The model families dcrt runs, one package each (dcrt/families/<name>/, the same module names in every one), and
the registry: the only place that asks which family a preset belongs to. A family's package exports `FAMILY`, a
`dcrt.families.base.Family` naming its parts by role; the rest of dcrt asks `family_of(preset).part(role)` for
what differs. Adding a family means adding its package here: it is found by listing this folder.

Torch-free: a family's `__init__` only names its parts.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module

from dcrt.families.base import Family


def _discover() -> dict[str, Family]:
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if info.ispkg:
            family = import_module(f"{__name__}.{info.name}").FAMILY
            found[family.name] = family
    return found


FAMILIES: dict[str, Family] = _discover()


def family_of(preset) -> Family:
    """The family whose code runs `preset` (its `family` field names it)."""
    return FAMILIES[preset.family]
