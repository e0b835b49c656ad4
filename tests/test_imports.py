"""No import cycles among hgbench's modules, lazy (function-level) imports included.

The graph is read from the source (ast), so a cycle shows even where a deferred import hides it
at run time. `hgbench.methods` and `hgbench.tasks` are the top-level folders methods/ and tasks/.
Importing a submodule runs its package's __init__ first; those implicit edges are left out (the
usual package layout would always close a loop through them).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "hgbench": ROOT / "hgbench",
    "hgbench.methods": ROOT / "methods",
    "hgbench.tasks": ROOT / "tasks",
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for n in ast.walk(node))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in modules:
                    out.add(sub)
                elif node.module in modules:
                    out.add(node.module)
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first search, as the loop it closes."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return cycles


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert len(graph) > 40 and graph["hgbench.engine.runner"], "the graph was not read"
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_in_benchmarks() -> None:
    """benchmarks/ is on sys.path when its scripts run, so they import each other by file name:
    the shared pieces sit in modules that import no script back (peers_common.py and peers_cli.py
    for peers.py and its parts)."""
    folder = ROOT / "benchmarks"
    scripts = {p.stem: p for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in scripts.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in scripts)
            elif isinstance(node, ast.ImportFrom) and node.module in scripts and node.level == 0:
                found.add(node.module)
        graph[name] = found - {name}
    assert graph["peers"] and graph["unroll_vs_higher"], "the graph was not read"
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
