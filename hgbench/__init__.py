"""hgbench: a benchmark suite for hypergradient methods.

The names a plugin author uses are importable from here, `from hgbench import Method, ...`: the
contracts (what a method or a task is, how it is registered) and the numerics a method builds on.
They are defined in `hgbench.contracts` and `hgbench.numerics` and may be imported from there too;
this list is the stable surface (docs/api.md), the module layout behind it may change.
"""

from hgbench import _moved
from hgbench.contracts.hparams import AUG_PREFIX, WD_PREFIX, HParam, HParamSpace, weight_decay_space
from hgbench.contracts.method import (
    METHODS,
    Budget,
    Checkpoint,
    Estimate,
    Family,
    Method,
    Objective,
    ProbeState,
    register_method,
)
from hgbench.contracts.suites import SUITES, Suite, register_suite
from hgbench.contracts.task import TASKS, Likelihood, Problem, Splits, Task, register_task
from hgbench.numerics.functional import flatten, hvp, hvp_operator, mixed_vjp, unflatten
from hgbench.numerics.implicit import implicit_hypergradient
from hgbench.numerics.linalg import Solution, cg, dense, neumann, nystrom
from hgbench.numerics.training import BatchStream, SGDTrainer, sgd_momentum_step
from hgbench.numerics.unroll import unrolled_hypergradient

__version__ = "0.1.0"

__all__ = [
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
