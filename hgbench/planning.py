"""From command-line selections to validated cells: every check happens before any work starts."""

from __future__ import annotations

import ast
import dataclasses
import typing
from enum import Enum
from typing import Any

from hgbench.errors import UsageError
from hgbench.method import METHODS, Method
from hgbench.runner import Cell
from hgbench.suites import Suite
from hgbench.task import TASKS, Task


def parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_sets(items: list[str]) -> list[tuple[str | None, str, Any]]:
    """`[scope.]field=value` -> (scope, field, value); scope is a method name, 'task', or None."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        scope, _, name = key.rpartition(".")
        out.append((scope or None, name, parse_value(value)))
    return out


def _coerce(cls: type, name: str, value: Any) -> Any:
    hint = typing.get_type_hints(cls).get(name)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise UsageError(
                f"{cls.__name__}.{name} must be one of {[e.value for e in hint]}, got {value!r}"
            ) from None
    if hint in (int, float, bool, str) and not isinstance(value, hint):
        raise UsageError(f"{cls.__name__}.{name} must be {hint.__name__}, got {value!r}")
    return value


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def apply_task_sets(tasks: list[Task], sets: list[tuple[str | None, str, Any]]) -> list[Task]:
    task_sets = [(n, v) for scope, n, v in sets if scope == "task"]
    out = []
    for task in tasks:
        changes = {}
        for name, value in task_sets:
            if name not in _fields(type(task)) or name == "name":
                raise UsageError(f"task {task.name!r} has no setting {name!r}")
            changes[name] = _coerce(type(task), name, value)
        out.append(dataclasses.replace(task, **changes) if changes else task)
    return out


def method_configs(
    name: str, base: tuple[dict[str, Any], ...], sets: list[tuple[str | None, str, Any]]
) -> list[dict[str, Any]]:
    cls = METHODS[name]
    overrides = {}
    for scope, field, value in sets:
        if scope in (None, name) and field in _fields(cls):
            overrides[field] = _coerce(cls, field, value)
    configs: list[dict[str, Any]] = []
    for config in base:
        settings = {**config, **overrides}
        try:
            method: Method = cls(**settings)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"invalid settings for method {name!r}: {exc}") from None
        full = method.settings()
        if full not in configs:
            configs.append(full)
    return configs


def check_sets_known(methods: list[str], sets: list[tuple[str | None, str, Any]]) -> None:
    for scope, field, value in sets:
        if scope == "task":
            continue
        if scope is not None and scope not in METHODS:
            raise UsageError(
                f"--set {scope}.{field}: unknown method {scope!r}; known methods: "
                f"{', '.join(METHODS)}"
            )
        scoped = [scope] if scope is not None else methods
        if not any(field in _fields(METHODS[m]) for m in scoped):
            if scope is not None:
                raise UsageError(f"--set {scope}.{field}: {scope} has no setting {field!r}")
            raise UsageError(f"--set {field}: no selected method has a setting {field!r}")
        if scope is not None and scope not in methods:
            # not selected, so method_configs never builds it: check the value here all the same
            method_configs(scope, ({},), [(scope, field, value)])


def plan_cells(
    mode: str,
    suite: Suite,
    tasks: list[str] | None,
    methods: list[str] | None,
    seeds: list[int] | None,
    sets: list[str],
    context: dict[str, Any] | None = None,
) -> list[Cell]:
    """`context`: the run options a cell's measurement depends on (device type, dtype, budget);
    they enter the cell key, so changing one makes new cells instead of skipping finished ones."""
    task_names = TASKS.names(tasks) if tasks else suite.task_names()
    method_names = METHODS.names(methods or list(suite.methods))
    parsed = parse_sets(sets)
    check_sets_known(method_names, parsed)
    task_objs = apply_task_sets([TASKS[n] for n in task_names], parsed)
    for task in task_objs:
        task.check_available()
    seeds = list(seeds if seeds is not None else suite.seeds)
    cells = []
    for name in method_names:
        base = METHODS[name].probe_grid if mode == "probe" else suite.settings.get(name, ({},))
        for config in method_configs(name, base, parsed):
            for task in task_objs:
                for seed in seeds:
                    cells.append(
                        Cell(mode, suite.name, task, name, config, seed, dict(context or {}))
                    )
    # group by (task, seed) so each problem is built once
    order = {(t.name, s): i for i, (t, s) in enumerate((t, s) for s in seeds for t in task_objs)}
    cells.sort(key=lambda c: order[(c.task.name, c.seed)])
    if not cells:
        raise UsageError("the selection has no cells (no tasks or no methods)")
    return cells
