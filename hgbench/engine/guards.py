"""Guards around a cell: a wall-clock deadline, finiteness and divergence checks, one-line
error texts.

Whatever a method does wrong becomes a row, never a crash of the suite; these are the pieces the
runner uses to notice and describe it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import signal
import traceback
from collections.abc import Iterator

import torch

from hgbench.contracts.errors import DivergedError
from hgbench.contracts.method import Checkpoint


class CellTimeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise CellTimeout in this (main) thread after `seconds` of wall time."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise CellTimeout(f"cell exceeded its {seconds:g} s wall-clock limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def error_text(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    loc = f" (at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{loc}"


def finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def check_finite(ckpt: Checkpoint) -> None:
    if ckpt.objective is not None and not math.isfinite(ckpt.objective):
        raise DivergedError(f"objective is {ckpt.objective} at step {ckpt.step}")
    if not finite(ckpt.params.values()) or not finite(ckpt.hparams.values()):
        raise DivergedError(f"non-finite params or hparams at step {ckpt.step}")


# A run-mode cell has diverged when a loss it reports grows past this many times the scale it
# started at, even while finite. Every committed reference run's ok cell stays within 3.2× (the
# worst: hypergradient_descent on digits_cnn_small, validation NLL 2.30 -> 7.26), so 10 leaves
# a 3× margin; `task.lr=100` on digits_mlp reaches 3,000× within one epoch. docs/robustness.md.
DIVERGENCE_FACTOR = 10.0
# Losses are means per datum in nats; a start below one nat (a near-perfect fit, a small
# Gaussian NLL) must not make ordinary noise look like growth.
LOSS_FLOOR = 1.0


class DivergenceGuard:
    """Raises DivergedError once a cell's validation loss or its method's own objective exceeds
    `DIVERGENCE_FACTOR` × max(the validation loss at the cell's first evaluation, LOSS_FLOOR).

    Both are compared with the same start: the untrained model's validation NLL. A method's
    objective (a validation loss, −log marglik / N) is a per-datum loss of that model, and its
    first reported value may already come after a diverged step, so it cannot be its own start.
    """

    def __init__(self, factor: float = DIVERGENCE_FACTOR, floor: float = LOSS_FLOOR) -> None:
        self.factor, self.floor = factor, floor
        self.start: float | None = None

    def check(self, name: str, value: float | None, step: int) -> None:
        """Check `name`'s `value` at `step`; the first `val_loss` seen sets the start."""
        if value is None or not math.isfinite(value):
            return  # non-finite values are check_finite's (and a stored null's) to report
        if self.start is None:
            if name == "val_loss":
                self.start = value
            return
        limit = self.factor * max(abs(self.start), self.floor)
        if abs(value) > limit:
            raise DivergedError(
                f"{name} {value:.4g} at step {step} is over {self.factor:g}× the "
                f"start (validation loss {self.start:.4g} at the first evaluation)"
            )


def copy_checkpoint(ckpt: Checkpoint) -> Checkpoint:
    def clone(tree):
        return {k: v.detach().clone() for k, v in tree.items()}

    return dataclasses.replace(
        ckpt,
        params=clone(ckpt.params),
        hparams=clone(ckpt.hparams),
        extra=copy.deepcopy(ckpt.extra),
    )
