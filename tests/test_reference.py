"""parity/ (the parity harness) imports without the original checkout, and the dcrt package never imports it: it
is not installed, so an import of it from dcrt would fail wherever dcrt is installed."""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dcrt"


@pytest.mark.parametrize("module", ["original", "components", "model", "sampling"])
def test_harness_imports_without_the_original(module):
    importlib.import_module(f"parity.dynamicrafter.{module}")  # the original is imported only when a check runs


def test_runtime_never_imports_the_harness():
    importers = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "parity" or n.startswith("parity.") for n in names):
                importers.append(str(path.relative_to(PACKAGE)))
    assert not importers
