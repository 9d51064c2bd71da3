"""The package's layout rules, read from the source (ast): the runtime never imports a builder (TensorRT's or
AOTInductor's); each model family is one package that no other family imports, and only the registry
(dcrt.families) compares family names; family-neutral code (backends, artifacts, loading, ...) reaches a family only
through the registry; no library module imports the package face (`dcrt/__init__.py`, the lazy public API); no
module imports itself through others; `dcrt/` keeps few top-level modules and the runtime keeps short functions."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dcrt"
BUILDERS = ("dcrt.artifacts.tensorrt_build", "dcrt.artifacts.aoti_build")
# The runtime: what `dcrt animate` (any --backend) and `dcrt info` load, and the bundle formats the builders share
# with it.
RUNTIME = (
    "dcrt.api",
    "dcrt.artifacts.aoti_bundle",
    "dcrt.artifacts.engine_bundle",
    "dcrt.artifacts.graphs",
    "dcrt.artifacts.manifest",
    "dcrt.backends",
    "dcrt.families.common",
    "dcrt.families.dynamicrafter.pipeline",
    "dcrt.families.dynamicrafter.sampler",
    "dcrt.families.dynamicrafter.static",
    "dcrt.families.svd.pipeline",
    "dcrt.families.svd.sampler",
    "dcrt.families.svd.static",
    "dcrt.info",
    "dcrt.loading",
    "dcrt.runners",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a (possibly relative) `from ... import`."""
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _named(module: str, strings: bool) -> set[str]:
    """The names `module` imports anywhere (at the top, inside functions, under TYPE_CHECKING), and with `strings`
    every string constant too (the lazy `import_module` tables of dcrt/__init__.py and dcrt/backends/__init__.py)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)  # `from dcrt.runners import kernels`
        elif strings and isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return found


def _imports(module: str) -> set[str]:
    """Every dcrt module `module` may import, the packages above them included."""
    found = _named(module, strings=True)
    with_parents = {".".join(name.split(".")[:i]) for name in found for i in range(1, name.count(".") + 2)}
    return with_parents & set(MODULES)


def _role_modules() -> set[str]:
    """The family modules the registry imports by role (`Family.part`): strings the import scan cannot see."""
    from dcrt.families import FAMILIES

    return {f"{f.package}.{role.partition(':')[0]}" for f in FAMILIES.values() for role in f.roles.values()}


GRAPH = {module: _imports(module) for module in MODULES}
GRAPH["dcrt.families"] |= _role_modules() & set(MODULES)


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for name in GRAPH[todo.pop()] - seen:
            seen.add(name)
            todo.append(name)
    return seen


FAMILY_PACKAGES = tuple(
    f"dcrt.families.{p.name}" for p in sorted((PACKAGE / "families").iterdir()) if (p / "__init__.py").is_file()
)
# Code that serves every family alike: it asks the registry (dcrt.families) for what differs, never a family's
# package by name. dcrt.families.{base,common,state_dicts} are what the families share.
FAMILY_NEUTRAL = (
    "dcrt.artifacts",
    "dcrt.backends",
    "dcrt.config",
    "dcrt.families.base",
    "dcrt.families.common",
    "dcrt.families.state_dicts",
    "dcrt.hub",
    "dcrt.loading",
    "dcrt.presets",
    "dcrt.weights",
)
MAX_TOP_LEVEL_MODULES = 20
MAX_RUNTIME_FUNCTION_LINES = 60


def _family(module: str) -> str | None:
    return next((f for f in FAMILY_PACKAGES if module == f or module.startswith(f + ".")), None)


def _is_cli(module: str) -> bool:
    return module == "dcrt.cli" or module.startswith("dcrt.cli.")


@pytest.mark.parametrize("builder", BUILDERS)
def test_only_the_command_line_imports_a_builder(builder):
    importers = {module for module, imported in GRAPH.items() if builder in imported}
    assert any(_is_cli(m) for m in importers), "the scan must see `dcrt build` import the builder"
    assert {m for m in importers if not _is_cli(m) and m != builder} == set()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(RUNTIME)))
def test_the_runtime_never_reaches_a_builder(module):
    assert not set(BUILDERS) & (_reachable(module) | {module})


def test_no_library_module_imports_the_package_face():
    offenders = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and _resolve(module, node) == "dcrt":
                offenders += [f"{module}: from dcrt import {a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                # `import dcrt.errors` binds the name `dcrt`, the package face; `import dcrt.runners.kernels as k` does
                # not.
                offenders += [
                    f"{module}: import {a.name}"
                    for a in node.names
                    if (a.name == "dcrt" or a.name.startswith("dcrt.")) and a.asname is None
                ]
    assert offenders == []


def _statement_imports(module: str) -> set[str]:
    """The dcrt modules `module` names in import statements (anywhere), without parent packages or strings."""
    return (_named(module, strings=False) & set(MODULES)) - {module}


def test_no_two_modules_import_each_other_even_through_others():
    """A cycle makes the import order matter and hides which of the two is the lower layer."""
    graph = {module: _statement_imports(module) for module in MODULES}

    def reaches_itself(start: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name == start:
                return True
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
        return False

    assert sorted(m for m in MODULES if reaches_itself(m)) == []


def test_the_families_are_found():
    assert FAMILY_PACKAGES == ("dcrt.families.dynamicrafter", "dcrt.families.svd")


def test_no_family_imports_another():
    offenders = [
        f"{module} imports {name}"
        for module in MODULES
        if _family(module)
        for name in _statement_imports(module)
        if _family(name) not in (None, _family(module))
    ]
    assert offenders == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(FAMILY_NEUTRAL)))
def test_family_neutral_code_asks_the_registry(module):
    assert sorted(name for name in _statement_imports(module) if _family(name)) == []


def _family_comparisons(path: Path) -> list[int]:
    """Lines comparing something's `.family` (a family's name) with anything."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Compare)
        and any(isinstance(x, ast.Attribute) and x.attr == "family" for x in (node.left, *node.comparators))
    ]


def test_only_the_registry_compares_family_names():
    found = {module: lines for module, path in MODULES.items() if (lines := _family_comparisons(path))}
    assert set(found) <= {"dcrt.families", "dcrt.families.base"}, found


def test_the_top_level_stays_small():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def _long_functions(path: Path) -> list[str]:
    return [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_RUNTIME_FUNCTION_LINES
    ]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(RUNTIME)))
def test_runtime_functions_stay_short(module):
    assert _long_functions(MODULES[module]) == []
