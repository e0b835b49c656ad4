"""What the runner executes and how: a cell (task × method × settings × seed) and the run options.

Kept apart from the runner so that planners (engine/plan.py, engine/costpass.py) and executors can
name cells without the runner's measurement code; `hgbench.engine.runner` re-exports both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hgbench.contracts.method import METHODS, Method
from hgbench.contracts.schema import Mode
from hgbench.contracts.task import Task
from hgbench.engine.calibration import NOISE_THRESHOLD


@dataclass(frozen=True)
class Cell:
    mode: Mode
    suite: str
    task: Task
    method: str
    method_params: dict[str, Any] = field(hash=False)
    seed: int
    # what the measurement depends on beyond the method and task: device type, dtype, budget
    context: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))

    @property
    def key(self) -> str:
        """mode/task/method/digest/seed; the digest covers the method's settings, the task's
        (so `--set task.epochs=...` makes new cells rather than matching finished ones) and the
        context (so a rerun with another --dtype, --device or --budget-s is not skipped)."""
        task = {
            k: v
            for k, v in dataclasses.asdict(self.task).items()
            if k not in ("name", "description", "tags")
        }
        parts = [self.method_params, task] + ([self.context] if self.context else [])
        canon = json.dumps(parts, sort_keys=True, default=str)
        digest = hashlib.sha1(canon.encode()).hexdigest()[:10]
        return f"{self.mode.value}/{self.task.name}/{self.method}/{digest}/{self.seed}"

    def make_method(self) -> Method:
        return METHODS[self.method](**self.method_params)

    def label(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in self.method_params.items())
        return f"{self.task.name} {self.method}" + (f"({shown})" if shown else "")


@dataclass(frozen=True)
class RunOptions:
    """How cells are measured (not what they compute: that is the cell's key)."""

    device: torch.device
    dtype: torch.dtype
    budget_s: float | None = None
    timeout_s: float | None = None
    probe_repeats: int = 3
    probe_states: int = 0  # probe at this many further states drawn from the hparam space
    estimates_dir: Path | None = None  # probe: save each estimate and its reference here
    threads: int | None = None  # CPU intra-op threads per cell (None: torch's default)
    compile: bool = False  # training steps through torch.compile
    channels_last: bool = False  # image batches and conv weights in channels-last layout
    noise_threshold: float = NOISE_THRESHOLD
    pack: int = 1  # cells sharing the device at once (hgbench.engine.packing); 1: isolated timing
    # GPU: the `fixed` and calibration steps as captured CUDA graphs where the capture gives the
    # eager numbers (hgbench.numerics.graphs); no effect on a CPU
    cuda_graphs: bool = True
