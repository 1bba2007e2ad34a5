"""Habits that keep the code base this way, checked on every test run.

* ``ruff check`` and ``ruff format --check`` on ``pipeline``, ``tests`` and
  ``bench`` (the rules are pinned in ``pyproject.toml``);
* ``mypy`` on ``pipeline`` (configured in ``pyproject.toml``);
* the direction of the imports inside ``pipeline/``: a module imports only
  from its own layer or the layers below it (:data:`LAYERS`), with no cycle;
* imports inside functions only defer the optional heavy libraries
  (:data:`HEAVY_LIBRARIES`): everything else is imported at module level.

The import checks read the source with :mod:`ast` (nothing is imported), so
they also see imports that only run inside functions.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pipeline"
SOURCE = ROOT / PACKAGE
LINTED = ("pipeline", "tests", "bench")

#: The documented direction of the package, lowest layer first: data → kernel
#: → reduce → objective/solvers → fit → jobs → cli.  A module may import
#: modules of its own layer and of lower layers, never of a higher one.  Every
#: module of ``pipeline/`` has to be listed here (a new module: add it where it
#: belongs); modules listed but not (yet) present are fine.
LAYERS: dict[str, int] = {
    # 0 base: no project imports but each other
    "errors": 0,
    "atomic": 0,
    "exact": 0,
    "elementary": 0,
    "levels": 0,  # categorical columns' levels (Arrow, no project module but errors)
    # 1 data: Parquet → checked numpy chunks
    "data": 1,
    # 2 kernel: per-chunk partial sums, compiled kernels, the kernel fingerprint, synthetic data
    "kernel": 2,
    "fused": 2,
    "tiers": 2,  # compiled or reference passes (no project imports but errors)
    "elementary_jit": 2,
    "probe": 2,
    "synth": 2,
    # 3 reduce: passes over a dataset, streamed and on a cluster
    "stream": 3,
    "reduce": 3,
    "cluster": 3,
    # 4 objective and solvers
    "objective": 4,
    "solvers": 4,
    # 5 fit: configuration, the fit, its outputs, models, checkpoints, scoring
    "config": 5,
    "fitting": 5,
    "crossval": 5,  # exact K-fold cross-validation in lockstep
    "paths": 5,  # regularization paths: the grid, lambda_max, the choice
    "inference": 5,  # coefficient inference at the optimum (covariance, p-values)
    "outputs": 5,
    "model": 5,
    "checkpoint": 5,
    "jobfile": 5,  # the options table: TrainConfig <-> flat keys (job files, CLI, job.json)
    "train": 5,
    "predict": 5,
    "estimator": 5,
    # 6 jobs
    "jobs": 6,
    "report": 6,
    # 7 cli, and the package facade (which may import anything)
    "cli": 7,
    "__main__": 7,
    "__init__": 7,
}
LAYER_NAMES = ("base", "data", "kernel", "reduce", "objective/solvers", "fit", "jobs", "cli")

#: Optional, slow-to-import libraries: the only ones a function may import
#: (to keep ``import pipeline`` and the CLI's start fast).  A project module
#: that imports one of them at module level (``pipeline.fused``: numba) is
#: just as heavy, and may be deferred the same way.
HEAVY_LIBRARIES = frozenset(
    {"dask", "distributed", "numba", "llvmlite", "matplotlib", "sklearn", "scipy", "pandas", "dask_ml"}
)


@dataclass(frozen=True)
class Import:
    """One project or library import in a module of ``pipeline/``."""

    importer: str  # module name within the package ("kernel", "__init__")
    line: int
    target: str | None  # the project module imported, None for a library
    library: str | None  # the top-level library name, None for a project module
    in_function: bool
    type_checking: bool  # under ``if TYPE_CHECKING:`` (not run)

    @property
    def where(self) -> str:
        return f"{PACKAGE}/{self.importer}.py:{self.line}"

    @property
    def level(self) -> str:
        return "function-level" if self.in_function else "module-level"


def _modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(SOURCE.glob("*.py"))}


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, importer: str, modules: set[str]) -> None:
        self.importer = importer
        self.modules = modules
        self.function_depth = 0
        self.type_checking_depth = 0
        self.found: list[Import] = []

    def _add(self, line: int, target: str | None, library: str | None) -> None:
        self.found.append(
            Import(self.importer, line, target, library, self.function_depth > 0, self.type_checking_depth > 0)
        )

    def _project(self, line: int, dotted: str) -> None:
        """``dotted`` relative to the package ("" for the package itself)."""
        self._add(line, dotted.split(".")[0] if dotted else "__init__", None)

    def _names_from_package(self, node: ast.ImportFrom) -> None:
        # ``from pipeline import x`` / ``from . import x``: a module, or a name of the facade
        for alias in node.names:
            self._project(node.lineno, alias.name if alias.name in self.modules else "")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def _function(self, node: ast.AST) -> None:
        self.function_depth += 1
        self.generic_visit(node)
        self.function_depth -= 1

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        if not guarded:
            self.generic_visit(node)
            return
        self.type_checking_depth += 1
        for child in node.body:
            self.visit(child)
        self.type_checking_depth -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top, _, rest = alias.name.partition(".")
            if top == PACKAGE:
                self._project(node.lineno, rest)
            else:
                self._add(node.lineno, None, top)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level == 0:
            top, _, rest = module.partition(".")
            if top != PACKAGE:
                self._add(node.lineno, None, top)
            elif rest:
                self._project(node.lineno, rest)
            else:
                self._names_from_package(node)
        elif node.level == 1:
            if module:
                self._project(node.lineno, module)
            else:
                self._names_from_package(node)
        else:  # the package is flat: nothing lies above it
            raise AssertionError(f"{PACKAGE}/{self.importer}.py:{node.lineno}: relative import beyond the package")


def _imports() -> list[Import]:
    modules = _modules()
    found: list[Import] = []
    for name, path in modules.items():
        collector = _ImportCollector(name, set(modules))
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        found.extend(collector.found)
    return found


def _project_imports() -> list[Import]:
    return [item for item in _imports() if item.target is not None and item.target != item.importer]


def _edge(item: Import) -> str:
    return f"{item.importer} → {item.target} ({item.where}, {item.level})"


# --------------------------------------------------------------------------- ruff and mypy


def _run_tool(tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed in {sys.executable} (pip install -e '.[test]')")
    return subprocess.run(
        [sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _assert_clean(result: subprocess.CompletedProcess, what: str, fix: str) -> None:
    assert result.returncode == 0, f"{what} failed (exit {result.returncode}); {fix}\n{result.stdout}{result.stderr}"


def test_ruff_check() -> None:
    result = _run_tool("ruff", "check", "--no-fix", *LINTED, timeout=120)
    _assert_clean(result, f"ruff check {' '.join(LINTED)}", "fix what it reports (`ruff check --fix` for the [*] ones)")


def test_ruff_format() -> None:
    result = _run_tool("ruff", "format", "--check", *LINTED, timeout=120)
    _assert_clean(result, f"ruff format --check {' '.join(LINTED)}", f"run `ruff format {' '.join(LINTED)}`")


def test_mypy() -> None:
    """The type checker on ``pipeline/`` (the ``[tool.mypy]`` settings of
    ``pyproject.toml``): about 5 s from a cold cache, under 1 s warm."""
    result = _run_tool("mypy", timeout=600)
    _assert_clean(result, "mypy (the [tool.mypy] settings in pyproject.toml)", "fix the type errors it reports")


# --------------------------------------------------------------------------- import structure


def test_every_module_has_a_layer() -> None:
    missing = sorted(set(_modules()) - set(LAYERS))
    assert not missing, (
        f"module(s) without a layer: {', '.join(f'{PACKAGE}/{name}.py' for name in missing)}; "
        "add it to the layer table (LAYERS in tests/test_style.py) where it belongs"
    )


def test_imports_point_down_the_layers() -> None:
    """No module imports one of a higher layer (module- or function-level)."""
    problems = []
    for item in _project_imports():
        assert item.target is not None
        unknown = [name for name in (item.importer, item.target) if name not in LAYERS]
        if unknown:
            problems.append(f"{_edge(item)}: {', '.join(unknown)} not in the layer table (add it to LAYERS)")
            continue
        low, high = LAYERS[item.importer], LAYERS[item.target]
        if high > low:
            problems.append(
                f"{_edge(item)}: layer {low} ({LAYER_NAMES[low]}) imports layer {high} ({LAYER_NAMES[high]})"
            )
    assert not problems, f"{len(problems)} import(s) against the direction of the layers:\n" + "\n".join(problems)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of ``graph``, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _shortest_cycle(graph: dict[str, set[str]], start: str, members: set[str]) -> list[str]:
    """A shortest path ``start → ... → start`` inside ``members``."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph.get(node, ())):
                if successor not in members:
                    continue
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def test_no_import_cycles() -> None:
    """No cycle of project imports, counting those inside functions (only
    ``if TYPE_CHECKING:`` imports, which never run, are left out)."""
    graph: dict[str, set[str]] = defaultdict(set)
    first: dict[tuple[str, str], Import] = {}
    for item in _project_imports():
        if item.type_checking:
            continue
        assert item.target is not None
        graph[item.importer].add(item.target)
        first.setdefault((item.importer, item.target), item)
    problems = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        cycle = _shortest_cycle(graph, component[0], set(component))
        steps = " → ".join(cycle)
        edges = "\n".join(f"    {_edge(first[(a, b)])}" for a in component for b in sorted(graph[a]) if b in component)
        problems.append(f"cycle {steps} (modules {', '.join(component)}; their imports of each other:\n{edges})")
    assert not problems, f"{len(problems)} import cycle(s):\n" + "\n".join(problems)


def _heavy_modules(imports: list[Import]) -> set[str]:
    """Project modules that import a heavy library at module level, directly or through another project module."""
    heavy: set[str] = set()
    module_level = [item for item in imports if not item.in_function and not item.type_checking]
    changed = True
    while changed:
        changed = False
        for item in module_level:
            if item.importer in heavy:
                continue
            if item.library in HEAVY_LIBRARIES or (item.target is not None and item.target in heavy):
                heavy.add(item.importer)
                changed = True
    return heavy


def test_function_level_imports_only_defer_heavy_libraries() -> None:
    """An import inside a function is for an optional heavy library only:
    the standard library, numpy, pyarrow and the project's own (light)
    modules belong at the top of the module, where a reader sees them."""
    imports = _imports()
    heavy = _heavy_modules(imports)
    problems = []
    for item in imports:
        if not item.in_function or item.type_checking:
            continue
        if item.library is not None and item.library not in HEAVY_LIBRARIES:
            problems.append(f"{item.where}: imports {item.library} inside a function; import it at module level")
        elif item.target is not None and item.target not in heavy:
            problems.append(
                f"{item.where}: imports {PACKAGE}.{item.target} inside a function; import it at module level "
                "(it imports no heavy library)"
            )
    assert not problems, (
        f"{len(problems)} function-level import(s) of a light module (heavy ones: "
        f"{', '.join(sorted(HEAVY_LIBRARIES))}, and {', '.join(sorted(heavy))}):\n" + "\n".join(problems)
    )


def test_the_slow_files_collected_first_exist() -> None:
    """conftest's ``SLOW_FILES_FIRST`` (the order the two test processes take
    the files in) names test files that exist."""
    from conftest import SLOW_FILES_FIRST

    assert SLOW_FILES_FIRST and all((ROOT / "tests" / name).is_file() for name in SLOW_FILES_FIRST)
