"""The family registry (dcrt.families): every family answers every role the rest of dcrt asks for, every preset
belongs to a registered family, and a new family is found by adding its package alone."""

import sys

import pytest

import dcrt.families as registry
from dcrt.families import FAMILIES, family_of
from dcrt.families.base import Family, PresetBase
from dcrt.presets import PRESETS

# What the rest of dcrt asks every family for (grep `part("` in dcrt/).
REQUIRED_ROLES = (
    "presets",
    "load_model",
    "random_model",
    "torch_backend",
    "static_backend",
    "pipeline_for",
    "io_table",
    "graph_modules",
    "sample_inputs",
)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_role_of_every_family_resolves(name):
    family = FAMILIES[name]
    assert set(REQUIRED_ROLES) <= set(family.roles)
    for role in family.roles:
        assert family.part(role) is not None, role


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_belongs_to_its_family(name):
    preset = PRESETS[name]
    assert isinstance(preset, PresetBase)
    assert preset in family_of(preset).part("presets")


def test_an_unknown_role_is_one_clear_line():
    with pytest.raises(Exception, match="model family svd has no host fields yet"):
        FAMILIES["svd"].part("host_fields")


def test_a_new_family_is_one_package(tmp_path, monkeypatch):
    """Discovery lists the families folder: a package with a FAMILY is registered, nothing else to edit."""
    package = tmp_path / "toy"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from dcrt.families.base import Family\nFAMILY = Family(name='toy', package=__name__)\n"
    )
    monkeypatch.setattr(registry, "__path__", [*registry.__path__, str(tmp_path)])
    try:
        found = registry._discover()
    finally:
        sys.modules.pop("dcrt.families.toy", None)
    assert set(found) == set(FAMILIES) | {"toy"}
    assert isinstance(found["toy"], Family)
