"""Straight layers and no import cycles, checked on the AST of every module of the project.

The layers, bottom to top (docs/design.md, "Layers"):

1. ``darkpool``: contracts, configuration, errors, the client plumbing every part uses the same way
   (``darkpool.kafka_client``: how any Kafka client authenticates; ``darkpool.storage``: local folders
   and S3 locations, atomic writes) and the local stack (``darkpool.stack``). Those two modules stay
   here because they turn settings into clients for *every* part and for the stack; in a part they
   would make the others import it.
2. the parts: ``feed``, ``pipeline``, ``serving``, ``analytics``;
3. the commands that drive several parts: ``console`` (the ``darkpool`` command line, the demo) and
   ``deploy`` (it renders and checks the Kubernetes manifests from the pipeline's own Flink arguments
   and its submission Job runs the pipeline).

The rules:

- **no import points up** a layer. Module-level *and* function-level imports count: an import
  inside a function is still a dependency, only a later one.
- **a part imports no other part**. An exception would have to be argued for, with its reason,
  in :data:`ALLOWED_PART_IMPORTS` (empty: what two parts share lives in the bottom layer).
- **no import cycle** between modules, anywhere (strongly connected components of the module
  graph). Here too every import counts, function-level ones included and ``if TYPE_CHECKING:``
  ones too: hiding one import of a loop inside a function (how the serving routes and their
  OpenAPI document once imported each other) keeps the loop, it only moves the failure to run time.

``tests/`` and ``bench/`` are not layered: they may import anything. Imports by name at run time
(``importlib.import_module`` of ``console.cli``'s ``COMMAND_MODULES``, granian's ``"module:factory"``
target) are not statements and are not seen; they live in the top layer or name a module of their own
part.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

LAYERS: tuple[tuple[str, ...], ...] = (
    ("darkpool",),
    ("feed", "pipeline", "serving", "analytics"),
    ("console", "deploy"),
)

# (importing part, imported part) -> why this part may use the other one
ALLOWED_PART_IMPORTS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import statement of a project module, resolved to the project module it loads."""

    importer: str
    target: str
    line: int
    function_level: bool


def layer_of(package: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int:
    for rank, packages in enumerate(layers):
        if package in packages:
            return rank
    raise KeyError(package)


def project_modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the given top-level packages."""
    modules: dict[str, Path] = {}
    for package in packages:
        for file in sorted((root / package).rglob("*.py")):
            parts = list(file.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = file
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` loads (its longest project prefix), or None for a third-party one."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
                    modules: dict[str, Path]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: from . import x, from ..a import b
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        yield submodule if submodule in modules else source  # `from pkg import module` vs `from mod import name`


def _function_level_nodes(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside a function (def, async def, lambda) anywhere in the tree."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    return inside


def project_imports(root: Path, packages: Iterable[str]) -> list[Import]:
    """Every import, at any depth, from a project module to another project module."""
    modules = project_modules(root, packages)
    found: list[Import] = []
    for module, file in modules.items():
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        in_function = _function_level_nodes(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported_names(node, module, file.name == "__init__.py", modules):
                target = _resolve(name, modules)
                if target is not None and target != module:
                    found.append(Import(module, target, node.lineno, id(node) in in_function))
    return found


def layer_violations(imports: Iterable[Import], layers: tuple[tuple[str, ...], ...] = LAYERS,
                     allowed: dict[tuple[str, str], str] | None = None) -> list[str]:
    """Imports that point up a layer, or from one part to another without an entry in ``allowed``."""
    allowed = ALLOWED_PART_IMPORTS if allowed is None else allowed
    problems = []
    for imp in imports:
        source, target = imp.importer.split(".")[0], imp.target.split(".")[0]
        depth = ", in a function" if imp.function_level else ""
        where = f"{imp.importer} (line {imp.line}{depth}) imports {imp.target}"
        if layer_of(target, layers) > layer_of(source, layers):
            problems.append(f"{where}: upward, from layer {layer_of(source, layers) + 1} to layer "
                            f"{layer_of(target, layers) + 1}")
        elif source != target and layer_of(source, layers) == layer_of(target, layers) \
                and (source, target) not in allowed:
            problems.append(f"{where}: one part importing another ({source} -> {target})")
    return problems


def import_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """The module cycles: strongly connected components of more than one module (or a self-loop)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.importer, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(start: str) -> None:  # Tarjan's algorithm, iterative (no recursion limit)
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def all_packages(layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    return [package for packages in layers for package in packages]


# -- the project -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return project_imports(REPO_ROOT, all_packages())


def test_every_top_level_package_is_in_a_layer() -> None:
    """A new top-level package must be placed in a layer (else nothing checks it)."""
    from setuptools import find_packages

    top_level = {name for name in find_packages(str(REPO_ROOT), exclude=["tests*", "bench*"]) if "." not in name}
    assert top_level == set(all_packages()), "add the package to LAYERS (and setup.py's packages)"


def test_the_walk_sees_the_whole_project(imports: list[Import]) -> None:
    """Guards against a vacuous pass: the walk finds the imports the checks are about."""
    modules = project_modules(REPO_ROOT, all_packages())
    assert len(modules) > 80
    edges = {(i.importer, i.target) for i in imports}
    assert ("console.cli", "darkpool.errors") in edges
    assert ("serving.api", "serving.openapi") in edges
    assert any(i.function_level for i in imports)


def test_no_import_points_up_or_across(imports: list[Import]) -> None:
    assert layer_violations(imports) == []


def test_the_allowed_part_imports_are_still_needed(imports: list[Import]) -> None:
    """An exception nobody uses any more is removed from the table."""
    used = {(i.importer.split(".")[0], i.target.split(".")[0]) for i in imports}
    assert set(ALLOWED_PART_IMPORTS) <= used


def test_no_import_cycles(imports: list[Import]) -> None:
    assert import_cycles(imports) == []


# -- the checks can fail: a synthetic project ---------------------------------------------------------
SYNTHETIC_LAYERS = (("base",), ("part_a", "part_b"), ("top",))


def write_modules(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def synthetic(root: Path, files: dict[str, str] | None = None) -> list[Import]:
    """A three-layer project in ``root`` (base; part_a, part_b; top) plus ``files``, and its imports."""
    base = {"base/__init__.py": "", "base/config.py": "X = 1\n", "part_a/__init__.py": "",
            "part_a/run.py": "from base.config import X\n", "part_b/__init__.py": "",
            "part_b/work.py": "import base.config\n", "top/__init__.py": "",
            "top/cli.py": "from part_a import run\nfrom part_b.work import base\n"}
    write_modules(root, base | (files or {}))
    return project_imports(root, all_packages(SYNTHETIC_LAYERS))


def test_a_clean_synthetic_project_passes(tmp_path: Path) -> None:
    imports = synthetic(tmp_path)
    assert {(i.importer, i.target) for i in imports} == {
        ("part_a.run", "base.config"), ("part_b.work", "base.config"), ("top.cli", "part_a.run"),
        ("top.cli", "part_b.work")}
    assert layer_violations(imports, SYNTHETIC_LAYERS, allowed={}) == []
    assert import_cycles(imports) == []


def test_an_upward_import_fails_even_inside_a_function(tmp_path: Path) -> None:
    imports = synthetic(tmp_path, {"base/helpers.py": "def go():\n    from top.cli import run\n    return run\n"})
    problems = layer_violations(imports, SYNTHETIC_LAYERS, allowed={})
    assert len(problems) == 1
    assert "base.helpers (line 2, in a function) imports top.cli: upward, from layer 1 to layer 3" in problems[0]


def test_a_part_importing_a_part_fails_unless_allowed(tmp_path: Path) -> None:
    imports = synthetic(tmp_path, {"part_a/extra.py": "from part_b import work\n"})
    problems = layer_violations(imports, SYNTHETIC_LAYERS, allowed={})
    assert problems == ["part_a.extra (line 1) imports part_b.work: one part importing another (part_a -> part_b)"]
    assert layer_violations(imports, SYNTHETIC_LAYERS, allowed={("part_a", "part_b"): "why"}) == []


def test_a_cycle_fails_even_when_one_side_hides_in_a_function(tmp_path: Path) -> None:
    imports = synthetic(tmp_path, {
        "part_a/routes.py": "from part_a.doc import FIELDS\n",
        "part_a/doc.py": "def document():\n    from part_a.routes import bp\n    return bp\nFIELDS = ()\n"})
    assert import_cycles(imports) == [["part_a.doc", "part_a.routes"]]


def test_a_longer_cycle_with_relative_imports_is_found(tmp_path: Path) -> None:
    imports = synthetic(tmp_path, {"part_b/a.py": "from . import b\n", "part_b/b.py": "import part_b.c\n",
                                   "part_b/c.py": "from part_b.a import x\n"})
    assert import_cycles(imports) == [["part_b.a", "part_b.b", "part_b.c"]]


def test_a_relative_import_resolves_to_the_module(tmp_path: Path) -> None:
    imports = synthetic(tmp_path, {"part_a/sub/inner.py": "from ..run import X\nfrom . import sibling\n",
                                   "part_a/sub/sibling.py": "", "part_a/sub/__init__.py": "from .inner import X\n"})
    edges = {(i.importer, i.target) for i in imports}
    assert ("part_a.sub.inner", "part_a.run") in edges
    assert ("part_a.sub.inner", "part_a.sub.sibling") in edges
    assert ("part_a.sub", "part_a.sub.inner") in edges
