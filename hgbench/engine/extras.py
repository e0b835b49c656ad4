"""The optional extras: which documented command needs which, and one check that names it.

The default suite and both quick-start commands need no extra (everything they import is a core
dependency in pyproject.toml). Every other documented command that needs an optional package
calls `require(extra, what)` before any work starts: a missing package is exit 2 naming the
extra to install, never a traceback half-way through. The README's table of extras and
pyproject's `[project.optional-dependencies]` are checked against `EXTRAS` by
tests/test_extras.py, so the three cannot drift apart.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from hgbench.contracts.errors import UsageError


@dataclass(frozen=True)
class Extra:
    name: str  # the key in pyproject's [project.optional-dependencies]
    modules: tuple[str, ...]  # import names it must make importable
    commands: tuple[str, ...]  # the documented commands that need it, as the README writes them


EXTRAS: dict[str, Extra] = {
    e.name: e
    for e in (
        Extra("ray", ("ray",), ("python -m hgbench run --executor ray",)),
        Extra("parquet", ("pyarrow",), ("python -m hgbench report DIR --export parquet",)),
        Extra(
            "peers",
            ("higher", "torchopt", "laplace", "backpack", "curvlinops"),
            (
                "python benchmarks/peers.py",
                "python benchmarks/ift_vs_torchopt.py",
                "python benchmarks/laplace_vs_laplace_torch.py",
            ),
        ),
    )
}


def missing_modules(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """The modules of `extra` (or the given subset) that do not import here.

    A real import, not `find_spec`: a package that is present but broken (or shadowed) fails
    later just the same, so it counts as missing now.
    """
    out = []
    for module in modules if modules is not None else EXTRAS[extra].modules:
        try:
            importlib.import_module(module)
        except ImportError:
            out.append(module)
    return out


def install_hint(extra: str) -> str:
    return f'pip install -e ".[{extra}]"'


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """UsageError (exit 2) naming `extra` unless its modules (or the given subset) import."""
    missing = missing_modules(extra, modules)
    if missing:
        raise UsageError(
            f"{what} needs the {extra!r} extra ({', '.join(missing)} not installed): "
            f"{install_hint(extra)}"
        )


def exit_unless(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """`require` for scripts outside the CLI (benchmarks/): the message and exit status 2."""
    try:
        require(extra, what, modules)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
