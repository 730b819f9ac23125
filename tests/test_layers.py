"""The package layers: no import cycle among robustgrid's modules, and no import against the dependency rules.

``models`` imports none of ``attacks``, ``defenses``, ``benchmark``; ``attacks`` and ``defenses`` import neither
each other nor ``benchmark``; the core imports nothing of robustgrid. Checked statically (every import statement,
lazy ones inside functions included) and at run time (what a fresh interpreter has loaded).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ("robustgrid", "robustgrid.attacks", "robustgrid.defenses", "robustgrid.models", "robustgrid.benchmark")
FORBIDDEN = {  # package -> the packages it must never import
    "robustgrid.models": ("robustgrid.attacks", "robustgrid.defenses", "robustgrid.benchmark"),
    "robustgrid.attacks": ("robustgrid.defenses", "robustgrid.benchmark"),
    "robustgrid.defenses": ("robustgrid.attacks", "robustgrid.benchmark"),
}


def package_modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, with its source file."""
    modules = {"robustgrid.core": Path(importlib.import_module("robustgrid.core").__file__)}
    for pkg in PACKAGES[1:]:
        folder = Path(importlib.util.find_spec(pkg).origin).parent
        for f in folder.rglob("*.py"):
            parts = [p for p in f.relative_to(folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([pkg, *parts])] = f
    return modules


MODULES = package_modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The package modules ``name`` imports anywhere in its file (``from pkg import sub`` counts as pkg.sub, and a
    string that is exactly a module's name, as ``importlib.import_module`` would take it, as an import of it)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # ``if TYPE_CHECKING:`` imports never run: annotations only, no import edge
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in MODULES else base)
        elif isinstance(node, ast.Constant) and node.value in MODULES:  # a module named in a string: an import by
            found.add(node.value)                                         # name (importlib.import_module) is one too
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (depth-first search with an on-stack set)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_the_package_imports() -> None:
    assert len(MODULES) > 60 and "robustgrid.models.iqa_zoo" in GRAPH["robustgrid.models"]
    assert "robustgrid.models.iqa_models" in GRAPH["robustgrid.models.iqa_zoo"]
    assert "robustgrid.attacks.registry" in GRAPH["robustgrid.attacks.pgd"]


def test_no_module_import_cycle() -> None:
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_no_import_breaks_the_dependency_rules() -> None:
    bad = [f"{m} imports {i}" for m, deps in GRAPH.items() for i in deps
           for pkg, banned in FORBIDDEN.items() if (m == pkg or m.startswith(pkg + "."))
           and any(i == b or i.startswith(b + ".") for b in banned)]
    bad += [f"robustgrid.core imports {i}" for i in GRAPH["robustgrid.core"]]
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("package", list(FORBIDDEN))
def test_importing_every_module_of_a_package_loads_none_it_must_not_import(package: str) -> None:
    modules = sorted(m for m in MODULES if m == package or m.startswith(package + "."))
    code = (f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
            f"print(sorted(p for p in {list(FORBIDDEN[package])!r} if p in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
