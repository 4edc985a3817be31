"""Imports run downwards only, never in a cycle, and never into another package's privates (ARCHITECTURE.md,
"Floors" and "Packages").

An AST walk over every module of the package — the imports inside functions and under
`TYPE_CHECKING` included, since a lazy import is still a dependency — so a change that reaches up a
floor, closes a loop, or uses a `_module` from outside its folder fails here with the offending line,
not later as a tangle. The module map in ARCHITECTURE.md and pyproject's package list are held to the
folders too, so neither goes stale when a module or a subpackage is added.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The package-dir mapping of pyproject.toml: each top-level folder is a subpackage of rcmu_agent.
FOLDERS = {
    "rcmu_agent": "rcmu_agent",
    "memory": "rcmu_agent.memory",
    "tools": "rcmu_agent.tools",
    "train": "rcmu_agent.train",
    "evals": "rcmu_agent.evals",
}
GROUND, PARTS, AGENT, FACES = 1, 2, 3, 4
FLOOR_NAMES = {GROUND: "ground", PARTS: "parts", AGENT: "agent", FACES: "faces"}
# Module name (or package prefix) → floor; the longest matching entry wins. Every module must match.
FLOORS = {
    # ground: types, prompt, regions, images, settings and small pure helpers; no model, store or network
    **dict.fromkeys(
        [
            "rcmu_agent.errors",
            "rcmu_agent.settings",
            "rcmu_agent.schema",
            "rcmu_agent.users",
            "rcmu_agent.files",
            "rcmu_agent.prompt",
            "rcmu_agent.masks",
            "rcmu_agent.regions",
            "rcmu_agent.images",
            "rcmu_agent.citations",
            "rcmu_agent.teach_grammar",
            "rcmu_agent.teach_dialogue",
            "rcmu_agent.annotate",
            "rcmu_agent.jsonl",
            "rcmu_agent.tokens",
            "rcmu_agent.visual_budget",
            "rcmu_agent.cpu",
            "rcmu_agent.estimate",
            "rcmu_agent.timings",
            "rcmu_agent.model_cache",
            "rcmu_agent.photos",
            "rcmu_agent._photo_access",
            "rcmu_agent.door",
            "rcmu_agent.vault",
            "rcmu_agent._lazy",
            "rcmu_agent.hub",
        ],
        GROUND,
    ),
    # parts: models, backends, stores, the recogniser, the photo library, and the container of them
    **dict.fromkeys(
        [
            "rcmu_agent.faces",
            "rcmu_agent.objects",
            "rcmu_agent.recognizer",
            "rcmu_agent.llm",
            "rcmu_agent.teach_model",
            "rcmu_agent.postgres",
            "rcmu_agent.parts",
            "rcmu_agent.backends",
            "rcmu_agent.memory",
            "rcmu_agent.memory.library",
            "rcmu_agent.memory.transfer",
        ],
        PARTS,
    ),
    # agent: the graph, its state and steps, the front door
    **dict.fromkeys(
        [
            "rcmu_agent.state",
            "rcmu_agent.messages",
            "rcmu_agent.generative_ui",
            "rcmu_agent._nodes",
            "rcmu_agent.teach",
            "rcmu_agent._teach_nodes",
            "rcmu_agent.graph",
            "rcmu_agent.collage",
            "rcmu_agent.assistant",
        ],
        AGENT,
    ),
    # faces: the package's public surface, CLIs, servers, tools, training, evaluation, the test kit
    **dict.fromkeys(
        [
            "rcmu_agent",
            "rcmu_agent.cli",
            "rcmu_agent.cli_kit",
            "rcmu_agent._cli_checks",
            "rcmu_agent.doctor",
            "rcmu_agent.server",
            "rcmu_agent.testing",
            "rcmu_agent.tools",
            "rcmu_agent.tools.mcp",
            "rcmu_agent.tools.web",
            "rcmu_agent.train",
            "rcmu_agent.evals",
            "rcmu_agent.memory.cli",
            "rcmu_agent.memory.library.cli",
        ],
        FACES,
    ),
}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def floor(module: str) -> int:
    # the package itself is a face, but its prefix covers nothing: a new module must be listed
    matches = [p for p in FLOORS if module == p or (p != "rcmu_agent" and module.startswith(p + "."))]
    assert matches, f"{module} is on no floor: add it to FLOORS here and to ARCHITECTURE.md"
    return FLOORS[max(matches, key=len)]


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported package module, line) for every import of one of ours in `path`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import submodule` imports the submodule; `from mod import name` the module
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name, node.lineno


EDGES = {m: sorted(set(_imports(m, p))) for m, p in MODULES.items()}


@pytest.mark.unit
def test_every_module_is_on_a_floor() -> None:
    for module in MODULES:
        floor(module)


@pytest.mark.unit
def test_imports_only_run_downwards() -> None:
    upwards = [
        f"{MODULES[m].relative_to(REPO)}:{line}: {m} ({FLOOR_NAMES[floor(m)]}) imports {t} ({FLOOR_NAMES[floor(t)]})"
        for m, targets in EDGES.items()
        for t, line in targets
        if floor(t) > floor(m)
    ]
    assert not upwards, "imports that run upwards:\n" + "\n".join(upwards)


@pytest.mark.unit
def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over the module graph: any component of two or more
    modules is a cycle (a lazy import inside a function counts: it is still a loop to untangle)."""
    graph = {m: sorted({t for t, _ in targets}) for m, targets in EDGES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _owner(module: str) -> Path | None:
    """The folder a private module or name belongs to: the package holding its first `_` part (for a `_name`
    imported from a module, that module's folder); None when nothing in `module` is private."""
    parts = module.split(".")
    for i, part in enumerate(parts[1:], 1):
        if part.startswith("_") and not part.startswith("__"):
            return MODULES[".".join(parts[:i])].parent
    return None


def _private_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """`module._name` for each `from module import _name` of one of our modules (a function or constant,
    not a submodule: those are edges already)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module in MODULES:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if name not in MODULES and alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield name, node.lineno


@pytest.mark.unit
def test_private_modules_stay_in_their_package() -> None:
    """A `_module` (or a `_name` in a module) is used only inside its own package: by the modules of its folder
    and of the folders below it — `memory/library/` may use `memory/_records.py`, but `memory/cli.py` may not
    use `rcmu_agent/_nodes.py`, nor `rcmu_agent/cli.py` `memory/library/_index.py`. What another package needs
    is public (no leading underscore)."""
    crossing = [
        f"{MODULES[m].relative_to(REPO)}:{line}: {m} uses {t}, private to {owner.relative_to(REPO)}/"
        for m, path in MODULES.items()
        for t, line in [*EDGES[m], *_private_names(m, path)]
        if (owner := _owner(t)) is not None and not path.is_relative_to(owner)
    ]
    assert not crossing, "private modules used from another package:\n" + "\n".join(crossing)


@pytest.mark.unit
def test_every_package_is_installed() -> None:
    """A subpackage missing from pyproject's `packages` imports in an editable checkout and is absent from a
    wheel, so the list must name every folder with an `__init__.py`."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, path in MODULES.items() if path.name == "__init__.py"}
    assert packages == listed, f"missing from pyproject: {packages - listed}; listed but absent: {listed - packages}"


@pytest.mark.unit
def test_architecture_maps_every_module() -> None:
    """ARCHITECTURE.md's module map ("Packages") has one line per module under a heading per folder, and
    names no module that is gone."""
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    mapped = {
        f"{folder}{name}"
        for folder, body in re.findall(r"^### `([\w/]+/)`\n(.*?)(?=^#|\Z)", text, re.MULTILINE | re.DOTALL)
        for name in re.findall(r"^- `([\w/]+\.py)`", body, re.MULTILINE)
    }
    actual = {str(path.relative_to(REPO)) for path in MODULES.values()}
    assert mapped == actual, f"not in the map: {sorted(actual - mapped)}; in it but gone: {sorted(mapped - actual)}"


@pytest.mark.unit
def test_memory_never_imports_the_parts_container() -> None:
    found = [
        f"{MODULES[m].relative_to(REPO)}:{line}"
        for m, targets in EDGES.items()
        if m.startswith("rcmu_agent.memory")
        for t, line in targets
        if t == "rcmu_agent.parts"
    ]
    assert not found, f"memory/ imports Parts at {found}"


@pytest.mark.integration  # a fresh interpreter imports every module: seconds, not milliseconds
def test_importing_a_module_builds_nothing(tmp_path: Path) -> None:
    """Constants live in the module that owns them, and no module builds parts at import: with
    `Settings()` made to fail, every module but the LangGraph Server entry (whose job is to build the
    graph at import) and `__main__` scripts still imports, and none of them loads torch, dlib, Chroma
    or LangGraph for a constant."""
    import subprocess
    import sys

    modules = sorted(m for m in MODULES if m != "rcmu_agent.server" and not m.endswith(".__main__"))
    script = f"""
import sys
from rcmu_agent import settings
def refuse(self, *args, **kwargs):
    raise AssertionError("Settings() built at import")
settings.Settings.__init__ = refuse
import importlib
for name in {modules!r}:
    importlib.import_module(name)
import rcmu_agent.prompt, rcmu_agent.schema
"""
    result = subprocess.run(  # outside the repository: its bare folders would shadow the installed package
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    light = "import sys, rcmu_agent.prompt, rcmu_agent.schema; print(*{m.split('.')[0] for m in sys.modules})"
    loaded = subprocess.run(
        [sys.executable, "-c", light], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    )
    assert not {"torch", "dlib", "chromadb", "langgraph", "transformers"} & set(loaded.stdout.split())
