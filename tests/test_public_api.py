"""The public surface: every name the documentation imports exists where it says, the tree uses
none of the deprecated flat paths, and those still resolve (with a warning) for old plugins."""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path

import pytest

import hgbench
from hgbench._moved import MOVED

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))


def _documented_imports() -> list[tuple[str, str, str]]:
    """(page, module, name) for each `from M import a, b` in a page's python blocks or examples."""
    found = []
    for page in DOCS:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
            found += [(page.name, m, n) for m, n in _from_imports(ast.parse(block))]
    for example in EXAMPLES:
        found += [(example.name, m, n) for m, n in _from_imports(ast.parse(example.read_text()))]
    return [f for f in found if f[1] == "hgbench" or f[1].startswith("hgbench.")]


def _from_imports(tree: ast.AST) -> list[tuple[str, str]]:
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        for alias in node.names
    ]


def test_the_documentation_imports_something() -> None:
    pages = {page for page, _, _ in _documented_imports()}
    assert {"add-a-method.md", "my_task.py", "api.md"} <= pages, pages


@pytest.mark.parametrize("page, module, name", _documented_imports())
def test_each_documented_name_imports_from_where_the_docs_say(page, module, name) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # no deprecated path in the docs
        imported = importlib.import_module(module)
    assert hasattr(imported, name), f"{page}: `from {module} import {name}` fails"


def test_every_public_name_is_documented_in_the_api_page() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    missing = [n for n in hgbench.__all__ if f"`{n}`" not in api]
    assert not missing, f"docs/api.md does not list {missing}"
    assert sorted(hgbench.__all__) == sorted(hgbench._PUBLIC)
    for name in hgbench.__all__:
        module = importlib.import_module(hgbench._PUBLIC[name])
        assert getattr(hgbench, name) is getattr(module, name)


def _old_path(module: str) -> str | None:
    return next((o for o in MOVED if module == o or module.startswith(o + ".")), None)


def test_the_tree_uses_no_deprecated_path() -> None:
    """After a merge, a module that still imports `hgbench.method` (say) would work through the
    alias; this names it instead (rewrite it with the relayout script or by hand)."""
    offenders = []
    for folder in ("hgbench", "methods", "tasks", "tests", "benchmarks", "docs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "test_public_api.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                    if node.module != "hgbench":
                        names = [node.module]
                old = [n for n in names if _old_path(n)]
                if old:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {old[0]}")
    assert not offenders, "\n".join(offenders)


def test_a_deprecated_path_resolves_to_the_same_module_with_a_warning() -> None:
    from hgbench.contracts import method

    with pytest.warns(DeprecationWarning, match="hgbench.method moved to hgbench.contracts.method"):
        old = importlib.import_module("hgbench.method")
    assert old is method and old.Method is hgbench.Method
    with pytest.warns(DeprecationWarning, match="hgbench.numerics.laplace"):
        ggn = importlib.import_module("hgbench.laplace.ggn")
    assert ggn is importlib.import_module("hgbench.numerics.laplace.ggn")
    assert set(MOVED.values()) <= {m.__name__ for m in map(importlib.import_module, MOVED.values())}


def test_every_hgbench_import_in_the_tree_names_an_existing_module() -> None:
    """Function-level imports included (a moved module would otherwise fail only when called)."""
    import importlib.util

    missing = []
    for folder in ("hgbench", "methods", "tasks", "tests", "benchmarks", "docs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] == "hgbench" and not _old_path(name):
                        if importlib.util.find_spec(name) is None:
                            missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not missing, "\n".join(missing)
