"""The budget study's cells: the budget axis (each method at B runs, its default settings) and
the sensitivity sweep (each method's main settings one at a time at ÷3 and ×3, at B = 1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hgbench.budgets.kinds import BUDGETS, SEARCHERS, Kind, kind_of
from hgbench.budgets.spend import Budgeted
from hgbench.contracts.errors import UsageError
from hgbench.contracts.method import METHODS, Method
from hgbench.contracts.schema import Mode
from hgbench.contracts.suites import SUITES
from hgbench.contracts.task import TASKS
from hgbench.engine.planning import apply_task_sets, method_configs, parse_sets
from hgbench.engine.runner import Cell, Runner

SUITE = "budgets"
DEFAULT_SETTING = "default"
# settings every method's sweep varies where it has them: the step size of the hparams, how often
# they move, and the size of the inverse-Hessian solve or its block (M)
MAIN = ("hyper_lr", "period", "terms", "iterations", "block_size")
# the ones each paper calls sensitive, beyond MAIN
SENSITIVE: dict[str, tuple[str, ...]] = {
    "pes": ("sigma", "truncation"),  # Vicol et al. 2021: the perturbation scale and K
    "truncated_bptt": ("truncation",),  # Shaban et al. 2019: the truncation K
    "unroll": ("K",),
    "forward_mode": ("K",),
    "ift_nystrom": ("rank",),  # Hataya & Yamada 2023: the rank k
    "laplace_full": ("frequency", "hypersteps"),  # Immer et al. 2021: F and K of Alg. 1
    "amigo": ("v_steps",),
    "soba": ("v_steps",),
    "hypergradient_descent": ("K",),
}


@dataclass(frozen=True)
class BudgetCell(Cell):
    """A cell of the study: `context['runs']` is its budget B, `context['setting']` its label."""

    def make_method(self) -> Method:
        return Budgeted(self.method, dict(self.method_params), int(self.context["runs"]))


class BudgetRunner(Runner):
    """The runner, with the budget and the sweep's setting label in every row."""

    def base_row(self, cell: Cell) -> dict[str, Any]:
        row = super().base_row(cell)
        row["budget_runs"] = cell.context.get("runs", 1)
        row["setting"] = cell.context.get("setting", DEFAULT_SETTING)
        return row


def variants(value: Any) -> list[Any]:
    """÷3 and ×3 of a float; of a count, ÷3 and ×3 rounded (its two neighbours below 3)."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        low = max(1, round(value / 3)) if value >= 3 else value - 1
        return [v for v in (low, value * 3 if value >= 3 else value + 1) if v >= 1 and v != value]
    if isinstance(value, float) and value > 0:
        return [value / 3, value * 3]
    return []


def sweep_configs(name: str, defaults: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, settings) of `name`'s sweep: one setting moved at a time from `defaults`."""
    fields = {f.name for f in dataclasses.fields(METHODS[name])}
    out = []
    for key in (*MAIN, *SENSITIVE.get(name, ())):
        if key not in fields or key not in defaults:
            continue
        for value in variants(defaults[key]):
            settings = {**defaults, key: value}
            try:
                METHODS[name](**settings)
            except (TypeError, ValueError):
                continue  # a variant the method rejects (a count it cannot take): left out
            out.append(
                (f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}", settings)
            )
    return out


def plan_budget_cells(
    tasks: list[str] | None,
    methods: list[str] | None,
    seeds: list[int],
    budgets: tuple[int, ...] = BUDGETS,
    sweep: bool = True,
    context: dict[str, Any] | None = None,
) -> list[BudgetCell]:
    """The study's cells on the default suite's tasks (and its `--set` items: hyper_lr 0.1)."""
    suite = SUITES["default"]
    known = [*METHODS.names(), *(s for s in SEARCHERS if s not in METHODS)]
    chosen = methods or known
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise UsageError(f"unknown methods {unknown}; known: {', '.join(known)}")
    if any(b < 1 for b in budgets):
        raise UsageError("--budgets must be whole numbers of runs, at least 1")
    sets = parse_sets(list(suite.sets))
    task_objs = apply_task_sets([TASKS[t] for t in (tasks or suite.task_names())], sets)
    cells: list[BudgetCell] = []
    for name in chosen:
        kind = kind_of(name)
        defaults = {} if name not in METHODS else method_configs(name, ({},), sets)[0]
        if kind == Kind.SEARCH:
            defaults = {}  # full-trial search has no settings of its own to store
        plan = [(b, DEFAULT_SETTING, defaults) for b in budgets if kind != Kind.SINGLE or b == 1]
        if sweep and kind not in (Kind.SEARCH, Kind.SINGLE):
            plan += [(1, label, s) for label, s in sweep_configs(name, defaults)]
        for runs, label, settings in plan:
            for task in task_objs:
                for seed in seeds:
                    ctx = {**(context or {}), "runs": runs, "setting": label}
                    cells.append(BudgetCell(Mode.RUN, SUITE, task, name, settings, seed, ctx))
    order = {(t.name, s): i for i, (t, s) in enumerate((t, s) for s in seeds for t in task_objs)}
    cells.sort(key=lambda c: (order[(c.task.name, c.seed)], c.context["runs"]))
    return cells
