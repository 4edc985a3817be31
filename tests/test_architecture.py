"""Imports run downwards only, and never in a cycle (ARCHITECTURE.md, "Floors").

An AST walk over every module of the package — the imports inside functions and under
`TYPE_CHECKING` included, since a lazy import is still a dependency — so a change that reaches up a
floor, or closes a loop, fails here with the offending line, not later as a tangle.
"""

from __future__ import annotations

import ast
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
            "rcmu_agent._photos",
            "rcmu_agent._photo_access",
            "rcmu_agent.door",
            "rcmu_agent.vault",
            "rcmu_agent._lazy",
            "rcmu_agent._hub",
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
            "rcmu_agent._cli",
            "rcmu_agent._cli_checks",
            "rcmu_agent.doctor",
            "rcmu_agent.server",
            "rcmu_agent.testing",
            "rcmu_agent.tools",
            "rcmu_agent.train",
            "rcmu_agent.evals",
            "rcmu_agent.memory.cli",
            "rcmu_agent.memory.library_cli",
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
