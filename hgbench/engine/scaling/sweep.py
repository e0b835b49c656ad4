"""What the scaling sweep measures: axes, their sizes, and one series (line) per method setting.

Four axes, each grown with everything else fixed (tasks/scaling.py is the model):

- `hparams`: the number of hyperparameters on a 64-1000-1000-10 MLP (1.08 M weights): one global
  decay, one per tensor, the augmentation network's weights (+ one decay per tensor), one per
  output unit, one per weight: 1 → 1.08 × 10⁶ (six decades);
- `width`: the hidden width w of a 64-w-w-10 MLP at one decay per tensor (6 hparams); the size is
  the number of weights;
- `horizon`: K or T of the unrolled and reversal methods, on the w = 100 MLP (a truncation
  longer than the horizon is cut to it: truncated_bptt's 5 and PES's 2 at T = 1 and 4);
- `block`: the block size M of the marginal-likelihood bounds, on the w = 100 MLP.

Every registered method that estimates a hypergradient gets a series on the two model axes (at
its defaults, with `SERIES` overrides: horizons of 10 on these axes (truncated_bptt: horizon
10, truncation 5; PES keeps its probe horizon of 6), size guards lifted so that a method meets
its real limit, not a configured one); `HORIZON` and `BLOCK` say which settings
the other two axes sweep. Methods whose hparams are not the task's (`OWN_HPARAMS`) sit out the
hparam axis.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hgbench.contracts.errors import UsageError
from hgbench.contracts.method import METHODS, Objective
from hgbench.contracts.schema import StrEnum
from hgbench.contracts.task import TASKS, Task
from hgbench.engine.plugins import load_plugins
from hgbench.tasks.models import count_params
from hgbench.tasks.scaling import Granularity, ScalingMLPTask

BASE_TASK = "scaling_mlp"
UNLIMITED = 10**12  # a size guard (max_hparams, max_params) lifted


class Axis(StrEnum):
    HPARAMS = "hparams"
    WIDTH = "width"
    HORIZON = "horizon"
    BLOCK = "block"


AXIS_TITLES = {
    Axis.HPARAMS: "number of hyperparameters (64-1000-1000-10 MLP, 1.08 M weights)",
    Axis.WIDTH: "number of weights (64-w-w-10 MLP, w swept; 6 hparams)",
    Axis.HORIZON: "horizon K or T (inner steps; 64-100-100-10 MLP)",
    Axis.BLOCK: "block size M (points per bound; 64-100-100-10 MLP)",
}

# The hparam axis's steps: (granularity, learned augmentation network), fewest hparams first.
HPARAM_STEPS: tuple[tuple[Granularity, bool], ...] = (
    (Granularity.GLOBAL, False),
    (Granularity.TENSOR, False),
    (Granularity.TENSOR, True),
    (Granularity.UNIT, False),
    (Granularity.PARAM, False),
)
# Settings per method on the two model axes; several dicts: several series.
SERIES: dict[str, tuple[dict[str, Any], ...]] = {
    "ift_exact": ({"max_params": UNLIMITED},),
    "unroll": ({"K": 10},),
    "forward_mode": ({"K": 10, "max_hparams": UNLIMITED},),
    "truncated_bptt": ({"horizon": 10, "truncation": 5},),
    "reversible_sgd": ({"T": 10}, {"T": 10, "exact": False}),
    "drmad": ({"T": 10},),
    "hypergradient_descent": ({"K": 10},),
    "laplace_full": ({"structure": "kron"}, {"structure": "diag"}),
}
OWN_HPARAMS = {"hypergradient_descent"}  # tunes the optimiser's lr and momentum, not the task's
# settings left out of series labels: size guards, and the horizons (10 on the model axes, the
# swept size on the horizon axis), so that a method's series has one label on every axis
HIDDEN = {"max_params", "max_hparams", "K", "T", "horizon", "probe_horizon"}

# The other two axes: per method, (series label, settings at size n) for each series.
Sweep = tuple[str, Callable[[int], dict[str, Any]]]
HORIZON: dict[str, tuple[Sweep, ...]] = {
    "unroll": (("unroll", lambda n: {"K": n}),),
    "forward_mode": (("forward_mode", lambda n: {"K": n, "max_hparams": UNLIMITED}),),
    "truncated_bptt": (
        ("truncated_bptt(truncation=5)", lambda n: {"horizon": n, "truncation": min(5, n)}),
    ),
    "reversible_sgd": (
        ("reversible_sgd", lambda n: {"T": n}),
        ("reversible_sgd(exact=False)", lambda n: {"T": n, "exact": False}),
    ),
    "drmad": (("drmad", lambda n: {"T": n}),),
    "pes": (("pes", lambda n: {"probe_horizon": n, "probe_truncation": min(2, n)}),),
    "hypergradient_descent": (("hypergradient_descent", lambda n: {"K": n}),),
}
BLOCK: dict[str, tuple[Sweep, ...]] = {
    "laplace_ntk": (
        ("laplace_ntk", lambda m: {"block_size": m}),
        ("laplace_ntk(split=single)", lambda m: {"block_size": m, "split": "single"}),
    ),
}


@dataclass(frozen=True)
class Plan:
    """The sizes of each axis (the sweep's knobs)."""

    widths: tuple[int, ...] = (32, 100, 316, 1000)
    hparam_width: int = 1000
    horizons: tuple[int, ...] = (1, 4, 16, 64, 256)
    blocks: tuple[int, ...] = (5, 16, 50, 160, 500)
    small_width: int = 100  # the model of the horizon and block axes
    axes: tuple[Axis, ...] = tuple(Axis)


@dataclass(frozen=True)
class Point:
    """One measurement of the sweep: a series at one size of one axis."""

    axis: Axis
    size: int
    series: str  # the line's label: method and the settings that set it apart
    task: Task
    method: str
    method_params: dict[str, Any] = field(hash=False)  # every setting (dataclasses.asdict)
    detail: dict[str, Any] = field(default_factory=dict, hash=False)  # width, granularity, ...

    def membership(self) -> dict[str, Any]:
        return {"axis": self.axis.value, "size": self.size, "series": self.series, **self.detail}


def series_label(method: str, settings: dict[str, Any]) -> str:
    shown = {k: v for k, v in settings.items() if k not in HIDDEN}
    if not shown:
        return method
    return f"{method}({', '.join(f'{k}={v}' for k, v in shown.items())})"


def base_task() -> ScalingMLPTask:
    task = TASKS[BASE_TASK]
    assert isinstance(task, ScalingMLPTask)
    return task


def model_kind(granularity: Granularity) -> str:
    """How the model holds its weights: `global` decay keeps them in one flat tensor (FlatMLP),
    which methods that work layer by layer (the Laplace curvatures) see as one layer-less tensor:
    the sweep's rule that a series stops after running out applies within one kind only."""
    return "flat" if granularity == Granularity.GLOBAL else "layers"


def variant(width: int, granularity: Granularity, augnet: bool = False) -> ScalingMLPTask:
    return dataclasses.replace(
        base_task(), hidden=(width, width), granularity=granularity, learn_augnet=augnet
    )


def task_sizes(task: Task) -> tuple[int, int]:
    """(weights, hparams) of a task, from its model alone (no data loaded)."""
    model = task.make_model()
    params = {k: v.detach() for k, v in model.named_parameters()}
    return count_params(model), sum(h.size for h in task.hparam_space(params))


def _params(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    try:
        return METHODS[method](**settings).method_params()
    except (TypeError, ValueError) as exc:
        raise UsageError(f"scaling: invalid settings {settings} for {method!r}: {exc}") from None


def hypergradient_methods(patterns: list[str] | None = None) -> list[str]:
    """Registered methods that estimate a hypergradient, optionally filtered by name patterns."""
    load_plugins()
    names = [n for n, cls in METHODS.items() if cls.objective != Objective.NONE]
    if patterns:
        chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        if not chosen:
            raise UsageError(
                f"scaling: no hypergradient method matches {', '.join(patterns)}; known: "
                f"{', '.join(names)}"
            )
        return chosen
    return names


def _model_points(axis: Axis, methods: list[str], plan: Plan) -> list[Point]:
    if axis == Axis.HPARAMS:
        steps = [
            (
                variant(plan.hparam_width, g, aug),
                {"granularity": g.value, "augnet": aug, "model": model_kind(g)},
            )
            for g, aug in HPARAM_STEPS
        ]
    else:
        steps = [
            (
                variant(w, Granularity.TENSOR),
                {"width": w, "granularity": "tensor", "model": model_kind(Granularity.TENSOR)},
            )
            for w in plan.widths
        ]
    points = []
    for task, detail in steps:
        n_params, n_hparams = task_sizes(task)
        size = n_hparams if axis == Axis.HPARAMS else n_params
        detail = {**detail, "n_params": n_params, "n_hparams": n_hparams}
        for method in methods:
            if axis == Axis.HPARAMS and method in OWN_HPARAMS:
                continue
            for settings in SERIES.get(method, ({},)):
                label = series_label(method, settings)
                params = _params(method, settings)
                points.append(Point(axis, size, label, task, method, params, detail))
    return points


def _swept_points(
    axis: Axis, table: dict[str, tuple[Sweep, ...]], sizes, methods, plan
) -> list[Point]:
    task = variant(plan.small_width, Granularity.TENSOR)
    n_params, n_hparams = task_sizes(task)
    detail = {
        "width": plan.small_width,
        "n_params": n_params,
        "n_hparams": n_hparams,
        "model": model_kind(Granularity.TENSOR),
    }
    points = []
    for method in methods:
        for label, sweep in table.get(method, ()):
            for size in sizes:
                params = _params(method, sweep(size))
                points.append(Point(axis, size, label, task, method, params, detail))
    return points


def plan_points(plan: Plan = Plan(), methods: list[str] | None = None) -> list[Point]:
    """Every point of the sweep, series by series, each series's sizes in increasing order."""
    chosen = hypergradient_methods(methods)
    points: list[Point] = []
    for axis in plan.axes:
        if axis in (Axis.HPARAMS, Axis.WIDTH):
            points += _model_points(axis, chosen, plan)
        elif axis == Axis.HORIZON:
            points += _swept_points(axis, HORIZON, plan.horizons, chosen, plan)
        else:
            points += _swept_points(axis, BLOCK, plan.blocks, chosen, plan)
    order = {(p.axis, p.series): i for i, p in enumerate(points)}
    return sorted(points, key=lambda p: (order[(p.axis, p.series)], p.size))
