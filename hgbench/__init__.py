"""hgbench: a benchmark suite for hypergradient methods.

The names a plugin author uses are importable from here, `from hgbench import Method, ...`: the
contracts (what a method or a task is, how it is registered) and the numerics a method builds on.
They are defined in `hgbench.contracts` and `hgbench.numerics` and may be imported from there too;
this list is the stable surface (docs/api.md), the module layout behind it may change.
"""

from __future__ import annotations

from importlib import import_module

from hgbench import _moved

# name -> the module that defines it; resolved on first use (PEP 562), so `import hgbench` stays
# cheap and a name is the very object its module holds
_PUBLIC: dict[str, str] = {
    **dict.fromkeys(("AUG_PREFIX", "WD_PREFIX", "HParam", "HParamSpace", "weight_decay_space"),
                    "hgbench.contracts.hparams"),
    **dict.fromkeys(("METHODS", "Budget", "Checkpoint", "Estimate", "Family", "Method",
                     "Objective", "ProbeState", "register_method"), "hgbench.contracts.method"),
    **dict.fromkeys(("SUITES", "Suite", "register_suite"), "hgbench.contracts.suites"),
    **dict.fromkeys(("TASKS", "Likelihood", "Problem", "Splits", "Task", "register_task"),
                    "hgbench.contracts.task"),
    **dict.fromkeys(("flatten", "hvp", "hvp_operator", "mixed_vjp", "unflatten"),
                    "hgbench.numerics.functional"),
    "implicit_hypergradient": "hgbench.numerics.implicit",
    **dict.fromkeys(("Solution", "cg", "dense", "neumann", "nystrom"), "hgbench.numerics.linalg"),
    **dict.fromkeys(("BatchStream", "SGDTrainer", "sgd_momentum_step"),
                    "hgbench.numerics.training"),
    "unrolled_hypergradient": "hgbench.numerics.unroll",
}  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value  # once resolved, a plain attribute
        return value
    raise AttributeError(f"module 'hgbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


__version__ = "0.1.0"

__all__ = [  # noqa: F822 (the names resolve through __getattr__)
    "AUG_PREFIX",
    "METHODS",
    "SUITES",
    "TASKS",
    "WD_PREFIX",
    "BatchStream",
    "Budget",
    "Checkpoint",
    "Estimate",
    "Family",
    "HParam",
    "HParamSpace",
    "Likelihood",
    "Method",
    "Objective",
    "ProbeState",
    "Problem",
    "SGDTrainer",
    "Solution",
    "Splits",
    "Suite",
    "Task",
    "cg",
    "dense",
    "flatten",
    "hvp",
    "hvp_operator",
    "implicit_hypergradient",
    "mixed_vjp",
    "neumann",
    "nystrom",
    "register_method",
    "register_suite",
    "register_task",
    "sgd_momentum_step",
    "unflatten",
    "unrolled_hypergradient",
    "weight_decay_space",
]

_moved.install()
