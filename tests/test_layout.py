"""The package's import rules, read from the source (ast): the runtime never imports a builder (TensorRT's or
AOTInductor's), no library module imports the package face (`dcrt/__init__.py`, the lazy public API), and no
module imports itself through others."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dcrt"
BUILDERS = ("dcrt.artifacts.tensorrt_build", "dcrt.artifacts.aoti_build")
# The runtime and backend selection: what `animate --backend trt|aoti` and `dcrt info` load, and the bundle formats
# the builders share with the runtime.
RUNTIME = (
    "dcrt.backends",
    "dcrt.families.dynamicrafter.pipeline",
    "dcrt.families.svd.pipeline",
    "dcrt.runners.edm",
    "dcrt.info",
    "dcrt.artifacts.engine_bundle",
    "dcrt.artifacts.aoti_bundle",
    "dcrt.loading",
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


GRAPH = {module: _imports(module) for module in MODULES}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for name in GRAPH[todo.pop()] - seen:
            seen.add(name)
            todo.append(name)
    return seen


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
                # `import dcrt.errors` binds the name `dcrt`, the package face; `import dcrt.runners.kernels as k` does not.
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
