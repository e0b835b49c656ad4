"""The method contract: a dataclass whose fields are its settings, registered by name.

Timing contract (what the harness measures):
- `skip_reason` and `setup` are untimed.
- `run` is a generator. Only the work between two `yield`s is timed: the harness suspends the
  generator at each `Checkpoint`, stops the clock, evaluates the yielded (params, hparams) on
  held-out data, writes a row and resumes the clock. Yield once before training (step 0: the code
  before it is initialisation and untimed) and after every epoch (or whatever unit the method
  has); stop when `budget` says so.
- `prepare_probe` is untimed; `hypergradient` (probe mode) is timed as a whole, after one
  untimed warm-up call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from torch import Tensor

from hgbench.contracts.hparams import HParams, Params
from hgbench.contracts.registry import Registry
from hgbench.contracts.schema import CheckpointKind
from hgbench.contracts.task import Problem


class Family(str, Enum):
    """Method families: reports group and colour methods by them."""

    BASELINE = "baseline"  # fixed hparams: the floor
    BLACKBOX = "black-box"  # search that never differentiates (random search, TPE, ...)
    IMPLICIT = "implicit"  # implicit differentiation at an approximate inner optimum
    UNROLLED = "unrolled"  # differentiation through the inner steps (reverse or forward mode)
    REVERSAL = "reversal"  # reversal of the inner trajectory (exact or approximate)
    MARGLIK = "marglik"  # marginal-likelihood objectives (Laplace, bounds)
    OTHER = "other"


class Objective(str, Enum):
    """What a method's hypergradient is the gradient of (what probe compares it against)."""

    VALIDATION = "validation"  # mean validation NLL at the trained params
    MARGLIK = "marglik"  # −log marginal likelihood / N
    TRAINING = "training"  # the training loss after the inner steps (learning-rate adaptation)
    NONE = "none"  # the method estimates no hypergradient (fixed hparams, black-box search)


@dataclass(frozen=True)
class Budget:
    """How long a `run` may go: `epochs` (None: until `seconds` of timed work have passed)."""

    epochs: int | None
    seconds: float | None
    elapsed: Callable[[], float] = field(default=lambda: 0.0, repr=False, compare=False)

    def over(self) -> bool:
        return self.seconds is not None and self.elapsed() >= self.seconds

    def finished(self, epoch: float) -> bool:
        """For methods that count epochs fractionally: past the epoch limit, or over time."""
        return self.over() or (self.epochs is not None and epoch >= self.epochs)

    def epoch_range(self) -> Iterator[int]:
        """0, 1, ... up to `epochs` (unbounded when only seconds are given), ending when over."""
        epoch = 0
        while (self.epochs is None or epoch < self.epochs) and not self.over():
            yield epoch
            epoch += 1


@dataclass
class Checkpoint:
    """A state the harness evaluates: current params and hparams, and where training is."""

    params: Params
    hparams: HParams
    step: int
    epoch: float
    objective: float | None = None  # the method's own objective (validation loss, −log q / N)
    extra: dict[str, float] = field(default_factory=dict)
    # which state this is: the current one, or an earlier one the method reports as its result
    # (the row's `checkpoint` column); `step` and `epoch` still say how far training has gone
    kind: CheckpointKind = CheckpointKind.CURRENT


@dataclass(frozen=True)
class ProbeState:
    """A fixed (params, hparams) point, at a tight inner optimum of the training loss."""

    params: Params
    hparams: HParams


@dataclass(frozen=True)
class Reference:
    """The exact answer at a probe state: its hypergradient (and value, for marglik objectives)."""

    name: str
    state: ProbeState
    hypergradient: dict[str, Tensor]
    value: float | None = None


@dataclass
class Estimate:
    """One hypergradient: d objective / d hparams, with the hparams' keys and shapes."""

    hypergradient: dict[str, Tensor]
    value: float | None = None  # the objective's value, where the method estimates one
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Periodic:
    """How a method's cost is spread over its schedule (what the cost pass must cover): after
    `burnin` epochs its work repeats every `period` epochs (a fit every k epochs, a hyper-step
    every k steps: k / steps per epoch), so a stretch of burn-in plus whole periods, timed alone,
    gives its cost per epoch (hgbench.engine.stretch)."""

    burnin: float = 0.0
    period: float = 1.0

    def __post_init__(self) -> None:
        if self.burnin < 0 or self.period <= 0:
            raise ValueError(f"Periodic needs burnin >= 0 and period > 0, got {self}")

    @classmethod
    def steps(cls, problem: Problem, period: int, burnin: int = 0) -> Periodic:
        """Periodic work counted in optimiser steps (hyper-step every `period` steps)."""
        spe = problem.steps_per_epoch
        return cls(burnin / spe, max(period, 1) / spe)


@dataclass
class Method:
    """Base class: subclasses are dataclasses whose fields are their settings.

    Required: `run`. Methods that estimate a hypergradient set `objective` and implement
    `hypergradient`; `probe_grid` lists the settings probe mode sweeps with `--full-grid`, and
    `probe_quick` the (fewer) it sweeps by default. `family` groups methods in reports.
    """

    name: ClassVar[str] = ""
    family: ClassVar[Family] = Family.OTHER
    objective: ClassVar[Objective] = Objective.NONE
    tunes_hparams: ClassVar[bool] = True
    probe_grid: ClassVar[tuple[dict[str, Any], ...]] = ({},)
    probe_quick: ClassVar[tuple[dict[str, Any], ...] | None] = None  # None: all of probe_grid
    # Settings at which `hypergradient` equals its probe reference up to rounding (an exact
    # method, or an iterative one run to convergence); None: the method is approximate
    # everywhere. The contract tests hold such settings to a relative error below 1e-6.
    exact_settings: ClassVar[dict[str, Any] | None] = None
    # True for approximations that converge to the exact hypergradient at no setting (the
    # identity / one-step approximations): the contract tests then ask only for a positive
    # cosine (right direction) instead of cos > 0.9 at the most accurate setting.
    biased: ClassVar[bool] = False
    # Optional packages the method imports (each an extra of the same name): a selection that
    # includes the method is refused before any work when one is missing.
    requires: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def quick_probe_grid(cls) -> tuple[dict[str, Any], ...]:
        """The settings `probe` sweeps by default (`--full-grid`: all of `probe_grid`)."""
        return cls.probe_grid if cls.probe_quick is None else cls.probe_quick

    def skip_reason(self, problem: Problem) -> str | None:
        """Why this method cannot apply to the problem, or None."""
        return None

    def setup(self, problem: Problem) -> None:
        """Untimed preparation (compilation, caches)."""

    def run(self, problem: Problem, budget: Budget) -> Iterator[Checkpoint]:
        raise NotImplementedError

    def prepare_probe(self, problem: Problem, state: ProbeState) -> None:
        """Untimed preparation for `hypergradient` calls at `state` (probe mode calls it once
        per state, before the warm-up call): caches that belong to the state, not the estimate."""

    def hypergradient(self, problem: Problem, state: ProbeState) -> Estimate:
        raise NotImplementedError(f"{self.name} estimates no hypergradient")

    def probe_reference(self, problem: Problem, hparams: HParams | None = None) -> Reference | None:
        """Override where the exact reference is specific to this method's own objective (e.g.
        the validation loss after its own training run); None: the harness's reference for
        `objective` (see hgbench.engine.probe). `hparams`: the task's hparams of the probe state
        (None: its initial ones)."""
        return None

    def periodic_work(self, problem: Problem) -> Periodic | None:
        """The shape of this method's cost over its schedule, for the isolated cost pass; None
        (the default, always safe): its work depends on the whole budget (a search dividing it
        among trials, meta-iterations), so only a whole seed measures its cost."""
        return None

    def method_params(self) -> dict[str, Any]:
        """The settings as stored in every row (`method_params`): the dataclass's fields."""
        return dataclasses.asdict(self)


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: `@register_method("ift_cg")` on a `Method` dataclass."""

    def decorator(cls: type[Method]) -> type[Method]:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"{cls!r} is not a Method subclass")
        if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in cls.__dict__:
            raise TypeError(f"{cls.__name__} must be decorated with @dataclass")
        cls.name = name
        METHODS.add(name, cls)
        return cls

    return decorator
