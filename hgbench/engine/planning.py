"""From command-line selections to validated cells: every check happens before any work starts."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import math
import types
import typing
from enum import Enum
from typing import Any

from hgbench.contracts.errors import UsageError
from hgbench.contracts.method import METHODS, Method
from hgbench.contracts.schema import Mode
from hgbench.contracts.suites import Suite
from hgbench.contracts.task import TASKS, Task
from hgbench.engine.runner import Cell


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


def _convert(hint: Any, value: Any) -> Any:
    """`value` as type `hint`, exactly: a bool is not an int, an int is a float, a list is a
    tuple; raises TypeError or ValueError (with what was expected) otherwise."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value)
            except (TypeError, ValueError):
                continue
        raise TypeError(" or ".join(_describe(a) for a in args))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError(_describe(hint))
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        if len(args) != len(value):
            raise TypeError(_describe(hint))
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise ValueError(f"one of {[e.value for e in hint]}") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError("true or false")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("an integer")
        return value
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError("a number")
        if not math.isfinite(value):
            raise ValueError("a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError("a string")
        return value
    return value


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and issubclass(hint, Enum):
        return f"one of {[e.value for e in hint]}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _coerce(cls: type, name: str, value: Any) -> Any:
    hint = typing.get_type_hints(cls).get(name)
    try:
        return _convert(hint, value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{cls.__name__}.{name} must be {exc}, got {value!r}") from None


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
        try:
            out.append(dataclasses.replace(task, **changes) if changes else task)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"invalid task settings: {exc}") from None
    return out


def check_requirements(name: str) -> None:
    """A method's optional packages must be importable (`Method.requires`)."""
    for package in METHODS[name].requires:
        if importlib.util.find_spec(package) is None:
            raise UsageError(
                f"method {name!r} needs {package}, which is not installed: pip install {package}"
            )


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
        full = method.method_params()
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


def _select(names, patterns: str | list[str] | None, flag: str, kind: str) -> list[str]:
    """The registered names a flag selects; [] when the flag was not given."""
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    if not patterns:
        raise UsageError(f"{flag} names no {kind}")
    return names(patterns)


def plan_cells(
    mode: Mode,
    suite: Suite,
    tasks: list[str] | None,
    methods: list[str] | None,
    seeds: list[int] | None,
    sets: list[str],
    context: dict[str, Any] | None = None,
    full_probe_grid: bool = False,
) -> list[Cell]:
    """`context`: the run options a cell's measurement depends on (device type, dtype, budget);
    they enter the cell key, so changing one makes new cells instead of skipping finished ones.
    Probe mode sweeps each method's `probe_quick` settings, or with `full_probe_grid` its
    `probe_grid`. `tasks`/`methods` None: the suite's; an empty selection is an error."""
    task_names = _select(TASKS.names, tasks, "--tasks", "task") or suite.task_names()
    method_names = _select(METHODS.names, methods, "--methods", "method") or METHODS.names(
        list(suite.methods)
    )
    given = parse_sets(sets)
    check_sets_known(method_names, given)  # the suite's own apply where they can, silently
    parsed = [*parse_sets(list(suite.sets)), *given]
    task_objs = apply_task_sets([TASKS[n] for n in task_names], parsed)
    for task in task_objs:
        task.check_available()
    seeds = list(seeds if seeds is not None else suite.seeds)
    cells = []
    for name in method_names:
        check_requirements(name)
        cls = METHODS[name]
        if mode == Mode.PROBE:
            base = cls.probe_grid if full_probe_grid else cls.quick_probe_grid()
        else:
            base = suite.configs.get(name, ({},))
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
