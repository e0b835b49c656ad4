"""Loads the built-in methods and tasks, then third-party ones: entry points of the groups
`hgbench.methods` / `hgbench.tasks`, and the modules named in HGBENCH_PLUGINS (comma-separated,
importable from the current directory: the quick way to try a one-file method).

A plugin that fails to import is an error naming it, never a silently missing method.
"""

from __future__ import annotations

import functools
import os
import sys
from importlib import import_module
from importlib.metadata import entry_points

GROUPS = ("hgbench.methods", "hgbench.tasks")


@functools.cache
def load_plugins() -> None:
    import_module("hgbench.methods")
    import_module("hgbench.tasks")
    import_module("hgbench.contracts.suites")
    for group in GROUPS:
        for ep in entry_points(group=group):
            try:
                ep.load()
            except Exception as exc:
                raise ImportError(
                    f"hgbench plugin {ep.name!r} ({ep.value}, entry point group "
                    f"{group!r}) failed to import: {exc}"
                ) from exc
    modules = [m.strip() for m in os.environ.get("HGBENCH_PLUGINS", "").split(",") if m.strip()]
    if modules and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            import_module(module)
        except Exception as exc:
            raise ImportError(
                f"hgbench plugin module {module!r} (HGBENCH_PLUGINS) failed to import: {exc}"
            ) from exc
