"""Guards around a cell: a wall-clock deadline, finiteness checks, one-line error texts.

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


def copy_checkpoint(ckpt: Checkpoint) -> Checkpoint:
    def clone(tree):
        return {k: v.detach().clone() for k, v in tree.items()}

    return dataclasses.replace(
        ckpt,
        params=clone(ckpt.params),
        hparams=clone(ckpt.hparams),
        extra=copy.deepcopy(ckpt.extra),
    )
