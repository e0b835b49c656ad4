"""The scaling sweep's task: a digits MLP whose width and weight-decay granularity are settings.

`python -m hgbench scaling` (hgbench.engine.scaling) grows one size at a time on variants of this
task:

- the number of hparams, on a 64-1000-1000-10 MLP (1.08 M weights): one global decay, one per
  tensor, the augmentation network's weights (plus one decay per tensor), one per output unit,
  one per weight: 1 → 1.08 × 10⁶;
- the width w of a 64-w-w-10 MLP at one decay per tensor (6 hparams whatever w).

`granularity` says how finely weight decay is tuned: `global` (one decay for every weight: the
MLP holds all its weights in one flat tensor, so one decay per tensor is one in all; the function
and the initial weights are those of the plain MLP), `tensor`, `unit` (one decay per output unit:
shape (out, 1) for a weight, (out,) for a bias, broadcast along the unit's inputs) or `param`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgbench.contracts.hparams import WD_PREFIX, HParam, WeightDecay, weight_decay_space
from hgbench.contracts.schema import StrEnum
from hgbench.contracts.task import register_task
from hgbench.tasks.digits import DigitsModel, DigitsTask
from hgbench.tasks.models import MLP


class Granularity(StrEnum):
    """How many weight-decay hparams a model gets."""

    GLOBAL = "global"  # one for all weights
    TENSOR = "tensor"  # one per parameter tensor
    UNIT = "unit"  # one per output unit of each tensor
    PARAM = "param"  # one per weight


class FlatMLP(nn.Module):
    """A tanh MLP whose weights and biases live in ONE flat parameter tensor (`flat`).

    The same function as `MLP(in, hidden, out, "tanh")` on the same weights (`from_mlp` copies
    them), so that one decay per tensor is one global decay. The layers are views of `flat`.
    """

    def __init__(self, shapes: list[tuple[int, ...]]) -> None:
        super().__init__()
        self.shapes = shapes  # [(out, in), (out,), ...] of the Linear layers in order
        self.flat = nn.Parameter(torch.zeros(sum(math.prod(s) for s in shapes)))

    @classmethod
    def from_mlp(cls, mlp: nn.Module) -> FlatMLP:
        tensors = [p.detach() for p in mlp.parameters()]
        flat = cls([tuple(t.shape) for t in tensors])
        with torch.no_grad():
            flat.flat.copy_(torch.cat([t.reshape(-1) for t in tensors]))
        return flat

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        chunks = self.flat.split([math.prod(s) for s in self.shapes])
        layers = len(self.shapes) // 2
        for i in range(layers):
            w = chunks[2 * i].view(self.shapes[2 * i])
            h = F.linear(h, w, chunks[2 * i + 1])
            if i < layers - 1:
                h = torch.tanh(h)
        return h


def unit_decay_space(params: dict[str, Tensor], init: float) -> list[HParam]:
    """`log_wd.<name>` of shape (out, 1, ...) for every tensor: one decay per output unit."""
    return [
        HParam(WD_PREFIX + name, (p.shape[0],) + (1,) * (p.dim() - 1), init, -12.0, -2.0)
        for name, p in params.items()
    ]


@dataclass(frozen=True)
class ScalingMLPTask(DigitsTask):
    """A digits MLP of any width with weight decay at any granularity (`weight_decay` follows
    `granularity`: `param` there, `tensor` otherwise; set `granularity`, not `weight_decay`)."""

    granularity: Granularity = Granularity.TENSOR

    def __post_init__(self) -> None:
        object.__setattr__(self, "granularity", Granularity(self.granularity))
        derived = WeightDecay.PARAM if self.granularity == Granularity.PARAM else WeightDecay.TENSOR
        if WeightDecay(self.weight_decay) not in (derived, WeightDecay.TENSOR):
            raise ValueError(
                f"task {self.name!r}: set granularity (global, tensor, unit, param), not "
                "weight_decay"
            )
        object.__setattr__(self, "weight_decay", derived)
        super().__post_init__()
        if DigitsModel(self.model) != DigitsModel.MLP:
            raise ValueError(f"task {self.name!r}: the scaling task is an MLP")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"task {self.name!r}: hidden widths must be at least 1")

    def make_model(self) -> nn.Module:
        mlp = MLP(64, self.hidden, 10, activation="tanh")
        return FlatMLP.from_mlp(mlp) if self.granularity == Granularity.GLOBAL else mlp

    def hparam_space(self, params: dict[str, Tensor]) -> list[HParam]:
        if self.granularity == Granularity.UNIT:
            decay = unit_decay_space(params, self.log_wd_init)
        else:
            decay = weight_decay_space(params, self.weight_decay, self.log_wd_init)
        return decay + self.extra_hparams()


register_task(
    ScalingMLPTask(
        name="scaling_mlp",
        description="digits 8×8 (500 training images), MLP 64-1000-1000-10 (tanh, 1.08 M "
        "weights), weight decay at a granularity (global, tensor, unit, param): the scaling "
        "sweep's model",
        hidden=(1000, 1000),
        n_train=500,  # full-batch products cost 5 training steps of 100, not 10
        n_val=300,
        epochs=1,
        batch_size=100,
        lr=0.05,
    )
)
